//! The read path's round trips, counted through `CountingBackend`: opening costs one backend
//! call, a cold 8 MiB read a few, concurrent readers of one block share one fetch, each
//! reader is read ahead on its own and random reads are not; and every byte read through the
//! batched path equals the source, for plain, CDC, encrypted and thin archives.

mod common;

use common::{mixed_data, pack_files, Rng};
use hexz_core::algo::encryption::{Kdf, Password};
use hexz_core::ops::pack::EncryptOptions;
use hexz_core::ops::{CdcParams, PackOptions};
use hexz_core::store::local::FileBackend;
use hexz_core::store::testing::{Counters, CountingBackend};
use hexz_core::store::StorageBackend;
use hexz_core::{File, OpenOptions, SnapshotStream};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::Duration;

const BLOCK: usize = 64 << 10;
const D: SnapshotStream = SnapshotStream::Disk;

/// Opens `path` through a counting backend (reporting itself remote when `remote`).
fn open_counted(path: &Path, remote: bool, opts: OpenOptions) -> (File, Arc<Counters>) {
    open_counted_latency(path, remote, Duration::ZERO, opts)
}

fn open_counted_latency(
    path: &Path,
    remote: bool,
    latency: Duration,
    opts: OpenOptions,
) -> (File, Arc<Counters>) {
    let inner: Arc<dyn StorageBackend> = Arc::new(FileBackend::new(path).unwrap());
    let b = CountingBackend::new(inner)
        .with_remote(remote)
        .with_latency(latency);
    let c = b.counters();
    let f = File::open_backend(Arc::new(b), None, opts).unwrap();
    (f, c)
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    mixed_data(len, BLOCK, seed)
}

/// A disk-only archive of `len` bytes of [`data`] in 64 KiB blocks, in a new directory.
fn packed_disk(len: usize, seed: u64) -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let src = data(len, seed);
    let opts = PackOptions {
        block_size: BLOCK as u32,
        ..PackOptions::default()
    };
    let (path, _) = pack_files(dir.path(), "a", Some(&src), None, &opts);
    (dir, path, src)
}

#[test]
fn decode_on_this_thread_keeps_multi_block_reads_off_the_pool() {
    use hexz_core::api::{decode_on_this_thread, decode_pool_handoffs};
    let (_dir, path, src) = packed_disk(4 << 20, 31);
    let f = File::open(&path).unwrap();
    let read = |off: usize| {
        let mut buf = vec![0u8; 1 << 20];
        assert_eq!(f.read_at_into(D, off as u64, &mut buf).unwrap(), buf.len());
        assert!(buf == src[off..off + buf.len()], "bytes at {off}");
    };
    // 16 blocks are decoded on the pool (which has a thread per core) ...
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let before = decode_pool_handoffs();
    read(0);
    if cores > 1 {
        assert!(
            decode_pool_handoffs() > before,
            "a 1 MiB read uses the decode pool"
        );
    }
    // ... but not inside decode_on_this_thread (nested calls too) ...
    let before = decode_pool_handoffs();
    decode_on_this_thread(|| {
        read(1 << 20);
        decode_on_this_thread(|| read(2 << 20));
        read(3 << 20);
    });
    assert_eq!(
        decode_pool_handoffs(),
        before,
        "reads decoded on the caller"
    );
    // ... and the switch is off again afterwards, also after a panic inside it.
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decode_on_this_thread(|| panic!("inside"))
    }));
    assert!(caught.is_err());
    let before = decode_pool_handoffs();
    read(1 << 20);
    if cores > 1 {
        assert!(decode_pool_handoffs() > before, "the pool is used again");
    }
}

