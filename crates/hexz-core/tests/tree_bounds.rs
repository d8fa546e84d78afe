//! The two memory bounds of tree archives, each checked so that removing it fails a test:
//! the file table page cache (bytes of decoded pages, `PAGE_CACHE_BYTES`) and the packer's
//! small-file dedup table (`TreePackOptions::max_dedup_files`).

use hexz_core::api::tree::PAGE_CACHE_BYTES;
use hexz_core::api::FileTree;
use hexz_core::format::tree::TreeEntry;
use hexz_core::format::Codec;
use hexz_core::ops::tree::{pack_entries, pack_tree, TreePackOptions, MAX_DEDUP_FILES};
use hexz_core::ops::PackOptions;
use hexz_core::File;

fn tmp() -> tempfile::TempDir {
    let base = std::env::var_os("HEXZ_TEST_TMP").unwrap_or_else(|| "/var/tmp".into());
    tempfile::Builder::new()
        .prefix("hexz-tree-bounds-")
        .tempdir_in(base)
        .expect("temp dir")
}

fn zstd_opts() -> PackOptions {
    PackOptions {
        codec: Codec::Zstd,
        ..PackOptions::default()
    }
}

/// Reading a file table whose plain pages total well over the bound (about 2.5x) keeps the
/// cache at or under `PAGE_CACHE_BYTES` after every read, while still caching.
#[test]
fn page_cache_stays_within_its_byte_bound() {
    let d = tmp();
    let out = d.path().join("big-table.hxz");
    // 120,000 entries of 64 + ~150 bytes: about 25 MB of plain pages, ~400 pages of 64 KiB.
    let n = 120_000usize;
    let pad = "p".repeat(140);
    let name = |i: usize| format!("d/{i:07}-{pad}").into_bytes();
    let mut entries = vec![TreeEntry::dir(Vec::new()), TreeEntry::dir(b"d".to_vec())];
    for i in 0..n {
        let mut e = TreeEntry::dir(name(i));
        e.kind = hexz_core::api::tree::EntryKind::File;
        e.mode = 0o644;
        entries.push(e);
    }
    let plain: usize = entries.iter().map(|e| e.encoded_len()).sum();
    assert!(
        plain > 2 * PAGE_CACHE_BYTES,
        "table of {plain} bytes is too small"
    );
    pack_entries(entries, b"x".to_vec(), &out, &zstd_opts()).unwrap();

    let f = File::open(&out).unwrap();
    let t = FileTree::open(&f).unwrap().expect("file table");
    assert_eq!(t.page_cache_bytes(), 0);
    let mut seen = 0usize;
    let mut most = 0usize;
    for e in t.iter().unwrap() {
        e.unwrap();
        seen += 1;
        if seen % 500 == 0 {
            most = most.max(t.page_cache_bytes());
        }
    }
    assert_eq!(seen, n + 2);
    assert!(
        most <= PAGE_CACHE_BYTES,
        "page cache held {most} bytes, over its {PAGE_CACHE_BYTES}-byte bound"
    );
    // Lookups spread over the whole table (each loads a different leaf).
    for i in (0..n).step_by(997) {
        let e = t.lookup(name(i)).unwrap().expect("entry");
        assert_eq!(e.path, name(i));
        most = most.max(t.page_cache_bytes());
    }
    assert!(
        most <= PAGE_CACHE_BYTES,
        "page cache held {most} bytes, over its {PAGE_CACHE_BYTES}-byte bound"
    );
    // And it does cache: it filled to within a page or two of the bound.
    assert!(
        most > PAGE_CACHE_BYTES - 256 * 1024,
        "cache held only {most} bytes"
    );
}

/// With a dedup cap of 3, only the first three distinct small files are remembered: later
/// copies of those are deduplicated, copies of the rest are stored again, and every file
/// still reads back its own bytes.
#[test]
fn dedup_cap_stops_remembering_but_stores_everything() {
    let d = tmp();
    let src = d.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let content = |i: usize| format!("distinct small file number {i}\n").repeat(10 + i);
    // Table order is by name: a0..a4 first, then their copies b0..b4.
    for i in 0..5 {
        std::fs::write(src.join(format!("a{i}")), content(i)).unwrap();
        std::fs::write(src.join(format!("b{i}")), content(i)).unwrap();
    }
    assert_eq!(TreePackOptions::default().max_dedup_files, MAX_DEDUP_FILES);
    let capped = TreePackOptions {
        max_dedup_files: 3,
        ..TreePackOptions::default()
    };
    let out = d.path().join("capped.hxz");
    let stats = pack_tree(&src, &out, &zstd_opts(), &capped, None).unwrap();
    assert_eq!(stats.dedup_files, 3, "only a0..a2 were remembered");

    let f = File::open(&out).unwrap();
    let t = FileTree::open(&f).unwrap().expect("file table");
    let offset = |p: &str| t.lookup(p).unwrap().expect(p).data_offset;
    for i in 0..5 {
        let (a, b) = (format!("a{i}"), format!("b{i}"));
        if i < 3 {
            assert_eq!(offset(&a), offset(&b), "{b} shares {a}'s bytes");
        } else {
            assert_ne!(offset(&a), offset(&b), "{b} is stored again past the cap");
        }
        for p in [a, b] {
            let e = t.lookup(&p).unwrap().unwrap();
            assert_eq!(t.read_file(&e, 0, 1 << 20).unwrap(), content(i).as_bytes());
        }
    }

    // The default cap remembers all five.
    let out2 = d.path().join("default.hxz");
    let stats2 = pack_tree(&src, &out2, &zstd_opts(), &TreePackOptions::default(), None).unwrap();
    assert_eq!(stats2.dedup_files, 5);
    assert_eq!(stats2.table.file_bytes, stats.table.file_bytes);
    // The capped data stream holds b3 and b4 again.
    let stream =
        |s: &hexz_core::ops::tree::TreePackStats| s.pack.disk.as_ref().unwrap().input_bytes;
    let again = (content(3).len() + content(4).len()) as u64;
    assert_eq!(stream(&stats), stream(&stats2) + again);
}
