//! A process that forks after reading (as PyTorch's DataLoader does) keeps reading in the
//! child: the crate's thread pools and in-flight tables are rebuilt there, not inherited
//! without their threads.

mod common;

use common::{mixed_data, pack_files};
use hexz_core::ops::PackOptions;
use hexz_core::{File, SnapshotStream};
use std::io::{Read, Seek, SeekFrom};

/// Runs `child` in a forked process and returns its exit status (`child` returns the code).
fn in_child(child: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child only runs `child` and leaves with `_exit`, never returning into the
    // test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(101);
        // SAFETY: ends the child at once, without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid");
    assert!(
        libc::WIFEXITED(status),
        "child did not exit normally ({status:#x})"
    );
    libc::WEXITSTATUS(status)
}

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