#[test]
fn a_decode_pool_of_one_thread_is_never_handed_a_batch() {
    use hexz_core::api::{decode_pool_handoffs, set_process_threads};
    let (_dir, path, src) = packed_disk(2 << 20, 32);
    // As in a DataLoader worker: a forked child with one decode thread.
    let code = common::in_child(|| {
        set_process_threads(1, 1);
        let f = File::open(&path).unwrap();
        let mut buf = vec![0u8; 2 << 20];
        let before = decode_pool_handoffs();
        let n = f.read_at_into(D, 0, &mut buf).unwrap();
        if n != buf.len() || buf != src {
            return 2;
        }
        if decode_pool_handoffs() != before {
            return 3;
        }
        0
    });
    assert_eq!(
        code, 0,
        "2: wrong bytes, 3: the batch went to the one-thread pool"
    );
}

#[test]
fn open_is_one_backend_call() {
    let dir = tempfile::tempdir().unwrap();
    let d = data(24 << 20, 1);
    let (p, _) = pack_files(dir.path(), "a.hxz", Some(&d), None, &PackOptions::default());
    for remote in [false, true] {
        let (f, c) = open_counted(&p, remote, OpenOptions::default());
        assert_eq!(
            c.calls(),
            1,
            "open (remote={remote}) must be one backend call"
        );
        assert_eq!(c.ranges(), 2, "header and tail");
        assert_eq!(f.size(D), d.len() as u64);
    }
    // A tiny archive is read whole in that one call, and its first read needs no fetch of
    // the index page (it came with the tail).
    let mut small = vec![0u8; 40 << 10];
    Rng::new(2).fill(&mut small);
    let (p, _) = pack_files(
        dir.path(),
        "s.hxz",
        Some(&small),
        None,
        &PackOptions::default(),
    );
    let (f, c) = open_counted(&p, false, OpenOptions::default());
    assert_eq!((c.calls(), c.ranges()), (1, 1));
    assert_eq!(f.read_at(D, 0, small.len()).unwrap(), small);
    assert_eq!(c.calls(), 2, "one call for the blocks, none for the page");
}

#[test]
fn cold_8mib_read_is_a_few_calls() {
    let dir = tempfile::tempdir().unwrap();
    let d = data(24 << 20, 3);
    let (p, _) = pack_files(dir.path(), "a.hxz", Some(&d), None, &PackOptions::default());
    for remote in [false, true] {
        let (f, c) = open_counted(&p, remote, OpenOptions::default());
        c.reset();
        let off = (5 << 20) + 1234;
        let got = f.read_at(D, off, 8 << 20).unwrap();
        assert!(
            got == d[off as usize..off as usize + (8 << 20)],
            "bytes differ"
        );
        // Remote: one batched fetch (plus at most two for the edges). Local: the stored
        // bytes are read straight into the caller's buffer in 256 KiB pieces, each checked
        // while it is still in cache (a `pread` costs a microsecond, a cold CRC32 more);
        // never one call per block (128 here) as before the batched read path.
        let bound = if remote {
            3
        } else {
            3 + (8 << 20) / (256 << 10)
        };
        assert!(
            c.calls() <= bound,
            "8 MiB cold read (remote={remote}) made {} backend calls",
            c.calls()
        );
        // Warm: no call at all for what a remote reader cached.
        if remote {
            c.reset();
            assert!(f.read_at(D, off, 8 << 20).unwrap() == got);
            assert_eq!(c.calls(), 0, "second read of cached blocks");
        }
    }
}

/// 8 threads want the same cold block at once: one fetch serves them all.
#[test]
fn same_cold_block_from_8_threads_is_one_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let d = data(8 << 20, 4);
    let (p, _) = pack_files(dir.path(), "a.hxz", Some(&d), None, &PackOptions::default());
    // Small reads inside the block, and whole-block reads (the leader decodes into its own
    // buffer; the others get a copy of it).
    for (remote, len) in [(false, 4096usize), (false, BLOCK), (true, BLOCK)] {
        let (f, c) = open_counted_latency(
            &p,
            remote,
            Duration::from_millis(50),
            OpenOptions::default(),
        );
        // Load the index page first, so only the block is left to fetch.
        f.read_at(D, 0, 16).unwrap();
        let block = f
            .entries(D)
            .map(|e| e.unwrap())
            .filter(|e| !e.is_zero() && e.logical_len as usize == BLOCK)
            .nth(30)
            .unwrap()
            .logical_offset
            / BLOCK as u64;
        c.reset();
        let barrier = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (f, barrier) = (f.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let off = block * BLOCK as u64 + if len == BLOCK { 0 } else { i * 4096 };
                    (off, f.read_at(D, off, len).unwrap())
                })
            })
            .collect();
        for t in threads {
            let (off, got) = t.join().unwrap();
            assert!(got == d[off as usize..off as usize + len], "bytes at {off}");
        }
        assert_eq!(
            (c.calls(), c.ranges()),
            (1, 1),
            "8 threads on one cold block (remote={remote}, {len}-byte reads)"
        );
    }
}

