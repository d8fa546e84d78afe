//! Diff.

use super::*;

fn push_range(v: &mut Vec<(u64, u64)>, off: u64, len: u64) {
    if len == 0 {
        return;
    }
    if let Some(last) = v.last_mut() {
        if last.0 + last.1 == off {
            last.1 += len;
            return;
        }
    }
    v.push((off, len));
}

/// Block-granular differing ranges for two fixed-block layouts of block size `bs`.
fn block_ranges(a: &[u8], b: &[u8], bs: usize) -> Vec<(u64, u64)> {
    let common = a.len().min(b.len());
    let mut v = Vec::new();
    let mut at = 0;
    while at < common {
        let end = (at + bs).min(common);
        let (ea, eb) = ((at + bs).min(a.len()), (at + bs).min(b.len()));
        if a[at..ea] != b[at..eb] {
            push_range(&mut v, at as u64, (end - at) as u64);
        }
        at += bs;
    }
    push_range(
        &mut v,
        common as u64,
        (a.len().max(b.len()) - common) as u64,
    );
    v
}

/// Byte-granular differing ranges.
fn byte_ranges(a: &[u8], b: &[u8]) -> Vec<(u64, u64)> {
    let common = a.len().min(b.len());
    let mut v = Vec::new();
    for i in 0..common {
        if a[i] != b[i] {
            push_range(&mut v, i as u64, 1);
        }
    }
    push_range(
        &mut v,
        common as u64,
        (a.len().max(b.len()) - common) as u64,
    );
    v
}

/// Logical bytes of `x`'s non-zero blocks whose content is not a block of `y`.
fn unique_bytes(x: &[u8], y: &[u8], bs: usize) -> u64 {
    let hy: HashSet<[u8; 32]> = y
        .chunks(bs)
        .filter(|c| c.iter().any(|&b| b != 0))
        .map(|c| *blake3::hash(c).as_bytes())
        .collect();
    x.chunks(bs)
        .filter(|c| c.iter().any(|&b| b != 0) && !hy.contains(blake3::hash(c).as_bytes()))
        .map(|c| c.len() as u64)
        .sum()
}

#[test]
fn diff_of_identical_archives_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let d = mixed(3 << 20, 11);
    let m = mixed(1 << 20, 12);
    for opts in [
        fixed(Codec::Lz4, 65536),
        cdc(Codec::Zstd, 4096, 16384, 65536),
    ] {
        let (a, b) = (dir.path().join("a.hxz"), dir.path().join("b.hxz"));
        pack_to(&a, Some(&d), Some(&m), &opts);
        pack_to(&b, Some(&d), Some(&m), &opts);
        let (fa, fb) = (File::open(&a).unwrap(), File::open(&b).unwrap());
        assert_ne!(fa.header().archive_id, fb.header().archive_id);
        let r = ops::diff(&fa, &fb).unwrap();
        assert!(r.identical());
        assert_eq!(r.streams.len(), 2);
        assert!(r.streams.iter().all(|s| s.ranges.is_empty()));
        assert_eq!((r.unique_a, r.unique_b, r.decoded_bytes), (0, 0, 0));
        // A thin child with the same content against its parent: identical too.
        let c = dir.path().join("c.hxz");
        pack_to(&c, Some(&d), Some(&m), &with_base(&opts, &a));
        let r = ops::diff(&fa, &File::open(&c).unwrap()).unwrap();
        assert!(r.identical());
        assert_eq!((r.unique_a, r.unique_b, r.decoded_bytes), (0, 0, 0));
    }
}

#[test]
fn diff_reports_exactly_the_modified_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let bs = 64 * 1024;
    let a = text_like(4 << 20, 21);
    let mut b = a.clone();
    b[100_000..100_010].copy_from_slice(b"0123456789"); // block 1
    Rng::new(1).fill(&mut b[300_000..400_000]); // blocks 4..=6
    b[1_048_576..1_179_648].fill(0); // blocks 16, 17 become zero blocks
    b[2_000_000..2_010_000].fill(0); // block 30 partly zeroed
    let b2 = b[3_000_000..3_000_000 + bs].to_vec();
    b[40 * bs..41 * bs].copy_from_slice(&b2); // block 40 = misaligned copy: new content
    let blk = a[50 * bs..51 * bs].to_vec();
    b[60 * bs..61 * bs].copy_from_slice(&blk); // block 60 = block 50: differs, not unique
    b.extend_from_slice(&text_like(10_000, 22)); // appended

    let expect = block_ranges(&a, &b, bs);
    assert_eq!(
        expect,
        vec![
            (65536, 65536),
            (4 * 65536, 3 * 65536),
            (16 * 65536, 2 * 65536),
            (30 * 65536, 65536),
            (40 * 65536, 65536),
            (60 * 65536, 65536),
            (4 << 20, 10_000),
        ]
    );
    let opts = fixed(Codec::Zstd, bs as u32);
    let pa = dir.path().join("a.hxz");
    let pb = dir.path().join("b.hxz");
    let pc = dir.path().join("b-thin.hxz");
    pack_to(&pa, Some(&a), None, &opts);
    pack_to(&pb, Some(&b), None, &opts);
    pack_to(
        &pc,
        Some(&b),
        None,
        &with_base(&fixed(Codec::Lz4, bs as u32), &pa),
    );
    let fa = File::open(&pa).unwrap();
    for p in [&pb, &pc] {
        let fb = File::open(p).unwrap();
        let r = ops::diff(&fa, &fb).unwrap();
        assert!(!r.identical());
        assert_eq!(r.streams.len(), 1);
        let s = &r.streams[0];
        assert_eq!((s.size_a, s.size_b), (a.len() as u64, b.len() as u64));
        assert_eq!(s.ranges, expect, "{}", p.display());
        assert_eq!(s.differing_bytes(), expect.iter().map(|r| r.1).sum::<u64>());
        assert_eq!(r.decoded_bytes, 0, "aligned blocks need no decoding");
        assert_eq!(r.unique_a, unique_bytes(&a, &b, bs));
        assert_eq!(r.unique_b, unique_bytes(&b, &a, bs));
        // 1, 4, 5, 6, 30, 40 and the appended block are new in b; 60 is a copy of 50;
        // 16 and 17 are zero.
        assert_eq!(r.unique_b, 6 * bs as u64 + 10_000);
        // In a, blocks 1, 4-6, 16, 17, 30 no longer occur in b (block 40's old content
        // neither, block 60's old content neither).
        assert_eq!(r.unique_a, 9 * bs as u64);
        // And the other way round.
        let r2 = ops::diff(&fb, &fa).unwrap();
        assert_eq!(r2.streams[0].ranges, expect);
        assert_eq!((r2.unique_a, r2.unique_b), (r.unique_b, r.unique_a));
    }
}

