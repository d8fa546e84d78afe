//! Random 4 KiB reads of an archive given by path or URL, for `scripts/bench-remote.sh`
//! (docs/BENCHMARKS.md, "Remote").
//!
//! `cargo run --release -p hexz-core --example remoterand -- LOCATION [SAMPLES] [CACHE_DIR]`
//!
//! Opens the archive (`HEXZ_ALLOW_RESTRICTED=1` for loopback URLs), reads SAMPLES 4 KiB
//! ranges at random 4 KiB-aligned offsets of the disk stream (cold: nothing cached), then the
//! same offsets again through the same `File` (warm: memory cache), and prints one JSON
//! object with the median and p99 latency of each pass in microseconds.

use hexz_core::store::RemoteOptions;
use hexz_core::{File, OpenOptions, SnapshotStream};
use std::time::Instant;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let loc = args
        .get(1)
        .ok_or("usage: remoterand LOCATION [SAMPLES] [CACHE_DIR]")?;
    let samples: usize = args.get(2).map_or(Ok(300), |s| s.parse())?;
    let mut remote = RemoteOptions::from_env();
    if let Some(d) = args.get(3) {
        remote.cache_dir = Some(d.into());
    }
    let f = File::open_location(
        loc,
        OpenOptions {
            remote,
            ..OpenOptions::default()
        },
    )?;
    let size = f.size(SnapshotStream::Disk);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let offsets: Vec<u64> = (0..samples)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % (size / 4096)) * 4096
        })
        .collect();
    let mut buf = vec![0u8; 4096];
    let mut pass = || -> Result<Vec<f64>, hexz_core::Error> {
        let mut t = Vec::with_capacity(samples);
        for &o in &offsets {
            let s = Instant::now();
            f.read_at_into(SnapshotStream::Disk, o, &mut buf)?;
            t.push(s.elapsed().as_secs_f64() * 1e6);
        }
        Ok(t)
    };
    let mut cold = pass()?;
    let mut warm = pass()?;
    println!(
        "{{\"samples\": {samples}, \"cold_median_us\": {:.0}, \"cold_p99_us\": {:.0}, \"warm_median_us\": {:.1}, \"warm_p99_us\": {:.1}}}",
        pct(&mut cold, 0.5),
        pct(&mut cold, 0.99),
        pct(&mut warm, 0.5),
        pct(&mut warm, 0.99)
    );
    Ok(())
}