/// 8 threads want the same cold index page: one fetch.
#[test]
fn same_cold_page_from_8_threads_is_one_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let d = data(8 << 20, 5);
    let small_blocks = PackOptions {
        block_size: 4096,
        ..PackOptions::default()
    };
    let (p, _) = pack_files(dir.path(), "a.hxz", Some(&d), None, &small_blocks);
    // Local: the 64 KiB tail read at open does not hold page 0 (65,552 bytes, far from the
    // end).
    let (f, c) = open_counted_latency(&p, false, Duration::from_millis(50), OpenOptions::default());
    c.reset();
    let barrier = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8u64)
        .map(|i| {
            let (f, barrier) = (f.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                f.index_page(D, 0).unwrap().entries[i as usize].logical_offset
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        assert_eq!(t.join().unwrap(), (i * 4096) as u64);
    }
    assert_eq!(c.calls(), 1, "8 threads on one cold index page");
}

/// Two readers walking different parts of one archive, interleaved, are both read ahead.
#[test]
fn interleaved_sequential_readers_are_both_read_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let d = data(32 << 20, 6);
    let (p, _) = pack_files(dir.path(), "a.hxz", Some(&d), None, &PackOptions::default());
    for remote in [false, true] {
        let (f, c) = open_counted(&p, remote, OpenOptions::default());
        let starts = [0u64, 16 << 20];
        let mut readers: Vec<_> = starts
            .iter()
            .map(|&s| {
                let mut r = f.reader(D).unwrap();
                r.seek(SeekFrom::Start(s)).unwrap();
                r
            })
            .collect();
        let mut buf = vec![0u8; 64 << 10];
        for _ in 0..3 {
            for (r, &s) in readers.iter_mut().zip(&starts) {
                let at = r.position();
                r.read_exact(&mut buf).unwrap();
                assert!(
                    buf == d[at as usize..at as usize + buf.len()],
                    "reader from {s}"
                );
            }
        }
        f.wait_for_read_ahead();
        // What lies just ahead of each reader is cached: reading it costs no call.
        c.reset();
        for r in &readers {
            let at = r.position();
            let got = f.read_at(D, at, 512 << 10).unwrap();
            assert!(got == d[at as usize..at as usize + got.len()]);
        }
        assert_eq!(
            c.calls(),
            0,
            "both interleaved readers must have been read ahead (remote={remote})"
        );
    }
}

/// Random reads through a reader start no read-ahead: each costs exactly its own fetch.
#[test]
fn random_reads_do_not_read_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let d = data(32 << 20, 7);
    let (p, _) = pack_files(dir.path(), "a.hxz", Some(&d), None, &PackOptions::default());
    // Remote: the index page came with the open, so every call below is a block fetch.
    let (f, c) = open_counted(&p, true, OpenOptions::default());
    let nonzero: Vec<u64> = f
        .entries(D)
        .map(|e| e.unwrap())
        .filter(|e| !e.is_zero())
        .map(|e| e.logical_offset)
        .collect();
    let mut rng = Rng::new(8);
    let mut picked: Vec<u64> = Vec::new();
    while picked.len() < 24 {
        let o = nonzero[rng.below(nonzero.len() as u64) as usize];
        if picked.iter().all(|&q| q.abs_diff(o) > 4 * BLOCK as u64) {
            picked.push(o);
        }
    }
    c.reset();
    let mut r = f.reader(D).unwrap();
    let mut buf = vec![0u8; 4096];
    for &o in &picked {
        r.seek(SeekFrom::Start(o + 100)).unwrap();
        r.read_exact(&mut buf).unwrap();
        assert!(buf == d[o as usize + 100..o as usize + 100 + 4096]);
    }
    f.wait_for_read_ahead();
    assert_eq!(
        c.calls(),
        picked.len() as u64,
        "one call per random read, no read-ahead"
    );
}

