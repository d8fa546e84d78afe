//! `hexz commit OVERLAY -o CHILD.hxz`: an overlay becomes a thin child of its base.

use crate::util::{human, parse_size};
use anyhow::{bail, Context, Result};
use hexz_core::format::Codec;
use hexz_core::ops::{CdcParams, PackProgress};
use hexz_mount::commit::{commit, CommitOptions};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The overlay file (from `hexz mount --overlay` or `hexz serve --overlay`).
    #[arg(value_name = "FILE")]
    overlay: PathBuf,
    /// The child archive to write.
    #[arg(short = 'o', long = "output", value_name = "CHILD.hxz")]
    output: PathBuf,
    /// Block codec: lz4, zstd or none (default: the base's).
    #[arg(long, value_name = "lz4|zstd|none")]
    compression: Option<Codec>,
    /// zstd level (1-22).
    #[arg(long, value_name = "N")]
    level: Option<i32>,
    /// Fixed block size (default: the base's, so unchanged blocks line up with it).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    block_size: Option<u64>,
    /// Cut blocks by content (FastCDC) (default: as the base).
    #[arg(long)]
    cdc: bool,
    /// CDC minimum chunk size (with --cdc).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, requires = "cdc")]
    min: Option<u64>,
    /// CDC average chunk size (with --cdc).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, requires = "cdc")]
    avg: Option<u64>,
    /// CDC maximum chunk size (with --cdc).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, requires = "cdc")]
    max: Option<u64>,
    /// Encrypt the child (required of, and only allowed for, an encrypted base; implied then).
    #[arg(long)]
    encrypt: bool,
    /// Key derivation for the child's key wrap: pbkdf2 or argon2id.
    #[arg(long, value_name = "pbkdf2|argon2id", value_parser = crate::secret::parse_kdf)]
    kdf: Option<hexz_core::algo::encryption::Kdf>,
    /// Password file of an encrypted base (else HEXZ_PASSWORD or a prompt).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Packing threads (default: one per core).
    #[arg(long, value_name = "N", default_value_t = 0)]
    threads: usize,
    /// Print the result as JSON on standard output.
    #[arg(long)]
    json: bool,
}

fn u32_size(v: u64, what: &str) -> Result<u32> {
    u32::try_from(v).with_context(|| format!("{what} {v} is too large"))
}

pub fn run(a: Args) -> Result<ExitCode> {
    if a.level.is_some() && a.compression != Some(Codec::Zstd) {
        bail!("--level applies to zstd only (give --compression zstd)");
    }
    if a.cdc && a.block_size.is_some() {
        bail!("--block-size is for fixed-size blocks; with --cdc use --min/--avg/--max");
    }
    let cdc = if a.cdc {
        let d = CdcParams::default();
        let avg = a.avg.map_or(Ok(d.avg), |v| u32_size(v, "--avg"))?;
        Some(CdcParams {
            min: a
                .min
                .map_or(Ok(if a.avg.is_some() { avg / 4 } else { d.min }), |v| {
                    u32_size(v, "--min")
                })?,
            avg,
            max: a.max.map_or(
                Ok(if a.avg.is_some() {
                    avg.saturating_mul(4)
                } else {
                    d.max
                }),
                |v| u32_size(v, "--max"),
            )?,
        })
    } else {
        None
    };
    let header = hexz_mount::overlay::read_header(&a.overlay)?;
    let base_encrypted = {
        // The overlay records whether its base is encrypted.
        header.is_encrypted()
    };
    let password = if base_encrypted {
        Some(crate::secret::get_password(
            a.password_file.as_deref(),
            "HEXZ_PASSWORD",
            &format!("Password for {}", header.base_location),
            false,
        )?)
    } else {
        None
    };
    let opts = CommitOptions {
        codec: a.compression,
        level: a.level,
        block_size: a
            .block_size
            .map(|v| u32_size(v, "--block-size"))
            .transpose()?,
        cdc,
        kdf: a.kdf,
        password,
        encrypt: a.encrypt,
        threads: a.threads,
    };
    let bars = crate::util::StreamBars::default();
    let on_progress = |p: &PackProgress| bars.update(p);
    let st = commit(&a.overlay, &a.output, &opts, Some(&on_progress)).with_context(|| {
        format!(
            "committing {} into {}",
            a.overlay.display(),
            a.output.display()
        )
    })?;
    bars.finish();
    let stored: u64 = [&st.pack.disk, &st.pack.memory]
        .iter()
        .filter_map(|s| s.as_ref())
        .map(|s| s.stored_bytes)
        .sum();
    if a.json {
        let v = serde_json::json!({
            "output": a.output.display().to_string(),
            "base": st.base.display().to_string(),
            "archive_bytes": st.pack.archive_bytes,
            "stored_bytes": stored,
            "changed_chunks": st.changed_chunks,
            "chunk_size": st.chunk_size,
            "seconds": st.pack.elapsed.as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        eprintln!(
            "committed {} changed chunks of {} into {} ({}, thin child of {})",
            st.changed_chunks,
            human(st.chunk_size),
            a.output.display(),
            human(st.pack.archive_bytes),
            st.base.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
