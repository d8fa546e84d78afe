//! Random-read micro-benchmark used by `scripts/bench.sh` (docs/BENCHMARKS.md).
//!
//! `cargo run --release -p hexz-core --example readbench -- ARCHIVE [SAMPLES]`
//!
//! Prints one JSON object with:
//! - `cached_4k_ns`: median time of a 4 KiB `read_at_into` whose block is already in the
//!   block cache (random block among a warm set, random 4 KiB-aligned offset in it);
//! - `uncached_4k_ns`: median time of a 4 KiB read of a block that is not cached (cache
//!   disabled) with the default checks: the bound CRC of a format 1.1 archive, or CRC32 +
//!   BLAKE3 of a 1.0 archive;
//! - `uncached_4k_blake3_ns`: the same with `verify_full` (CRC32 + BLAKE3 of every block,
//!   what every uncached read cost before format 1.1);
//! - `uncached_4k_nohash_ns`: the same with `verify_hashes: false` (CRC32 only);
//! - `decompress_ns`: median time to decompress one such block with the same codec, nothing
//!   else (the stored bytes already in memory);
//! - the ratios of the uncached read times to `decompress_ns`.

use hexz_core::algo::compression::compressor_for;
use hexz_core::format::BlockEntry;
use hexz_core::{File, OpenOptions, SnapshotStream};
use std::time::Instant;

mod common;
use common::Rng;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).ok_or("usage: readbench ARCHIVE [SAMPLES]")?;
    let samples: usize = args.get(2).map_or(Ok(256), |s| s.parse())?;
    let stream = SnapshotStream::Disk;
    let mmap = |cache_bytes, verify_hashes, verify_full| OpenOptions {
        mmap: true,
        cache_bytes,
        verify_hashes,
        verify_full,
        read_ahead: 0,
        ..OpenOptions::default()
    };

    // Pick non-zero blocks spread over the stream.
    let f = File::open_with(path, mmap(256 << 20, true, false))?;
    let mut blocks: Vec<BlockEntry> = Vec::new();
    if !f.has_stream(stream) {
        return Err("no disk stream".into());
    }
    for e in f.entries(stream) {
        let e = e?;
        if !e.is_zero() && e.logical_len >= 4096 {
            blocks.push(e);
        }
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let picked: Vec<BlockEntry> = (0..samples.min(blocks.len()))
        .map(|_| blocks[(rng.next() % blocks.len() as u64) as usize])
        .collect();
    let offset_in = |e: &BlockEntry, r: &mut Rng| {
        let slots = (e.logical_len as u64 / 4096).max(1);
        e.logical_offset + (r.next() % slots) * 4096
    };

    // Cached: warm the picked blocks, then time batches of random 4 KiB reads among them.
    let mut buf = vec![0u8; 4096];
    for e in &picked {
        f.read_at_into(stream, e.logical_offset, &mut buf)?;
    }
    let mut cached = Vec::new();
    for _ in 0..9 {
        let n = 200_000;
        let offs: Vec<u64> = (0..n)
            .map(|_| {
                offset_in(
                    &picked[(rng.next() % picked.len() as u64) as usize],
                    &mut rng,
                )
            })
            .collect();
        let t = Instant::now();
        for &o in &offs {
            f.read_at_into(stream, o, &mut buf)?;
        }
        cached.push(t.elapsed().as_nanos() as f64 / n as f64);
    }

    // Uncached: cache disabled, so every read fetches, checks and decodes its block.
    let time_reads =
        |verify: bool, full: bool, rng: &mut Rng| -> Result<Vec<f64>, Box<dyn std::error::Error>> {
            let g = File::open_with(path, mmap(0, verify, full))?;
            let mut buf = vec![0u8; 4096];
            let mut per_block = Vec::new();
            for e in &picked {
                let mut t_best = Vec::new();
                for _ in 0..15 {
                    let o = offset_in(e, rng);
                    let t = Instant::now();
                    g.read_at_into(stream, o, &mut buf)?;
                    t_best.push(t.elapsed().as_nanos() as f64);
                }
                per_block.push(median(&mut t_best));
            }
            Ok(per_block)
        };
    let mut uncached = time_reads(true, false, &mut rng)?;
    let mut uncached_blake3 = time_reads(true, true, &mut rng)?;
    let mut uncached_nohash = time_reads(false, false, &mut rng)?;

    // Decompression alone, same blocks, same codec, stored bytes already in memory.
    let data = std::fs::read(path)?;
    let mut dec = Vec::new();
    let mut out = vec![0u8; 16 << 20];
    for e in &picked {
        let c = compressor_for(e.codec, 3)?;
        let stored =
            &data[e.stored_offset as usize..(e.stored_offset + e.stored_len as u64) as usize];
        let dst = &mut out[..e.logical_len as usize];
        let mut t_best = Vec::new();
        for _ in 0..15 {
            let t = Instant::now();
            c.decompress_into(stored, dst)?;
            t_best.push(t.elapsed().as_nanos() as f64);
        }
        dec.push(median(&mut t_best));
    }
    let (c, u, ub, un, d) = (
        median(&mut cached),
        median(&mut uncached),
        median(&mut uncached_blake3),
        median(&mut uncached_nohash),
        median(&mut dec),
    );
    println!(
        "{{\"archive\": \"{path}\", \"format\": \"{}.{}\", \"blocks_sampled\": {}, \
         \"cached_4k_ns\": {c:.1}, \"uncached_4k_ns\": {u:.1}, \"uncached_4k_blake3_ns\": {ub:.1}, \
         \"uncached_4k_nohash_ns\": {un:.1}, \"decompress_ns\": {d:.1}, \
         \"uncached_over_decompress\": {:.3}, \"uncached_blake3_over_decompress\": {:.3}, \
         \"uncached_nohash_over_decompress\": {:.3}}}",
        f.header().major,
        f.header().minor,
        picked.len(),
        u / d,
        ub / d,
        un / d
    );
    Ok(())
}
