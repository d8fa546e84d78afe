//! Wrong, modified, missing, supplied and looping parents.

use super::*;

struct Pair {
    dir: tempfile::TempDir,
    parent: PathBuf,
    child: PathBuf,
    v1: Vec<u8>,
    v2: Vec<u8>,
}

fn pair() -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let v1 = mixed(1 << 20, 31);
    let v2 = next_version(&v1, 32, false);
    let opts = fixed(Codec::Lz4, 4096);
    let parent = dir.path().join("parent.hxz");
    let child = dir.path().join("child.hxz");
    pack_to(&parent, Some(&v1), None, &opts);
    pack_to(&child, Some(&v2), None, &with_base(&opts, &parent));
    Pair {
        dir,
        parent,
        child,
        v1,
        v2,
    }
}

#[test]
fn parent_replaced_by_another_archive_is_refused_naming_the_expected_id() {
    let p = pair();
    let want = hex(&File::open(&p.parent).unwrap().header().archive_id);
    // Another archive, and the very same content packed again (new archive id).
    for other in [mixed(1 << 20, 99), p.v1.clone()] {
        let tmp = p.dir.path().join("other.hxz");
        pack_to(&tmp, Some(&other), None, &fixed(Codec::Lz4, 4096));
        let got = hex(&File::open(&tmp).unwrap().header().archive_id);
        std::fs::rename(&tmp, &p.parent).unwrap();
        let e = err_of(File::open(&p.child));
        assert!(e.contains(&want), "error does not name expected id: {e}");
        assert!(e.contains(&got), "error does not name the found id: {e}");
        assert!(e.contains("is not the parent"), "{e}");
        assert!(e.contains("parent.hxz"), "{e}");
    }
}

#[test]
fn parent_with_modified_index_is_refused() {
    let p = pair();
    let want = hex(&File::open(&p.parent).unwrap().header().archive_id);
    let orig = std::fs::read(&p.parent).unwrap();

    // Same id, index changed in a way that keeps the parent itself valid (a reserved byte
    // of the master index, digest recomputed): the child's digest no longer matches.
    let mut b = orig.clone();
    let (off, _) = master_loc(&b);
    b[off + 6] ^= 1;
    let new_digest = fix_master_digest(&mut b);
    std::fs::write(&p.parent, &b).unwrap();
    File::open(&p.parent).expect("the edited parent is still a valid archive");
    let e = err_of(File::open(&p.child));
    assert!(e.contains("was modified"), "{e}");
    assert!(e.contains(&want), "{e}");
    assert!(e.contains(&hex(&new_digest)), "{e}");

    // Same id, a flipped byte in the master index (digest not fixed): the parent is
    // corrupt, and the error must say it is the parent that is damaged.
    let mut b = orig.clone();
    let (off, len) = master_loc(&b);
    b[off + len / 2] ^= 0x10;
    std::fs::write(&p.parent, &b).unwrap();
    let e = err_of(File::open(&p.child));
    assert!(e.contains("master index"), "{e}");
    assert!(
        e.contains("parent.hxz"),
        "opening the child with a damaged parent gives an error that does not name the \
         parent archive: {e}"
    );

    // Intact again: reads fine.
    std::fs::write(&p.parent, &orig).unwrap();
    check_stream(&File::open(&p.child).unwrap(), DISK, &p.v2, 1, "restored");
}

