//! Pack inputs and failures: short reads, a reader failing midway, an existing archive left alone, invalid options.

use super::*;

#[test]
fn pack_from_short_reads_equals_pack_from_path() {
    let data = mixed_data(1_500_000, 65536, 8);
    let dir = tempfile::tempdir().unwrap();
    let (p, st_path) = pack_files(
        dir.path(),
        "path.hxz",
        Some(&data),
        None,
        &PackOptions::default(),
    );
    let q = dir.path().join("reader.hxz");
    let st_reader = pack(
        PackInput {
            disk: Some(PackSource::Reader(Box::new(Dribble::new(data.clone(), 3)))),
            memory: None,
        },
        &q,
        &PackOptions::default(),
        None,
    )
    .unwrap();
    assert_eq!(st_path.archive_bytes, st_reader.archive_bytes);
    let a = File::open(&p).unwrap();
    let b = File::open(&q).unwrap();
    // Same index, block for block (only the header's id and time differ).
    assert_eq!(a.master(), b.master());
    assert!(read_all(&b, SnapshotStream::Disk).unwrap() == data);
    let (ra, rb) = (std::fs::read(&p).unwrap(), std::fs::read(&q).unwrap());
    assert!(
        ra[HEADER_SIZE..] == rb[HEADER_SIZE..],
        "archives differ after the header"
    );
}

#[test]
fn reader_error_midway_fails_pack_and_leaves_nothing() {
    let data = mixed_data(3_000_000, 65536, 9);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fail.hxz");
    let mut r = Dribble::new(data, 4);
    r.fail_at = Some(1_700_000);
    let err = pack(
        PackInput {
            disk: None,
            memory: Some(PackSource::Reader(Box::new(r))),
        },
        &out,
        &PackOptions::default(),
        None,
    )
    .unwrap_err();
    match &err {
        Error::Io {
            context,
            err: source,
        } => {
            assert!(context.contains("standard input"), "{err}");
            assert!(
                source.to_string().contains("synthetic read failure"),
                "{err}"
            );
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "pack left files behind: {left:?}");
}

#[test]
fn failed_pack_does_not_touch_an_existing_archive() {
    let data = mixed_data(200_000, 65536, 10);
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = pack_files(
        dir.path(),
        "keep.hxz",
        Some(&data),
        None,
        &PackOptions::default(),
    );
    let before = std::fs::read(&p).unwrap();
    let mut r = Dribble::new(vec![1u8; 2_000_000], 1);
    r.fail_at = Some(1_000_000);
    assert!(pack(
        PackInput {
            disk: Some(PackSource::Reader(Box::new(r))),
            memory: None
        },
        &p,
        &PackOptions::default(),
        None
    )
    .is_err());
    assert!(std::fs::read(&p).unwrap() == before);
    // A successful pack replaces it.
    let other = vec![7u8; 70_000];
    pack_files(
        dir.path(),
        "keep.hxz",
        Some(&other),
        None,
        &PackOptions::default(),
    );
    let f = File::open(&p).unwrap();
    assert!(read_all(&f, SnapshotStream::Disk).unwrap() == other);
}

#[test]
fn invalid_pack_options_are_rejected_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("in.raw");
    std::fs::write(&raw, vec![1u8; 10_000]).unwrap();
    let out = dir.path().join("bad.hxz");
    let bad = [
        opts(Codec::Lz4, 0, 0),
        opts(Codec::Lz4, 0, 4095),
        opts(Codec::Lz4, 0, (16 << 20) + 1),
        opts(Codec::Zstd, 0, 65536),
        opts(Codec::Zstd, 23, 65536),
        PackOptions {
            cdc: Some(CdcParams {
                min: 8192,
                avg: 4096,
                max: 32768,
            }),
            ..PackOptions::default()
        },
        PackOptions {
            cdc: Some(CdcParams {
                min: 512,
                avg: 4096,
                max: 32768,
            }),
            ..PackOptions::default()
        },
    ];
    for o in &bad {
        let e = pack(
            PackInput {
                disk: Some(PackSource::Path(raw.clone())),
                memory: None,
            },
            &out,
            o,
            None,
        )
        .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{o:?}: {e}");
    }
    let e = pack(PackInput::default(), &out, &PackOptions::default(), None).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    let e = pack(
        PackInput {
            disk: Some(PackSource::Path(dir.path().join("missing.raw"))),
            memory: None,
        },
        &out,
        &PackOptions::default(),
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("missing.raw"), "{e}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("in.raw")]);
}
