//! `hexz push`: upload an archive (and its parent chain) to object storage.

use crate::util::progress_bar;
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
    let mut password = crate::secret::password_if_given(&a.open)?;
    let bar = std::sync::Mutex::new(None::<(String, indicatif::ProgressBar)>);
    let progress = |what: &str, done: u64, total: u64| {
        let mut g = bar.lock().unwrap_or_else(|e| e.into_inner());
        if g.as_ref().is_none_or(|(w, _)| w != what) {
            if let Some((_, old)) = g.take() {
                old.finish_and_clear();
            }
            *g = Some((what.to_string(), progress_bar(Some(total), "push")));
        }
        if let Some((_, pb)) = g.as_ref() {
            pb.set_position(done);
        }
    };
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
    let r = match run(password.clone()) {
        Err(hexz_core::Error::PasswordRequired(_)) if password.is_none() => {
            password = Some(crate::secret::get_password(
                None,
                "HEXZ_PASSWORD",
                &format!("Password for {}", a.archive.display()),
                false,
            )?);
            run(password)
        }
        r => r,
    };
    if let Some((_, pb)) = bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
        pb.finish_and_clear();
    }
    let done = r.with_context(|| format!("pushing {} to {}", a.archive.display(), a.url))?;
    super::pull::report(&done, a.json, "uploaded")?;
    Ok(ExitCode::SUCCESS)
}
