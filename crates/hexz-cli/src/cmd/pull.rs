//! `hexz pull`: download an archive (and its parent chain) and verify it.

use crate::util::human;
use anyhow::{Context, Result};
use hexz_core::ops::transfer::{pull, TransferOptions, Transferred};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Archive to download: an http(s):// or s3:// URL.
    url: String,
    /// Local file to write (through a temporary file, renamed once complete and verified).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,
    /// Also download a thin snapshot's ancestors, each to the path its child records.
    #[arg(long)]
    with_parents: bool,
    /// Print what was downloaded as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    open: crate::secret::OpenArgs,
}

pub fn run(a: Args) -> Result<ExitCode> {
    transfer(
        "pull",
        &a.open,
        a.with_parents,
        &a.url,
        &format!("pulling {}", a.url),
        a.json,
        "downloaded and verified",
        |opts| pull(&a.url, &a.output, opts),
    )
}

/// Runs a push or pull (`verb`) of the archive `name` with a progress bar, Ctrl-C cancellation
/// and a password prompt when one is needed, then reports what moved as `done_verb` (or JSON).
/// A failure is prefixed with `context`.
#[allow(clippy::too_many_arguments)]
pub fn transfer(
    verb: &'static str,
    open: &crate::secret::OpenArgs,
    with_parents: bool,
    name: &str,
    context: &str,
    json: bool,
    done_verb: &str,
    op: impl Fn(&TransferOptions) -> hexz_core::Result<Vec<Transferred>>,
) -> Result<ExitCode> {
    let cancel = crate::interrupt::install();
    let bars = crate::util::ArchiveBars::new(verb);
    let progress = |what: &str, done: u64, total: u64| bars.update(what, done, total);
    let run = |password| {
        op(&TransferOptions {
            remote: open.remote.options(),
            with_parents,
            password,
            progress: Some(&progress),
            cancel: Some(cancel),
        })
    };
    let r = crate::secret::with_password_retry(open, name, run)?;
    bars.finish();
    let done = r.context(context.to_string())?;
    report(&done, json, done_verb)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints what a push or pull moved.
pub fn report(done: &[Transferred], json: bool, verb: &str) -> Result<()> {
    if json {
        let v: Vec<_> = done
            .iter()
            .map(|t| serde_json::json!({"from": t.from, "to": t.to, "bytes": t.bytes}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "archives": v }))?
        );
    } else {
        for t in done {
            eprintln!("{verb} {} -> {} ({})", t.from, t.to, human(t.bytes));
        }
    }
    Ok(())
}