/// Reads the whole stream through a reader in irregular pieces, and random ranges through
/// `read_at`, comparing every byte with the source.
fn check_bytes(f: &File, stream: SnapshotStream, want: &[u8], seed: u64, what: &str) {
    let mut rng = Rng::new(seed);
    let mut r = f.reader(stream).unwrap();
    let mut got = Vec::with_capacity(want.len());
    let mut buf = vec![0u8; 3 << 20];
    loop {
        let n = 1 + rng.below(buf.len() as u64) as usize;
        let k = r.read(&mut buf[..n]).unwrap();
        if k == 0 {
            break;
        }
        got.extend_from_slice(&buf[..k]);
    }
    assert!(got == want, "{what}: sequential read differs");
    for _ in 0..40 {
        let off = rng.below(want.len() as u64 + 10);
        let len = rng.below(2 << 20) as usize;
        let v = f.read_at(stream, off, len).unwrap();
        assert!(
            v == common::expected(want, off, len),
            "{what}: read_at({off}, {len}) differs"
        );
    }
    f.wait_for_read_ahead();
}

#[test]
fn batched_reads_are_byte_exact_for_every_kind_of_archive() {
    let dir = tempfile::tempdir().unwrap();
    let base = data(12 << 20, 9);
    let mem = data(3 << 20, 10);
    let mut child = base.clone();
    Rng::new(11).fill(&mut child[(3 << 20)..(3 << 20) + 700_000]);
    child.extend_from_slice(&data(1 << 20, 12));

    let plain = PackOptions::default();
    let cdc = PackOptions {
        cdc: Some(CdcParams::default()),
        ..PackOptions::default()
    };
    let pw = Password::new("pw");
    let enc = PackOptions {
        encryption: Some(EncryptOptions {
            password: pw.clone(),
            kdf: Kdf::default(),
        }),
        ..PackOptions::default()
    };
    let (pp, _) = pack_files(dir.path(), "plain.hxz", Some(&base), Some(&mem), &plain);
    let (pc, _) = pack_files(dir.path(), "cdc.hxz", Some(&base), None, &cdc);
    let (pe, _) = pack_files(dir.path(), "enc.hxz", Some(&base), None, &enc);
    let thin = PackOptions {
        base: Some(pp.clone()),
        ..PackOptions::default()
    };
    let (pt, _) = pack_files(dir.path(), "thin.hxz", Some(&child), None, &thin);

    for remote in [false, true] {
        let (f, _) = open_counted(&pp, remote, OpenOptions::default());
        check_bytes(&f, D, &base, 1, "plain disk");
        check_bytes(&f, SnapshotStream::Memory, &mem, 2, "plain memory");
        let (f, _) = open_counted(&pc, remote, OpenOptions::default());
        check_bytes(&f, D, &base, 3, "cdc");
        let (f, _) = open_counted(
            &pe,
            remote,
            OpenOptions {
                password: Some(pw.clone()),
                ..OpenOptions::default()
            },
        );
        check_bytes(&f, D, &base, 4, "encrypted");
        let (f, c) = open_counted(&pt, remote, OpenOptions::default());
        assert_eq!(f.chain_len(), 2);
        assert_eq!(
            c.calls(),
            2,
            "a thin child and its parent: one call each to open"
        );
        check_bytes(&f, D, &child, 5, "thin");
        // A tiny block cache must not change any byte either.
        let (f, _) = open_counted(
            &pt,
            remote,
            OpenOptions {
                cache_bytes: 0,
                ..OpenOptions::default()
            },
        );
        check_bytes(&f, D, &child, 6, "thin, no cache");
        // Nor a small one that keeps evicting: the buffers of evicted blocks are handed
        // out again for later fetches (cache/bufpool.rs), their old bytes overwritten.
        for (path, want, pw, what) in [
            (&pt, &child, None, "thin, 1 MiB cache"),
            (&pe, &base, Some(pw.clone()), "encrypted, 1 MiB cache"),
        ] {
            let (f, _) = open_counted(
                path,
                remote,
                OpenOptions {
                    cache_bytes: 1 << 20,
                    password: pw,
                    ..OpenOptions::default()
                },
            );
            check_bytes(&f, D, want, 8, what);
        }
    }
    // The mapped backend decodes from the mapping (no fetch) and must agree too.
    let f = File::open_with(
        &pt,
        OpenOptions {
            mmap: true,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    check_bytes(&f, D, &child, 7, "thin, mmap");
}

/// Corruption found on the batched path is still an error naming the block, never bytes.
#[test]
fn corrupt_block_in_a_batch_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = data(4 << 20, 13);
    let (p, _) = pack_files(dir.path(), "a.hxz", Some(&d), None, &PackOptions::default());
    let f = File::open(&p).unwrap();
    let e = f
        .entries(D)
        .map(|e| e.unwrap())
        .filter(|e| !e.is_zero())
        .nth(20)
        .unwrap();
    drop(f);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[e.stored_offset as usize + 5] ^= 0x40;
    std::fs::write(&p, &bytes).unwrap();
    for remote in [false, true] {
        let (f, _) = open_counted(&p, remote, OpenOptions::default());
        let err = f.read_at(D, 0, d.len()).unwrap_err().to_string();
        assert!(
            err.contains("block") && err.contains("CRC32"),
            "unexpected error: {err}"
        );
        // Blocks before it are fine on their own.
        assert!(f.read_at(D, 0, BLOCK).unwrap() == d[..BLOCK]);
    }
}

/// A remote thin chain opens its ancestors in parallel (from the child's ancestor-path hint,
/// resolved across directories), a local one one after another; either way every ancestor
/// costs one call and every byte reads back.
#[test]
fn remote_chain_ancestors_are_fetched_in_parallel() {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["a/b", "c"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    // Each level in its own place, so the recorded paths climb and descend.
    let names = ["a/g0.hxz", "a/b/g1.hxz", "c/g2.hxz", "c/g3.hxz", "g4.hxz"];
    let mut version = data(6 << 20, 40);
    let mut prev: Option<std::path::PathBuf> = None;
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            Rng::new(41 + i as u64).fill(&mut version[i << 20..(i << 20) + 100_000]);
        }
        let opts = PackOptions {
            base: prev.clone(),
            ..PackOptions::default()
        };
        let (p, _) = pack_files(dir.path(), name, Some(&version), None, &opts);
        prev = Some(p);
    }
    let top = prev.unwrap();
    let f = File::open(&top).unwrap();
    let hint = f
        .master()
        .meta(hexz_core::format::index::META_ANCESTOR_PATHS);
    let paths = hexz_core::format::index::decode_ancestor_paths(hint.unwrap(), 255).unwrap();
    assert_eq!(paths, ["c/g3.hxz", "g2.hxz", "../a/b/g1.hxz", "../g0.hxz"]);

    for remote in [true, false] {
        let (f, c) = open_counted_latency(
            &top,
            remote,
            Duration::from_millis(30),
            OpenOptions::default(),
        );
        assert_eq!(f.chain_len(), 5);
        assert_eq!(c.calls(), 5, "one call per archive (remote={remote})");
        let parallel = c.max_in_flight();
        if remote {
            assert_eq!(parallel, 4, "the four ancestors are fetched at once");
        } else {
            assert_eq!(parallel, 1, "a local chain opens one archive at a time");
        }
        check_bytes(&f, D, &version, 42, "remote chain");
    }
}
