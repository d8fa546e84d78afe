//! The disk tier of the cache, over a fake remote backend that reads a local file, counts
//! every request and byte, and reports a content hash as its identity (as an ETag would).

mod common;

use common::{mixed_data, pack_files, Rng};
use hexz_core::algo::encryption::{Kdf, Password};
use hexz_core::cache::disk::{CachedBackend, DiskCache, Opener, CHUNK_SIZE, ENTRY_HEADER};
use hexz_core::ops::pack::EncryptOptions;
use hexz_core::ops::PackOptions;
use hexz_core::store::local::FileBackend;
use hexz_core::store::{ReadRequest, StorageBackend};
use hexz_core::{Error, File, OpenOptions, SnapshotStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const DISK: SnapshotStream = SnapshotStream::Disk;

/// Request counters shared by every fake backend of one test.
#[derive(Default)]
struct Counters {
    opens: AtomicU64,
    requests: AtomicU64,
    bytes: AtomicU64,
}

/// A "remote" archive: `http://fake/NAME` is the file `dir/NAME`.
struct FakeRemote {
    file: FileBackend,
    url: String,
    identity: String,
    counters: Arc<Counters>,
}

impl StorageBackend for FakeRemote {
    fn len(&self) -> u64 {
        self.file.len()
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> hexz_core::Result<()> {
        self.counters.requests.fetch_add(1, Ordering::SeqCst);
        self.counters
            .bytes
            .fetch_add(buf.len() as u64, Ordering::SeqCst);
        self.file.read_exact_at(offset, buf)
    }
    fn identity(&self) -> Option<String> {
        Some(self.identity.clone())
    }
    fn is_remote(&self) -> bool {
        true
    }
    fn describe(&self) -> String {
        self.url.clone()
    }
}

fn opener(dir: &Path, counters: &Arc<Counters>) -> Opener {
    let dir = dir.to_path_buf();
    let counters = counters.clone();
    Arc::new(move |url: &str| {
        counters.opens.fetch_add(1, Ordering::SeqCst);
        let name = url.rsplit('/').next().unwrap_or_default();
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(url, e))?;
        Ok(Arc::new(FakeRemote {
            file: FileBackend::new(&path)?,
            url: url.to_string(),
            identity: format!("\"{}\"", &blake3::hash(&bytes).to_hex()[..16]),
            counters: counters.clone(),
        }) as Arc<dyn StorageBackend>)
    })
}

/// Opens `http://fake/NAME` through a fresh `DiskCache` on `cache_dir` (as a new process
/// would).
fn open_cached(
    cache_dir: &Path,
    cap: u64,
    remote_dir: &Path,
    name: &str,
    counters: &Arc<Counters>,
    password: Option<&str>,
) -> hexz_core::Result<File> {
    let cache = DiskCache::open(cache_dir, cap)?;
    let b = CachedBackend::open(
        cache,
        &format!("http://fake/{name}"),
        opener(remote_dir, counters),
    )?;
    File::open_backend(
        b,
        None,
        OpenOptions {
            password: password.map(|p| Password::new(p.as_bytes().to_vec())),
            ..OpenOptions::default()
        },
    )
}

fn read_all(f: &File) -> Vec<u8> {
    f.read_at(DISK, 0, f.size(DISK) as usize).expect("read")
}

/// Entry files under the cache directory.
fn entries(cache_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let data = cache_dir.join("hexz-cache-v1/data");
    for d in std::fs::read_dir(data).unwrap().flatten() {
        for f in std::fs::read_dir(d.path()).unwrap().flatten() {
            out.push(f.path());
        }
    }
    out.sort();
    out
}

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng::new(seed).fill(&mut v);
    v
}

