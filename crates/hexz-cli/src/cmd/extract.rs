//! `hexz extract`: a whole stream to a file (sparse where the archive has zero blocks,
//! atomic and durable) or in place to a device or pipe; the work is `ops::extract`.

use crate::util::progress_bar;
use anyhow::{Context, Result};
use hexz_core::ops::extract::extract_to_path;
use hexz_core::SnapshotStream;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Archive to read: a path, or an http(s):// or s3:// URL.
    archive: PathBuf,
    /// Paths inside a tree archive to extract (default: the whole tree).
    #[arg(value_name = "PATH")]
    paths: Vec<std::ffi::OsString>,
    /// Stream to extract (default disk; a tree archive is extracted as a tree without it).
    #[arg(long, value_name = "disk|memory")]
    stream: Option<SnapshotStream>,
    /// Output: a directory for a tree archive; else a file (written to a temporary file,
    /// then renamed), or an existing block device, character device or FIFO (in place).
    #[arg(short = 'o', long = "output", value_name = "DIR|FILE")]
    output: PathBuf,
    /// Overwrite existing files when extracting a tree.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    open: crate::secret::OpenArgs,
}

pub fn run(a: Args) -> Result<std::process::ExitCode> {
    let f = crate::secret::open(&a.archive, crate::util::streaming_open_options(), &a.open)?;
    if a.stream.is_none() {
        if let Some(t) = hexz_core::api::FileTree::open(&f)? {
            return super::tree::extract(&t, &a.output, &a.paths, a.force);
        }
    }
    if !a.paths.is_empty() {
        anyhow::bail!(
            "{} is not a tree archive: PATH arguments apply to tree archives only",
            a.archive.display()
        );
    }
    let stream = a.stream.unwrap_or(SnapshotStream::Disk);
    if !f.has_stream(stream) {
        anyhow::bail!("{} has no {} stream", a.archive.display(), stream);
    }
    let pb = progress_bar(Some(f.size(stream)), stream.name());
    let cb = |done: u64| pb.set_position(done);
    extract_to_path(&f, stream, &a.output, Some(&cb)).with_context(|| {
        format!(
            "extracting {} stream of {} to {}",
            stream,
            a.archive.display(),
            a.output.display()
        )
    })?;
    pb.finish_and_clear();
    Ok(std::process::ExitCode::SUCCESS)
}
