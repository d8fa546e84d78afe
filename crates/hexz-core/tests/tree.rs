//! Tree archives (format 1.2 file table): pack a directory, look up, list, read, extract;
//! hostile tables refused on extract; lookup cost bounded by pages, counted in bytes read.

use hexz_core::api::tree::EntryKind;
use hexz_core::api::FileTree;
use hexz_core::format::tree::{TreeEntry, ENTRY_FLAG_HARDLINK};
use hexz_core::ops::tree::{extract, pack_entries, pack_tree, ExtractOptions, TreePackOptions};
use hexz_core::ops::PackOptions;
use hexz_core::store::local::FileBackend;
use hexz_core::store::StorageBackend;
use hexz_core::{File, OpenOptions};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A temp dir on the real disk (not tmpfs), removed on drop.
fn tmp() -> tempfile::TempDir {
    let base = std::env::var_os("HEXZ_TEST_TMP").unwrap_or_else(|| "/var/tmp".into());
    tempfile::Builder::new()
        .prefix("hexz-tree-")
        .tempdir_in(base)
        .expect("temp dir")
}

/// Everything `diff -r` does not check, plus contents: type, mode, size, mtime (ns), link
/// target, xattrs and a content hash per path, relative to `root`.
fn listing(root: &Path) -> BTreeMap<Vec<u8>, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = root.join(&rel);
        let m = std::fs::symlink_metadata(&abs).unwrap();
        let ft = m.file_type();
        let mut line = format!(
            "mode={:o} uid={} gid={} mtime={}.{:09}",
            m.mode(),
            m.uid(),
            m.gid(),
            m.mtime(),
            m.mtime_nsec()
        );
        if ft.is_file() {
            let data = std::fs::read(&abs).unwrap();
            line += &format!(" size={} hash={}", data.len(), blake3::hash(&data).to_hex());
        } else if ft.is_symlink() {
            line += &format!(" -> {:?}", std::fs::read_link(&abs).unwrap());
        } else if ft.is_dir() {
            for d in std::fs::read_dir(&abs).unwrap() {
                stack.push(rel.join(d.unwrap().file_name()));
            }
        } else {
            line += &format!(" rdev={}", m.rdev());
        }
        if let Ok(x) = xattr_list(&abs) {
            line += &format!(" xattrs={x:?}");
        }
        out.insert(rel.as_os_str().as_bytes().to_vec(), line);
    }
    out
}