#[test]
fn second_pass_makes_no_request_even_for_a_thin_chain() {
    let t = tempfile::tempdir().unwrap();
    let (remote, cache) = (t.path().join("remote"), t.path().join("cache"));
    std::fs::create_dir_all(&remote).unwrap();
    let base = mixed_data(5 << 20, 65536, 1);
    let mut child = base.clone();
    child[(2 << 20)..(3 << 20)].copy_from_slice(&random(1 << 20, 2));
    pack_files(&remote, "base.hxz", Some(&base), None, &Default::default());
    let opts = PackOptions {
        base: Some(remote.join("base.hxz")),
        ..Default::default()
    };
    pack_files(&remote, "child.hxz", Some(&child), None, &opts);

    let c = Arc::new(Counters::default());
    let f = open_cached(&cache, 1 << 30, &remote, "child.hxz", &c, None).unwrap();
    assert_eq!(f.chain_len(), 2);
    assert!(
        read_all(&f) == child,
        "first pass returns the child's bytes"
    );
    let first = c.requests.load(Ordering::SeqCst);
    assert!(first > 0);
    assert_eq!(c.opens.load(Ordering::SeqCst), 2, "child and parent opened");
    drop(f);

    // A new "process": open and full read entirely from the disk cache.
    let c2 = Arc::new(Counters::default());
    let f = open_cached(&cache, 1 << 30, &remote, "child.hxz", &c2, None).unwrap();
    assert!(read_all(&f) == child, "second pass returns the same bytes");
    assert_eq!(
        c2.requests.load(Ordering::SeqCst),
        0,
        "no request on the 2nd pass"
    );
    assert_eq!(
        c2.opens.load(Ordering::SeqCst),
        0,
        "no open on the 2nd pass"
    );
    // Small sequential reads verify each chunk once (from memory afterwards) and still
    // return the right bytes.
    let mut r = f.reader(DISK).unwrap();
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut r, &mut out).unwrap();
    assert!(out == child);
}

#[test]
fn damaged_entries_are_dropped_and_fetched_again() {
    let t = tempfile::tempdir().unwrap();
    let (remote, cache) = (t.path().join("remote"), t.path().join("cache"));
    std::fs::create_dir_all(&remote).unwrap();
    let data = random(4 << 20, 3);
    pack_files(&remote, "a.hxz", Some(&data), None, &Default::default());
    let c = Arc::new(Counters::default());
    let f = open_cached(&cache, 1 << 30, &remote, "a.hxz", &c, None).unwrap();
    assert!(read_all(&f) == data);
    drop(f);
    let files = entries(&cache);
    assert!(files.len() >= 4, "{} entries", files.len());
    // One entry with a flipped data byte, one truncated, one with a damaged header.
    let mut b = std::fs::read(&files[1]).unwrap();
    b[ENTRY_HEADER + 1000] ^= 0x40;
    std::fs::write(&files[1], &b).unwrap();
    let b = std::fs::read(&files[2]).unwrap();
    std::fs::write(&files[2], &b[..b.len() - 1]).unwrap();
    let mut b = std::fs::read(&files[3]).unwrap();
    b[9] ^= 1;
    std::fs::write(&files[3], &b).unwrap();

    let c2 = Arc::new(Counters::default());
    let f = open_cached(&cache, 1 << 30, &remote, "a.hxz", &c2, None).unwrap();
    assert!(read_all(&f) == data, "damaged entries never returned");
    assert_eq!(
        c2.bytes.load(Ordering::SeqCst),
        3 * CHUNK_SIZE,
        "exactly the three damaged chunks fetched again"
    );
    drop(f);
    // They were rewritten: a third pass is served from disk.
    let c3 = Arc::new(Counters::default());
    let f = open_cached(&cache, 1 << 30, &remote, "a.hxz", &c3, None).unwrap();
    assert!(read_all(&f) == data);
    assert_eq!(c3.requests.load(Ordering::SeqCst), 0);
}

/// Chunk numbers of the entries in the cache directory.
fn chunk_ids(cache_dir: &Path) -> std::collections::BTreeSet<u64> {
    entries(cache_dir)
        .iter()
        .map(|p| u64::from_str_radix(&p.file_name().unwrap().to_string_lossy(), 16).unwrap())
        .collect()
}

