//! Parallel extract of tree archives: many small files in nested directories (with hard
//! links, symlinks, read-only directories, duplicates and a file larger than one batch) come
//! back byte for byte with their modes and times, with one thread or many; hostile tables
//! are still refused with the same errors while workers are busy.

use hexz_core::api::tree::EntryKind;
use hexz_core::api::FileTree;
use hexz_core::format::tree::TreeEntry;
use hexz_core::ops::tree::{extract, pack_entries, pack_tree, ExtractOptions, TreePackOptions};
use hexz_core::ops::PackOptions;
use hexz_core::File;
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A temp dir on the real disk (not tmpfs), removed on drop.
fn tmp() -> tempfile::TempDir {
    let base = std::env::var_os("HEXZ_TEST_TMP").unwrap_or_else(|| "/var/tmp".into());
    tempfile::Builder::new()
        .prefix("hexz-tree-x-")
        .tempdir_in(base)
        .expect("temp dir")
}

/// Type, mode, mtime (ns), inode-sharing group, size, content hash and link target per path.
fn listing(root: &Path) -> BTreeMap<Vec<u8>, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = root.join(&rel);
        let m = std::fs::symlink_metadata(&abs).unwrap();
        let key = rel.as_os_str().as_bytes().to_vec();
        let mut line = format!(
            "mode={:o} mtime={}.{:09}",
            m.mode(),
            m.mtime(),
            m.mtime_nsec()
        );
        let ft = m.file_type();
        if ft.is_file() {
            let data = std::fs::read(&abs).unwrap();
            line += &format!(" size={} hash={}", data.len(), blake3::hash(&data).to_hex());
            // Hard links: name the first path (in sorted order) sharing the inode.
            if m.nlink() > 1 {
                let first = inodes.entry(m.ino()).or_insert_with(|| key.clone());
                if *first > key {
                    *first = key.clone();
                }
            }
        } else if ft.is_symlink() {
            line += &format!(" -> {:?}", std::fs::read_link(&abs).unwrap());
        } else if ft.is_dir() {
            for d in std::fs::read_dir(&abs).unwrap() {
                stack.push(rel.join(d.unwrap().file_name()));
            }
        }
        out.insert(key, line);
    }
    // Hard-link groups, by their first member (inode numbers differ between trees).
    for (_, first) in inodes {
        let group: Vec<Vec<u8>> = out
            .keys()
            .filter(|k| {
                let m = std::fs::symlink_metadata(root.join(std::ffi::OsStr::from_bytes(k)));
                let f = std::fs::symlink_metadata(root.join(std::ffi::OsStr::from_bytes(&first)));
                matches!((m, f), (Ok(m), Ok(f)) if m.ino() == f.ino() && m.is_file())
            })
            .cloned()
            .collect();
        for k in group {
            let l = out.get_mut(&k).unwrap();
            *l += &format!(" linked-with={}", String::from_utf8_lossy(&first));
        }
    }
    out
}

fn set_mtime(p: &Path, s: i64, ns: i64) {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let t = libc::timespec {
        tv_sec: s,
        tv_nsec: ns,
    };
    // SAFETY: valid path and two timespecs.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            [t, t].as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(r, 0);
}

/// Deterministic bytes: `n` of them from seed `s` (compressible text for even seeds).
fn bytes(s: u64, n: usize) -> Vec<u8> {
    let mut x = s.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if s % 2 == 0 {
                b"abcdefgh \n"[(x % 10) as usize]
            } else {
                (x >> 24) as u8 ^ (i as u8)
            }
        })
        .collect()
}

/// 600 files of 0-20 KiB in 3 levels of directories, duplicates, one 9 MiB file, hard links,
/// symlinks, read-only directories, varied modes and times.
fn make_tree(root: &Path) -> usize {
    let mut files = 0;
    let mut dirs = Vec::new();
    for a in 0..4 {
        for b in 0..5 {
            let d = root.join(format!("a{a}/b{b}"));
            std::fs::create_dir_all(&d).unwrap();
            for f in 0..30u64 {
                let seed = a * 1000 + b * 100 + f;
                // Every seventh file repeats an earlier one (stored once).
                let data = if f % 7 == 6 {
                    bytes(3, 5000)
                } else {
                    bytes(seed, (seed * 677 % 20_000) as usize)
                };
                let p = d.join(format!("f{f:02}.{}", ["txt", "bin", "log"][f as usize % 3]));
                std::fs::write(&p, &data).unwrap();
                let mode = [0o644, 0o600, 0o755, 0o444, 0o4711][f as usize % 5];
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
                set_mtime(
                    &p,
                    1_600_000_000 + seed as i64,
                    (seed * 1_234_567 % 1_000_000_000) as i64,
                );
                files += 1;
            }
            dirs.push(d);
        }
        dirs.push(root.join(format!("a{a}")));
    }
    std::fs::write(root.join("a1/big.bin"), bytes(7, 9 << 20)).unwrap();
    std::fs::hard_link(root.join("a0/b0/f00.txt"), root.join("a3/b4/z-link")).unwrap();
    std::fs::hard_link(root.join("a1/big.bin"), root.join("a2/big-link")).unwrap();
    std::os::unix::fs::symlink("../b1/f01.bin", root.join("a0/b0/sym")).unwrap();
    std::os::unix::fs::symlink("/nonexistent", root.join("a2/dangling")).unwrap();
    set_mtime(&root.join("a0/b0/sym"), 1_500_000_000, 7);
    for (i, d) in dirs.iter().enumerate() {
        // Read-only directories (with files inside) must still be filled on extract.
        let mode = if i % 3 == 0 { 0o555 } else { 0o750 };
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode)).unwrap();
        set_mtime(d, 1_400_000_000 + i as i64, i as i64 * 1000);
    }
    files + 1
}

