//! Dedup across streams, the dedup table limit, and CDC boundaries after an insertion.

use super::*;

#[test]
fn identical_streams_dedup_across_streams() {
    let bs = 65536;
    let data = mixed_data(20 * bs + 100, bs, 11);
    let dir = tempfile::tempdir().unwrap();
    let (p, st) = pack_files(
        dir.path(),
        "d.hxz",
        Some(&data),
        Some(&data),
        &PackOptions::default(),
    );
    let d = st.disk.unwrap();
    let m = st.memory.unwrap();
    assert_eq!(m.stored_bytes, 0, "memory stream repeats the disk stream");
    assert_eq!(m.dedup_blocks, m.blocks - m.zero_blocks);
    assert_eq!(m.zero_blocks, d.zero_blocks);
    let f = File::open(&p).unwrap();
    assert!(read_all(&f, SnapshotStream::Memory).unwrap() == data);
    let de = all_entries(&f, SnapshotStream::Disk);
    let me = all_entries(&f, SnapshotStream::Memory);
    assert_eq!(de, me, "both streams point at the same stored blocks");

    // Without dedup every non-zero block is stored again.
    let nd = PackOptions {
        dedup: false,
        ..PackOptions::default()
    };
    let (q, st) = pack_files(dir.path(), "nd.hxz", Some(&data), Some(&data), &nd);
    let (d2, m2) = (st.disk.unwrap(), st.memory.unwrap());
    assert_eq!((d2.dedup_blocks, m2.dedup_blocks), (0, 0));
    assert_eq!(m2.stored_bytes, d2.stored_bytes);
    assert!(d2.stored_bytes >= d.stored_bytes);
    let g = File::open(&q).unwrap();
    assert!(read_all(&g, SnapshotStream::Memory).unwrap() == data);
    assert!(read_all(&g, SnapshotStream::Disk).unwrap() == data);
}

#[test]
fn dedup_table_limit_stores_later_repeats_again() {
    let bs = 4096usize;
    // 8 distinct random blocks, 512 distinct filler blocks (so that the repeat falls in a
    // later 2 MiB batch: repeats inside one batch are always found), then the 8 again.
    let mut data = vec![0u8; 520 * bs];
    common::Rng::new(12).fill(&mut data);
    let again = data[..8 * bs].to_vec();
    data.extend_from_slice(&again);
    let dir = tempfile::tempdir().unwrap();
    let o = PackOptions {
        codec: Codec::None,
        block_size: bs as u32,
        dedup_max_entries: 3,
        ..PackOptions::default()
    };
    let (p, st) = pack_files(dir.path(), "lim.hxz", Some(&data), None, &o);
    let d = st.disk.unwrap();
    // Only the first 3 distinct blocks are remembered.
    let distinct: HashSet<&[u8]> = data[..520 * bs].chunks(bs).collect();
    assert_eq!(distinct.len(), 520);
    assert_eq!(d.dedup_blocks, 3);
    assert_eq!(d.stored_bytes, (520 + 5) * bs as u64);
    let f = File::open(&p).unwrap();
    assert!(read_all(&f, SnapshotStream::Disk).unwrap() == data);
}

#[test]
fn cdc_boundaries_follow_content_after_an_insertion() {
    let p = CDC;
    let base = mixed_data(600_000, 8192, 13);
    let mut shifted = vec![0x42u8; 1000];
    shifted.extend_from_slice(&base);
    let dir = tempfile::tempdir().unwrap();
    let o = PackOptions {
        cdc: Some(p),
        ..PackOptions::default()
    };
    let (path, st) = pack_files(dir.path(), "cdc.hxz", Some(&base), Some(&shifted), &o);
    let (d, m) = (st.disk.unwrap(), st.memory.unwrap());
    // Content-defined cuts resynchronise: most of the shifted stream dedups against the first.
    assert!(
        m.dedup_blocks + m.zero_blocks >= (m.blocks * 3) / 4,
        "disk {d:?} memory {m:?}"
    );
    let f = File::open(&path).unwrap();
    assert!(read_all(&f, SnapshotStream::Disk).unwrap() == base);
    assert!(read_all(&f, SnapshotStream::Memory).unwrap() == shifted);
    for e in all_entries(&f, SnapshotStream::Memory) {
        assert!(e.logical_len <= p.max);
    }
}
