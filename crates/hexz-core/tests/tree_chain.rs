//! Tree archives across versions and damage: a thin tree child after edits, adds and deletes
//! stores only the changed blocks; flatten keeps the file table (plain and encrypted); verify
//! walks the file table; every flipped byte of the table is an error, never a panic.

#[cfg(feature = "encryption")]
use hexz_core::algo::encryption::{Kdf, Password};
use hexz_core::api::FileTree;
use hexz_core::format::section::SECTION_FILE_TABLE;
#[cfg(feature = "encryption")]
use hexz_core::ops::pack::EncryptOptions;
use hexz_core::ops::tree::{pack_tree, TreePackOptions};
use hexz_core::ops::{flatten, verify, PackOptions};
use hexz_core::{File, OpenOptions};
use std::path::Path;

fn tmp() -> tempfile::TempDir {
    let base = std::env::var_os("HEXZ_TEST_TMP").unwrap_or_else(|| "/var/tmp".into());
    tempfile::Builder::new()
        .prefix("hexz-tree-chain-")
        .tempdir_in(base)
        .expect("temp dir")
}

/// Incompressible bytes, different for every seed.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

const BIG: usize = 256 << 10; // four 64 KiB blocks

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// 20 big files of distinct noise and three small files.
fn base_tree(root: &Path) {
    for i in 0..20 {
        write(root, &format!("big/f{i:02}"), &noise(i, BIG));
    }
    for (n, d) in [
        ("a.txt", "alpha\n"),
        ("b.txt", "beta\n"),
        ("c.txt", "gamma\n"),
    ] {
        write(root, &format!("small/{n}"), d.as_bytes());
    }
}

/// Every regular file under `root` read back through the tree, byte for byte; returns the
/// number of files compared.
fn same_files(t: &FileTree, root: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_owned();
            let want = std::fs::read(&p).unwrap();
            let e = t
                .lookup(&rel)
                .unwrap()
                .unwrap_or_else(|| panic!("{rel} missing"));
            assert_eq!(e.size, want.len() as u64, "{rel}");
            assert!(
                t.read_file(&e, 0, want.len()).unwrap() == want,
                "{rel} differs"
            );
            n += 1;
        }
    }
    n
}

#[test]
fn thin_child_flatten_and_verify() {
    let d = tmp();
    let src = d.path().join("src");
    base_tree(&src);
    let base = d.path().join("base.hxz");
    let t = TreePackOptions::default();
    pack_tree(&src, &base, &PackOptions::default(), &t, None).unwrap();

    // Edit one block of f05, delete f10, add a big and a small file.
    let mut f05 = std::fs::read(src.join("big/f05")).unwrap();
    f05[100_000..100_010].copy_from_slice(b"0123456789");
    std::fs::write(src.join("big/f05"), &f05).unwrap();
    std::fs::remove_file(src.join("big/f10")).unwrap();
    write(&src, "big/new", &noise(99, BIG));
    write(&src, "small/added.txt", b"delta\n");

    let child = d.path().join("child.hxz");
    let opts = PackOptions {
        base: Some(base.clone()),
        ..PackOptions::default()
    };
    let st = pack_tree(&src, &child, &opts, &t, None).unwrap();
    let disk = st.pack.disk.unwrap();
    // 20 big files of 4 blocks, then one block of small files (the big files end on a
    // block boundary). The parent supplies the 19 surviving files' blocks but f05's edited
    // block; the edited block, the new file and the small-file block are new.
    assert_eq!(disk.blocks, 81);
    assert_eq!(disk.parent_blocks, 75);
    assert_eq!(disk.dedup_blocks, 0);
    assert_eq!(disk.zero_blocks, 0);
    assert_eq!(
        (st.table.files, st.table.dirs, st.table.entries),
        (24, 3, 27)
    );

    let f = File::open(&child).unwrap();
    assert!(f.parent().is_some());
    let tree = FileTree::open(&f).unwrap().unwrap();
    assert_eq!(same_files(&tree, &src), 24);
    assert!(tree.lookup("big/f10").unwrap().is_none());
    let rep = verify(&f, None).unwrap();
    assert_eq!((rep.archives, rep.tree_entries), (2, 27));

    // Flatten: standalone, same table, same bytes.
    let flat = d.path().join("flat.hxz");
    flatten(&f, &flat, None, None).unwrap();
    let ff = File::open(&flat).unwrap();
    assert!(ff.parent().is_none());
    let ft = FileTree::open(&ff)
        .unwrap()
        .expect("flatten keeps the file table");
    // One leaf page: rebuilt at a new offset, its plain bytes (and digest) are unchanged.
    assert_eq!(ft.header().depth, 1);
    assert_eq!(ft.header().root.hash, tree.header().root.hash);
    assert_eq!(ft.header().entries, 27);
    assert_eq!(same_files(&ft, &src), 24);
    let a: Vec<_> = tree.iter().unwrap().map(|e| e.unwrap()).collect();
    let b: Vec<_> = ft.iter().unwrap().map(|e| e.unwrap()).collect();
    assert_eq!(a, b);
    assert_eq!(verify(&ff, None).unwrap().tree_entries, 27);
}