#[test]
fn parent_with_a_damaged_block_fails_reads_of_that_block_only() {
    let p = pair();
    let f = File::open(&p.child).unwrap();
    let es = entries(&f, DISK);
    let (i, e) = es
        .iter()
        .enumerate()
        .find(|(_, e)| e.source == 1 && e.stored_len > 16)
        .map(|(i, e)| (i, *e))
        .unwrap();
    drop(f);
    let mut b = std::fs::read(&p.parent).unwrap();
    b[e.stored_offset as usize + 3] ^= 0xff;
    std::fs::write(&p.parent, &b).unwrap();
    let f = File::open(&p.child).unwrap();
    let err = err_of(f.read_at(DISK, e.logical_offset, 10));
    assert!(err.contains("CRC32"), "{err}");
    assert!(err.contains(&format!("block {i}")), "{err}");
    // Other blocks still read.
    let other = es
        .iter()
        .find(|x| x.stored_offset != e.stored_offset && !x.is_zero())
        .unwrap();
    let got = f
        .read_at(DISK, other.logical_offset, other.logical_len as usize)
        .unwrap();
    let lo = other.logical_offset as usize;
    assert!(got == p.v2[lo..lo + other.logical_len as usize]);
    let v = err_of(ops::verify(&f, None));
    assert!(v.contains("CRC32"), "{v}");
}

#[test]
fn missing_parent_error_names_the_path() {
    let p = pair();
    let want = hex(&File::open(&p.parent).unwrap().header().archive_id);
    std::fs::remove_file(&p.parent).unwrap();
    let e = err_of(File::open(&p.child));
    assert!(e.contains("parent.hxz"), "{e}");
    assert!(e.contains(&want), "{e}");
    let e = err_of(pack(
        PackInput {
            disk: Some(sized(&p.v2)),
            memory: None,
        },
        &p.dir.path().join("x.hxz"),
        &with_base(&fixed(Codec::Lz4, 4096), &p.child),
        None,
    ));
    assert!(e.contains("parent.hxz"), "{e}");
    assert!(!p.dir.path().join("x.hxz").exists());
}

