//! `hexz pack`.

use crate::util::{human, parse_size};
use anyhow::{bail, Context, Result};
use hexz_core::format::Codec;
use hexz_core::ops::pack::{StreamStats, DEFAULT_BLOCK_SIZE};
use hexz_core::ops::{pack, CdcParams, PackInput, PackOptions, PackProgress, PackSource};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Directory to pack into a tree archive (files, directories, links, metadata).
    #[arg(value_name = "DIR", conflicts_with_all = ["disk", "memory", "from_tar"])]
    dir: Option<PathBuf>,
    /// Tar stream to pack into a tree archive ('-' for standard input).
    #[arg(long, value_name = "FILE.tar", conflicts_with_all = ["disk", "memory"])]
    from_tar: Option<PathBuf>,
    /// Leave out paths matching this glob (tree archives; repeatable). With a '/' it matches
    /// the path from the tree root, without one any entry's name.
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Fail instead of warning when a file changes or vanishes while being packed.
    #[arg(long)]
    strict: bool,
    /// Raw disk image to pack ('-' for standard input).
    #[arg(long, value_name = "FILE")]
    disk: Option<PathBuf>,
    /// Raw memory image to pack ('-' for standard input).
    #[arg(long, value_name = "FILE")]
    memory: Option<PathBuf>,
    /// Output archive: a path, or s3://BUCKET/KEY to stream it up (appears only when complete).
    #[arg(short = 'o', long = "output", value_name = "OUT.hxz|s3://…")]
    output: PathBuf,
    /// Block codec: lz4 (fast), zstd (smaller) or none.
    #[arg(long, default_value = "lz4", value_name = "lz4|zstd|none")]
    compression: Codec,
    /// Compression level (zstd 1-22, default 3).
    #[arg(long, value_name = "N")]
    level: Option<i32>,
    /// Fixed block size (4K-16M), e.g. 64K.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    block_size: Option<u64>,
    /// Cut blocks by content (FastCDC) instead of at fixed offsets.
    #[arg(long)]
    cdc: bool,
    /// CDC minimum chunk size (with --cdc; default 16K).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, requires = "cdc")]
    min: Option<u64>,
    /// CDC average chunk size (with --cdc; default 64K).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, requires = "cdc")]
    avg: Option<u64>,
    /// CDC maximum chunk size (with --cdc; default 256K).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, requires = "cdc")]
    max: Option<u64>,
    /// Make a thin snapshot: blocks already in this archive (or its ancestors) are stored as
    /// references to it.
    /// The base may be a URL (the child then records its file name: keep the child beside
    /// it).
    #[arg(long, value_name = "PARENT.hxz|URL")]
    base: Option<PathBuf>,
    /// Encrypt blocks and index with AES-256-GCM under a password (HEXZ_PASSWORD,
    /// --password-file, or a prompt).
    #[arg(long)]
    encrypt: bool,
    /// Key derivation for --encrypt: pbkdf2 (600,000 iterations, default) or argon2id.
    #[arg(long, value_name = "pbkdf2|argon2id", value_parser = crate::secret::parse_kdf, requires = "encrypt")]
    kdf: Option<hexz_core::algo::encryption::Kdf>,
    /// Read the password from this file (with --encrypt, or for an encrypted --base).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Store repeated blocks again instead of referencing the first copy.
    #[arg(long)]
    no_dedup: bool,
    /// Compression threads (default: one per core).
    #[arg(long, value_name = "N", default_value_t = 0)]
    threads: usize,
    /// Print the result summary as JSON on standard output.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: crate::remote::RemoteArgs,
}

fn source(p: &std::path::Path) -> PackSource {
    if p.as_os_str() == "-" {
        PackSource::Reader(Box::new(std::io::stdin()))
    } else {
        PackSource::Path(p.to_path_buf())
    }
}

fn u32_size(v: u64, what: &str) -> Result<u32> {
    u32::try_from(v).with_context(|| format!("{what} {v} is too large"))
}

