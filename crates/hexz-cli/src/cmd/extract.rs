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
    /// Stream to extract.
    #[arg(long, default_value = "disk", value_name = "disk|memory")]
    stream: SnapshotStream,
    /// Output: a file (written to a temporary file, then renamed), or an existing block
    /// device, character device or FIFO (written in place).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,
    #[command(flatten)]
    open: crate::secret::OpenArgs,
}

pub fn run(a: Args) -> Result<std::process::ExitCode> {
    let f = crate::secret::open(&a.archive, crate::util::streaming_open_options(), &a.open)?;
    if !f.has_stream(a.stream) {
        anyhow::bail!("{} has no {} stream", a.archive.display(), a.stream);
    }
    let pb = progress_bar(Some(f.size(a.stream)), a.stream.name());
    let cb = |done: u64| pb.set_position(done);
    extract_to_path(&f, a.stream, &a.output, Some(&cb)).with_context(|| {
        format!(
            "extracting {} stream of {} to {}",
            a.stream,
            a.archive.display(),
            a.output.display()
        )
    })?;
    pb.finish_and_clear();
    Ok(std::process::ExitCode::SUCCESS)
}
