//! Data blocks.

use super::*;

#[test]
fn flipped_data_block_names_block_and_stream() {
    let fx = fixture();
    let f = File::open(&fx.path).unwrap();
    let targets = [
        (
            SnapshotStream::Disk,
            unique_block(&f, SnapshotStream::Disk, 0, Codec::None),
        ),
        (
            SnapshotStream::Disk,
            unique_block(&f, SnapshotStream::Disk, 0, Codec::Lz4),
        ),
        (
            SnapshotStream::Disk,
            unique_block(&f, SnapshotStream::Disk, 1030, Codec::Lz4),
        ),
        (
            SnapshotStream::Memory,
            unique_block_any(&f, SnapshotStream::Memory, 1, None),
        ),
    ];
    assert!(targets[2].1 .0 >= 1024, "a block of the second page");
    for (s, (blk, e)) in targets {
        let mut a = fx.bytes.clone();
        a[(e.stored_offset + e.stored_len as u64 / 2) as usize] ^= 0x01;
        let p = fx.write("blk.hxz", &a);
        for (mode, o) in [
            ("default", OpenOptions::default()),
            (
                "mmap",
                OpenOptions {
                    mmap: true,
                    ..OpenOptions::default()
                },
            ),
            (
                "no cache, no hashes",
                OpenOptions {
                    cache_bytes: 0,
                    verify_hashes: false,
                    ..OpenOptions::default()
                },
            ),
        ] {
            let f = File::open_with(&p, o).unwrap();
            let lo = e.logical_offset;
            let ll = e.logical_len as usize;
            let ctx = format!("{mode}: {s} block {blk}");
            // The whole block, part of it, and a multi-block range around it.
            for (off, len) in [
                (lo, ll),
                (lo + 100, 50),
                (lo.saturating_sub(3 * BS as u64), 7 * BS),
            ] {
                let err = err_of(f.read_at(s, off, len), &ctx);
                assert_corrupt_block(&err, s, blk, lo, "CRC32 mismatch");
                let mut buf = vec![0u8; len];
                let err = err_of(f.read_at_into(s, off, &mut buf), &ctx);
                assert_corrupt_block(&err, s, blk, lo, "CRC32 mismatch");
            }
            // Through the Read adapter the error keeps its message.
            let mut r = f.reader(s).unwrap();
            let mut all = Vec::new();
            let ioe = std::io::Read::read_to_end(&mut r, &mut all).unwrap_err();
            assert!(
                ioe.to_string()
                    .contains(&format!("block {blk} of {s} stream")),
                "{ctx}: {ioe}"
            );
            // Everything else reads correctly.
            let after = lo + ll as u64;
            let n = (f.size(s) - after).min(5 * BS as u64) as usize;
            assert!(f.read_at(s, after, n).unwrap() == expected(fx.data(s), after, n));
            if lo > 0 {
                assert!(f.read_at(s, 0, lo as usize).unwrap() == fx.data(s)[..lo as usize]);
            }
            let err = err_of(ops::verify(&f, None), &ctx);
            assert_corrupt_block(&err, s, blk, lo, "CRC32 mismatch");
        }
    }
}

/// Format 1.0 (plain CRC): a wrong reference passes the CRC and only the BLAKE3 catches it.
/// (Format 1.1's bound CRC catches it too: tests/bound_crc.rs.)
#[test]
fn block_replaced_by_another_valid_block_is_caught_by_blake3() {
    let fx = fixture_with(false);
    let d = SnapshotStream::Disk;
    let f = File::open(&fx.path).unwrap();
    let (bi, ei) = unique_block(&f, d, 0, Codec::None);
    let (bj, ej) = unique_block(&f, d, bi as usize + 1, Codec::None);
    assert_ne!(bi, bj);
    assert_eq!(ei.logical_len, ej.logical_len);
    // Entry i now points at block j's stored bytes, with j's (valid) CRC: only the content
    // hash still says it is the wrong block.
    let a = edit_entry(&fx, d, bi as usize, |e| {
        e[12..16].copy_from_slice(&ej.stored_len.to_le_bytes());
        e[16..24].copy_from_slice(&ej.stored_offset.to_le_bytes());
        e[24..28].copy_from_slice(&ej.crc32.to_le_bytes());
        e[28] = ej.codec as u8;
    });
    let f = open_mem(a.clone()).unwrap();
    let e = err_of(f.read_at(d, ei.logical_offset, BS), "swapped block");
    assert_corrupt_block(&e, d, bi, ei.logical_offset, "BLAKE3");
    let e = err_of(
        f.read_at(d, ei.logical_offset + 10, 10),
        "swapped block, partial",
    );
    assert_corrupt_block(&e, d, bi, ei.logical_offset, "BLAKE3");
    let e = err_of(ops::verify(&f, None), "verify swapped block");
    assert_corrupt_block(&e, d, bi, ei.logical_offset, "BLAKE3");
    // With hash checks off the CRC passes and block j's content comes back: the BLAKE3 check
    // is what catches this.
    let g = File::open_backend(
        Arc::new(MemBackend(a)),
        None,
        OpenOptions {
            verify_hashes: false,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    let jl = ej.logical_offset as usize;
    assert!(g.read_at(d, ei.logical_offset, BS).unwrap() == fx.disk[jl..jl + BS]);
}

#[test]
fn zeroed_sector_gives_errors_or_correct_bytes() {
    let fx = fixture();
    let mut a = fx.bytes.clone();
    let mid = a.len() / 3;
    a[mid..mid + 4096].fill(0);
    let f = open_mem(a).unwrap();
    let (mut bad, mut good) = (0, 0);
    for b in 0..DISK_BLOCKS {
        let off = (b * BS) as u64;
        match f.read_at(SnapshotStream::Disk, off, BS) {
            Ok(v) => {
                assert!(
                    v == fx.disk[off as usize..off as usize + BS],
                    "block {b}: wrong bytes"
                );
                good += 1;
            }
            Err(Error::CorruptBlock { block, .. }) => {
                assert_eq!(block, b as u64);
                bad += 1;
            }
            Err(e) => panic!("block {b}: {e}"),
        }
    }
    assert!(bad > 0 && good > 0, "bad {bad} good {good}");
}
