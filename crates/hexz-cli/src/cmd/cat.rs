//! `hexz cat`.

use anyhow::Result;
use hexz_core::{OpenOptions, SnapshotStream};
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Archive to read: a path, or an http(s):// or s3:// URL.
    archive: PathBuf,
    /// Stream to read.
    #[arg(long, default_value = "disk", value_name = "disk|memory")]
    stream: SnapshotStream,
    /// First byte to write (accepts K/M/G suffixes).
    #[arg(long, default_value = "0", value_parser = crate::util::parse_size)]
    offset: u64,
    /// Number of bytes to write (default: to the end of the stream).
    #[arg(long, value_parser = crate::util::parse_size)]
    length: Option<u64>,
    #[command(flatten)]
    open: crate::secret::OpenArgs,
}

/// Chunk size of each parallel read.
const CHUNK: usize = 8 << 20;

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
    let start = a.offset.min(size);
    let end = a.length.map_or(size, |l| start.saturating_add(l).min(size));
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    // Decode the next chunk while the previous one is being written.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<u8>>>(1);
    let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let reader = {
        let f = f.clone();
        let stream = a.stream;
        std::thread::spawn(move || {
            let mut pos = start;
            while pos < end {
                let n = ((end - pos) as usize).min(CHUNK);
                let mut buf = back_rx.try_recv().unwrap_or_default();
                buf.resize(n, 0);
                let r = f
                    .read_at_into(stream, pos, &mut buf)
                    .map(|_| buf)
                    .map_err(anyhow::Error::from);
                let failed = r.is_err();
                if tx.send(r).is_err() || failed {
                    return;
                }
                pos += n as u64;
            }
        })
    };
    for r in rx {
        let buf = r?;
        out.write_all(&buf)?;
        let _ = back_tx.send(buf);
    }
    out.flush()?;
    let _ = reader.join();
    Ok(std::process::ExitCode::SUCCESS)
}
