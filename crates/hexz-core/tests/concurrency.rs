//! Many threads reading one archive at once, through a small cache that keeps evicting, and
//! sequential readers driving read-ahead: every read returns exactly the input bytes.

mod common;

use common::*;
use hexz_core::format::{BlockEntry, Codec};
use hexz_core::ops::PackOptions;
use hexz_core::{Error, File, OpenOptions, SnapshotStream};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const D: SnapshotStream = SnapshotStream::Disk;
const SIZE: usize = 32 << 20;

struct Packed {
    _dir: tempfile::TempDir,
    path: PathBuf,
    data: Vec<u8>,
    bs: usize,
}

fn packed(bs: usize, len: usize, codec: Codec) -> Packed {
    let dir = tempfile::tempdir().unwrap();
    let data = mixed_data(len, bs, bs as u64 ^ 0xc0ffee);
    let opts = PackOptions {
        codec,
        block_size: bs as u32,
        ..PackOptions::default()
    };
    let (path, _) = pack_files(dir.path(), "c.hxz", Some(&data), None, &opts);
    Packed {
        _dir: dir,
        path,
        data,
        bs,
    }
}

fn small_cache() -> OpenOptions {
    OpenOptions {
        cache_bytes: 1 << 20,
        index_cache_bytes: 64 << 10,
        ..OpenOptions::default()
    }
}

/// One thread's random reads: 4 KiB inside one block, multi-block ranges, `read_at_into`,
/// and ranges running past the end.
fn random_reads(f: &File, data: &[u8], bs: usize, seed: u64, n: usize) {
    let mut rng = Rng::new(seed);
    let size = data.len() as u64;
    let blocks = data.len() / bs;
    let mut buf = Vec::new();
    for i in 0..n {
        let kind = rng.below(20);
        let (off, len) = match kind {
            0..=9 => {
                let b = rng.below(blocks as u64) as usize;
                ((b * bs) as u64 + rng.below((bs - 4096 + 1) as u64), 4096)
            }
            10..=16 => (rng.below(size), bs + 1 + rng.below(5 * bs as u64) as usize),
            17..=18 => (rng.below(size), 1 + rng.below(3 * bs as u64) as usize),
            _ => (
                size - rng.below(2 * bs as u64),
                rng.below(4 * bs as u64) as usize,
            ),
        };
        let want = expected(data, off, len);
        if kind == 17 || kind == 18 {
            buf.clear();
            buf.resize(len, 0);
            let got = f.read_at_into(D, off, &mut buf).unwrap();
            assert_eq!(
                got,
                want.len(),
                "thread {seed} read {i}: count at {off}+{len}"
            );
            assert!(
                buf[..got] == *want,
                "thread {seed} read {i}: bytes at {off}+{len}"
            );
        } else {
            let got = f.read_at(D, off, len).unwrap();
            assert!(got == want, "thread {seed} read {i}: bytes at {off}+{len}");
        }
    }
}

fn hammer(p: &Packed, opts: OpenOptions) {
    let f = File::open_with(&p.path, opts).unwrap();
    let shared = Arc::new(f.clone());
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let (f, shared, data, bs) = (&f, &shared, &p.data, p.bs);
            s.spawn(move || {
                if t % 2 == 0 {
                    let mine = f.clone();
                    random_reads(&mine, data, bs, t, 2000);
                } else {
                    let mine = Arc::clone(shared);
                    random_reads(&mine, data, bs, t, 2000);
                }
            });
        }
    });
}

#[test]
fn eight_threads_random_reads_16k_blocks_small_cache() {
    let p = packed(16 << 10, SIZE, Codec::Lz4);
    hammer(&p, small_cache());
}

#[test]
fn eight_threads_random_reads_64k_blocks_small_cache() {
    let p = packed(64 << 10, SIZE, Codec::Lz4);
    hammer(&p, small_cache());
}

#[test]
fn eight_threads_random_reads_zstd_mmap_no_cache() {
    let p = packed(64 << 10, 8 << 20, Codec::Zstd);
    hammer(
        &p,
        OpenOptions {
            cache_bytes: 0,
            mmap: true,
            ..OpenOptions::default()
        },
    );
}

/// Sequential reads in small irregular pieces (read-ahead fills the cache behind them).
fn sequential(f: &File, data: &[u8], start: u64, until: u64, seed: u64) {
    let mut r = f.reader(D).unwrap();
    r.seek(SeekFrom::Start(start)).unwrap();
    let mut rng = Rng::new(seed);
    let mut pos = start;
    let mut buf = vec![0u8; 20_000];
    while pos < until {
        let want = (1 + rng.below(20_000)).min(until - pos) as usize;
        let n = r.read(&mut buf[..want]).unwrap();
        if n == 0 {
            break;
        }
        assert!(
            buf[..n] == *expected(data, pos, n),
            "reader {seed}: bytes at {pos}+{n}"
        );
        pos += n as u64;
        assert_eq!(r.position(), pos);
    }
    assert_eq!(pos, until.min(data.len() as u64));
}

