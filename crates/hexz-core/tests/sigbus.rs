//! A mapped archive that shrinks under its reader (truncated by another program) gives read
//! errors, not a `SIGBUS` crash; a header rewritten in place (`passwd --in-place`) while
//! mapped leaves reads exact.

mod common;

use common::*;
use hexz_core::algo::encryption::{Kdf, Password};
use hexz_core::ops::pack::EncryptOptions;
use hexz_core::ops::rewrite::{change_password, Rewrite};
use hexz_core::ops::PackOptions;
use hexz_core::{File, OpenOptions, SnapshotStream};

const BS: usize = 64 * 1024;

fn mapped(password: Option<&str>) -> OpenOptions {
    OpenOptions {
        mmap: true,
        cache_bytes: 0,
        read_ahead: 0,
        password: password.map(|p| Password::new(p.as_bytes())),
        ..OpenOptions::default()
    }
}

#[test]
fn truncated_while_mapped_is_an_error_not_a_crash() {
    let d = tempfile::tempdir().unwrap();
    let mut data = vec![0u8; 128 * BS];
    Rng::new(3).fill(&mut data); // incompressible: the stored bytes fill the file
    let (p, _) = pack_files(
        d.path(),
        "a.hxz",
        Some(&data),
        None,
        &PackOptions::default(),
    );
    let f = File::open_with(&p, mapped(None)).unwrap();
    assert_eq!(read_all(&f, SnapshotStream::Disk).unwrap(), data);
    let len = std::fs::metadata(&p).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    // The first quarter still lies inside the file and reads exactly.
    assert_eq!(
        f.read_at(SnapshotStream::Disk, 0, 16 * BS).unwrap(),
        &data[..16 * BS]
    );
    // The vanished half: an error for every read, never a crash or wrong bytes.
    let mut errors = Vec::new();
    for i in (70..128).step_by(3) {
        let off = (i * BS) as u64;
        match f.read_at(SnapshotStream::Disk, off, BS) {
            Ok(b) => assert_eq!(b, &data[i * BS..(i + 1) * BS], "block {i}"),
            Err(e) => errors.push(e.to_string()),
        }
    }
    assert_eq!(errors.len(), (70..128).step_by(3).count(), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("shrank while mapped")),
        "{errors:?}"
    );
    assert!(read_all(&f, SnapshotStream::Disk).is_err());
    // Reading the intact part still works after the faults.
    assert_eq!(
        f.read_at(SnapshotStream::Disk, BS as u64, BS).unwrap(),
        &data[BS..2 * BS]
    );
}

#[test]
fn header_rewritten_in_place_while_mapped_keeps_reads_exact() {
    let d = tempfile::tempdir().unwrap();
    let data = mixed_data(40 * BS, BS, 4);
    let kdf = Kdf::Argon2id {
        m_kib: 8,
        t: 1,
        p: 1,
    };
    let opts = PackOptions {
        encryption: Some(EncryptOptions {
            password: Password::new("old"),
            kdf,
        }),
        ..PackOptions::default()
    };
    let (p, _) = pack_files(d.path(), "e.hxz", Some(&data), None, &opts);
    let f = File::open_with(&p, mapped(Some("old"))).unwrap();
    change_password(
        &p,
        &Password::new("old"),
        &Password::new("new"),
        kdf,
        Rewrite::InPlace,
    )
    .unwrap();
    assert_eq!(read_all(&f, SnapshotStream::Disk).unwrap(), data);
    let g = File::open_with(&p, mapped(Some("new"))).unwrap();
    assert_eq!(read_all(&g, SnapshotStream::Disk).unwrap(), data);
}
