//! Signatures.

use super::*;

#[test]
fn signed_encrypted_archive_requires_the_right_key() {
    let d = tmp();
    let (out, data) = small_encrypted(&d, "s.hxz", "pw");
    let (seed, public) = signing::generate_keypair().unwrap();
    let (_, other) = signing::generate_keypair().unwrap();
    // Unsigned: refused when a signer is required.
    let e = File::open_with(&out, opts_with(Some("pw"), Some(public))).unwrap_err();
    assert!(
        matches!(&e, Error::Signature(m) if m.contains("not signed")),
        "{e:?}"
    );
    // Signing an encrypted archive needs its password.
    assert!(matches!(
        sign(&out, &seed, None, Rewrite::Copy),
        Err(Error::PasswordRequired(_))
    ));
    assert!(matches!(
        sign(&out, &seed, Some(pw("bad")), Rewrite::Copy),
        Err(Error::WrongPassword)
    ));
    sign(&out, &seed, Some(pw("pw")), Rewrite::Copy).unwrap();
    let a = std::fs::read(&out).unwrap();
    assert_ne!(le_u32(&a, 12) & (1 << 16), 0, "SIGNED flag");
    assert_eq!(&a[320..352], &signing::fingerprint(&public));
    let f = File::open_with(&out, opts_with(Some("pw"), Some(public))).unwrap();
    assert!(read_all(&f, DISK).unwrap() == data);
    // Another key.
    let e = File::open_with(&out, opts_with(Some("pw"), Some(other))).unwrap_err();
    assert!(
        matches!(&e, Error::Signature(m) if m.contains("another key")),
        "{e:?}"
    );
    // Without a signer requirement it opens as before.
    assert!(read_all(&open_pw(&out, "pw").unwrap(), DISK).unwrap() == data);
    // Still needs the password, signature or not.
    assert!(matches!(
        File::open_with(&out, opts_with(None, Some(public))),
        Err(Error::PasswordRequired(_))
    ));
}

#[test]
fn signed_unencrypted_archive_and_a_forged_index() {
    let d = tmp();
    let data = random(40 * 4096, 61);
    let (out, _) = pack_ok(
        &d,
        "u.hxz",
        Some(&data),
        None,
        &PackOptions {
            codec: Codec::None,
            block_size: 4096,
            ..PackOptions::default()
        },
    );
    let (seed, public) = signing::generate_keypair().unwrap();
    sign(&out, &seed, None, Rewrite::Copy).unwrap();
    let f = File::open_with(&out, opts_with(None, Some(public))).unwrap();
    assert!(read_all(&f, DISK).unwrap() == data);
    let e = entries(&f, DISK)[3];
    drop(f);

    // Someone replaces block 3 and rewrites the index consistently (CRC32, BLAKE3, page hash,
    // master digest): without a signature check the forgery reads back as valid data...
    let mut a = std::fs::read(&out).unwrap();
    let forged = vec![0xAB; 4096];
    let o = e.stored_offset as usize;
    a[o..o + 4096].copy_from_slice(&forged);
    let (mo, ml) = (le_u64(&a, 56) as usize, le_u32(&a, 64) as usize);
    let pr = mo + 16 + 48; // one stream, page 0
    let (po, pl) = (le_u64(&a, pr + 8) as usize, le_u32(&a, pr + 16) as usize);
    let eo = po + 16 + 3 * 64;
    let crc = bound_crc32(blake3::hash(&forged).as_bytes(), &forged);
    a[eo + 24..eo + 28].copy_from_slice(&crc.to_le_bytes());
    a[eo + 32..eo + 64].copy_from_slice(blake3::hash(&forged).as_bytes());
    let ph = *blake3::hash(&a[po..po + pl]).as_bytes();
    a[pr + 32..pr + 64].copy_from_slice(&ph);
    let md = *blake3::hash(&a[mo..mo + ml - 32]).as_bytes();
    a[mo + ml - 32..mo + ml].copy_from_slice(&md);
    let p = d.path("forged.hxz");
    std::fs::write(&p, &a).unwrap();
    let g = File::open(&p).unwrap();
    assert_eq!(g.read_at(DISK, e.logical_offset, 4096).unwrap(), forged);
    // ...but the signature no longer matches.
    let err = File::open_with(&p, opts_with(None, Some(public))).unwrap_err();
    assert!(
        matches!(&err, Error::Signature(m) if m.contains("does not match")),
        "{err:?}"
    );

    // A changed header field (with its CRC fixed) breaks the signature too.
    let mut h = std::fs::read(&out).unwrap();
    h[88] ^= 1; // creation time
    fix_header_crc(&mut h);
    std::fs::write(&p, &h).unwrap();
    assert!(File::open(&p).is_ok());
    assert!(matches!(
        File::open_with(&p, opts_with(None, Some(public))),
        Err(Error::Signature(_))
    ));
    // So does a replaced signer fingerprint or signature byte.
    for i in [256, 319, 320, 351] {
        let mut h = std::fs::read(&out).unwrap();
        h[i] ^= 1;
        fix_header_crc(&mut h);
        std::fs::write(&p, &h).unwrap();
        assert!(
            matches!(
                File::open_with(&p, opts_with(None, Some(public))),
                Err(Error::Signature(_))
            ),
            "byte {i}"
        );
    }
    // Clearing the SIGNED flag makes it "not signed".
    let mut h = std::fs::read(&out).unwrap();
    h[14] &= !1;
    fix_header_crc(&mut h);
    std::fs::write(&p, &h).unwrap();
    assert!(matches!(
        File::open_with(&p, opts_with(None, Some(public))),
        Err(Error::Signature(m)) if m.contains("not signed")
    ));
}

