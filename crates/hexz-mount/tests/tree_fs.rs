//! The tree mount's filesystem object without FUSE: directory listings are kept by inode
//! until read to the end, `readdirplus` items carry the same attributes a `lookup` gives
//! and are counted as kernel lookups (so `forget` balances them), and every open file handle reads the right bytes with its own reader, interleaved
//! with other handles, until it is released.

use hexz_core::api::tree::EntryKind;
use hexz_core::api::FileTree;
use hexz_core::ops::tree::{pack_tree, TreePackOptions};
use hexz_core::ops::PackOptions;
use hexz_core::File;
use hexz_mount::tree::{TreeFs, ROOT_INO};
use std::path::Path;

fn noise(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A small tree: files of several sizes, a subdirectory, a symlink, an empty file.
fn build(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("big.bin"), noise(1, 700_000)).unwrap();
    std::fs::write(src.join("other.bin"), noise(2, 300_000)).unwrap();
    std::fs::write(src.join("small.txt"), b"hello\n").unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    std::fs::write(src.join("sub/inner.txt"), b"inner file\n").unwrap();
    std::os::unix::fs::symlink("small.txt", src.join("link")).unwrap();
    let arc = dir.join("t.hxz");
    let opts = PackOptions {
        block_size: 64 << 10,
        ..PackOptions::default()
    };
    pack_tree(&src, &arc, &opts, &TreePackOptions::default(), None).unwrap();
    src
}

fn tree_fs(dir: &Path) -> TreeFs {
    let file = File::open(dir.join("t.hxz")).unwrap();
    let tree = FileTree::open(&file).unwrap().expect("a tree archive");
    TreeFs::new(tree).unwrap()
}

#[test]
fn readdirplus_items_match_lookups_and_are_counted_as_lookups() {
    let d = tempfile::tempdir().unwrap();
    let src = build(d.path());
    let fs = tree_fs(d.path());
    assert_eq!(fs.live_inodes(), 1);

    let items = fs.listing(ROOT_INO).unwrap();
    // Kept by inode until read to the end: the next call serves the same listing.
    assert!(std::sync::Arc::ptr_eq(
        &items,
        &fs.listing(ROOT_INO).unwrap()
    ));
    assert_eq!(fs.kept_listings(), 1);
    let names: Vec<&[u8]> = items.iter().map(|i| i.name.as_slice()).collect();
    assert_eq!(
        names,
        [
            &b"."[..],
            b"..",
            b"big.bin",
            b"empty",
            b"link",
            b"other.bin",
            b"small.txt",
            b"sub"
        ]
    );

    // `.` and `..` are not held; every other item is, with the attributes of a lookup.
    let mut held = Vec::new();
    for it in items.iter() {
        match fs.lookup_item(it).unwrap() {
            None => assert!(it.name == b"." || it.name == b"..", "{:?}", it.name),
            Some(s) => {
                let l = fs.lookup(ROOT_INO, &it.name).unwrap();
                assert_eq!(s.ino, l.ino);
                assert_eq!(s.ino, it.ino);
                assert_eq!(s.nlink, l.nlink);
                assert_eq!(*s.entry, *l.entry);
                let name = String::from_utf8(it.name.clone()).unwrap();
                let m = std::fs::symlink_metadata(src.join(&name)).unwrap();
                use std::os::unix::fs::MetadataExt;
                assert_eq!(s.entry.mode & 0o7777, m.mode() & 0o7777, "{name}");
                assert_eq!(s.mtime(), m.modified().unwrap(), "{name}");
                if s.entry.kind != EntryKind::Dir {
                    assert_eq!(s.entry.size, m.size(), "{name}");
                }
                held.push(s.ino);
            }
        }
    }
    assert_eq!(held.len(), 6);
    assert_eq!(fs.live_inodes(), 1 + held.len());
    // Each inode is held twice now (the item and the lookup): one forget of 2 frees it.
    fs.forget(held[0], 1);
    assert_eq!(fs.live_inodes(), 1 + held.len());
    fs.forget(held[0], 1);
    assert_eq!(fs.live_inodes(), held.len());
    for ino in &held[1..] {
        fs.forget(*ino, 2);
    }
    assert_eq!(fs.live_inodes(), 1);
    fs.listing_done(ROOT_INO);
    assert_eq!(fs.kept_listings(), 0);
    // Listed again on demand, the same; a file has no listing.
    assert_eq!(*fs.listing(ROOT_INO).unwrap(), *items);
    let small = fs.lookup(ROOT_INO, b"small.txt").unwrap();
    assert_eq!(fs.listing(small.ino).unwrap_err(), libc::ENOTDIR);
    let sub = fs.lookup(ROOT_INO, b"sub").unwrap();
    let names: Vec<Vec<u8>> = fs
        .listing(sub.ino)
        .unwrap()
        .iter()
        .map(|i| i.name.clone())
        .collect();
    assert_eq!(names, [&b"."[..], b"..", b"inner.txt"]);
}

