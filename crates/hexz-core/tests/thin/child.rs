//! What a child stores.

use super::*;

/// 4 MiB of 64 KiB blocks: unique text blocks, a zero block, and repeats (dedup).
fn dedup_data() -> Vec<u8> {
    let bs = 64 * 1024;
    let mut v = Vec::new();
    for i in 0..64 {
        match i % 8 {
            3 => v.extend(std::iter::repeat_n(0u8, bs)),
            5 | 6 => {
                let k = (i / 8) * 8;
                let copy = v[k * bs..(k + 1) * bs].to_vec();
                v.extend_from_slice(&copy);
            }
            _ => v.extend_from_slice(&text_like(bs, 1000 + i as u64)),
        }
    }
    v
}

#[test]
fn thin_child_of_deduplicated_parent_stores_only_new_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let bs = 64 * 1024;
    let data = dedup_data();
    let opts = fixed(Codec::Zstd, bs as u32);
    let parent = dir.path().join("parent.hxz");
    let ps = pack_to(&parent, Some(&data), None, &opts);
    let pd = ps.disk.unwrap();
    assert_eq!(pd.zero_blocks, 8);
    assert_eq!(pd.dedup_blocks, 16);
    let nonzero_blocks = 64 - 8;

    // Same content: everything is a reference, nothing is stored.
    let same = dir.path().join("same.hxz");
    let s = pack_to(&same, Some(&data), None, &with_base(&opts, &parent));
    let sd = s.disk.unwrap();
    assert_eq!(sd.parent_blocks, nonzero_blocks);
    assert_eq!(sd.stored_bytes, 0);
    assert_eq!(sd.dedup_blocks, 0);
    assert_eq!(sd.zero_blocks, 8);
    let f = File::open(&same).unwrap();
    assert_eq!(f.master().stream(DISK).unwrap().stored_bytes, 0);
    assert!(
        s.archive_bytes < 16 * 1024,
        "identical child is {} bytes",
        s.archive_bytes
    );
    // Duplicated parent blocks resolve to the parent's single stored copy.
    let es = entries(&f, DISK);
    assert_eq!(es[5].stored_offset, es[0].stored_offset);
    assert_eq!(es[5].source, 1);
    check_stream(&f, DISK, &data, 1, "identical child");

    // One byte changed in a unique block: exactly one block stored.
    let mut one = data.clone();
    one[2 * bs + 777] ^= 0x55;
    let onep = dir.path().join("one.hxz");
    let o = pack_to(&onep, Some(&one), None, &with_base(&opts, &parent));
    let od = o.disk.unwrap();
    assert_eq!(od.parent_blocks, nonzero_blocks - 1);
    assert!(od.stored_bytes > 0 && od.stored_bytes <= bs as u64);
    let f = File::open(&onep).unwrap();
    let es = entries(&f, DISK);
    let own: Vec<usize> = (0..es.len())
        .filter(|&i| es[i].source == 0 && !es[i].is_zero())
        .collect();
    assert_eq!(own, vec![2]);
    check_stream(&f, DISK, &one, 2, "one-byte child");

    // The same new block three times: stored once in the child (its own dedup).
    let mut rep = data.clone();
    let newb = text_like(bs, 4242);
    for i in [9usize, 20, 40] {
        rep[i * bs..(i + 1) * bs].copy_from_slice(&newb);
    }
    let repp = dir.path().join("rep.hxz");
    let r = pack_to(&repp, Some(&rep), None, &with_base(&opts, &parent));
    let rd = r.disk.unwrap();
    assert_eq!(rd.dedup_blocks, 2);
    assert_eq!(rd.parent_blocks, nonzero_blocks - 3);
    let single = pack_to(
        &dir.path().join("single.hxz"),
        Some(&newb),
        None,
        &fixed(Codec::Zstd, bs as u32),
    );
    assert_eq!(rd.stored_bytes, single.disk.unwrap().stored_bytes);
    check_stream(&File::open(&repp).unwrap(), DISK, &rep, 3, "repeat child");

    // A block of the parent's disk stream is found for the child's memory stream too.
    let memp = dir.path().join("mem.hxz");
    let m = pack_to(
        &memp,
        None,
        Some(&data[..8 * bs]),
        &with_base(&opts, &parent),
    );
    let md = m.memory.unwrap();
    assert_eq!(md.stored_bytes, 0);
    assert_eq!(md.parent_blocks, 7);
    check_stream(
        &File::open(&memp).unwrap(),
        MEM,
        &data[..8 * bs],
        4,
        "memory child",
    );
}

