//! `hexz info`.

use crate::util::human;
use anyhow::Result;
use hexz_core::ops::inspect;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Archive to describe: a path, or an http(s):// or s3:// URL.
    archive: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    open: crate::secret::OpenArgs,
}

pub fn run(a: Args) -> Result<std::process::ExitCode> {
    let f = crate::secret::open(&a.archive, Default::default(), &a.open)?;
    // The backend's length: a file's size, a remote object's Content-Range total.
    let size = f.archive_len();
    let i = inspect(&f, size);
    let chain = if f.parent().is_some() {
        hexz_core::ops::inspect::chain(&f)?
    } else {
        Vec::new()
    };
    if a.json {
        let mut v = hexz_core::ops::inspect::info_json(&f, &a.archive.display().to_string())?;
        if let Some(t) = hexz_core::api::FileTree::open(&f)? {
            v["tree"] = super::tree::info_json(&t);
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(std::process::ExitCode::SUCCESS);
    }
    println!("archive      {}", a.archive.display());
    println!("format       hexz {}", i.version);
    println!("archive id   {}", i.archive_id);
    let level = if i.level != 0 {
        format!(" level {}", i.level)
    } else {
        String::new()
    };
    println!("compression  {}{level}", i.codec);
    if i.chunking == "cdc" {
        println!(
            "blocks       content-defined: min {} avg {} max {}",
            human(i.cdc_min as u64),
            human(i.block_size as u64),
            human(i.cdc_max as u64)
        );
    } else {
        println!("blocks       fixed {}", human(i.block_size as u64));
    }
    if !i.flags.is_empty() {
        println!("flags        {}", i.flags.join(", "));
    }
    if f.header().is_encrypted() {
        println!(
            "encryption   AES-256-GCM, key from {}",
            kdf_name(f.header())
        );
    }
    println!(
        "size         {} on disk for {} of data (ratio {:.2}x)",
        human(i.archive_bytes),
        human(i.logical_bytes),
        i.ratio()
    );
    for s in &i.streams {
        println!(
            "stream {:<7} {} in {} blocks ({} zero), {} stored, {} index pages",
            s.stream.name(),
            human(s.logical_size),
            s.blocks,
            s.zero_blocks,
            human(s.stored_bytes),
            s.index_pages
        );
    }
    if let Some(t) = hexz_core::api::FileTree::open(&f)? {
        super::tree::info_text(&t);
    }
    for c in &chain {
        let role = if c.depth == 0 {
            "this archive".to_string()
        } else {
            format!("ancestor {}", c.depth)
        };
        println!(
            "chain {:<12} {} (id {}) supplies {}",
            role,
            c.location,
            c.archive_id,
            human(c.supplied_bytes)
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn kdf_name(h: &hexz_core::format::Header) -> String {
    hexz_core::ops::inspect::kdf_name(h)
}