#[test]
fn sequential_small_reads_through_stream_reader() {
    let p = packed(64 << 10, SIZE, Codec::Lz4);
    for opts in [OpenOptions::default(), small_cache()] {
        let f = File::open_with(&p.path, opts).unwrap();
        // One reader over the whole stream.
        sequential(&f, &p.data, 0, u64::MAX, 1);
        // read_to_end after a partial read.
        let mut r = f.reader(D).unwrap();
        let mut head = vec![0u8; 12345];
        r.read_exact(&mut head).unwrap();
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert!(head == p.data[..12345] && rest == p.data[12345..]);
    }
    // Four concurrent sequential readers over different regions of one File.
    let f = File::open_with(&p.path, small_cache()).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (f, data) = (&f, &p.data);
            s.spawn(move || {
                let start = t * (SIZE as u64 / 4) + t * 777;
                sequential(f, data, start, start + (6 << 20), 10 + t)
            });
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Cache behaviour, observed by damaging a block on disk after it was read once: a cached
// block is served from memory, an uncached one is read again and fails its checksum.

fn entry_of_block(f: &File, block: usize) -> BlockEntry {
    f.index_page(D, block / 1024).unwrap().entries[block % 1024]
}

fn damage(path: &Path, e: &BlockEntry) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let at = e.stored_offset + e.stored_len as u64 / 2;
    let mut b = [0u8; 1];
    std::fs::File::open(path)
        .unwrap()
        .read_exact_at(&mut b, at)
        .unwrap();
    file.write_all_at(&[b[0] ^ 0xff], at).unwrap();
}

fn first_data_block(f: &File, from: usize) -> usize {
    (from..).find(|&b| !entry_of_block(f, b).is_zero()).unwrap()
}

/// Reads 4 KiB of a block, damages it on disk, reads it again: Ok(true) if the second read
/// was served (correctly) from the cache, Ok(false) if it failed with CorruptBlock.
fn served_from_cache_after_damage(bs: usize, opts: OpenOptions) -> bool {
    let p = packed(bs, 4 << 20, Codec::Lz4);
    let f = File::open_with(&p.path, opts).unwrap();
    let b = first_data_block(&f, 5);
    let e = entry_of_block(&f, b);
    let off = e.logical_offset + 100;
    let first = f.read_at(D, off, 4096).unwrap();
    assert!(first == p.data[off as usize..off as usize + 4096]);
    damage(&p.path, &e);
    match f.read_at(D, off, 4096) {
        Ok(again) => {
            assert!(again == first, "wrong bytes after damage");
            true
        }
        Err(Error::CorruptBlock { block, .. }) => {
            assert_eq!(block, b as u64);
            false
        }
        Err(other) => panic!("unexpected error {other}"),
    }
}

#[test]
fn default_cache_serves_a_block_read_before() {
    let opts = OpenOptions {
        read_ahead: 0,
        ..OpenOptions::default()
    };
    assert!(served_from_cache_after_damage(64 << 10, opts));
}

#[test]
fn disabled_cache_reads_storage_every_time() {
    let opts = OpenOptions {
        cache_bytes: 0,
        read_ahead: 0,
        ..OpenOptions::default()
    };
    assert!(!served_from_cache_after_damage(64 << 10, opts));
}

/// A 1 MiB block cache has room for fifteen 64 KiB blocks; the block just read must be in it.
#[test]
fn one_mib_cache_holds_a_64k_block() {
    let opts = OpenOptions {
        cache_bytes: 1 << 20,
        read_ahead: 0,
        ..OpenOptions::default()
    };
    assert!(
        served_from_cache_after_damage(64 << 10, opts),
        "a block read through a 1 MiB cache was not cached"
    );
}

#[test]
fn one_mib_cache_holds_a_16k_block() {
    let opts = OpenOptions {
        cache_bytes: 1 << 20,
        read_ahead: 0,
        ..OpenOptions::default()
    };
    assert!(served_from_cache_after_damage(16 << 10, opts));
}

/// Concurrent readers (random and sequential with read-ahead) over an archive with one
/// damaged block: reads touching it fail naming it, all other reads return correct bytes.
#[test]
fn concurrent_reads_around_a_damaged_block() {
    let p = packed(64 << 10, 8 << 20, Codec::Lz4);
    let f0 = File::open(&p.path).unwrap();
    let bad = first_data_block(&f0, 60);
    let e = entry_of_block(&f0, bad);
    damage(&p.path, &e);
    let (lo, hi) = (e.logical_offset, e.logical_offset + e.logical_len as u64);
    let f = File::open_with(&p.path, small_cache()).unwrap();
    std::thread::scope(|s| {
        for t in 0..6u64 {
            let (f, data) = (&f, &p.data);
            s.spawn(move || {
                let mut rng = Rng::new(t);
                if t < 2 {
                    // Sequential small reads up to the bad block, then the error.
                    let mut r = f.reader(D).unwrap();
                    let mut pos = 0u64;
                    let mut buf = vec![0u8; 9000];
                    loop {
                        let want = 1 + rng.below(9000) as usize;
                        match r.read(&mut buf[..want]) {
                            Ok(n) => {
                                assert!(n > 0 && pos + (n as u64) <= lo);
                                assert!(buf[..n] == *expected(data, pos, n));
                                pos += n as u64;
                            }
                            Err(err) => {
                                assert!(pos + want as u64 > lo, "error before the bad block");
                                assert!(
                                    err.to_string().contains(&format!("block {bad} ")),
                                    "{err}"
                                );
                                break;
                            }
                        }
                    }
                    return;
                }
                for _ in 0..1500 {
                    let off = rng.below(data.len() as u64);
                    let len = 1 + rng.below(200_000) as usize;
                    let touches = off < hi && off + len as u64 > lo;
                    match f.read_at(D, off, len) {
                        Ok(v) => {
                            assert!(
                                !touches,
                                "read {off}+{len} over the damaged block succeeded"
                            );
                            assert!(v == expected(data, off, len));
                        }
                        Err(Error::CorruptBlock { block, .. }) => {
                            assert!(touches);
                            assert_eq!(block, bad as u64);
                        }
                        Err(other) => panic!("{other}"),
                    }
                }
            });
        }
    });
}