#[test]
fn cap_is_respected_and_least_recently_used_go_first() {
    let t = tempfile::tempdir().unwrap();
    let (remote, cache) = (t.path().join("remote"), t.path().join("cache"));
    std::fs::create_dir_all(&remote).unwrap();
    let data = random(10 << 20, 4);
    pack_files(&remote, "a.hxz", Some(&data), None, &Default::default());
    let cap = 6 * (CHUNK_SIZE + ENTRY_HEADER as u64);
    let c = Arc::new(Counters::default());
    let f = open_cached(&cache, cap, &remote, "a.hxz", &c, None).unwrap();
    let dc = DiskCache::open(&cache, cap).unwrap();
    // Opening fetched the header's chunk 0 and the index's chunks at the end.
    let at_open = chunk_ids(&cache);
    assert!(at_open.contains(&0), "{at_open:?}");
    assert_eq!(
        at_open.len(),
        3,
        "{at_open:?}: header chunk and two tail chunks"
    );
    let read = |mib: usize| {
        let off = (mib << 20) + (400 << 10);
        let got = f.read_at(DISK, off as u64, 64 << 10).unwrap();
        assert!(got[..] == data[off..off + (64 << 10)], "bytes at {off}");
        let used = dc.scanned_usage();
        assert!(
            used <= cap,
            "usage {used} above the cap {cap} after offset {off}"
        );
    };
    let mut added = Vec::new();
    for mib in [2, 3, 4] {
        let before = chunk_ids(&cache);
        read(mib);
        let new: Vec<u64> = chunk_ids(&cache).difference(&before).copied().collect();
        assert_eq!(new.len(), 1, "a 64 KiB read adds one chunk: {new:?}");
        added.push(new[0]);
    }
    assert_eq!(chunk_ids(&cache).len(), 6, "the cache is full");
    // Chunk 0 is used again (served from memory): that makes it recent on disk too, so the
    // next three additions evict the two tail chunks and the chunk of MiB 2, not chunk 0.
    read(0);
    for mib in [5, 6, 7] {
        read(mib);
    }
    let kept = chunk_ids(&cache);
    assert_eq!(kept.len(), 6, "{kept:?}: the cache is full, not over");
    assert!(
        kept.contains(&0),
        "{kept:?}: chunk 0 was used last-but-three"
    );
    assert!(
        !kept.contains(&added[0]),
        "{kept:?}: chunk {} is the oldest",
        added[0]
    );
    for tail in at_open.iter().filter(|&&i| i != 0) {
        assert!(!kept.contains(tail), "{kept:?}: tail chunk {tail} is older");
    }
    assert!(
        kept.contains(&added[1]) && kept.contains(&added[2]),
        "{kept:?}"
    );
    // A new process reads everything correctly through the full cache.
    drop(f);
    let f = open_cached(&cache, cap, &remote, "a.hxz", &c, None).unwrap();
    assert!(read_all(&f) == data);
    assert!(dc.scanned_usage() <= cap);
    // A cap below one chunk caches nothing (and reads still work).
    let t2 = tempfile::tempdir().unwrap();
    let f = open_cached(t2.path(), 1000, &remote, "a.hxz", &c, None).unwrap();
    assert!(read_all(&f) == data);
    assert_eq!(DiskCache::open(t2.path(), 1000).unwrap().scanned_usage(), 0);
}