#[test]
fn each_handle_reads_its_file_interleaved_with_others() {
    let d = tempfile::tempdir().unwrap();
    let src = build(d.path());
    let fs = tree_fs(d.path());
    let big = fs.lookup(ROOT_INO, b"big.bin").unwrap();
    let other = fs.lookup(ROOT_INO, b"other.bin").unwrap();
    let empty = fs.lookup(ROOT_INO, b"empty").unwrap();
    let want_big = std::fs::read(src.join("big.bin")).unwrap();
    let want_other = std::fs::read(src.join("other.bin")).unwrap();

    // Two handles of one file and one of another, read sequentially in turns.
    let h1 = fs.open(big.ino, false).unwrap();
    let h2 = fs.open(big.ino, false).unwrap();
    let h3 = fs.open(other.ino, false).unwrap();
    assert_eq!(fs.open_files(), 3);
    let (mut g1, mut g2, mut g3) = (Vec::new(), Vec::new(), Vec::new());
    let mut buf = vec![0u8; 40_000];
    loop {
        let n1 = fs.read(big.ino, h1, g1.len() as u64, &mut buf).unwrap();
        g1.extend_from_slice(&buf[..n1]);
        let n2 = fs.read(big.ino, h2, g2.len() as u64, &mut buf).unwrap();
        g2.extend_from_slice(&buf[..n2]);
        let n3 = fs.read(other.ino, h3, g3.len() as u64, &mut buf).unwrap();
        g3.extend_from_slice(&buf[..n3]);
        if n1 + n2 + n3 == 0 {
            break;
        }
    }
    assert!(g1 == want_big && g2 == want_big, "big.bin differs");
    assert!(g3 == want_other, "other.bin differs");
    // A read past the end returns nothing; a read ending past it is cut at the end.
    assert_eq!(fs.read(big.ino, h1, 700_000, &mut buf).unwrap(), 0);
    assert_eq!(fs.read(big.ino, h1, 699_990, &mut buf).unwrap(), 10);
    assert_eq!(buf[..10], want_big[699_990..]);

    // An empty file opens and reads nothing; a directory cannot be opened; writing is
    // refused.
    let he = fs.open(empty.ino, false).unwrap();
    assert_eq!(fs.read(empty.ino, he, 0, &mut buf).unwrap(), 0);
    let sub = fs.lookup(ROOT_INO, b"sub").unwrap();
    assert_eq!(fs.open(sub.ino, false).unwrap_err(), libc::EISDIR);
    assert_eq!(fs.open(big.ino, true).unwrap_err(), libc::EROFS);

    for h in [h1, h2, h3, he] {
        fs.release(h);
    }
    assert_eq!(fs.open_files(), 0);
    // Without an open handle the inode's entry is read all the same.
    assert_eq!(fs.read(big.ino, h1, 0, &mut buf[..6]).unwrap(), 6);
    assert_eq!(buf[..6], want_big[..6]);
}
