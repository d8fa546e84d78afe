//! Read-ahead of a mount's file handle in whole requests (`hexz_mount::ahead`), through
//! `ArchiveFs` over an archive whose backend counts the bytes fetched: a run of 1 MiB
//! requests (what the kernel sends for `dd bs=1M`) is answered from requests decoded ahead,
//! also when the request threads deliver them slightly out of order, with every block
//! fetched exactly once; requests at scattered offsets are never read ahead (they cost
//! exactly their own blocks); a writable mount does not read ahead; a corrupt block decoded
//! ahead fails its own request (EIO, read again inline) and the run goes on.

use hexz_core::ops::{pack, PackInput, PackOptions, PackSource};
use hexz_core::store::local::FileBackend;
use hexz_core::store::testing::{Counters, CountingBackend};
use hexz_core::store::StorageBackend;
use hexz_core::{File, OpenOptions, SnapshotStream};
use hexz_mount::fs::{stream_ino, ArchiveFs};
use hexz_mount::Volume;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const D: SnapshotStream = SnapshotStream::Disk;
const MIB: u64 = 1 << 20;
const SIZE: u64 = 48 * MIB;

/// Half compressible text-like bytes, half noise, so blocks are both compressed and raw.
fn data(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if (i >> 16) % 2 == 0 {
                b"abcdefgh"[(x % 8) as usize]
            } else {
                x as u8
            }
        })
        .collect()
}

fn archive(dir: &Path, bytes: &[u8]) -> std::path::PathBuf {
    let raw = dir.join("disk.raw");
    std::fs::write(&raw, bytes).unwrap();
    let out = dir.join("a.hxz");
    pack(
        PackInput {
            disk: Some(PackSource::Path(raw)),
            memory: None,
        },
        &out,
        &PackOptions::default(),
        None,
    )
    .unwrap();
    out
}

/// An `ArchiveFs` over `path`, its backend counted, index pages already loaded.
fn counted_fs(path: &Path) -> (ArchiveFs, File, Arc<Counters>) {
    let inner: Arc<dyn StorageBackend> = Arc::new(FileBackend::new(path).unwrap());
    let b = CountingBackend::new(inner);
    let c = b.counters();
    let f = File::open_backend(Arc::new(b), None, OpenOptions::default()).unwrap();
    assert!(f.entries(D).all(|e| e.is_ok()));
    c.reset();
    let fs = ArchiveFs::new(Arc::new(Volume::new(f.clone())), 0, 0);
    (fs, f, c)
}

/// Stored bytes of the blocks `[off, off+len)` spans.
fn stored_span(f: &File, off: u64, len: u64) -> u64 {
    f.entries(D)
        .map(|e| e.unwrap())
        .filter(|e| e.logical_offset < off + len && off < e.logical_end() && !e.is_zero())
        .map(|e| e.stored_len as u64)
        .sum()
}

fn settle(fs: &ArchiveFs) {
    let t = Instant::now();
    while fs.reading_ahead() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "read-ahead never finished"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Reads 1 MiB requests at `offsets` through one handle, checking every byte.
fn read_requests(fs: &ArchiveFs, want: &[u8], offsets: &[u64]) {
    let fh = fs.open(stream_ino(D), false).unwrap();
    let mut buf = vec![0u8; MIB as usize];
    for &off in offsets {
        let d = fs.read_data(stream_ino(D), fh, off, &mut buf).unwrap();
        let got = d.bytes(&buf);
        assert!(
            got == &want[off as usize..(off + MIB) as usize],
            "request at {off} differs"
        );
    }
    settle(fs);
    fs.release(fh);
}

#[test]
fn runs_of_large_requests_are_decoded_ahead_once() {
    let dir = tempfile::tempdir().unwrap();
    let want = data(SIZE as usize);
    let arc = archive(dir.path(), &want);
    let (fs, f, c) = counted_fs(&arc);
    let seq: Vec<u64> = (0..SIZE / MIB).map(|i| i * MIB).collect();
    read_requests(&fs, &want, &seq);
    // The first two requests start the run; every later one was decoded ahead.
    assert_eq!(fs.served_ahead(), SIZE / MIB - 2);
    assert_eq!(
        c.bytes(),
        stored_span(&f, 0, SIZE),
        "every block fetched exactly once"
    );

    // Request threads may hand requests over out of order: pairs swapped.
    let (fs, _, c) = counted_fs(&arc);
    let swapped: Vec<u64> = (0..SIZE / MIB).map(|i| (i ^ 1) * MIB).collect();
    read_requests(&fs, &want, &swapped);
    assert!(
        fs.served_ahead() >= SIZE / MIB - 4,
        "{} of {} out-of-order requests served ahead",
        fs.served_ahead(),
        SIZE / MIB
    );
    assert_eq!(c.bytes(), stored_span(&f, 0, SIZE));
}

#[test]
fn scattered_requests_are_not_read_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let want = data(SIZE as usize);
    let arc = archive(dir.path(), &want);
    let (fs, f, c) = counted_fs(&arc);
    // Each at least six requests away from the previous one.
    let offsets: Vec<u64> = [30, 2, 40, 12, 46, 20, 3, 38]
        .iter()
        .map(|m| m * MIB)
        .collect();
    read_requests(&fs, &want, &offsets);
    assert_eq!(fs.served_ahead(), 0);
    let exact: u64 = offsets.iter().map(|&o| stored_span(&f, o, MIB)).sum();
    assert_eq!(c.bytes(), exact, "nothing but the requested blocks fetched");
}

#[test]
fn writable_mounts_do_not_read_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let want = data(SIZE as usize);
    let arc = archive(dir.path(), &want);
    let file = File::open(&arc).unwrap();
    let ov =
        hexz_mount::overlay::Overlay::create(&dir.path().join("ov"), &file, arc.to_str().unwrap())
            .unwrap();
    let fs = ArchiveFs::new(Arc::new(Volume::with_overlay(file, ov)), 0, 0);
    let seq: Vec<u64> = (0..8).map(|i| i * MIB).collect();
    read_requests(&fs, &want, &seq);
    assert_eq!(fs.served_ahead(), 0);
}

#[test]
fn a_corrupt_block_read_ahead_fails_its_request_not_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let want = data(SIZE as usize);
    let arc = archive(dir.path(), &want);
    let bad = File::open(&arc)
        .unwrap()
        .entries(D)
        .map(|e| e.unwrap())
        .find(|e| e.logical_offset == 6 * MIB)
        .unwrap();
    let mut bytes = std::fs::read(&arc).unwrap();
    for b in &mut bytes[bad.stored_offset as usize..][..64] {
        *b ^= 0x5a;
    }
    std::fs::write(&arc, &bytes).unwrap();
    let (fs, _, _) = counted_fs(&arc);
    let fh = fs.open(stream_ino(D), false).unwrap();
    let mut buf = vec![0u8; MIB as usize];
    for i in 0..12 {
        let off = i * MIB;
        let r = fs.read(stream_ino(D), fh, off, &mut buf);
        if i == 6 {
            assert_eq!(r, Err(libc::EIO), "the corrupt block's request");
        } else {
            assert_eq!(r, Ok(MIB as usize), "request {i}");
            assert!(
                buf == want[off as usize..(off + MIB) as usize],
                "request {i}"
            );
        }
    }
    assert!(fs.served_ahead() >= 8, "{} served ahead", fs.served_ahead());
    settle(&fs);
}