fn xattr_list(p: &Path) -> std::io::Result<Vec<String>> {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid path and buffer.
    let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut v: Vec<String> = buf[..n as usize]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    v.sort();
    Ok(v)
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

/// A small tree with every kind of entry and awkward names.
fn make_tree(root: &Path) {
    let w = |p: &str, d: &[u8]| {
        let p = root.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, d).unwrap();
    };
    w("a/small.txt", b"hello world\n");
    w("a/same.txt", b"hello world\n");
    w("a/empty", b"");
    w("a b/with space", b"spaces");
    w("ünïcødé/файл", "utf-8 ✓".as_bytes());
    w("weird/new\nline", b"newline in name");
    let long = "d".repeat(200);
    w(&format!("{long}/{long}/{}", "f".repeat(250)), b"long path");
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    w("big/one.bin", &big);
    w("big/two.bin", &big);
    std::fs::create_dir_all(root.join("empty/dir")).unwrap();
    std::fs::hard_link(root.join("a/small.txt"), root.join("z-hardlink")).unwrap();
    std::os::unix::fs::symlink("a/small.txt", root.join("link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", root.join("a/dangling")).unwrap();
    let fifo = std::ffi::CString::new(root.join("a/fifo").as_os_str().as_bytes()).unwrap();
    // SAFETY: valid path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o640) }, 0);
    std::fs::set_permissions(
        root.join("a/small.txt"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    std::fs::set_permissions(root.join("a b"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let c = std::ffi::CString::new(root.join("a/empty").as_os_str().as_bytes()).unwrap();
    // SAFETY: valid path, name and value.
    let r = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            c"user.hexz".as_ptr(),
            b"v\0x".as_ptr().cast(),
            3,
            0,
        )
    };
    assert_eq!(r, 0, "xattrs unsupported on the test disk");
    set_mtime(&root.join("a/small.txt"), 1_600_000_000, 123_456_789);
    set_mtime(&root.join("link"), 1_500_000_000, 5);
    set_mtime(&root.join("empty/dir"), -100, 999_999_999);
}

fn zstd_opts() -> PackOptions {
    PackOptions {
        codec: hexz_core::format::Codec::Zstd,
        ..PackOptions::default()
    }
}

#[test]
fn directory_round_trip_keeps_everything() {
    let d = tmp();
    let src = d.path().join("src");
    make_tree(&src);
    let out = d.path().join("t.hxz");
    let stats = pack_tree(&src, &out, &zstd_opts(), &TreePackOptions::default(), None).unwrap();
    assert!(stats.warnings.is_empty(), "{:?}", stats.warnings);
    assert_eq!(stats.hardlinks, 1);
    // a/same.txt repeats a/small.txt, big/two.bin (larger than a block) big/one.bin.
    assert_eq!(stats.dedup_files, 2);
    assert_eq!(stats.table.symlinks, 2);
    assert_eq!(stats.table.specials, 1);
    // big/two.bin is not in the data stream again, not even its last partial block.
    let disk = stats.pack.disk.as_ref().unwrap();
    assert!(disk.input_bytes < 2 * 300_000, "{disk:?}");

    let f = File::open(&out).unwrap();
    assert_eq!(f.header().minor, 2);
    let t = FileTree::open(&f).unwrap().expect("file table");
    let e = t.lookup("a/small.txt").unwrap().unwrap();
    assert_eq!((e.kind, e.mode, e.size), (EntryKind::File, 0o4755, 12));
    assert_eq!((e.mtime, e.mtime_nsec), (1_600_000_000, 123_456_789));
    assert_eq!(t.read_file(&e, 6, 100).unwrap(), b"world\n");
    assert_eq!(t.read_file(&e, 12, 1).unwrap(), b"");
    // "z-hardlink" (a child of the root) comes first in table order and holds the data;
    // "a/small.txt" is the link to it.
    assert!(!t.lookup("/z-hardlink").unwrap().unwrap().is_hardlink());
    let h = t.lookup("a/small.txt").unwrap().unwrap();
    assert!(h.is_hardlink());
    assert_eq!(h.link, b"z-hardlink");
    assert_eq!(t.read_file(&h, 0, 100).unwrap(), b"hello world\n");
    assert!(t.lookup("a/nope").unwrap().is_none());
    assert!(t.lookup("a/small.txt/x").unwrap().is_none());
    let names: Vec<Vec<u8>> = t
        .read_dir("a")
        .unwrap()
        .into_iter()
        .map(|e| e.name().to_vec())
        .collect();
    assert_eq!(
        names,
        [
            &b"dangling"[..],
            b"empty",
            b"fifo",
            b"same.txt",
            b"small.txt"
        ]
    );
    let err = t.read_dir("a/small.txt").unwrap_err().to_string();
    assert!(
        err.contains("not a directory in the archive: 'a/small.txt'"),
        "{err}"
    );
    let big = t.lookup("big/two.bin").unwrap().unwrap();
    let one = t.lookup("big/one.bin").unwrap().unwrap();
    assert_eq!((big.data_offset, big.size), (one.data_offset, one.size));
    let want: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(t.read_file(&big, 0, 1 << 20).unwrap(), want);
    assert_eq!(t.read_file(&big, 299_990, 100).unwrap(), &want[299_990..]);

    let dst = d.path().join("dst");
    let x = extract(&t, &dst, &ExtractOptions::default(), None).unwrap();
    assert!(x.warnings.is_empty(), "{:?}", x.warnings);
    assert_eq!(listing(&src), listing(&dst));
    assert_eq!(
        std::fs::metadata(dst.join("z-hardlink")).unwrap().ino(),
        std::fs::metadata(dst.join("a/small.txt")).unwrap().ino()
    );
    // A second extract refuses to overwrite, names the file; --force replaces.
    let err = extract(&t, &dst, &ExtractOptions::default(), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("already exists (use --force"), "{err}");
    let force = ExtractOptions {
        force: true,
        ..Default::default()
    };
    extract(&t, &dst, &force, None).unwrap();
    assert_eq!(listing(&src), listing(&dst));

    // Subtrees only.
    let sub = d.path().join("sub");
    let opts = ExtractOptions {
        paths: vec![b"a".to_vec(), b"big/one.bin".to_vec()],
        ..Default::default()
    };
    extract(&t, &sub, &opts, None).unwrap();
    assert_eq!(std::fs::read(sub.join("big/one.bin")).unwrap(), want);
    assert!(!sub.join("big/two.bin").exists());
    // The link's target is not extracted: the content is written instead.
    assert_eq!(
        std::fs::read(sub.join("a/small.txt")).unwrap(),
        b"hello world\n"
    );
    assert!(!sub.join("z-hardlink").exists());
    assert!(sub.join("a/fifo").exists() && !sub.join("weird").exists());
}

#[cfg(feature = "encryption")]
#[test]
fn exclude_and_encrypted_tree() {
    let d = tmp();
    let src = d.path().join("src");
    make_tree(&src);
    let out = d.path().join("t.hxz");
    let opts = PackOptions {
        encryption: Some(hexz_core::ops::pack::EncryptOptions {
            password: hexz_core::algo::encryption::Password::new("pw"),
            kdf: hexz_core::algo::encryption::Kdf::Pbkdf2 {
                iterations: 600_000,
            },
        }),
        ..PackOptions::default()
    };
    let tree = TreePackOptions {
        exclude: vec!["big".into(), "a/*.txt".into()],
        strict: false,
        ..TreePackOptions::default()
    };
    pack_tree(&src, &out, &opts, &tree, None).unwrap();
    // Names are not in the clear.
    let raw = std::fs::read(&out).unwrap();
    assert!(!raw.windows(8).any(|w| w == b"with spa"));
    let f = File::open_with(
        &out,
        OpenOptions {
            password: Some(hexz_core::algo::encryption::Password::new("pw")),
            ..Default::default()
        },
    )
    .unwrap();
    let t = FileTree::open(&f).unwrap().unwrap();
    assert!(t.lookup("big").unwrap().is_none());
    assert!(t.lookup("a/small.txt").unwrap().is_none());
    let e = t.lookup("a b/with space").unwrap().unwrap();
    assert_eq!(t.read_file(&e, 0, 100).unwrap(), b"spaces");
}

fn file_entry(path: &str, data_offset: u64, size: u64) -> TreeEntry {
    TreeEntry {
        path: path.as_bytes().to_vec(),
        kind: EntryKind::File,
        flags: 0,
        mode: 0o644,
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

fn dir_entry(path: &str) -> TreeEntry {
    TreeEntry {
        kind: EntryKind::Dir,
        mode: 0o755,
        ..file_entry(path, 0, 0)
    }
}

/// Packs hand-made entries (unchecked) and tries to extract them.
fn extract_crafted(entries: Vec<TreeEntry>) -> (tempfile::TempDir, String) {
    let d = tmp();
    let out = d.path().join("bad.hxz");
    pack_entries(entries, b"evil".to_vec(), &out, &PackOptions::default()).unwrap();
    let f = File::open(&out).unwrap();
    let err = FileTree::open(&f)
        .and_then(|t| {
            let t = t.unwrap();
            extract(&t, &d.path().join("dst"), &ExtractOptions::default(), None)
        })
        .unwrap_err()
        .to_string();
    (d, err)
}

#[test]
fn hostile_tables_are_refused_on_extract() {
    let cases: Vec<(Vec<TreeEntry>, &str)> = vec![
        (
            vec![dir_entry(""), file_entry("../escape", 0, 4)],
            "entry '../escape': path has a '.' or '..' component",
        ),
        (
            vec![dir_entry(""), file_entry("/etc/evil", 0, 4)],
            "entry '/etc/evil': absolute path",
        ),
        (
            vec![dir_entry(""), file_entry("a", 0, 4), file_entry("a", 0, 4)],
            "'a' is a duplicate or out of order",
        ),
        (
            vec![
                dir_entry(""),
                TreeEntry {
                    kind: EntryKind::Symlink,
                    link: b"/tmp".to_vec(),
                    size: 4,
                    ..file_entry("l", 0, 0)
                },
                file_entry("l/evil", 0, 4),
            ],
            "refusing entry 'l/evil': it would be written through the symlink 'l'",
        ),
        (
            vec![
                dir_entry(""),
                file_entry("a", 0, 4),
                TreeEntry {
                    flags: ENTRY_FLAG_HARDLINK,
                    link: b"../../etc/passwd".to_vec(),
                    ..file_entry("b", 0, 4)
                },
            ],
            "entry 'b': path has a '.' or '..' component",
        ),
        (
            vec![dir_entry(""), file_entry("a", 2, 1 << 40)],
            "data at offset 2 length 1099511627776 lies outside the data stream",
        ),
    ];
    for (entries, want) in cases {
        let (d, err) = extract_crafted(entries);
        assert!(err.contains(want), "want {want:?}, got {err}");
        // Nothing was written outside the destination.
        assert!(!d.path().join("escape").exists());
        assert!(!Path::new("/tmp/evil").exists());
    }
}

/// Counts the bytes read through a backend.
struct Counting {
    inner: FileBackend,
    bytes: AtomicU64,
}

impl StorageBackend for Counting {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> hexz_core::Result<()> {
        self.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.inner.read_exact_at(offset, buf)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// `n` entries in 1000-entry directories, each file 1 byte of a shared data stream.
fn synthetic(n: usize, out: &Path) {
    let mut entries = vec![dir_entry("")];
    let dirs = n.div_ceil(1000);
    for d in 0..dirs {
        entries.push(dir_entry(&format!("dir{d:05}")));
    }
    for d in 0..dirs {
        for i in 0..1000.min(n - d * 1000) {
            entries.push(file_entry(
                &format!("dir{d:05}/file-with-a-longish-name-{i:06}.dat"),
                (i % 200) as u64,
                1,
            ));
        }
    }
    entries.sort_by(|a, b| hexz_core::format::tree::key_cmp(&a.path, &b.path));
    let data: Vec<u8> = (0..200u8).collect();
    pack_entries(entries, data, out, &zstd_opts()).unwrap();
}

fn lookup_cost(n: usize) {
    let d = tmp();
    let out = d.path().join("big.hxz");
    synthetic(n, &out);
    let backend = Arc::new(Counting {
        inner: FileBackend::new(&out).unwrap(),
        bytes: AtomicU64::new(0),
    });
    let f = File::open_backend(backend.clone(), None, OpenOptions::default()).unwrap();
    let t = FileTree::open(&f).unwrap().unwrap();
    let table_bytes: u64 = f.header().master_offset; // upper bound on table + data
    let depth = t.header().depth as u64;
    assert!(depth >= 2, "{n} entries should need an interior level");
    assert_eq!(t.header().entries as usize, n + n.div_ceil(1000) + 1);
    let mut worst = 0;
    for k in [0usize, n / 3, n / 2, n - 1] {
        let (dd, i) = (k / 1000, k % 1000);
        let p = format!("dir{dd:05}/file-with-a-longish-name-{i:06}.dat");
        // A fresh reader each time: no page is cached.
        let t = FileTree::open(&f).unwrap().unwrap();
        let before = backend.bytes.load(Ordering::Relaxed);
        let e = t.lookup(&p).unwrap().unwrap();
        let read = backend.bytes.load(Ordering::Relaxed) - before;
        assert_eq!(e.path, p.as_bytes());
        worst = worst.max(read);
        // One page per level, each at most 64 KiB of plain entries (compressed here).
        assert!(
            read <= depth * 64 * 1024,
            "{p}: {read} bytes for depth {depth}"
        );
        assert!(t.lookup(format!("{p}x")).unwrap().is_none());
    }
    assert!(
        worst * 20 < table_bytes,
        "lookup read {worst} of ~{table_bytes} bytes"
    );
    // Listing one directory reads its pages only.
    let t = FileTree::open(&f).unwrap().unwrap();
    let before = backend.bytes.load(Ordering::Relaxed);
    assert_eq!(t.read_dir("dir00001").unwrap().len(), 1000.min(n - 1000));
    let read = backend.bytes.load(Ordering::Relaxed) - before;
    assert!(read * 10 < table_bytes, "listing read {read} bytes");
    eprintln!("{n} entries: depth {depth}, lookup reads <= {worst} bytes, listing {read}");
}

#[test]
fn lookup_reads_few_pages_200k() {
    lookup_cost(200_000);
}

/// A million entries (HEXZ_TREE_1M=1; a few minutes in debug builds).
#[test]
fn lookup_reads_few_pages_1m() {
    if std::env::var_os("HEXZ_TREE_1M").is_none() {
        eprintln!("skipped: set HEXZ_TREE_1M=1");
        return;
    }
    lookup_cost(1_000_000);
}

#[test]
fn not_a_directory_and_vanishing_input() {
    let d = tmp();
    std::fs::write(d.path().join("f"), b"x").unwrap();
    let err = pack_tree(
        &d.path().join("f"),
        &d.path().join("o.hxz"),
        &PackOptions::default(),
        &TreePackOptions::default(),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("is not a directory"), "{err}");
    // The output may not be inside the input.
    let err = pack_tree(
        d.path(),
        &d.path().join("o.hxz"),
        &PackOptions::default(),
        &TreePackOptions::default(),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("inside the directory being packed"), "{err}");
    assert!(!d.path().join("o.hxz").exists());
    let _ = OsStr::new("");
}

/// Large files (a block or more) are deduplicated whole, and only when their bytes are
/// equal: a file of the same size with one byte changed is stored again.
#[test]
fn large_files_deduplicated_only_when_equal() {
    let d = tmp();
    let src = d.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let x: Vec<u8> = (0..200_000u32).map(|i| (i * 13 % 241) as u8).collect();
    let mut z = x.clone();
    z[150_000] ^= 1;
    std::fs::write(src.join("x.bin"), &x).unwrap();
    std::fs::write(src.join("y.bin"), &x).unwrap();
    std::fs::write(src.join("z.bin"), &z).unwrap();
    std::fs::write(src.join("zz.bin"), &x[..199_999]).unwrap();
    let out = d.path().join("t.hxz");
    let stats = pack_tree(&src, &out, &zstd_opts(), &TreePackOptions::default(), None).unwrap();
    assert_eq!(stats.dedup_files, 1, "only y.bin repeats x.bin");
    let f = File::open(&out).unwrap();
    let t = FileTree::open(&f).unwrap().expect("file table");
    let get = |p: &str| t.lookup(p).unwrap().expect(p);
    assert_eq!(get("y.bin").data_offset, get("x.bin").data_offset);
    assert_ne!(get("z.bin").data_offset, get("x.bin").data_offset);
    for (p, want) in [
        ("x.bin", &x[..]),
        ("y.bin", &x),
        ("z.bin", &z),
        ("zz.bin", &x[..199_999]),
    ] {
        assert_eq!(t.read_file(&get(p), 0, 1 << 20).unwrap(), want, "{p}");
    }
}
