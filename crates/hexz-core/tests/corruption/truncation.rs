//! Truncation, garbage, empty files.

use super::*;

#[test]
fn truncated_archives_fail_cleanly() {
    let fx = fixture();
    let len = fx.bytes.len();
    for cut in [0, 1, 100, 511, 512, len / 2, len - 1, len - 33] {
        let p = fx.write("trunc.hxz", &fx.bytes[..cut]);
        for mmap in [false, true] {
            let r = File::open_with(
                &p,
                OpenOptions {
                    mmap,
                    ..OpenOptions::default()
                },
            );
            match r {
                Err(e) => {
                    let m = e.to_string();
                    assert!(
                        m.contains("header") || m.contains("master index"),
                        "cut at {cut}: {m}"
                    );
                }
                Ok(f) => {
                    for s in f.streams() {
                        if let Ok(v) = read_all(&f, s) {
                            assert!(v == fx.data(s), "cut at {cut}: wrong bytes");
                        }
                    }
                }
            }
        }
    }
}

fn tiny_archive() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let d = tempfile::tempdir().unwrap();
    let mut disk = vec![0u8; 3 * BS + 500];
    Rng::new(1).fill(&mut disk[..BS]);
    for (i, x) in disk[2 * BS..].iter_mut().enumerate() {
        *x = (i % 13) as u8;
    }
    let memory: Vec<u8> = (0..BS + 7).map(|i| (i * 7 % 256) as u8).collect();
    let opts = PackOptions {
        codec: Codec::Lz4,
        block_size: BS as u32,
        ..PackOptions::default()
    };
    let (p, _) = pack_files(d.path(), "t.hxz", Some(&disk), Some(&memory), &opts);
    (std::fs::read(p).unwrap(), disk, memory)
}

#[test]
fn every_truncation_of_a_small_archive_is_an_error() {
    let (a, _, _) = tiny_archive();
    for cut in 0..a.len() {
        let (r, big) = max_alloc(|| open_mem(a[..cut].to_vec()));
        assert!(r.is_err(), "truncated to {cut} of {} bytes opened", a.len());
        assert!(big <= a.len() + 1024, "cut {cut}: allocated {big} bytes");
    }
}

#[test]
fn every_single_bit_flip_of_a_small_archive_is_detected() {
    let (a, disk, memory) = tiny_archive();
    assert!(a.len() < 16 << 10, "archive is {} bytes", a.len());
    for pos in 0..a.len() {
        for mask in [0x01u8, 0x40] {
            let mut b = a.clone();
            b[pos] ^= mask;
            let Ok(f) = open_mem(b) else { continue };
            let d = read_all(&f, SnapshotStream::Disk);
            let m = read_all(&f, SnapshotStream::Memory);
            if let Ok(d) = &d {
                assert!(*d == disk, "flip at {pos}: wrong disk bytes");
            }
            if let Ok(m) = &m {
                assert!(*m == memory, "flip at {pos}: wrong memory bytes");
            }
            assert!(
                d.is_err() || m.is_err(),
                "flip of byte {pos} ^ {mask:#x} went unnoticed by open and full reads"
            );
            assert!(
                ops::verify(&f, None).is_err(),
                "flip of byte {pos} ^ {mask:#x} passed verify"
            );
        }
    }
}

#[test]
fn garbage_and_empty_files_are_not_archives() {
    let d = tempfile::tempdir().unwrap();
    let mut g = vec![0u8; 4096];
    Rng::new(3).fill(&mut g);
    let p = d.path().join("garbage.bin");
    std::fs::write(&p, &g).unwrap();
    let e = err_of(File::open(&p), "garbage");
    assert!(matches!(e, Error::NotAnArchive(_)), "{e:?}");
    assert!(e.to_string().contains("not a hexz archive"), "{e}");
    assert!(e.to_string().contains("garbage.bin"), "{e}");

    let p = d.path().join("empty.hxz");
    std::fs::write(&p, b"").unwrap();
    for mmap in [false, true] {
        let e = err_of(
            File::open_with(
                &p,
                OpenOptions {
                    mmap,
                    ..OpenOptions::default()
                },
            ),
            "empty file",
        );
        let m = e.to_string();
        assert!(
            matches!(e, Error::NotAnArchive(_)) || m.contains("header"),
            "mmap {mmap}: {m}"
        );
        assert!(m.contains("empty.hxz"), "mmap {mmap}: {m}");
    }

    // A directory is not an archive either (and must not panic).
    assert!(File::open(d.path()).is_err());
    // A missing file names the path.
    let e = err_of(File::open(d.path().join("nope.hxz")), "missing");
    assert!(e.to_string().contains("nope.hxz"), "{e}");
}

/// A short text file is "not a hexz archive", not a truncated archive: its magic is wrong,
/// whatever its length.
#[test]
fn short_file_with_wrong_magic_is_not_an_archive() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("notes.txt");
    std::fs::write(&p, b"hello, this is a short text file\n").unwrap();
    let e = err_of(File::open(&p), "short text file");
    assert!(matches!(e, Error::NotAnArchive(_)), "{e}");
}
