//! Fixed workloads for the instruction-count benchmark (`scripts/bench-instr.sh`, run under
//! `valgrind --tool=callgrind`; docs/BENCHMARKS.md, issue 12).
//!
//! Instruction counts are repeatable where wall-clock times on a shared machine are not, so a
//! change that makes pack or read do more work shows as a larger count even when the machine
//! is busy. Everything here is deterministic: the input comes from a fixed generator, random
//! offsets from a fixed seed, and every pool runs one thread (threads that wait and wake in a
//! different order would otherwise add noise).
//!
//! ```text
//! instrbench gen OUT MIB                 deterministic input: text, random, zero, repeated
//! instrbench pack IN OUT lz4|zstd|cdc    pack with one compression thread
//! instrbench read ARCHIVE                full sequential read of the disk stream
//! instrbench random ARCHIVE N            N uncached 4 KiB reads at random offsets
//! ```

use hexz_core::format::Codec;
use hexz_core::ops::extract::extract_to_writer;
use hexz_core::ops::pack::{pack, PackInput, PackOptions, PackSource};
use hexz_core::{File, OpenOptions, SnapshotStream};
use std::io::Write;
use std::path::Path;

mod common;
use common::Rng;

const WORDS: &[&str] = &[
    "block", "index", "archive", "stream", "disk", "memory", "the", "of", "and", "a", "to",
    "snapshot", "read", "write", "page", "cache", "hash", "offset", "length", "zero", "file", "{",
    "}", "(", ")", ";", "\n", "\t", "0x", "return", "if", "else", "for", "let", "fn",
];

/// Writes `mib` MiB of mixed content in 1 MiB pieces: 50% text-like, 20% random, 15%
/// zeros, 15% copies of an earlier piece (dedup), chosen by a fixed seed.
fn gen(out: &Path, mib: u64) -> std::io::Result<()> {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut f = std::io::BufWriter::new(std::fs::File::create(out)?);
    let mut pieces: Vec<Vec<u8>> = Vec::new();
    for _ in 0..mib {
        let kind = rng.next() % 100;
        let piece: Vec<u8> = if kind < 50 {
            let mut p = Vec::with_capacity(1 << 20);
            while p.len() < 1 << 20 {
                let w = WORDS[(rng.next() % WORDS.len() as u64) as usize];
                p.extend_from_slice(w.as_bytes());
                p.push(b' ');
            }
            p.truncate(1 << 20);
            p
        } else if kind < 70 {
            let mut p = vec![0u8; 1 << 20];
            for c in p.chunks_mut(8) {
                c.copy_from_slice(&rng.next().to_le_bytes()[..c.len()]);
            }
            p
        } else if kind < 85 || pieces.is_empty() {
            vec![0u8; 1 << 20]
        } else {
            pieces[(rng.next() % pieces.len() as u64) as usize].clone()
        };
        f.write_all(&piece)?;
        if kind < 70 {
            pieces.push(piece);
        }
    }
    f.flush()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    hexz_core::api::set_process_threads(1, 1);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> Result<&str, Box<dyn std::error::Error>> {
        args.get(i)
            .map(String::as_str)
            .ok_or_else(|| "usage: see the header of examples/instrbench.rs".into())
    };
    match arg(0)? {
        "gen" => gen(Path::new(arg(1)?), arg(2)?.parse()?)?,
        "pack" => {
            let mut opts = PackOptions {
                threads: 1,
                ..PackOptions::default()
            };
            match arg(3)? {
                "lz4" => {}
                "zstd" => {
                    opts.codec = Codec::Zstd;
                    opts.level = 3;
                }
                "cdc" => {
                    opts.codec = Codec::Zstd;
                    opts.level = 3;
                    opts.cdc = Some(Default::default());
                }
                other => return Err(format!("unknown pack mode '{other}'").into()),
            }
            let input = PackInput {
                disk: Some(PackSource::Path(arg(1)?.into())),
                memory: None,
            };
            pack(input, Path::new(arg(2)?), &opts, None)?;
        }
        "read" => {
            let f = File::open_with(arg(1)?, OpenOptions::default())?;
            let stats = extract_to_writer(&f, SnapshotStream::Disk, &mut std::io::sink(), None)?;
            eprintln!("read {stats:?}");
        }
        "random" => {
            let f = File::open_with(
                arg(1)?,
                OpenOptions {
                    cache_bytes: 0,
                    read_ahead: 0,
                    ..OpenOptions::default()
                },
            )?;
            let n: u64 = arg(2)?.parse()?;
            let size = f.size(SnapshotStream::Disk);
            let slots = (size / 4096).max(1);
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            let mut buf = vec![0u8; 4096];
            let mut sum = 0u64;
            for _ in 0..n {
                let off = (rng.next() % slots) * 4096;
                let got = f.read_at_into(SnapshotStream::Disk, off, &mut buf)?;
                sum = sum.wrapping_add(buf[..got].iter().map(|&b| b as u64).sum::<u64>());
            }
            eprintln!("random: {n} reads, byte sum {sum}");
        }
        other => return Err(format!("unknown mode '{other}'").into()),
    }
    Ok(())
}