pub fn run(a: Args) -> Result<std::process::ExitCode> {
    let tree = a.dir.is_some() || a.from_tar.is_some();
    if !tree && a.disk.is_none() && a.memory.is_none() {
        bail!("give a directory, --from-tar FILE, or --disk FILE and/or --memory FILE to pack");
    }
    if !tree && (!a.exclude.is_empty() || a.strict) {
        bail!("--exclude and --strict apply to tree archives (a directory or --from-tar)");
    }
    if a.disk.as_deref().is_some_and(|p| p.as_os_str() == "-")
        && a.memory.as_deref().is_some_and(|p| p.as_os_str() == "-")
    {
        bail!("only one of --disk and --memory can read standard input");
    }
    if a.level.is_some() && a.compression != Codec::Zstd {
        bail!("--level applies to zstd only (LZ4 has a single fast level)");
    }
    let cdc = if a.cdc {
        if a.block_size.is_some() {
            bail!("--block-size is for fixed-size blocks; with --cdc use --min/--avg/--max");
        }
        let d = CdcParams::default();
        let avg = a.avg.map_or(Ok(d.avg), |v| u32_size(v, "--avg"))?;
        let min = a
            .min
            .map_or(Ok(if a.avg.is_some() { avg / 4 } else { d.min }), |v| {
                u32_size(v, "--min")
            })?;
        let max = a.max.map_or(
            Ok(if a.avg.is_some() {
                avg.saturating_mul(4)
            } else {
                d.max
            }),
            |v| u32_size(v, "--max"),
        )?;
        Some(CdcParams { min, avg, max })
    } else {
        None
    };
    let opts = PackOptions {
        codec: a.compression,
        level: a.level.unwrap_or(3),
        block_size: a
            .block_size
            .map_or(Ok(DEFAULT_BLOCK_SIZE), |v| u32_size(v, "--block-size"))?,
        cdc,
        dedup: !a.no_dedup,
        threads: a.threads,
        base: a.base.clone(),
        remote: a.remote.options(),
        encryption: if a.encrypt {
            Some(hexz_core::ops::pack::EncryptOptions {
                password: crate::secret::get_password(
                    a.password_file.as_deref(),
                    "HEXZ_PASSWORD",
                    "Password",
                    true,
                )?,
                kdf: a.kdf.unwrap_or_default(),
            })
        } else {
            None
        },
        ..PackOptions::default()
    };
    let remote_out = a
        .output
        .to_str()
        .filter(|o| hexz_core::store::Location::parse(o).is_ok_and(|l| l.is_remote()));
    // Streamed up; Ctrl-C aborts the upload instead of orphaning it.
    let upload = remote_out.map(|url| {
        let topts = hexz_core::ops::transfer::TransferOptions {
            remote: a.remote.options(),
            cancel: Some(crate::interrupt::install()),
            ..Default::default()
        };
        (url, topts)
    });
    if tree {
        let t = hexz_core::ops::tree::TreePackOptions {
            exclude: a.exclude.clone(),
            strict: a.strict,
            ..Default::default()
        };
        return super::tree::pack(
            a.dir.as_deref(),
            a.from_tar.as_deref(),
            &a.output,
            upload,
            &opts,
            &t,
            a.json,
        );
    }
    let input = PackInput {
        disk: a.disk.as_deref().map(source),
        memory: a.memory.as_deref().map(source),
    };
    let bars = crate::util::StreamBars::default();
    let on_progress = |p: &PackProgress| bars.update(p);
    let stats = match upload {
        Some((url, topts)) => {
            hexz_core::ops::transfer::pack_to_url(input, url, &opts, &topts, Some(&on_progress))
                .map(|(stats, _)| stats)
        }
        None => pack(input, &a.output, &opts, Some(&on_progress)),
    }
    .with_context(|| format!("packing {}", a.output.display()))?;
    bars.finish();
    let logical: u64 = [&stats.disk, &stats.memory]
        .iter()
        .filter_map(|s| s.as_ref())
        .map(|s| s.input_bytes)
        .sum();
    let secs = stats.elapsed.as_secs_f64().max(1e-9);
    if a.json {
        let st = |s: &Option<StreamStats>| {
            s.as_ref().map(|s| {
                serde_json::json!({
                    "input_bytes": s.input_bytes, "blocks": s.blocks, "zero_blocks": s.zero_blocks,
                    "dedup_blocks": s.dedup_blocks, "parent_blocks": s.parent_blocks,
                    "stored_bytes": s.stored_bytes, "padding_bytes": s.padding_bytes,
                })
            })
        };
        let v = serde_json::json!({
            "output": a.output.display().to_string(),
            "archive_bytes": stats.archive_bytes,
            "logical_bytes": logical,
            "seconds": secs,
            "disk": st(&stats.disk),
            "memory": st(&stats.memory),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let ratio = if stats.archive_bytes > 0 {
            logical as f64 / stats.archive_bytes as f64
        } else {
            0.0
        };
        eprintln!(
            "packed {} into {} ({}, {:.2}x) in {:.2}s ({}/s)",
            human(logical),
            a.output.display(),
            human(stats.archive_bytes),
            ratio,
            secs,
            human((logical as f64 / secs) as u64)
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}