#[test]
fn moved_parent_can_be_supplied_explicitly() {
    let p = pair();
    let moved_dir = p.dir.path().join("elsewhere");
    std::fs::create_dir(&moved_dir).unwrap();
    let moved = moved_dir.join("renamed.hxz");
    std::fs::rename(&p.parent, &moved).unwrap();
    assert!(File::open(&p.child).is_err());

    let parent = File::open(&moved).unwrap();
    let f = File::open_with(
        &p.child,
        OpenOptions {
            parent: Some(parent.clone()),
            ..OpenOptions::default()
        },
    )
    .unwrap();
    assert_eq!(f.chain_len(), 2);
    assert_eq!(f.parent().unwrap().describe(), parent.describe());
    check_stream(&f, DISK, &p.v2, 1, "supplied parent");
    assert_eq!(ops::verify(&f, None).unwrap().archives, 2);
    // With mmap too.
    let f = File::open_with(
        &p.child,
        OpenOptions {
            parent: Some(File::open(&moved).unwrap()),
            mmap: true,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    check_stream(&f, DISK, &p.v2, 2, "supplied parent, mmap");
    // A flatten through the supplied parent is standalone.
    let flat = p.dir.path().join("flat.hxz");
    ops::flatten(&f, &flat, None, None).unwrap();
    std::fs::remove_file(&moved).unwrap();
    check_stream(&File::open(&flat).unwrap(), DISK, &p.v2, 3, "flat");

    // Supplying the wrong archive is refused with the expected id named.
    let wrong = p.dir.path().join("wrong.hxz");
    pack_to(&wrong, Some(&p.v1), None, &fixed(Codec::Lz4, 4096));
    let e = err_of(File::open_with(
        &p.child,
        OpenOptions {
            parent: Some(File::open(&wrong).unwrap()),
            ..OpenOptions::default()
        },
    ));
    assert!(e.contains("is not the parent"), "{e}");
    // Supplying a parent to a standalone archive is refused.
    let e = err_of(File::open_with(
        &wrong,
        OpenOptions {
            parent: Some(File::open(&flat).unwrap()),
            ..OpenOptions::default()
        },
    ));
    assert!(e.contains("not a thin snapshot"), "{e}");
}

/// The parent is recorded relative to the child's directory, so moving both together keeps
/// the pair readable from anywhere.
#[test]
fn relative_parent_path_survives_moving_both() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let v1 = mixed(1 << 20, 5);
    let v2 = next_version(&v1, 6, false);
    let opts = fixed(Codec::Zstd, 8192);
    pack_to(&a.join("p.hxz"), Some(&v1), None, &opts);
    pack_to(
        &b.join("c.hxz"),
        Some(&v2),
        None,
        &with_base(&opts, &a.join("p.hxz")),
    );
    let f = File::open(b.join("c.hxz")).unwrap();
    assert_eq!(f.master().meta(META_PARENT_PATH).unwrap(), b"../a/p.hxz");
    drop(f);
    let deeper = dir.path().join("deeper");
    std::fs::create_dir_all(&deeper).unwrap();
    std::fs::rename(&a, deeper.join("a")).unwrap();
    std::fs::rename(&b, deeper.join("b")).unwrap();
    let f = File::open(dir.path().join("deeper/b/c.hxz")).unwrap();
    check_stream(&f, DISK, &v2, 1, "moved pair");
}

/// Packing a thin child over its own parent's path would replace the parent by an archive
/// that refers to itself: the packer must refuse, and the parent must survive.
#[test]
fn pack_refuses_output_equal_to_base() {
    let p = pair();
    let before = std::fs::read(&p.parent).unwrap();
    let r = pack(
        PackInput {
            disk: Some(sized(&p.v2)),
            memory: None,
        },
        &p.parent,
        &with_base(&fixed(Codec::Lz4, 4096), &p.parent),
        None,
    );
    let after = std::fs::read(&p.parent).unwrap();
    assert!(
        after == before,
        "pack --base X -o X replaced the parent X (pack returned {:?}); X now fails to open: {:?}",
        r.as_ref().map(|s| s.archive_bytes),
        File::open(&p.parent).err().map(|e| e.to_string())
    );
    assert!(r.is_err());
    // The same through a different spelling of the path.
    let spelled = p.dir.path().join(".").join("parent.hxz");
    let r = pack(
        PackInput {
            disk: Some(sized(&p.v2)),
            memory: None,
        },
        &spelled,
        &with_base(&fixed(Codec::Lz4, 4096), &p.parent),
        None,
    );
    assert!(r.is_err());
    assert!(std::fs::read(&p.parent).unwrap() == before);
}

/// An archive whose header names itself as its parent (and whose recorded parent path is
/// its own file name) must fail to open with a "loops" error, not recurse.
#[test]
fn self_parent_loop_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let opts = fixed(Codec::Lz4, 4096);
    let x = dir.path().join("x.hxz");
    let c = dir.path().join("c.hxz");
    let v1 = mixed(256 << 10, 1);
    pack_to(&x, Some(&v1), None, &opts);
    pack_to(
        &c,
        Some(&next_version(&v1, 2, false)),
        None,
        &with_base(&opts, &x),
    );
    // c records "x.hxz" as its parent path; move it there and make it claim itself.
    std::fs::rename(&c, &x).unwrap();
    let b = std::fs::read(&x).unwrap();
    set_parent(&x, archive_id(&b), master_digest(&b));
    let xx = x.clone();
    let e = within(30, move || {
        File::open(&xx).map(|_| ()).map_err(|e| e.to_string())
    });
    let e = e.expect_err("a self-referencing archive opened");
    assert!(e.contains("loops"), "{e}");
    assert!(e.contains(&hex(&archive_id(&b))), "{e}");
}

