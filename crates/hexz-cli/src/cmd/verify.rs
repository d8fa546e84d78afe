//! `hexz verify`.

use crate::util::{human, progress_bar};
use anyhow::{Context, Result};
use hexz_core::ops::{verify, VerifyProgress};
use hexz_core::OpenOptions;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Archive to check: a path, or an http(s):// or s3:// URL.
    archive: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    open: crate::secret::OpenArgs,
}

pub fn run(a: Args) -> Result<std::process::ExitCode> {
    let opts = OpenOptions {
        mmap: true,
        cache_bytes: 0,
        ..OpenOptions::default()
    };
    let r = crate::secret::open(&a.archive, opts, &a.open).and_then(|f| {
        let total: u64 = f.streams().iter().map(|&s| f.size(s)).sum();
        let pb = progress_bar(Some(total), "verify");
        let cb = |p: &VerifyProgress| pb.set_position(p.done);
        let r = verify(&f, Some(&cb));
        pb.finish_and_clear();
        Ok(r?)
    });
    if a.json {
        let v = match &r {
            Ok(rep) => serde_json::json!({
                "archive": a.archive.display().to_string(), "ok": true,
                "pages": rep.pages, "blocks": rep.blocks, "bytes": rep.bytes,
                "archives": rep.archives, "tree_entries": rep.tree_entries,
            }),
            Err(e) => serde_json::json!({
                "archive": a.archive.display().to_string(), "ok": false, "error": format!("{e:#}"),
            }),
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    let rep = r.with_context(|| format!("verifying {}", a.archive.display()))?;
    if !a.json {
        let signed = if a.open.pubkey.is_some() {
            ", signature valid"
        } else {
            ""
        };
        let chain = if rep.archives > 1 {
            format!(" across {} archives of the chain", rep.archives)
        } else {
            String::new()
        };
        let tree = if rep.tree_entries > 0 {
            format!(", {} file table entries", rep.tree_entries)
        } else {
            String::new()
        };
        println!(
            "ok: {} blocks in {} index pages, {} checked{tree}{chain}{signed}",
            rep.blocks,
            rep.pages,
            human(rep.bytes)
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}
