//! Index pages and master index.

use super::*;

#[test]
fn flipped_index_page_is_reported_for_reads_it_covers() {
    let fx = fixture();
    let f0 = File::open(&fx.path).unwrap();
    let pages = f0.master().streams[0].pages.clone();
    assert_eq!(pages.len(), 2);
    for (page_no, r) in pages.iter().enumerate() {
        for k in [0usize, 4, 8, 20, 16 + 64 * 5 + 33, r.len as usize - 1] {
            let mut a = fx.bytes.clone();
            a[r.offset as usize + k] ^= 0x04;
            let p = fx.write("page.hxz", &a);
            let f = File::open(&p).expect("pages are checked when used, not at open");
            let inside = r.first_logical + 5 * BS as u64 + 17;
            let e = err_of(
                f.read_at(SnapshotStream::Disk, inside, 100),
                "read in flipped page",
            );
            let want = format!("index page {page_no} of disk stream");
            match &e {
                Error::CorruptStructure { structure, .. } => {
                    assert!(structure.contains(&want), "page {page_no} byte {k}: {e}")
                }
                other => panic!("page {page_no} byte {k}: {other:?}"),
            }
            assert!(e.to_string().contains("index page"), "{e}");
            // The other page still serves correct bytes.
            let other = &pages[1 - page_no];
            let off = other.first_logical + 3 * BS as u64 + 1;
            assert!(
                f.read_at(SnapshotStream::Disk, off, 2 * BS).unwrap()
                    == expected(&fx.disk, off, 2 * BS)
            );
            // And the memory stream is unaffected.
            assert!(read_all(&f, SnapshotStream::Memory).unwrap() == fx.memory);
            let e = err_of(ops::verify(&f, None), "verify with a flipped page");
            assert!(e.to_string().contains(&want), "{e}");
        }
    }
}

#[test]
fn flipped_master_index_fails_open() {
    let fx = fixture();
    let (mo, ml) = master_range(&fx.bytes);
    for k in [
        0,
        3,
        4,
        8,
        16,
        17,
        16 + 48 + 5,
        ml / 2,
        ml - 33,
        ml - 32,
        ml - 1,
    ] {
        let mut a = fx.bytes.clone();
        a[mo + k] ^= 0x20;
        let p = fx.write("master.hxz", &a);
        let e = err_of(File::open(&p), &format!("master byte {k}"));
        match &e {
            Error::CorruptStructure { structure, .. } => {
                assert!(structure.starts_with("master index"), "byte {k}: {e}")
            }
            other => panic!("master byte {k}: {other:?}"),
        }
    }
}

