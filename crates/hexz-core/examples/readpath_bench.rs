//! Read-path benchmark with injected latency (docs/BENCHMARKS.md, "Read path: batched fetch").
//!
//! `cargo run --release -p hexz-core --example readpath_bench -- ARCHIVE [LATENCY_MS] [RUNS]`
//!
//! Opens ARCHIVE through a `CountingBackend` that sleeps LATENCY_MS (default 20) on every
//! backend call and reports itself remote, and measures, RUNS times (default 5, medians):
//! - `open`: backend calls and time to open;
//! - `cold_8m`: an 8 MiB read at offset 16 MiB on a freshly opened archive: calls, time;
//! - `per_block_8m`: the same read the way the previous read path did it, one backend call
//!   per index page and per block, one after another (the reference, same run);
//! - `same_block_8t`: 8 threads reading the same cold block: backend calls;
//! - `seq_full`: a whole-stream read through a `StreamReader` in 1 MiB reads (read-ahead):
//!   calls, average request size, time and throughput.
//!
//! Prints one JSON object.

use hexz_core::format::BlockEntry;
use hexz_core::store::local::FileBackend;
use hexz_core::store::testing::{Counters, CountingBackend};
use hexz_core::store::StorageBackend;
use hexz_core::{File, OpenOptions, SnapshotStream};
use std::io::Read;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const D: SnapshotStream = SnapshotStream::Disk;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn open(path: &str, latency: Duration) -> Result<(File, Arc<Counters>), hexz_core::Error> {
    let inner: Arc<dyn StorageBackend> = Arc::new(FileBackend::new(path.as_ref())?);
    let b = CountingBackend::new(inner)
        .with_remote(true)
        .with_latency(latency);
    let c = b.counters();
    Ok((
        File::open_backend(Arc::new(b), None, OpenOptions::default())?,
        c,
    ))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .ok_or("usage: readpath_bench ARCHIVE [LATENCY_MS] [RUNS]")?;
    let latency = Duration::from_millis(args.get(2).map_or(Ok(20), |s| s.parse())?);
    let runs: usize = args.get(3).map_or(Ok(5), |s| s.parse())?;
    let size = File::open(path)?.size(D);
    let off = (16u64 << 20).min(size.saturating_sub(8 << 20));
    let len = (8u64 << 20).min(size) as usize;

    let (mut open_t, mut open_c) = (Vec::new(), Vec::new());
    let (mut cold_t, mut cold_c) = (Vec::new(), Vec::new());
    let (mut old_t, mut old_c) = (Vec::new(), Vec::new());
    let mut same_c = Vec::new();
    let (mut seq_t, mut seq_c, mut seq_avg) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        // Open, then a cold 8 MiB read.
        let t = Instant::now();
        let (f, c) = open(path, latency)?;
        open_t.push(t.elapsed().as_secs_f64());
        open_c.push(c.calls() as f64);
        c.reset();
        let t = Instant::now();
        let got = f.read_at(D, off, len)?;
        cold_t.push(t.elapsed().as_secs_f64());
        cold_c.push(c.calls() as f64);

        // Reference: one call per index page and per block, in turn.
        let (g, c) = open(path, latency)?;
        c.reset();
        let t = Instant::now();
        let mut out = vec![0u8; len];
        let end = off + len as u64;
        let rec = g.master().stream(D).ok_or("no disk stream")?.clone();
        for (page_no, r) in rec.pages.iter().enumerate() {
            let next = rec.pages.get(page_no + 1).map_or(size, |n| n.first_logical);
            if next <= off || r.first_logical >= end {
                continue;
            }
            let page = g.index_page(D, page_no)?;
            for (i, e) in page.entries.iter().enumerate() {
                if e.logical_end() <= off || e.logical_offset >= end {
                    continue;
                }
                let mut blk = vec![0u8; e.logical_len as usize];
                g.decode_block_into(D, r.first_block + i as u64, e, &mut blk)?;
                let (a, b) = (e.logical_offset.max(off), e.logical_end().min(end));
                out[(a - off) as usize..(b - off) as usize].copy_from_slice(
                    &blk[(a - e.logical_offset) as usize..(b - e.logical_offset) as usize],
                );
            }
        }
        old_t.push(t.elapsed().as_secs_f64());
        old_c.push(c.calls() as f64);
        assert!(out == got, "reference and batched reads differ");

        // 8 threads on one cold block.
        let (h, c) = open(path, latency)?;
        let e: BlockEntry = h
            .entries(D)
            .map(|e| e.expect("index"))
            .filter(|e| !e.is_zero())
            .nth(3)
            .ok_or("no data block")?;
        h.read_at(D, 0, 1)?; // the index page
        c.reset();
        let barrier = Arc::new(Barrier::new(8));
        let ts: Vec<_> = (0..8)
            .map(|_| {
                let (h, barrier) = (h.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    h.read_at(D, e.logical_offset, 4096).map(|v| v.len())
                })
            })
            .collect();
        for t in ts {
            t.join().expect("thread")?;
        }
        same_c.push(c.calls() as f64);

        // Whole-stream sequential read through a reader (read-ahead).
        let (s, c) = open(path, latency)?;
        c.reset();
        let t = Instant::now();
        let mut r = s.reader(D)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        s.wait_for_read_ahead();
        seq_t.push(t.elapsed().as_secs_f64());
        seq_c.push(c.calls() as f64);
        seq_avg.push(c.bytes() as f64 / c.ranges().max(1) as f64);
        assert_eq!(total, size);
    }
    let seq = median(seq_t.clone());
    println!(
        "{{\"archive_bytes\": {size}, \"latency_ms\": {}, \"runs\": {runs}, \
         \"open_calls\": {}, \"open_s\": {:.3}, \
         \"cold_8m_calls\": {}, \"cold_8m_s\": {:.3}, \
         \"per_block_8m_calls\": {}, \"per_block_8m_s\": {:.3}, \"speedup\": {:.1}, \
         \"same_block_8t_calls\": {}, \
         \"seq_full_calls\": {}, \"seq_full_avg_range_bytes\": {:.0}, \"seq_full_s\": {:.3}, \
         \"seq_full_mib_s\": {:.1}}}",
        latency.as_millis(),
        median(open_c),
        median(open_t),
        median(cold_c),
        median(cold_t.clone()),
        median(old_c),
        median(old_t.clone()),
        median(old_t) / median(cold_t),
        median(same_c),
        median(seq_c),
        median(seq_avg),
        seq,
        size as f64 / seq / (1 << 20) as f64,
    );
    Ok(())
}