#[test]
fn many_small_files_round_trip_with_any_thread_count() {
    let d = tmp();
    let src = d.path().join("src");
    let n = make_tree(&src);
    let out = d.path().join("t.hxz");
    let opts = PackOptions {
        codec: hexz_core::format::Codec::Zstd,
        block_size: 64 << 10,
        ..PackOptions::default()
    };
    let stats = pack_tree(&src, &out, &opts, &TreePackOptions::default(), None).unwrap();
    assert!(stats.dedup_files > 0, "duplicates stored once");
    let f = File::open(&out).unwrap();
    let t = FileTree::open(&f).unwrap().expect("file table");
    let want = listing(&src);
    for threads in [1, 3, 0] {
        let dst = d.path().join(format!("dst{threads}"));
        let bytes_seen = std::sync::atomic::AtomicU64::new(0);
        let progress = |b: u64| {
            bytes_seen.fetch_max(b, std::sync::atomic::Ordering::Relaxed);
        };
        let x = ExtractOptions {
            threads,
            ..Default::default()
        };
        let s = extract(&t, &dst, &x, Some(&progress)).unwrap();
        assert_eq!(listing(&dst), want, "threads {threads}");
        // Regular files, the two hard links included; the 20 leaf and 4 upper directories.
        assert_eq!(s.files, n as u64 + 2, "threads {threads}");
        assert_eq!(s.dirs, 24, "threads {threads}");
        assert_eq!(s.entries, s.files + s.dirs + 2, "threads {threads}");
        assert_eq!(bytes_seen.into_inner(), s.bytes, "threads {threads}");
        // A second extract refuses to overwrite, naming the path; --force replaces.
        let err = extract(&t, &dst, &x, None).unwrap_err().to_string();
        assert!(err.contains("already exists (use --force"), "{err}");
        let force = ExtractOptions { force: true, ..x };
        extract(&t, &dst, &force, None).unwrap();
        assert_eq!(listing(&dst), want, "threads {threads}, forced");
    }
}

fn entry(path: &str, kind: EntryKind, data_offset: u64, size: u64) -> TreeEntry {
    TreeEntry {
        path: path.as_bytes().to_vec(),
        kind,
        flags: 0,
        mode: if kind == EntryKind::Dir { 0o755 } else { 0o644 },
        uid: 0,
        gid: 0,
        mtime: 0,
        mtime_nsec: 0,
        size,
        data_offset,
        rdev: 0,
        link: Vec::new(),
        xattrs: Vec::new(),
    }
}

/// Hostile tables behind hundreds of queued files: the workers are busy when the bad entry
/// comes, and the error is the one a sequential extract gives; nothing lands outside.
#[test]
fn parallel_extract_refuses_hostile_tables() {
    let outside = tmp();
    let target = outside.path().to_str().unwrap().to_string();
    let bulk = || -> Vec<TreeEntry> {
        let mut v = vec![entry("", EntryKind::Dir, 0, 0)];
        for i in 0..400 {
            v.push(entry(
                &format!("f{i:03}"),
                EntryKind::File,
                (i % 4) as u64,
                4,
            ));
        }
        v
    };
    let mut through_symlink = bulk();
    through_symlink.push(TreeEntry {
        link: target.as_bytes().to_vec(),
        size: target.len() as u64,
        ..entry("l", EntryKind::Symlink, 0, 0)
    });
    through_symlink.push(entry("l/evil", EntryKind::File, 0, 4));
    let mut under_file = bulk();
    under_file.push(entry("x", EntryKind::File, 0, 4));
    under_file.push(entry("x/y", EntryKind::File, 0, 4));
    let cases = [
        (
            through_symlink,
            "refusing entry 'l/evil': it would be written through the symlink 'l'",
        ),
        (under_file, "refusing entry 'x/y': 'x' is not a directory"),
    ];
    for (entries, want) in cases {
        for threads in [1, 4] {
            let d = tmp();
            let out = d.path().join("bad.hxz");
            pack_entries(
                entries.clone(),
                b"evil1234".to_vec(),
                &out,
                &PackOptions::default(),
            )
            .unwrap();
            let f = File::open(&out).unwrap();
            let t = FileTree::open(&f).unwrap().unwrap();
            let x = ExtractOptions {
                threads,
                ..Default::default()
            };
            let err = extract(&t, &d.path().join("dst"), &x, None)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(want),
                "threads {threads}: want {want:?}, got {err}"
            );
            assert!(!outside.path().join("evil").exists(), "written outside");
            assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        }
    }
}