/// A child of a child refers to the grandparent directly (source 2) for blocks the parent
/// itself took from the grandparent; the middle archive is not read for them.
#[test]
fn grandchild_refers_to_grandparent_directly() {
    let dir = tempfile::tempdir().unwrap();
    let bs = 64 * 1024;
    let opts = fixed(Codec::Lz4, bs as u32);
    let v1 = text_like(16 * bs, 1);
    let mut v2 = v1.clone();
    v2[3 * bs..4 * bs].copy_from_slice(&text_like(bs, 2));
    let mut v3 = v2.clone();
    v3[7 * bs..8 * bs].copy_from_slice(&text_like(bs, 3));
    let (p1, p2, p3) = (
        dir.path().join("1.hxz"),
        dir.path().join("2.hxz"),
        dir.path().join("3.hxz"),
    );
    pack_to(&p1, Some(&v1), None, &opts);
    pack_to(&p2, Some(&v2), None, &with_base(&opts, &p1));
    let s3 = pack_to(&p3, Some(&v3), None, &with_base(&opts, &p2));
    assert_eq!(s3.disk.unwrap().parent_blocks, 15);
    let f = File::open(&p3).unwrap();
    let src: Vec<u16> = entries(&f, DISK).iter().map(|e| e.source).collect();
    let mut want = vec![2u16; 16];
    want[3] = 1;
    want[7] = 0;
    assert_eq!(src, want);
    let links = ops::inspect::chain(&f).unwrap();
    let sup: Vec<u64> = links.iter().map(|l| l.supplied_bytes).collect();
    assert_eq!(sup, vec![bs as u64, bs as u64, 14 * bs as u64]);
    check_stream(&f, DISK, &v3, 1, "grandchild");
}

/// Inserting a few bytes near the start shifts every later byte. Content-defined chunks
/// re-synchronise after the edit, so the CDC child stores almost nothing; fixed blocks all
/// move, so the fixed-block child stores almost everything again. This is why `--cdc` exists.
#[test]
fn cdc_child_survives_an_insertion_fixed_child_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = text_like(24 << 20, 2024);
    let mut v2 = v1.clone();
    v2.splice(1000..1000, *b"INSERTED");
    let input = v2.len() as u64;

    let c = CdcParams::default();
    let copts = cdc(Codec::Lz4, c.min, c.avg, c.max);
    let cp = dir.path().join("cdc1.hxz");
    let cparent = pack_to(&cp, Some(&v1), None, &copts);
    let cc = dir.path().join("cdc2.hxz");
    let cchild = pack_to(&cc, Some(&v2), None, &with_base(&copts, &cp))
        .disk
        .unwrap();

    let fopts = fixed(Codec::Lz4, 64 * 1024);
    let fp = dir.path().join("fixed1.hxz");
    let fparent = pack_to(&fp, Some(&v1), None, &fopts);
    let fc = dir.path().join("fixed2.hxz");
    let fchild = pack_to(&fc, Some(&v2), None, &with_base(&fopts, &fp))
        .disk
        .unwrap();

    let cpar = cparent.disk.unwrap().stored_bytes;
    let fpar = fparent.disk.unwrap().stored_bytes;
    eprintln!(
        "shift: input {input}, cdc parent {cpar} child {} ({} of {} blocks from parent); \
         fixed parent {fpar} child {} ({} of {} blocks from parent)",
        cchild.stored_bytes,
        cchild.parent_blocks,
        cchild.blocks,
        fchild.stored_bytes,
        fchild.parent_blocks,
        fchild.blocks
    );
    assert!(
        cchild.stored_bytes * 20 < input,
        "CDC child stores {} of {input} bytes (want < 5%)",
        cchild.stored_bytes
    );
    assert!(cchild.stored_bytes * 20 < cpar);
    assert!(cchild.parent_blocks * 100 >= cchild.blocks * 95);
    assert!(
        fchild.stored_bytes * 2 > fpar,
        "fixed child stores {} bytes, its parent {fpar} (want > 50%)",
        fchild.stored_bytes
    );
    assert!(fchild.parent_blocks <= 1, "{}", fchild.parent_blocks);
    check_stream(&File::open(&cc).unwrap(), DISK, &v2, 1, "shifted cdc child");
    check_stream(
        &File::open(&fc).unwrap(),
        DISK,
        &v2,
        2,
        "shifted fixed child",
    );
}
