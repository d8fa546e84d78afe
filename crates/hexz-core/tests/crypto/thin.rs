//! Dedup and thin snapshots.

use super::*;

#[test]
fn dedup_works_encrypted() {
    let d = tmp();
    let distinct: Vec<Vec<u8>> = (0..16).map(|i| random(64 << 10, 100 + i)).collect();
    let mut data = Vec::new();
    let mut rng = Rng::new(7);
    for _ in 0..128 {
        data.extend_from_slice(&distinct[rng.below(16) as usize]);
    }
    let o = PackOptions {
        encryption: enc("dedup"),
        ..PackOptions::default()
    };
    let (out, stats) = pack_ok(&d, "d.hxz", Some(&data), None, &o);
    let s = stats.disk.unwrap();
    assert_eq!(s.blocks, 128);
    assert!(s.dedup_blocks >= 128 - 16, "{s:?}");
    assert!(s.stored_bytes <= 16 * ((64 << 10) + 64), "{s:?}");
    let size = std::fs::metadata(&out).unwrap().len();
    assert!(
        size * 6 < data.len() as u64,
        "archive {size} bytes for {} input",
        data.len()
    );
    let f = open_pw(&out, "dedup").unwrap();
    assert!(read_all(&f, DISK).unwrap() == data);
    assert_eq!(
        f.master().stream(DISK).unwrap().stored_bytes,
        s.stored_bytes
    );
}

#[test]
fn thin_child_of_encrypted_parent() {
    let t = thin_fixture();
    let o = PackOptions {
        block_size: 4096,
        base: Some(t.parent.clone()),
        encryption: enc("chain pw"),
        ..PackOptions::default()
    };
    let (child, stats) = pack_ok(&t.d, "child.hxz", Some(&t.child_data), None, &o);
    let s = stats.disk.unwrap();
    assert!(s.parent_blocks > s.blocks / 2, "{s:?}");
    let csize = std::fs::metadata(&child).unwrap().len();
    assert!(
        csize * 8 < t.child_data.len() as u64,
        "child is {csize} bytes for {} of data",
        t.child_data.len()
    );
    let f = open_pw(&child, "chain pw").unwrap();
    assert_eq!(f.chain_len(), 2);
    assert!(read_all(&f, DISK).unwrap() == t.child_data);
    let mut rng = Rng::new(3);
    for _ in 0..100 {
        let off = rng.below(t.child_data.len() as u64);
        let len = rng.below(70_000) as usize;
        let end = (off as usize + len).min(t.child_data.len());
        assert!(f.read_at(DISK, off, len).unwrap() == t.child_data[off as usize..end]);
    }
    let rep = verify(&f, None).unwrap();
    assert_eq!(rep.archives, 2);
    // The parent is untouched and still reads.
    assert!(read_all(&open_pw(&t.parent, "chain pw").unwrap(), DISK).unwrap() == t.parent_data);
    // The child's own key wrap is independent; wrong password fails; none is needed.
    assert!(matches!(open_pw(&child, "nope"), Err(Error::WrongPassword)));
    assert!(matches!(
        File::open(&child),
        Err(Error::PasswordRequired(_))
    ));
    // Nothing of the modified plaintext in the child.
    let w = distinctive_windows(&t.child_data, 16);
    let (nw, _) = leaks(&std::fs::read(&child).unwrap(), &w, &HashSet::new());
    assert_eq!(nw, 0);
}

#[test]
fn thin_child_encryption_must_match_its_base() {
    let t = thin_fixture();
    let before = t.d.names();
    let o = |encryption| PackOptions {
        block_size: 4096,
        base: Some(t.parent.clone()),
        encryption,
        ..PackOptions::default()
    };
    // Another password cannot open the base.
    let e = pack_into(
        &t.d,
        "c1.hxz",
        Some(&t.child_data),
        None,
        &o(enc("other pw")),
    )
    .unwrap_err();
    assert!(matches!(e, Error::WrongPassword), "{e:?}");
    // An unencrypted child of an encrypted base: the base cannot even be opened.
    let e = pack_into(&t.d, "c2.hxz", Some(&t.child_data), None, &o(None)).unwrap_err();
    assert!(
        matches!(e, Error::PasswordRequired(_) | Error::InvalidArgument(_)),
        "{e:?}"
    );
    // An encrypted child of an unencrypted base is refused.
    let (plain, _) = pack_ok(
        &t.d,
        "plain.hxz",
        Some(&t.parent_data),
        None,
        &PackOptions {
            block_size: 4096,
            ..PackOptions::default()
        },
    );
    let e = pack_into(
        &t.d,
        "c3.hxz",
        Some(&t.child_data),
        None,
        &PackOptions {
            block_size: 4096,
            base: Some(plain.clone()),
            encryption: enc("chain pw"),
            ..PackOptions::default()
        },
    )
    .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    assert!(e.to_string().contains("encrypted"), "{e}");
    let mut after = t.d.names();
    after.retain(|n| !n.ends_with(".raw") && n != "plain.hxz");
    let mut want = before.clone();
    want.retain(|n| !n.ends_with(".raw"));
    assert_eq!(after, want, "failed packs leave no files");
}

#[test]
fn failed_encrypted_pack_leaves_nothing() {
    struct Failing(usize);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 >= 3 << 20 {
                return Err(std::io::Error::other("synthetic failure"));
            }
            let n = buf.len().min(10_000);
            buf[..n].fill(b'x');
            self.0 += n;
            Ok(n)
        }
    }
    let d = tmp();
    let out = d.path("f.hxz");
    let e = pack(
        PackInput {
            disk: Some(PackSource::Reader(Box::new(Failing(0)))),
            memory: None,
        },
        &out,
        &PackOptions {
            encryption: enc("x"),
            ..PackOptions::default()
        },
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("synthetic failure"), "{e}");
    assert!(d.names().is_empty(), "{:?}", d.names());
}