#[test]
fn tampering_after_signing_an_encrypted_archive() {
    let d = tmp();
    let (out, data) = small_encrypted(&d, "t.hxz", "pw");
    let (seed, public) = signing::generate_keypair().unwrap();
    sign(&out, &seed, Some(pw("pw")), Rewrite::Copy).unwrap();
    let signed = || opts_with(Some("pw"), Some(public));
    let f = File::open_with(&out, signed()).unwrap();
    let es = entries(&f, DISK);
    let rec = f.master().stream(DISK).unwrap().clone();
    drop(f);
    let a = std::fs::read(&out).unwrap();
    let p = d.path("x.hxz");

    // Master index byte: refused at open.
    let (mo, ml) = (le_u64(&a, 56) as usize, le_u32(&a, 64) as usize);
    let mut b = a.clone();
    b[mo + ml / 3] ^= 2;
    std::fs::write(&p, &b).unwrap();
    assert!(File::open_with(&p, signed()).is_err());

    // Index page byte: the signature (over the master digest) still verifies, the page fails
    // when read.
    let mut b = a.clone();
    b[rec.pages[0].offset as usize + 40] ^= 2;
    std::fs::write(&p, &b).unwrap();
    let g = File::open_with(&p, signed()).unwrap();
    let e = g.read_at(DISK, 0, 10).unwrap_err();
    assert!(e.to_string().contains("index page 0 of disk stream"), "{e}");

    // Data block byte: signature verifies at open, the read of that block fails.
    let (i, e) = es.iter().enumerate().find(|(_, e)| !e.is_zero()).unwrap();
    let mut b = a.clone();
    b[e.stored_offset as usize + 1] ^= 2;
    std::fs::write(&p, &b).unwrap();
    let g = File::open_with(&p, signed()).unwrap();
    let r = g.read_at(DISK, e.logical_offset, e.logical_len as usize);
    assert_corrupt_block(r, DISK, i as u64);
    let ok = es.iter().rev().find(|o| !o.is_zero()).unwrap();
    assert!(
        g.read_at(DISK, ok.logical_offset, ok.logical_len as usize)
            .unwrap()
            == data[ok.logical_offset as usize..ok.logical_end() as usize]
    );

    // Someone who knows the password (but not the signing key) rewrites the index
    // consistently: it decrypts and opens without a signer, but the signature fails.
    let mut b = a.clone();
    forge_page(&mut b, "pw", DISK, 0, |page| {
        set_entry_crc(page, i, 0x1234_5678);
    });
    std::fs::write(&p, &b).unwrap();
    assert!(open_pw(&p, "pw").is_ok());
    let err = File::open_with(&p, signed()).unwrap_err();
    assert!(matches!(err, Error::Signature(_)), "{err:?}");
}