#[test]
fn threads_with_their_own_cache_handles_share_a_dir_and_download_each_chunk_once() {
    let t = tempfile::tempdir().unwrap();
    let (remote, cache) = (t.path().join("remote"), t.path().join("cache"));
    std::fs::create_dir_all(&remote).unwrap();
    let data = random(6 << 20, 5);
    pack_files(&remote, "a.hxz", Some(&data), None, &Default::default());
    let archive_len = std::fs::metadata(remote.join("a.hxz")).unwrap().len();
    let c = Arc::new(Counters::default());
    std::thread::scope(|s| {
        for i in 0..6u64 {
            let (cache, remote, c, data) = (&cache, &remote, &c, &data);
            s.spawn(move || {
                let f = open_cached(cache, 1 << 30, remote, "a.hxz", c, None).unwrap();
                // Each thread walks the archive from a different starting point.
                let n = data.len() as u64;
                let step = 256 * 1024;
                for k in 0..n / step {
                    let off = ((k + i * 5) % (n / step)) * step;
                    let got = f.read_at(DISK, off, step as usize).unwrap();
                    assert!(got[..] == data[off as usize..(off + step) as usize]);
                }
            });
        }
    });
    assert_eq!(
        c.bytes.load(Ordering::SeqCst),
        archive_len,
        "every byte of the archive fetched exactly once"
    );
    for p in entries(&cache) {
        let b = std::fs::read(&p).unwrap();
        assert_eq!(&b[..8], b"HXZCHNK2", "{} is a whole entry", p.display());
    }
    assert!(std::fs::read_dir(cache.join("hexz-cache-v1/tmp"))
        .unwrap()
        .next()
        .is_none());
}

/// Run by `processes_share_a_dir`: reads the archive named by the environment and prints
/// how many bytes it fetched.
#[test]
#[ignore = "helper process of processes_share_a_dir"]
fn child_reader() {
    let (Some(remote), Some(cache)) = (
        std::env::var_os("HEXZ_TEST_REMOTE"),
        std::env::var_os("HEXZ_TEST_CACHE"),
    ) else {
        return;
    };
    let c = Arc::new(Counters::default());
    let f = open_cached(
        Path::new(&cache),
        1 << 30,
        Path::new(&remote),
        "a.hxz",
        &c,
        None,
    )
    .unwrap();
    let all = read_all(&f);
    println!(
        "fetched={} hash={}",
        c.bytes.load(Ordering::SeqCst),
        blake3::hash(&all).to_hex()
    );
}

#[test]
fn processes_share_a_dir() {
    let t = tempfile::tempdir().unwrap();
    let (remote, cache) = (t.path().join("remote"), t.path().join("cache"));
    std::fs::create_dir_all(&remote).unwrap();
    let data = random(5 << 20, 6);
    pack_files(&remote, "a.hxz", Some(&data), None, &Default::default());
    let archive_len = std::fs::metadata(remote.join("a.hxz")).unwrap().len();
    let exe = std::env::current_exe().unwrap();
    let kids: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(&exe)
                .args(["--ignored", "--exact", "child_reader", "--nocapture"])
                .env("HEXZ_TEST_REMOTE", &remote)
                .env("HEXZ_TEST_CACHE", &cache)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let want = format!("hash={}", blake3::hash(&data).to_hex());
    let mut fetched = 0;
    for k in kids {
        let out = k.wait_with_output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.starts_with("fetched="))
            .unwrap_or_else(|| panic!("no report in {text}"));
        assert!(line.ends_with(&want), "a process read wrong bytes: {line}");
        fetched += line["fetched=".len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse::<u64>()
            .unwrap();
    }
    assert_eq!(fetched, archive_len, "each chunk downloaded by one process");
}