#[test]
fn resealed_but_invalid_entries_are_refused() {
    let fx = fixture();
    let d = SnapshotStream::Disk;
    let f = File::open(&fx.path).unwrap();
    let (blk, ent) = unique_block(&f, d, 0, Codec::None);
    let len = fx.bytes.len() as u64;
    type Edit = Box<dyn Fn(&mut [u8])>;
    let struct_cases: Vec<(&str, usize, Edit, &str)> = vec![
        (
            "logical offset",
            blk as usize,
            Box::new(|e| e[0] ^= 1),
            "breaks the sequence",
        ),
        (
            "logical length of last entry",
            1023,
            Box::new(|e| e[8..12].copy_from_slice(&4000u32.to_le_bytes())),
            "blocks end at logical offset",
        ),
        (
            "logical length 0",
            blk as usize,
            Box::new(|e| e[8..12].copy_from_slice(&0u32.to_le_bytes())),
            "logical length 0",
        ),
        (
            "logical length huge",
            blk as usize,
            Box::new(|e| e[8..12].copy_from_slice(&u32::MAX.to_le_bytes())),
            "out of range",
        ),
        (
            "codec id",
            blk as usize,
            Box::new(|e| e[28] = 9),
            "unknown codec id 9",
        ),
        (
            "flags",
            blk as usize,
            Box::new(|e| e[29] = 0x80),
            "unknown flags",
        ),
        (
            "zero flag on a stored block",
            blk as usize,
            Box::new(|e| e[29] = 1),
            "zero block with stored bytes",
        ),
        (
            "stored length 0",
            blk as usize,
            Box::new(|e| e[12..16].copy_from_slice(&0u32.to_le_bytes())),
            "stored length 0",
        ),
        (
            "stored length u32::MAX",
            blk as usize,
            Box::new(|e| e[12..16].copy_from_slice(&u32::MAX.to_le_bytes())),
            "stored length",
        ),
        (
            "source archive",
            blk as usize,
            Box::new(|e| e[30] = 3),
            "ancestor",
        ),
    ];
    for (what, block, edit, want) in struct_cases {
        let a = edit_entry(&fx, d, block, edit);
        let f = open_mem(a).unwrap();
        let page_no = block / 1024;
        let (r, big) = max_alloc(|| f.read_at(d, (block * BS) as u64, 10));
        let e = err_of(r, what);
        assert!(big < 1 << 20, "{what}: allocated {big} bytes");
        let msg = e.to_string();
        assert!(msg.contains(want), "{what}: {msg}");
        assert!(
            msg.contains(&format!("index page {page_no} of disk stream"))
                || matches!(e, Error::CorruptBlock { block: b, .. } if b == block as u64),
            "{what}: {msg}"
        );
    }
    let block_cases: Vec<(&str, Edit, &str)> = vec![
        (
            "stored offset past the end",
            Box::new(move |e| e[16..24].copy_from_slice(&len.to_le_bytes())),
            "outside",
        ),
        (
            "stored offset near u64::MAX",
            Box::new(|e| e[16..24].copy_from_slice(&(u64::MAX - 10).to_le_bytes())),
            "outside",
        ),
        (
            "stored offset inside the header",
            Box::new(|e| e[16..24].copy_from_slice(&0u64.to_le_bytes())),
            "outside",
        ),
        ("crc32", Box::new(|e| e[24] ^= 0xff), "CRC32 mismatch"),
        // Format 1.1: the hash is inside the bound CRC, so a changed hash fails the CRC
        // (a 1.0 archive catches it with BLAKE3: tests/bound_crc.rs).
        (
            "content hash",
            Box::new(|e| e[40] ^= 0xff),
            "bound CRC32 mismatch",
        ),
        (
            "codec none -> lz4",
            Box::new(|e| e[28] = Codec::Lz4 as u8),
            "",
        ),
    ];
    for (what, edit, want) in block_cases {
        let a = edit_entry(&fx, d, blk as usize, edit);
        let f = open_mem(a).unwrap();
        let e = err_of(f.read_at(d, ent.logical_offset, BS), what);
        assert_corrupt_block(&e, d, blk, ent.logical_offset, want);
        // Neighbours still read correctly.
        let next = ent.logical_offset + BS as u64;
        assert!(f.read_at(d, next, BS).unwrap() == expected(&fx.disk, next, BS));
        let e = err_of(ops::verify(&f, None), what);
        assert_corrupt_block(&e, d, blk, ent.logical_offset, want);
    }
}

#[test]
fn page_of_the_wrong_stream_is_refused() {
    let fx = fixture();
    let f = File::open(&fx.path).unwrap();
    let r = f.master().streams[0].pages[0];
    let mut a = fx.bytes.clone();
    a[r.offset as usize + 4] = 1; // claims to belong to the memory stream
    reseal_page(&mut a, 0, 0);
    let f = open_mem(a).unwrap();
    let e = err_of(f.read_at(SnapshotStream::Disk, 0, 1), "stream id");
    assert!(
        e.to_string().contains("index page 0 of disk stream")
            && e.to_string().contains("stream id 1"),
        "{e}"
    );
}