#[test]
fn change_password_keeps_the_signature() {
    let d = tmp();
    let (out, data) = small_encrypted(&d, "c.hxz", "old pw");
    let (seed, public) = signing::generate_keypair().unwrap();
    sign(&out, &seed, Some(pw("old pw")), Rewrite::Copy).unwrap();
    let before = std::fs::read(&out).unwrap();
    // Wrong current password: refused, archive unchanged.
    let e = change_password(
        &out,
        &pw("not it"),
        &pw("new pw"),
        fast_kdf(),
        Rewrite::Copy,
    )
    .unwrap_err();
    assert!(matches!(e, Error::WrongPassword), "{e:?}");
    assert!(std::fs::read(&out).unwrap() == before);

    change_password(
        &out,
        &pw("old pw"),
        &pw("new pw"),
        fast_kdf(),
        Rewrite::Copy,
    )
    .unwrap();
    let after = std::fs::read(&out).unwrap();
    assert_eq!(before.len(), after.len());
    assert!(
        before[HEADER_SIZE..] == after[HEADER_SIZE..],
        "only the header changes"
    );
    assert_ne!(before[160..192], after[160..192], "fresh salt");
    assert_eq!(
        before[256..352],
        after[256..352],
        "signature and signer kept"
    );
    assert!(matches!(open_pw(&out, "old pw"), Err(Error::WrongPassword)));
    let f = File::open_with(&out, opts_with(Some("new pw"), Some(public))).unwrap();
    assert!(read_all(&f, DISK).unwrap() == data);
    // Switching KDF on the way, in place: same file (inode), new header.
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(&out).unwrap().ino();
    change_password(
        &out,
        &pw("new pw"),
        &pw("third"),
        Kdf::Argon2id {
            m_kib: 2048,
            t: 2,
            p: 1,
        },
        Rewrite::InPlace,
    )
    .unwrap();
    assert_eq!(
        std::fs::metadata(&out).unwrap().ino(),
        ino,
        "rewritten in place"
    );
    let a = std::fs::read(&out).unwrap();
    assert_eq!((a[144], le_u32(&a, 148), le_u32(&a, 152)), (2, 2048, 2));
    let f = File::open_with(&out, opts_with(Some("third"), Some(public))).unwrap();
    assert!(read_all(&f, DISK).unwrap() == data);
    // An unencrypted archive has no password to change.
    let (plain, _) = pack_ok(&d, "p.hxz", Some(&data), None, &PackOptions::default());
    let e = change_password(&plain, &pw("a"), &pw("b"), fast_kdf(), Rewrite::Copy).unwrap_err();
    assert!(e.to_string().contains("not encrypted"), "{e}");
}

/// A thin child and its parent share one password. Changing the child's alone cannot leave a
/// chain that opens under one password, so `change_password` must either refuse (and leave the
/// child as it was) or succeed; it must never report failure after replacing the header.
#[test]
fn change_password_of_a_thin_child_fails_cleanly() {
    let t = thin_fixture();
    let o = PackOptions {
        block_size: 4096,
        base: Some(t.parent.clone()),
        encryption: enc("chain pw"),
        ..PackOptions::default()
    };
    let (child, _) = pack_ok(&t.d, "child.hxz", Some(&t.child_data), None, &o);
    let before = std::fs::read(&child).unwrap();
    match change_password(
        &child,
        &pw("chain pw"),
        &pw("child only"),
        fast_kdf(),
        Rewrite::Copy,
    ) {
        Ok(()) => {
            // If it claims success, the child must open with the new password.
            let f = open_pw(&child, "child only").expect("open after a successful change");
            assert!(read_all(&f, DISK).unwrap() == t.child_data);
        }
        Err(e) => {
            let after = std::fs::read(&child).unwrap();
            assert!(
                after == before,
                "change_password failed ({e}) but had already replaced the header: the child \
                 now opens with neither password (old: {:?}, new: {:?})",
                open_pw(&child, "chain pw").err().map(|e| e.to_string()),
                open_pw(&child, "child only").err().map(|e| e.to_string()),
            );
        }
    }
}
