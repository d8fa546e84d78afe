//! Concurrency stress: 32 threads read random ranges of a thin chain, an encrypted archive
//! and an encrypted thin chain through one shared `File` each, with caches so small that
//! every read evicts, read-ahead on, for a fixed number of reads per thread. Every byte is
//! checked against the source data; a watchdog fails the run if reads stop making progress
//! (a deadlock).
//!
//! Default: 32 threads × 100 reads per archive. `HEXZ_STRESS=full` (`make stress`): 32 × 5000.

mod common;

use common::*;
use hexz_core::algo::encryption::{Kdf, Password};
use hexz_core::ops::pack::EncryptOptions;
use hexz_core::ops::PackOptions;
use hexz_core::{File, OpenOptions, SnapshotStream};
use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BS: usize = 4096;
const THREADS: usize = 32;

fn reads_per_thread() -> u64 {
    if std::env::var("HEXZ_STRESS").is_ok_and(|v| v == "full") {
        5000
    } else {
        100
    }
}

fn enc(password: &str) -> Option<EncryptOptions> {
    Some(EncryptOptions {
        password: Password::new(password.as_bytes()),
        kdf: Kdf::Argon2id {
            m_kib: 8,
            t: 1,
            p: 1,
        },
    })
}

fn tiny(password: Option<&str>) -> OpenOptions {
    OpenOptions {
        // A few blocks' worth: constant eviction, with read-ahead competing for it.
        cache_bytes: 3 * BS,
        index_cache_bytes: 8 * 1024,
        read_ahead: 64 * 1024,
        password: password.map(|p| Password::new(p.as_bytes())),
        ..OpenOptions::default()
    }
}

/// Hammers `f` from 32 threads; returns (reads, bytes checked).
fn hammer(name: &str, f: File, data: Arc<Vec<u8>>) -> (u64, u64) {
    let progress = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let watch = {
        let (progress, stop, name) = (progress.clone(), stop.clone(), name.to_string());
        std::thread::spawn(move || {
            let mut last = (u64::MAX, Instant::now());
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let p = progress.load(Ordering::Relaxed);
                if p != last.0 {
                    last = (p, Instant::now());
                } else if last.1.elapsed() > Duration::from_secs(120) {
                    eprintln!(
                        "STRESS {name}: no read finished for 120 s after {p} reads: deadlock"
                    );
                    std::process::abort();
                }
            }
        })
    };
    // Stops the watchdog however this function ends (a failed assertion included).
    struct Stop(Arc<AtomicBool>);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let _stop = Stop(stop.clone());
    let bytes = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (f, data, progress, bytes) =
                (f.clone(), data.clone(), progress.clone(), bytes.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::new(1000 + t as u64);
                let size = data.len() as u64;
                let mut reader = f.reader(SnapshotStream::Disk).unwrap();
                for i in 0..reads_per_thread() {
                    // Mostly small reads inside or across blocks, some large multi-block ones.
                    let len = match rng.below(10) {
                        0 => 1 + rng.below(64 * BS as u64) as usize,
                        1..=3 => 1 + rng.below(2 * BS as u64) as usize,
                        _ => 1 + rng.below(600) as usize,
                    };
                    let off = rng.below(size + 100);
                    let want = expected(&data, off, len);
                    match i % 3 {
                        0 => {
                            let got = f.read_at(SnapshotStream::Disk, off, len).unwrap();
                            assert!(got == want, "thread {t}: read_at {off}+{len} wrong");
                        }
                        1 => {
                            let mut buf = vec![0xeeu8; len];
                            let n = f.read_at_into(SnapshotStream::Disk, off, &mut buf).unwrap();
                            assert!(buf[..n] == *want, "thread {t}: read_at_into {off}+{len}");
                        }
                        _ => {
                            reader.seek(SeekFrom::Start(off)).unwrap();
                            let mut buf = Vec::new();
                            (&mut reader)
                                .take(len as u64)
                                .read_to_end(&mut buf)
                                .unwrap();
                            assert!(buf == want, "thread {t}: reader {off}+{len}");
                        }
                    }
                    bytes.fetch_add(want.len() as u64, Ordering::Relaxed);
                    progress.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let panicked = threads.into_iter().filter_map(|t| t.join().err()).count();
    stop.store(true, Ordering::Relaxed);
    watch.join().unwrap();
    assert_eq!(panicked, 0, "{name}: {panicked} reader threads panicked");
    let (r, b) = (
        progress.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed),
    );
    eprintln!("STRESS {name}: {THREADS} threads, {r} reads, {b} bytes checked, 0 wrong");
    (r, b)
}

/// Parent, and a child with a third of its blocks changed and some data appended.
fn chain_data() -> (Vec<u8>, Vec<u8>) {
    let parent = mixed_data(300 * BS, BS, 21);
    let mut child = parent.clone();
    let mut rng = Rng::new(5);
    for _ in 0..100 {
        let at = rng.below((parent.len() - 200) as u64) as usize;
        child[at..at + 200].fill(rng.next_u64() as u8);
    }
    child.extend_from_slice(&mixed_data(20 * BS + 17, BS, 22));
    (parent, child)
}

fn opts(enc_pw: Option<&str>) -> PackOptions {
    PackOptions {
        block_size: BS as u32,
        encryption: enc_pw.and_then(enc),
        ..PackOptions::default()
    }
}

#[test]
fn thirty_two_threads_on_a_thin_chain_with_a_tiny_cache() {
    let d = tempfile::tempdir().unwrap();
    let (parent, child) = chain_data();
    let (pp, _) = pack_files(d.path(), "p.hxz", Some(&parent), None, &opts(None));
    let (cp, _) = pack_files(
        d.path(),
        "c.hxz",
        Some(&child),
        None,
        &PackOptions {
            base: Some(pp),
            ..opts(None)
        },
    );
    let f = File::open_with(&cp, tiny(None)).unwrap();
    assert_eq!(f.chain_len(), 2);
    let (reads, _) = hammer("thin chain", f, Arc::new(child));
    assert_eq!(reads, THREADS as u64 * reads_per_thread());
}

#[test]
fn thirty_two_threads_on_an_encrypted_archive_and_encrypted_chain() {
    let d = tempfile::tempdir().unwrap();
    let (parent, child) = chain_data();
    let (pp, _) = pack_files(d.path(), "p.hxz", Some(&parent), None, &opts(Some("pw")));
    let f = File::open_with(
        &pp,
        OpenOptions {
            mmap: true,
            ..tiny(Some("pw"))
        },
    )
    .unwrap();
    hammer("encrypted (mmap)", f, Arc::new(parent));
    let (cp, _) = pack_files(
        d.path(),
        "c.hxz",
        Some(&child),
        None,
        &PackOptions {
            base: Some(pp),
            ..opts(Some("pw"))
        },
    );
    let f = File::open_with(&cp, tiny(Some("pw"))).unwrap();
    assert_eq!(f.chain_len(), 2);
    hammer("encrypted thin chain", f, Arc::new(child));
}
