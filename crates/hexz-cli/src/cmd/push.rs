//! `hexz push`: upload an archive (and its parent chain) to object storage.

use anyhow::{Context, Result};
use hexz_core::ops::transfer::{push, TransferOptions};
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
    let cancel = crate::interrupt::install();
    let bars = crate::util::ArchiveBars::new("push");
    let progress = |what: &str, done: u64, total: u64| bars.update(what, done, total);
    let run = |password| {
        let opts = TransferOptions {
            remote: a.open.remote.options(),
            with_parents: a.with_parents,
            password,
            progress: Some(&progress),
            cancel: Some(cancel),
        };
        push(&a.archive, &a.url, &opts)
    };
    let r = crate::secret::with_password_retry(&a.open, &a.archive.display().to_string(), run)?;
    bars.finish();
    let done = r.with_context(|| format!("pushing {} to {}", a.archive.display(), a.url))?;
    super::pull::report(&done, a.json, "uploaded")?;
    Ok(ExitCode::SUCCESS)
}
