//! Edge cases: sizes around every block size, empty input, reads across index pages.

use super::*;

#[test]
fn edge_sizes_for_every_block_size_and_codec() {
    for bs in [4096usize, 12288, 65536] {
        for (codec, level) in [(Codec::Lz4, 3), (Codec::Zstd, 19), (Codec::None, 3)] {
            for len in [0, 1, bs - 1, bs, bs + 1, 3 * bs, 3 * bs + 7] {
                run_case(&Case {
                    codec,
                    level,
                    block_size: bs as u32,
                    cdc: false,
                    disk: Some(len),
                    memory: Some(len / 2 + 1),
                    seed: len as u64 * 31 + bs as u64,
                    via_reader: len % 2 == 0,
                    open_mode: (len % 3) as u8,
                    reads: vec![(len as u64 / 3, bs as u64 + 5, 0), (7, 9, 2)],
                });
            }
        }
    }
}

#[test]
fn empty_input_round_trips_with_size_zero() {
    let dir = tempfile::tempdir().unwrap();
    for via_reader in [false, true] {
        let out = dir.path().join(format!("empty-{via_reader}.hxz"));
        let src = || {
            if via_reader {
                PackSource::Reader(Box::new(std::io::empty()))
            } else {
                let p = dir.path().join("empty.raw");
                std::fs::write(&p, b"").unwrap();
                PackSource::Path(p)
            }
        };
        let stats = pack(
            PackInput {
                disk: Some(src()),
                memory: Some(src()),
            },
            &out,
            &PackOptions::default(),
            None,
        )
        .unwrap();
        let d = stats.disk.unwrap();
        assert_eq!((d.input_bytes, d.blocks, d.stored_bytes), (0, 0, 0));
        let f = File::open(&out).unwrap();
        for s in SnapshotStream::ALL {
            assert!(f.has_stream(s));
            assert_eq!(f.size(s), 0);
            assert_eq!(f.read_at(s, 0, 100).unwrap(), Vec::<u8>::new());
            assert_eq!(f.read_at(s, 5, 100).unwrap(), Vec::<u8>::new());
            assert_eq!(f.read_at_into(s, 0, &mut [0u8; 16]).unwrap(), 0);
            let mut r = f.reader(s).unwrap();
            assert!(r.is_empty());
            let mut v = Vec::new();
            assert_eq!(r.read_to_end(&mut v).unwrap(), 0);
            assert!(f.master().stream(s).unwrap().pages.is_empty());
        }
        let rep = ops::verify(&f, None).unwrap();
        assert_eq!((rep.pages, rep.blocks, rep.bytes), (0, 0, 0));
        assert_eq!(
            std::fs::metadata(&out).unwrap().len(),
            (HEADER_SIZE + f.header().master_len as usize) as u64
        );
    }
}

/// More than 2048 blocks: three index pages; reads that straddle page boundaries.
#[test]
fn reads_across_index_page_boundaries() {
    let bs = 4096usize;
    let n_blocks = 2 * 1024 + 100;
    let data = mixed_data(n_blocks * bs - 123, bs, 77);
    let dir = tempfile::tempdir().unwrap();
    let (p, stats) = pack_files(
        dir.path(),
        "pages.hxz",
        Some(&data),
        None,
        &opts(Codec::Lz4, 0, bs as u32),
    );
    assert_eq!(stats.disk.as_ref().unwrap().blocks, n_blocks as u64);
    let f = File::open_with(
        &p,
        OpenOptions {
            cache_bytes: 0,
            index_cache_bytes: 0,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    let rec = f.master().stream(SnapshotStream::Disk).unwrap();
    let firsts: Vec<(u64, u64, u32)> = rec
        .pages
        .iter()
        .map(|r| (r.first_block, r.first_logical, r.entry_count))
        .collect();
    assert_eq!(
        firsts,
        vec![
            (0, 0, 1024),
            (1024, 1024 * bs as u64, 1024),
            (2048, 2048 * bs as u64, 100)
        ]
    );
    for boundary in [1024 * bs as u64, 2048 * bs as u64] {
        for (back, len) in [
            (1, 2),
            (100, 5000),
            (bs as u64, 2 * bs),
            (3 * bs as u64 + 5, 9 * bs),
        ] {
            let off = boundary - back;
            assert!(
                f.read_at(SnapshotStream::Disk, off, len).unwrap() == expected(&data, off, len),
                "read at {off} len {len}"
            );
        }
    }
    // One read covering all three pages.
    assert!(f.read_at(SnapshotStream::Disk, 5, data.len()).unwrap() == data[5..]);
    assert!(read_all(&f, SnapshotStream::Disk).unwrap() == data);
}
