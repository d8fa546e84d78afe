//! `hexz cat`: a stream (or a range of it) to standard output, decoded in parallel ahead of
//! the writes with bounded memory (`ops::extract`).

use anyhow::Result;
use hexz_core::ops::extract::extract_range_to_writer;
use hexz_core::SnapshotStream;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Archive to read: a path, or an http(s):// or s3:// URL.
    archive: PathBuf,
    /// File inside a tree archive to write (without it, a stream is written).
    #[arg(value_name = "PATH", conflicts_with = "stream")]
    path: Option<PathBuf>,
    /// Stream to read (default disk).
    #[arg(long, value_name = "disk|memory")]
    stream: Option<SnapshotStream>,
    /// First byte to write (accepts K/M/G suffixes).
    #[arg(long, default_value = "0", value_parser = crate::util::parse_size)]
    offset: u64,
    /// Number of bytes to write (default: to the end of the stream).
    #[arg(long, value_parser = crate::util::parse_size)]
    length: Option<u64>,
    #[command(flatten)]
    open: crate::secret::OpenArgs,
}

pub fn run(a: Args) -> Result<std::process::ExitCode> {
    let f = crate::secret::open(&a.archive, crate::util::streaming_open_options(), &a.open)?;
    if let Some(p) = &a.path {
        return super::tree::cat(&f, &a.archive, p, a.offset, a.length);
    }
    let stream = a.stream.unwrap_or(SnapshotStream::Disk);
    if !f.has_stream(stream) {
        anyhow::bail!("{} has no {} stream", a.archive.display(), stream);
    }
    let size = f.size(stream);
    let start = a.offset.min(size);
    let end = a.length.map_or(size, |l| start.saturating_add(l).min(size));
    // A file on a duplicate of fd 1, not `Stdout`: its line buffering scans every byte
    // written for a newline (1% of a full read's CPU).
    let stdout = std::os::fd::AsFd::as_fd(&std::io::stdout()).try_clone_to_owned()?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::from(stdout));
    extract_range_to_writer(&f, stream, start, end, &mut out, None)?;
    out.flush()?;
    Ok(std::process::ExitCode::SUCCESS)
}
