//! `hexz extract`: a whole stream to a file, sparse where the archive has zero blocks.

use crate::util::progress_bar;
use anyhow::{Context, Result};
use hexz_core::ops::atomic::AtomicFile;
use hexz_core::{OpenOptions, SnapshotStream};
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Archive to read: a path, or an http(s):// or s3:// URL.
    archive: PathBuf,
    /// Stream to extract.
    #[arg(long, default_value = "disk", value_name = "disk|memory")]
    stream: SnapshotStream,
    /// Output file (written to a temporary file, then renamed).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,
    #[command(flatten)]
    open: crate::secret::OpenArgs,
}

/// Bytes decoded per parallel read.
const CHUNK: u64 = 8 << 20;

pub fn run(a: Args) -> Result<std::process::ExitCode> {
    let opts = OpenOptions {
        mmap: true,
        cache_bytes: 64 << 20,
        ..OpenOptions::default()
    };
    let f = crate::secret::open(&a.archive, opts, &a.open)?;
    if !f.has_stream(a.stream) {
        anyhow::bail!("{} has no {} stream", a.archive.display(), a.stream);
    }
    let size = f.size(a.stream);
    let mut out = AtomicFile::create(&a.output)?;
    let pb = progress_bar(Some(size), a.stream.name());
    let mut buf = Vec::new();
    {
        let file = out.file();
        // Walk the index: runs of data blocks are read in large parallel chunks, zero blocks
        // are skipped with a seek so the file system leaves holes.
        let mut run_start: Option<u64> = None;
        let flush =
            |file: &mut std::fs::File, from: u64, to: u64, buf: &mut Vec<u8>| -> Result<()> {
                let mut pos = from;
                file.seek(SeekFrom::Start(pos))?;
                while pos < to {
                    let n = (to - pos).min(CHUNK) as usize;
                    buf.resize(n, 0);
                    f.read_at_into(a.stream, pos, buf)?;
                    file.write_all(buf)?;
                    pos += n as u64;
                    pb.set_position(pos);
                }
                Ok(())
            };
        for e in f.entries(a.stream) {
            let e = e?;
            match (e.is_zero(), run_start) {
                (false, None) => run_start = Some(e.logical_offset),
                (true, Some(s)) => {
                    flush(file, s, e.logical_offset, &mut buf)?;
                    run_start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = run_start {
            flush(file, s, size, &mut buf)?;
        }
        file.set_len(size)
            .with_context(|| format!("setting length of {}", a.output.display()))?;
    }
    out.commit()?;
    pb.finish_and_clear();
    Ok(std::process::ExitCode::SUCCESS)
}