/// A cached version is served whole and consistently (its identity is part of every entry's
/// key); the first chunk the cache lacks makes a request, which notices the replacement.
#[test]
fn a_changed_archive_never_serves_stale_bytes() {
    let t = tempfile::tempdir().unwrap();
    let (remote, cache) = (t.path().join("remote"), t.path().join("cache"));
    std::fs::create_dir_all(&remote).unwrap();
    // Large enough that the open (header and 512 KiB tail) and the first 2 MiB leave most
    // chunks uncached.
    let v1 = random(16 << 20, 7);
    let v2 = random(16 << 20, 8);
    pack_files(&remote, "a.hxz", Some(&v1), None, &Default::default());
    let c = Arc::new(Counters::default());
    // Cache only the first half of version 1 (plus header and index).
    let f = open_cached(&cache, 1 << 30, &remote, "a.hxz", &c, None).unwrap();
    assert!(f.read_at(DISK, 0, 2 << 20).unwrap()[..] == v1[..2 << 20]);
    drop(f);
    // The server now holds version 2 (same name, same size).
    pack_files(&remote, "a.hxz", Some(&v2), None, &Default::default());
    // The open is served from the cache (no request); the first chunk missing from the cache
    // reaches the server, which tells the archive changed: an error, not a mix.
    let f = open_cached(&cache, 1 << 30, &remote, "a.hxz", &c, None).unwrap();
    let e = f.read_at(DISK, 0, v1.len()).unwrap_err();
    assert!(
        matches!(e, Error::ArchiveChanged { .. }),
        "expected ArchiveChanged, got {e}"
    );
    assert!(e.to_string().contains("http://fake/a.hxz"), "{e}");
    drop(f);
    // The stale copy was dropped: the next open pins version 2 and reads it whole.
    let c2 = Arc::new(Counters::default());
    let f = open_cached(&cache, 1 << 30, &remote, "a.hxz", &c2, None).unwrap();
    assert_eq!(c2.opens.load(Ordering::SeqCst), 1);
    assert!(read_all(&f) == v2, "version 2, with no byte of version 1");
    // And a cache holding both versions' keys never confuses them.
    let dc = DiskCache::open(&cache, 1 << 30).unwrap();
    assert!(dc.scanned_usage() > 0);
}

#[test]
fn an_encrypted_archive_leaves_no_plaintext_in_the_cache() {
    let t = tempfile::tempdir().unwrap();
    let (remote, cache) = (t.path().join("remote"), t.path().join("cache"));
    std::fs::create_dir_all(&remote).unwrap();
    let phrase = b"THE-PLAINTEXT-MARKER-0123456789-hexz-disk-cache-test ";
    let data: Vec<u8> = phrase.iter().copied().cycle().take(3 << 20).collect();
    let opts = PackOptions {
        encryption: Some(EncryptOptions {
            password: Password::new(b"pw".to_vec()),
            kdf: Kdf::Argon2id {
                m_kib: 1024,
                t: 1,
                p: 1,
            },
        }),
        ..Default::default()
    };
    pack_files(&remote, "e.hxz", Some(&data), None, &opts);
    let c = Arc::new(Counters::default());
    let f = open_cached(&cache, 1 << 30, &remote, "e.hxz", &c, Some("pw")).unwrap();
    assert!(read_all(&f) == data);
    let files = entries(&cache);
    assert!(!files.is_empty());
    let needle = &phrase[..24];
    for p in walk(&cache) {
        let b = std::fs::read(&p).unwrap();
        assert!(
            !b.windows(needle.len()).any(|w| w == needle),
            "plaintext found in {}",
            p.display()
        );
    }
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn batched_reads_fetch_missing_chunks_in_one_call_and_check_bounds() {
    let t = tempfile::tempdir().unwrap();
    let (remote, cache) = (t.path().join("remote"), t.path().join("cache"));
    std::fs::create_dir_all(&remote).unwrap();
    let data = random(3 << 20, 9);
    let (path, _) = pack_files(&remote, "a.hxz", Some(&data), None, &Default::default());
    let raw = std::fs::read(&path).unwrap();
    let c = Arc::new(Counters::default());
    let b = CachedBackend::open(
        DiskCache::open(&cache, 1 << 30).unwrap(),
        "http://fake/a.hxz",
        opener(&remote, &c),
    )
    .unwrap();
    let (mut x, mut y) = (vec![0u8; 100], vec![0u8; 2 << 20]);
    b.read_batch(&mut [
        ReadRequest {
            offset: 5,
            buf: &mut x,
        },
        ReadRequest {
            offset: 700_000,
            buf: &mut y,
        },
    ])
    .unwrap();
    assert!(x[..] == raw[5..105] && y[..] == raw[700_000..700_000 + (2 << 20)]);
    let e = b
        .read_exact_at(raw.len() as u64 - 10, &mut [0u8; 11])
        .unwrap_err();
    assert!(e.to_string().contains("past the end"), "{e}");
    assert_eq!(b.describe(), "http://fake/a.hxz");
    assert!(b.is_remote() && b.identity().is_some());
}
