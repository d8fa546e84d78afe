//! `File::new` with an explicit compressor and backend.

use super::*;

#[test]
fn file_new_with_lz4_compressor_and_mmap_backend() {
    let data = mixed_data(300_000, 65536, 5);
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = pack_files(
        dir.path(),
        "a.hxz",
        Some(&data),
        None,
        &PackOptions::default(),
    );
    let backend = Arc::new(FileBackend::new(&p).unwrap());
    assert_eq!(backend.len(), std::fs::metadata(&p).unwrap().len());
    let f = File::new(backend, Box::new(Lz4Compressor::new()), None).unwrap();
    assert!(read_all(&f, SnapshotStream::Disk).unwrap() == data);
    assert_eq!(f.describe(), p.display().to_string());

    let m = File::open_backend(
        Arc::new(MmapBackend::new(&p).unwrap()),
        None,
        OpenOptions::default(),
    )
    .unwrap();
    assert!(read_all(&m, SnapshotStream::Disk).unwrap() == data);
    let m2 = File::open_with(
        &p,
        OpenOptions {
            mmap: true,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    assert!(m2.read_at(SnapshotStream::Disk, 70_000, 100_000).unwrap() == data[70_000..170_000]);
    // Clones share everything and read the same bytes.
    let c = m2.clone();
    assert!(c.read_at(SnapshotStream::Disk, 1, 65536).unwrap() == data[1..65537]);
}

#[test]
fn file_new_with_mismatched_compressor_is_invalid_argument() {
    let data = mixed_data(200_000, 65536, 6);
    let dir = tempfile::tempdir().unwrap();
    let (zp, _) = pack_files(
        dir.path(),
        "z.hxz",
        Some(&data),
        None,
        &opts(Codec::Zstd, 3, 65536),
    );
    let (lp, _) = pack_files(
        dir.path(),
        "l.hxz",
        Some(&data),
        None,
        &opts(Codec::Lz4, 0, 65536),
    );
    let backend = |p: &Path| Arc::new(FileBackend::new(p).unwrap());
    match File::new(backend(&zp), Box::new(Lz4Compressor::new()), None) {
        Err(Error::InvalidArgument(m)) => {
            assert!(m.contains("zstd") && m.contains("lz4"), "{m}");
            assert!(m.contains(&zp.display().to_string()), "{m}");
        }
        other => panic!("expected InvalidArgument, got {:?}", other.map(|_| ())),
    }
    match File::new(
        backend(&lp),
        Box::new(ZstdCompressor::new(3).unwrap()),
        None,
    ) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("lz4") && m.contains("zstd"), "{m}"),
        other => panic!("expected InvalidArgument, got {:?}", other.map(|_| ())),
    }
    match File::new(backend(&lp), Box::new(NoCompression), None) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("lz4"), "{m}"),
        other => panic!("expected InvalidArgument, got {:?}", other.map(|_| ())),
    }
    // The matching compressor works.
    let f = File::new(
        backend(&zp),
        Box::new(ZstdCompressor::new(3).unwrap()),
        None,
    )
    .unwrap();
    assert!(read_all(&f, SnapshotStream::Disk).unwrap() == data);
}
