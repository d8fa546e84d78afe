//! `hexz push`: upload an archive (and its parent chain) to object storage.

use anyhow::Result;
use hexz_core::ops::transfer::push;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Local archive to upload.
    archive: PathBuf,
    /// Destination: s3://BUCKET/KEY (the object appears only once complete).
    url: String,
    /// Also upload a thin snapshot's ancestors, each beside it under the path it records.
    #[arg(long)]
    with_parents: bool,
    /// Print what was uploaded as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    open: crate::secret::OpenArgs,
}

pub fn run(a: Args) -> Result<ExitCode> {
    super::pull::transfer(
        "push",
        &a.open,
        a.with_parents,
        &a.archive.display().to_string(),
        &format!("pushing {} to {}", a.archive.display(), a.url),
        a.json,
        "uploaded",
        |opts| push(&a.archive, &a.url, opts),
    )
}