#[cfg(feature = "encryption")]
fn pbkdf2(pw: &str, iterations: u32) -> EncryptOptions {
    EncryptOptions {
        password: Password::new(pw),
        kdf: Kdf::Pbkdf2 { iterations },
    }
}

#[cfg(feature = "encryption")]
#[test]
fn encrypted_tree_flattens_under_new_keys() {
    let d = tmp();
    let src = d.path().join("src");
    base_tree(&src);
    write(&src, "names/secret-name.txt", b"x");
    let enc = d.path().join("enc.hxz");
    // The packer's own error is reported, not the walker's "the packer stopped reading".
    let weak = PackOptions {
        encryption: Some(pbkdf2("pw1", 1000)),
        ..PackOptions::default()
    };
    let err = pack_tree(&src, &enc, &weak, &TreePackOptions::default(), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid argument: PBKDF2 needs at least 600000 iterations (got 1000)"
    );
    assert!(!enc.exists());
    let opts = PackOptions {
        encryption: Some(pbkdf2("pw1", 600_000)),
        ..PackOptions::default()
    };
    pack_tree(&src, &enc, &opts, &TreePackOptions::default(), None).unwrap();
    let open = |p: &Path, pw: &str| {
        File::open_with(
            p,
            OpenOptions {
                password: Some(Password::new(pw)),
                ..Default::default()
            },
        )
        .unwrap()
    };
    let f = open(&enc, "pw1");
    let flat = d.path().join("flat.hxz");
    flatten(&f, &flat, Some(pbkdf2("pw2", 600_000)), None).unwrap();
    let raw = std::fs::read(&flat).unwrap();
    assert!(!raw.windows(11).any(|w| w == b"secret-name"));
    let ff = open(&flat, "pw2");
    let t = FileTree::open(&ff).unwrap().unwrap();
    assert_eq!(same_files(&t, &src), 24);
    assert_eq!(verify(&ff, None).unwrap().tree_entries, 28);
}

/// Flips every byte of the table's stored objects (its one page and its header) in turn.
/// Uncompressed, stored bytes are the digested plain bytes, so every flip must be an error
/// naming the file table. Compressed (LZ4), a flip may decode to the same plain bytes (a
/// match offset pointing at equal bytes): then the entries must be exactly the original
/// ones; otherwise it is an error. Never a panic, never different entries.
fn flip_sweep(codec: hexz_core::format::Codec) -> (usize, usize) {
    let d = tmp();
    let src = d.path().join("src");
    for i in 0..40 {
        write(
            &src,
            &format!("d{}/file-{i}", i % 4),
            format!("{i}").as_bytes(),
        );
    }
    let good = d.path().join("t.hxz");
    let opts = PackOptions {
        codec,
        ..PackOptions::default()
    };
    pack_tree(&src, &good, &opts, &TreePackOptions::default(), None).unwrap();
    let f = File::open(&good).unwrap();
    let sec = *f.master().section(SECTION_FILE_TABLE).unwrap();
    let t = FileTree::open(&f).unwrap().unwrap();
    let root = t.header().root;
    assert_eq!(root.codec, codec);
    assert_eq!(t.header().depth, 1, "a small table is one leaf page");
    let want: Vec<_> = t.iter().unwrap().map(|e| e.unwrap()).collect();
    assert_eq!(want.len(), 45);
    let (r0, r1) = (root.offset, root.offset + root.stored_len as u64);
    let (h0, h1) = (sec.offset, sec.offset + sec.len);
    drop((t, f));
    let bytes = std::fs::read(&good).unwrap();
    let bad = d.path().join("bad.hxz");
    let (mut errors, mut same) = (0, 0);
    for at in (r0..r1).chain(h0..h1) {
        let mut b = bytes.clone();
        b[at as usize] ^= 0x40;
        std::fs::write(&bad, &b).unwrap();
        // The master index is intact, so the archive opens; the table may not.
        let f = File::open(&bad).unwrap();
        let got = FileTree::open(&f).and_then(|t| {
            let t = t.expect("section still listed");
            t.iter()?.collect::<hexz_core::Result<Vec<_>>>()
        });
        match got {
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("file table"), "flip at {at}: {msg}");
                assert!(verify(&f, None).is_err(), "flip at {at}: verify passed");
                errors += 1;
            }
            Ok(entries) => {
                assert!(entries == want, "flip at {at} changed the entries");
                same += 1;
            }
        }
    }
    assert_eq!(errors + same, (r1 - r0 + h1 - h0) as usize);
    (errors, same)
}

#[test]
fn every_flipped_table_byte_is_an_error() {
    let (errors, same) = flip_sweep(hexz_core::format::Codec::None);
    assert_eq!(same, 0, "{errors} errors");
}