/// Fixed 64 KiB blocks against content-defined chunks of the same bytes: no block lines up,
/// so the bytes are decoded and compared, and the result is byte-exact.
#[test]
fn diff_between_fixed_and_cdc_archives_compares_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let a = text_like(3 << 20, 41);
    let pf = dir.path().join("fixed.hxz");
    let pc = dir.path().join("cdc.hxz");
    pack_to(&pf, Some(&a), None, &fixed(Codec::Lz4, 65536));
    let c = CdcParams::default();
    pack_to(&pc, Some(&a), None, &cdc(Codec::Zstd, c.min, c.avg, c.max));
    let (ff, fc) = (File::open(&pf).unwrap(), File::open(&pc).unwrap());
    let r = ops::diff(&ff, &fc).unwrap();
    assert!(r.identical(), "{:?}", r.streams[0].ranges);
    assert!(r.decoded_bytes > 0);
    assert!(r.decoded_bytes <= 2 * a.len() as u64);
    assert_eq!(
        r.unique_a,
        a.len() as u64,
        "no 64 KiB block equals a CDC chunk"
    );

    // A few edits: the ranges are the exact differing bytes.
    let mut b = a.clone();
    b[12_345] ^= 1;
    b[700_000..700_003].copy_from_slice(b"xyz");
    b[700_001] = a[700_001]; // equal byte in the middle splits the range
    b[2_000_000..2_100_000].fill(b'#');
    let pb = dir.path().join("cdc-b.hxz");
    pack_to(&pb, Some(&b), None, &cdc(Codec::Zstd, c.min, c.avg, c.max));
    let fb = File::open(&pb).unwrap();
    let expect = byte_ranges(&a, &b);
    let r = ops::diff(&ff, &fb).unwrap();
    assert_eq!(r.streams[0].ranges, expect);
    let r = ops::diff(&fb, &ff).unwrap();
    assert_eq!(r.streams[0].ranges, expect);

    // Through a thin CDC child of the CDC archive of `a`.
    let pt = dir.path().join("cdc-thin.hxz");
    let st = pack_to(
        &pt,
        Some(&b),
        None,
        &with_base(&cdc(Codec::Lz4, c.min, c.avg, c.max), &pc),
    );
    assert!(st.disk.unwrap().parent_blocks > 0);
    let r = ops::diff(&ff, &File::open(&pt).unwrap()).unwrap();
    assert_eq!(r.streams[0].ranges, expect);
}

#[test]
fn diff_with_a_stream_on_one_side_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = mixed(1 << 20, 51);
    let m = mixed(300_000, 52);
    let (pa, pb) = (dir.path().join("a.hxz"), dir.path().join("b.hxz"));
    pack_to(&pa, Some(&d), Some(&m), &fixed(Codec::Lz4, 65536));
    pack_to(&pb, Some(&d), None, &fixed(Codec::Lz4, 65536));
    let (fa, fb) = (File::open(&pa).unwrap(), File::open(&pb).unwrap());
    let r = ops::diff(&fa, &fb).unwrap();
    assert!(!r.identical());
    let disk = r.streams.iter().find(|s| s.stream == DISK).unwrap();
    assert!(disk.ranges.is_empty());
    let mem = r.streams.iter().find(|s| s.stream == MEM).unwrap();
    assert_eq!((mem.size_a, mem.size_b), (m.len() as u64, 0));
    assert_eq!(mem.ranges, vec![(0, m.len() as u64)]);
    assert_eq!(r.unique_b, 0);
    // Everything of m whose 64 KiB block is not also a block of d is unique to a.
    assert_eq!(r.unique_a, unique_bytes(&m, &d, 65536));
}