#[test]
fn huge_counts_and_lengths_fail_without_huge_allocations() {
    // The watch itself works.
    let (v, big) = max_alloc(|| vec![1u8; 3 << 20]);
    assert!(big >= 3 << 20 && v.len() == 3 << 20);
    let fx = fixture();
    // master_len = u32::MAX with a valid header CRC.
    let mut a = fx.bytes.clone();
    a[64..68].copy_from_slice(&u32::MAX.to_le_bytes());
    fix_header_crc(&mut a);
    let p = fx.write("biglen.hxz", &a);
    let (r, big) = max_alloc(|| File::open(&p));
    let e = err_of(r, "master_len u32::MAX");
    assert!(e.to_string().contains("header"), "{e}");
    assert!(big < 1 << 20, "allocated {big} bytes");

    // A master length above the limit inside a (sparse) file big enough to hold it.
    let mut a = fx.bytes.clone();
    a[56..64].copy_from_slice(&512u64.to_le_bytes());
    a[64..68].copy_from_slice(&(MAX_MASTER_LEN + 1).to_le_bytes());
    fix_header_crc(&mut a);
    let p = fx.write("sparse.hxz", &a);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(MAX_MASTER_LEN as u64 + (1 << 20))
        .unwrap();
    let (r, big) = max_alloc(|| File::open(&p));
    let e = err_of(r, "master_len above the limit");
    assert!(e.to_string().contains("exceeds"), "{e}");
    assert!(big < 1 << 20, "allocated {big} bytes");

    // Index page entry count 0xFFFFFFFF (page re-sealed so the count itself is checked).
    let f = File::open(&fx.path).unwrap();
    let r0 = f.master().streams[0].pages[0];
    let mut a = fx.bytes.clone();
    a[r0.offset as usize + 8..r0.offset as usize + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    reseal_page(&mut a, 0, 0);
    let f = open_mem(a).unwrap();
    let (r, big) = max_alloc(|| f.read_at(SnapshotStream::Disk, 0, 10));
    let e = err_of(r, "page entry count");
    assert!(
        e.to_string().contains("index page 0 of disk stream")
            && e.to_string().contains("4294967295"),
        "{e}"
    );
    assert!(big < 1 << 20, "allocated {big} bytes");

    // The master's own fields, with its digest re-computed.
    let (mo, _) = master_range(&fx.bytes);
    let rec0 = mo + MASTER_HEADER_SIZE;
    let pref = page_ref_offset(&fx.bytes, 0, 0);
    let cases: Vec<(&str, usize, Vec<u8>)> = vec![
        ("stream count", mo + 4, 0xffffu16.to_le_bytes().to_vec()),
        ("metadata length", mo + 8, u32::MAX.to_le_bytes().to_vec()),
        ("page count", rec0 + 4, u32::MAX.to_le_bytes().to_vec()),
        ("block count", rec0 + 8, u64::MAX.to_le_bytes().to_vec()),
        (
            "page entry count",
            pref + 20,
            u32::MAX.to_le_bytes().to_vec(),
        ),
        ("page length", pref + 16, u32::MAX.to_le_bytes().to_vec()),
        (
            "page offset",
            pref + 8,
            (u64::MAX - 100).to_le_bytes().to_vec(),
        ),
        ("stream id", rec0, vec![7]),
        ("second stream id", rec0 + STREAM_RECORD_SIZE, vec![0]),
        ("logical size", rec0 + 32, 1u64.to_le_bytes().to_vec()),
    ];
    for (what, at, val) in cases {
        let mut a = fx.bytes.clone();
        a[at..at + val.len()].copy_from_slice(&val);
        fix_master_digest(&mut a);
        let (r, big) = max_alloc(|| open_mem(a));
        let e = err_of(r, what);
        assert!(e.to_string().contains("master index"), "{what}: {e}");
        assert!(big < 1 << 20, "{what}: allocated {big} bytes");
    }
}