#[test]
fn flipped_compressed_table_bytes_never_change_entries() {
    let (errors, same) = flip_sweep(hexz_core::format::Codec::Lz4);
    // Nearly every flip is caught; the rest decode to the very same page.
    assert!(errors > 10 * same, "{errors} errors, {same} unchanged");
}

/// A root page whose second child reference points back at the root itself, with every
/// digest above it (file table header, section record, master index) recomputed so only the
/// cycle is wrong. A cursor must fail on it, not descend forever through its page cache.
#[test]
fn a_page_naming_itself_as_child_is_refused() {
    let d = tmp();
    let src = d.path().join("src");
    let name = "n".repeat(60);
    for i in 0..1500 {
        let p = src.join(format!("{name}{i:05}"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"").unwrap();
    }
    let good = d.path().join("t.hxz");
    let opts = PackOptions {
        codec: hexz_core::format::Codec::None,
        ..PackOptions::default()
    };
    pack_tree(&src, &good, &opts, &TreePackOptions::default(), None).unwrap();
    let f = File::open(&good).unwrap();
    let sec = *f.master().section(SECTION_FILE_TABLE).unwrap();
    let t = FileTree::open(&f).unwrap().unwrap();
    let root = t.header().root;
    assert_eq!(t.header().depth, 2, "several leaves under one root");
    assert_eq!(t.iter().unwrap().count(), 1501);
    drop((t, f));

    let mut a = std::fs::read(&good).unwrap();
    let r = root.offset as usize;
    let len = root.stored_len as usize;
    // Root page: 16-byte header, then children of 64 bytes + key; point child 1 at the root.
    let klen0 = u16::from_le_bytes([a[r + 16], a[r + 17]]) as usize;
    let c1 = r + 16 + 64 + klen0;
    a[c1 + 4..c1 + 8].copy_from_slice(&(len as u32).to_le_bytes());
    a[c1 + 8..c1 + 16].copy_from_slice(&root.offset.to_le_bytes());
    a[c1 + 16..c1 + 20].copy_from_slice(&(len as u32).to_le_bytes());
    let rh = *blake3::hash(&a[r..r + len]).as_bytes();
    let h = sec.offset as usize;
    a[h + 72..h + 104].copy_from_slice(&rh);
    let hh = *blake3::hash(&a[h..h + 128]).as_bytes();
    let mo = u64::from_le_bytes(a[56..64].try_into().unwrap()) as usize;
    let ml = u32::from_le_bytes(a[64..68].try_into().unwrap()) as usize;
    // The one section record is the last 64 bytes before the digest; its hash at +32.
    let s = mo + ml - 32 - 64;
    assert_eq!(&a[s + 8..s + 16], &sec.offset.to_le_bytes());
    a[s + 32..s + 64].copy_from_slice(&hh);
    let md = *blake3::hash(&a[mo..mo + ml - 32]).as_bytes();
    a[mo + ml - 32..mo + ml].copy_from_slice(&md);
    let bad = d.path().join("bad.hxz");
    std::fs::write(&bad, &a).unwrap();

    let f = File::open(&bad).unwrap();
    let t = FileTree::open(&f).unwrap().unwrap();
    let err = t
        .iter()
        .unwrap()
        .find_map(|e| e.err())
        .expect("the cycle is an error");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("file table page at offset {}", root.offset)),
        "{msg}"
    );
    // A lookup that descends through the bad reference fails the same way (before the
    // fix, the page cache handed back the root as its own child and the descent never
    // ended).
    let err = t.lookup(format!("{name}00700")).unwrap_err().to_string();
    assert!(
        err.contains(&format!("file table page at offset {}", root.offset)),
        "{err}"
    );
    assert!(verify(&f, None).is_err());
}

/// Sections without the header flag that makes 1.0 readers refuse the archive are corrupt.
#[test]
fn sections_without_the_header_flag_are_refused() {
    let d = tmp();
    let src = d.path().join("src");
    write(&src, "f", b"x");
    let good = d.path().join("t.hxz");
    let t = TreePackOptions::default();
    pack_tree(&src, &good, &PackOptions::default(), &t, None).unwrap();
    let mut a = std::fs::read(&good).unwrap();
    let flags = u32::from_le_bytes(a[12..16].try_into().unwrap());
    assert_eq!(flags & (1 << 4), 1 << 4, "SECTIONS is set");
    assert_eq!(u16::from_le_bytes([a[10], a[11]]), 2, "minor 2");
    a[12..16].copy_from_slice(&(flags & !(1 << 4)).to_le_bytes());
    let crc = crc32fast::hash(&a[..508]);
    a[508..512].copy_from_slice(&crc.to_le_bytes());
    let bad = d.path().join("bad.hxz");
    std::fs::write(&bad, &a).unwrap();
    let err = File::open(&bad).unwrap_err().to_string();
    assert!(
        err.contains("1 section records but the header lacks flag SECTIONS"),
        "{err}"
    );
}
