//! `hexz flatten`.

use crate::util::human;
use anyhow::{Context, Result};
use hexz_core::ops::{flatten, PackProgress};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Thin snapshot (or any archive) to flatten: a path or URL.
    archive: PathBuf,
    /// Standalone output archive.
    #[arg(short = 'o', long = "output", value_name = "OUT.hxz")]
    output: PathBuf,
    #[command(flatten)]
    open: crate::secret::OpenArgs,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let f = crate::secret::open(&a.archive, crate::util::streaming_open_options(), &a.open)?;
    // An encrypted archive flattens into one encrypted under the same password.
    let encryption = if f.header().is_encrypted() {
        Some(hexz_core::ops::pack::EncryptOptions {
            password: crate::secret::get_password(
                a.open.password_file.as_deref(),
                "HEXZ_PASSWORD",
                "Password",
                false,
            )?,
            kdf: Default::default(),
        })
    } else {
        None
    };
    let bars = crate::util::StreamBars::default();
    let cb = |p: &PackProgress| bars.update(p);
    let stats = flatten(&f, &a.output, encryption, Some(&cb)).with_context(|| {
        format!(
            "flattening {} into {}",
            a.archive.display(),
            a.output.display()
        )
    })?;
    bars.finish();
    eprintln!(
        "flattened {} ({} archives in its chain) into {} ({})",
        a.archive.display(),
        f.chain_len(),
        a.output.display(),
        human(stats.archive_bytes)
    );
    Ok(ExitCode::SUCCESS)
}