/// A is thin over B and B thin over A: both must fail to open with a "loops" error.
#[test]
fn two_archive_parent_cycle_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let opts = fixed(Codec::Zstd, 4096);
    let a = dir.path().join("a.hxz");
    let b = dir.path().join("b.hxz");
    let a2 = dir.path().join("a2.hxz");
    let v0 = mixed(256 << 10, 3);
    let v1 = next_version(&v0, 4, false);
    let v2 = next_version(&v1, 5, false);
    pack_to(&a, Some(&v0), None, &opts); // P at a.hxz
    pack_to(&b, Some(&v1), None, &with_base(&opts, &a)); // B -> "a.hxz" (P)
    pack_to(&a2, Some(&v2), None, &with_base(&opts, &b)); // A' -> "b.hxz" (B)
    std::fs::rename(&a2, &a).unwrap(); // now a.hxz is A', thin over b.hxz
    let ab = std::fs::read(&a).unwrap();
    // B now claims A' (at its recorded path a.hxz) as its parent.
    set_parent(&b, archive_id(&ab), master_digest(&ab));
    for p in [a.clone(), b.clone()] {
        let pp = p.clone();
        let e = within(30, move || {
            File::open(&pp).map(|_| ()).map_err(|e| e.to_string())
        })
        .expect_err("an archive in a cycle opened");
        assert!(e.contains("loops"), "{}: {e}", p.display());
    }
    // Packing over an archive of the cycle fails the same way.
    let bb = b.clone();
    let out = dir.path().join("out.hxz");
    let e = within(30, move || {
        pack(
            PackInput {
                disk: Some(sized(&[1u8; 5000])),
                memory: None,
            },
            &out,
            &with_base(&fixed(Codec::Lz4, 4096), &bb),
            None,
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    })
    .expect_err("packing over a cycle");
    assert!(e.contains("loops"), "{e}");
}

/// Supplying a child as its own parent is a loop too (checked before the id comparison).
#[test]
fn supplied_parent_containing_the_child_is_a_loop() {
    let p = pair();
    let me = File::open(&p.child).unwrap();
    let e = err_of(File::open_with(
        &p.child,
        OpenOptions {
            parent: Some(me),
            ..OpenOptions::default()
        },
    ));
    assert!(e.contains("loops"), "{e}");
}

/// 255 ancestors are allowed, 256 are not: the packer refuses to extend a full chain, and
/// a (forged) archive with 256 ancestors fails to open with an error, without overflowing
/// the stack.
#[test]
fn chain_depth_limit_is_255_ancestors() {
    within(240, chain_depth_limit_body);
}

fn chain_depth_limit_body() {
    let dir = tempfile::tempdir().unwrap();
    let opts = PackOptions {
        threads: 1,
        ..fixed(Codec::Lz4, 4096)
    };
    let name = |k: usize| dir.path().join(format!("a{k:03}.hxz"));
    let mut data = text_like(16 * 1024, 0);
    pack_to(&name(0), Some(&data), None, &opts);
    for k in 1..=255usize {
        let b = (k % 4) * 4096;
        data[b..b + 4096].copy_from_slice(&text_like(4096, k as u64));
        pack_to(&name(k), Some(&data), None, &with_base(&opts, &name(k - 1)));
    }
    let top = name(255);
    let f = File::open(&top).unwrap();
    assert_eq!(f.chain_len(), 256);
    assert_eq!(f.read_at(DISK, 0, 1 << 20).unwrap(), data);
    let sources: HashSet<u16> = entries(&f, DISK).iter().map(|e| e.source).collect();
    assert_eq!(sources, HashSet::from([0, 1, 2, 3]));
    drop(f);
    let e = err_of(pack(
        PackInput {
            disk: Some(sized(&data)),
            memory: None,
        },
        &name(256),
        &with_base(&opts, &top),
        None,
    ));
    assert!(e.contains("255"), "{e}");
    assert!(!name(256).exists());

    // Forge a 257th archive over a255: a copy of a255 with a new id, parent a255, and the
    // recorded parent path "a254.hxz" rewritten to "a255.hxz" (same length).
    let topb = std::fs::read(&top).unwrap();
    let mut b = topb.clone();
    let (off, len) = master_loc(&b);
    let at = b[off..off + len]
        .windows(8)
        .position(|w| w == b"a254.hxz")
        .expect("parent path in master index")
        + off;
    b[at..at + 8].copy_from_slice(b"a255.hxz");
    fix_master_digest(&mut b);
    b[72..88].copy_from_slice(&[0xab; 16]);
    std::fs::write(name(256), &b).unwrap();
    set_parent(&name(256), archive_id(&topb), master_digest(&topb));
    let e = err_of(File::open(name(256)));
    assert!(e.contains("255"), "{e}");
}
