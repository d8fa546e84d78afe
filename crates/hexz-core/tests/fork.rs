//! A process that forks after reading (as PyTorch's DataLoader does) keeps reading in the
//! child: the crate's thread pools and in-flight tables are rebuilt there, not inherited
//! without their threads.

mod common;

use common::{in_child, mixed_data, pack_files};
use hexz_core::ops::PackOptions;
use hexz_core::{File, SnapshotStream};
use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicBool, Ordering};

#[test]
fn child_keeps_reading_after_fork() {
    let dir = tempfile::tempdir().unwrap();
    let d = mixed_data(24 << 20, 64 << 10, 42);
    let (p, _) = pack_files(dir.path(), "a.hxz", Some(&d), None, &PackOptions::default());
    let f = File::open(&p).unwrap();
    // Use every pool in the parent: a parallel multi-block read (decode pool) and a
    // sequential reader (read-ahead on the IO pool), left running.
    assert!(f.read_at(SnapshotStream::Disk, 0, 4 << 20).unwrap() == d[..4 << 20]);
    let mut r = f.reader(SnapshotStream::Disk).unwrap();
    let mut buf = vec![0u8; 64 << 10];
    for _ in 0..8 {
        r.read_exact(&mut buf).unwrap();
    }
    let code = in_child(|| {
        // Multi-block reads of cold blocks (decode pool), then a sequential reader
        // (IO pool) over the rest, checking every byte.
        let off = 10 << 20;
        if f.read_at(SnapshotStream::Disk, off, 6 << 20).unwrap() != d[off as usize..][..6 << 20] {
            return 2;
        }
        let mut r = f.reader(SnapshotStream::Disk).unwrap();
        r.seek(SeekFrom::Start(1 << 20)).unwrap();
        let mut got = Vec::new();
        if r.read_to_end(&mut got).is_err() || got != d[1 << 20..] {
            return 3;
        }
        f.wait_for_read_ahead();
        // And a freshly opened archive works in the child too.
        let g = File::open(&p).unwrap();
        if g.read_at(SnapshotStream::Disk, 0, d.len()).unwrap() != d {
            return 4;
        }
        0
    });
    assert_eq!(code, 0, "the forked child failed to read (code {code})");
    // The parent is unaffected.
    f.wait_for_read_ahead();
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert!(rest == d[8 * (64 << 10)..]);
}

#[test]
fn process_id_is_the_childs_own_after_fork() {
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() } as u32;
    assert_eq!(hexz_core::api::process_id(), parent); // cached from here on
    let code = in_child(|| {
        // SAFETY: as above.
        let own = unsafe { libc::getpid() } as u32;
        match hexz_core::api::process_id() {
            p if p == own && p != parent => 0,
            _ => 4,
        }
    });
    assert_eq!(code, 0, "the child saw its parent's id");
    assert_eq!(hexz_core::api::process_id(), parent);
}

#[test]
fn fork_while_other_threads_hold_cache_and_flight_locks() {
    // Threads of the parent read cold and cached blocks nonstop (cache shard, in-flight and
    // read-ahead locks taken and released all the time) while the main thread forks; each
    // child reads through the same File. A lock inherited in its held state would hang a
    // child (SIGALRM after 60 s fails the test).
    let dir = tempfile::tempdir().unwrap();
    let d = mixed_data(8 << 20, 64 << 10, 9);
    let (p, _) = pack_files(dir.path(), "a.hxz", Some(&d), None, &PackOptions::default());
    let f = File::open_with(
        &p,
        hexz_core::OpenOptions {
            cache_bytes: 256 << 10,
            index_cache_bytes: 64 << 10,
            ..Default::default()
        },
    )
    .unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (f, d, stop) = (&f, &d, &stop);
            s.spawn(move || {
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ t;
                let mut r = f.reader(SnapshotStream::Disk).unwrap();
                let mut buf = vec![0u8; 100_000];
                while !stop.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let off = x % (d.len() as u64 - 200_000);
                    let got = f.read_at(SnapshotStream::Disk, off, 150_000).unwrap();
                    assert!(got == d[off as usize..][..150_000]);
                    if r.read_exact(&mut buf).is_err() {
                        r.seek(SeekFrom::Start(0)).unwrap();
                    }
                }
            });
        }
        for i in 0..60u64 {
            let off = (i * 131_071) % (d.len() as u64 - 300_000);
            let code = in_child(|| {
                match f.read_at(SnapshotStream::Disk, off, 300_000) {
                    Ok(v) if v == d[off as usize..][..300_000] => {}
                    _ => return 2,
                }
                f.wait_for_read_ahead();
                0
            });
            assert_eq!(code, 0, "fork {i}: the child failed to read (code {code})");
        }
        stop.store(true, Ordering::Relaxed);
    });
}
