//! Tampering.

use super::*;

#[test]
fn flipped_bit_in_a_stored_block_names_the_block() {
    let d = tmp();
    let (out, data) = small_encrypted(&d, "b.hxz", "pw");
    let f = open_pw(&out, "pw").unwrap();
    let es = entries(&f, DISK);
    let a = std::fs::read(&out).unwrap();
    let mut checked = 0;
    // Blocks whose stored bytes no other (deduplicated) block shares, so the damaged block
    // is the first and only one that reads them.
    let uses = |off: u64| {
        es.iter()
            .filter(|o| !o.is_zero() && o.stored_offset == off)
            .count()
    };
    for (i, e) in es
        .iter()
        .enumerate()
        .filter(|(_, e)| !e.is_zero() && uses(e.stored_offset) == 1)
        .step_by(37)
    {
        // Inside the ciphertext, and inside the tag.
        for at in [
            e.stored_offset + e.stored_len as u64 / 2,
            e.stored_offset + e.stored_len as u64 - 3,
        ] {
            let mut b = a.clone();
            b[at as usize] ^= 0x10;
            let p = d.path("flip.hxz");
            std::fs::write(&p, &b).unwrap();
            let detail = assert_corrupt_block(read_block(&p, "pw", DISK, e), DISK, i as u64);
            assert!(
                detail.contains("CRC32") || detail.contains("authentication"),
                "{detail}"
            );
            // Other blocks still read.
            let g = open_pw(&p, "pw").unwrap();
            if let Some(o) = es
                .iter()
                .find(|o| o.stored_offset != e.stored_offset && !o.is_zero())
            {
                let got = g
                    .read_at(DISK, o.logical_offset, o.logical_len as usize)
                    .unwrap();
                assert!(got == data[o.logical_offset as usize..o.logical_end() as usize]);
            }
            // verify names the same block.
            let ve = verify(&g, None).unwrap_err();
            assert!(
                ve.to_string()
                    .contains(&format!("block {i} of disk stream")),
                "{ve}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 6, "{checked}");
}

#[test]
fn flipped_bit_in_an_index_page_names_the_page() {
    let d = tmp();
    let (out, _) = small_encrypted(&d, "i.hxz", "pw");
    let f = open_pw(&out, "pw").unwrap();
    let r = f.master().stream(DISK).unwrap().pages[0];
    assert_eq!(r.len as usize, 16 + r.entry_count as usize * 64 + TAG_LEN);
    let a = std::fs::read(&out).unwrap();
    for at in [
        r.offset + 3,
        r.offset + r.len as u64 / 2,
        r.offset + r.len as u64 - 1,
    ] {
        let mut b = a.clone();
        b[at as usize] ^= 0x01;
        let p = d.path("flip.hxz");
        std::fs::write(&p, &b).unwrap();
        let g = open_pw(&p, "pw").unwrap();
        let e = g.read_at(DISK, 0, 100).unwrap_err();
        assert!(
            matches!(e, Error::CorruptStructure { .. }),
            "flip at {at}: {e:?}"
        );
        let m = e.to_string();
        assert!(m.contains("index page 0 of disk stream"), "{m}");
        assert!(m.contains("authentication"), "{m}");
    }
}

#[test]
fn flipped_bit_in_the_master_index_fails_at_open() {
    let d = tmp();
    let (out, _) = small_encrypted(&d, "m.hxz", "pw");
    let a = std::fs::read(&out).unwrap();
    let (mo, ml) = (le_u64(&a, 56) as usize, le_u32(&a, 64) as usize);
    for at in [mo, mo + ml / 2, mo + ml - 1] {
        let mut b = a.clone();
        b[at] ^= 0x80;
        let p = d.path("flip.hxz");
        std::fs::write(&p, &b).unwrap();
        let e = open_pw(&p, "pw").unwrap_err();
        assert!(
            matches!(&e, Error::CorruptStructure { structure, .. } if structure.contains("master index")),
            "flip at {at}: {e:?}"
        );
    }
}

#[test]
fn every_header_byte_is_protected() {
    let d = tmp();
    let (out, _) = small_encrypted(&d, "h.hxz", "pw");
    let a = std::fs::read(&out).unwrap();
    let p = d.path("flip.hxz");
    for i in 0..HEADER_SIZE {
        let mut b = a.clone();
        b[i] ^= 0x04;
        std::fs::write(&p, &b).unwrap();
        match open_pw(&p, "pw") {
            Ok(_) => panic!("header byte {i} flipped, archive still opens"),
            Err(Error::CorruptStructure { structure, detail }) => {
                assert!(
                    structure.contains("header"),
                    "byte {i}: {structure}: {detail}"
                );
            }
            Err(Error::NotAnArchive(_)) => assert!(i < 8, "byte {i}"),
            Err(Error::UnsupportedVersion { .. }) => assert!((8..10).contains(&i), "byte {i}"),
            Err(e) => panic!("byte {i}: unexpected {e:?}"),
        }
    }
}

#[test]
fn key_wrap_damage_with_valid_header_crc_is_wrong_password() {
    let d = tmp();
    let (out, _) = small_encrypted(&d, "k.hxz", "pw");
    let a = std::fs::read(&out).unwrap();
    let p = d.path("flip.hxz");
    // Salt, wrap nonce, wrapped key (ciphertext and tag), archive id (bound as AAD),
    // and an Argon2 parameter changed within the accepted range.
    for i in [160, 191, 192, 203, 204, 230, 251, 72, 87, 152] {
        let mut b = a.clone();
        b[i] ^= if i == 152 { 0x02 } else { 0x40 };
        fix_header_crc(&mut b);
        std::fs::write(&p, &b).unwrap();
        let e = open_pw(&p, "pw").unwrap_err();
        assert!(matches!(e, Error::WrongPassword), "byte {i}: {e:?}");
    }
    // A hostile KDF parameter (Argon2 with 1 TiB) is refused, not attempted.
    let mut b = a.clone();
    b[148..152].copy_from_slice(&(1u32 << 30).to_le_bytes());
    fix_header_crc(&mut b);
    std::fs::write(&p, &b).unwrap();
    let e = open_pw(&p, "pw").unwrap_err();
    assert!(
        matches!(&e, Error::CorruptStructure { detail, .. } if detail.contains("out of range")),
        "{e:?}"
    );
    // Unknown KDF id.
    let mut b = a.clone();
    b[144] = 9;
    fix_header_crc(&mut b);
    std::fs::write(&p, &b).unwrap();
    assert!(matches!(
        open_pw(&p, "pw"),
        Err(Error::CorruptStructure { .. })
    ));
}

/// Random data stored raw (codec none, incompressible): every stored block has the same
/// length, so blocks can be swapped or transplanted byte for byte.
fn equal_length_blocks(d: &Tmp, name: &str, seed: u64) -> (PathBuf, Vec<u8>) {
    let data = random(64 * 4096, seed);
    let o = PackOptions {
        codec: Codec::None,
        block_size: 4096,
        encryption: enc("same password"),
        ..PackOptions::default()
    };
    let (out, _) = pack_ok(d, name, Some(&data), None, &o);
    (out, data)
}

#[test]
fn swapped_blocks_fail_authentication() {
    let d = tmp();
    let (out, data) = equal_length_blocks(&d, "s.hxz", 31);
    let f = open_pw(&out, "same password").unwrap();
    let es = entries(&f, DISK);
    let (x, y) = (5usize, 9usize);
    let (ex, ey) = (es[x], es[y]);
    assert_eq!(ex.stored_len, 4096 + TAG_LEN as u32);
    assert_eq!(ex.stored_len, ey.stored_len);
    let a = std::fs::read(&out).unwrap();
    let len = ex.stored_len as usize;
    let (ox, oy) = (ex.stored_offset as usize, ey.stored_offset as usize);
    let mut b = a.clone();
    b[ox..ox + len].copy_from_slice(&a[oy..oy + len]);
    b[oy..oy + len].copy_from_slice(&a[ox..ox + len]);
    let p = d.path("swapped.hxz");
    std::fs::write(&p, &b).unwrap();
    assert_corrupt_block(read_block(&p, "same password", DISK, &ex), DISK, x as u64);
    assert_corrupt_block(read_block(&p, "same password", DISK, &ey), DISK, y as u64);

    // The forging helper itself leaves a good archive good.
    let mut g = a.clone();
    forge_page(&mut g, "same password", DISK, 0, |_| {});
    std::fs::write(&p, &g).unwrap();
    assert!(read_all(&open_pw(&p, "same password").unwrap(), DISK).unwrap() == data);

    // Even with the CRC32s in the index made to match the swapped bytes, the AEAD (nonce and
    // AAD bind the stored offset) refuses both blocks.
    forge_page(&mut b, "same password", DISK, 0, |page| {
        set_entry_crc(page, x, bound_crc32(&ex.hash, &a[oy..oy + len]));
        set_entry_crc(page, y, bound_crc32(&ey.hash, &a[ox..ox + len]));
    });
    std::fs::write(&p, &b).unwrap();
    for (i, e) in [(x, ex), (y, ey)] {
        let detail =
            assert_corrupt_block(read_block(&p, "same password", DISK, &e), DISK, i as u64);
        assert!(
            detail.contains("authentication failed"),
            "block {i}: {detail}"
        );
    }
    // The rest of the stream is intact.
    let g = open_pw(&p, "same password").unwrap();
    let z = es[20];
    assert!(
        g.read_at(DISK, z.logical_offset, 4096).unwrap()
            == data[z.logical_offset as usize..z.logical_end() as usize]
    );
}

#[test]
fn block_from_another_archive_with_the_same_password_fails_authentication() {
    let d = tmp();
    let (a_path, _) = equal_length_blocks(&d, "a.hxz", 41);
    let (b_path, b_data) = equal_length_blocks(&d, "b.hxz", 42);
    let fa = open_pw(&a_path, "same password").unwrap();
    let fb = open_pw(&b_path, "same password").unwrap();
    let (ea, eb) = (entries(&fa, DISK)[7], entries(&fb, DISK)[7]);
    assert_eq!(
        (ea.stored_offset, ea.stored_len),
        (eb.stored_offset, eb.stored_len)
    );
    let a = std::fs::read(&a_path).unwrap();
    let b = std::fs::read(&b_path).unwrap();
    let (o, len) = (ea.stored_offset as usize, ea.stored_len as usize);
    let mut t = a.clone();
    t[o..o + len].copy_from_slice(&b[o..o + len]);
    let p = d.path("transplant.hxz");
    std::fs::write(&p, &t).unwrap();
    assert_corrupt_block(read_block(&p, "same password", DISK, &ea), DISK, 7);
    // With the CRC32 forged to match, authentication still fails (other data key, other
    // archive id).
    forge_page(&mut t, "same password", DISK, 0, |page| {
        set_entry_crc(page, 7, bound_crc32(&ea.hash, &b[o..o + len]));
    });
    std::fs::write(&p, &t).unwrap();
    let detail = assert_corrupt_block(read_block(&p, "same password", DISK, &ea), DISK, 7);
    assert!(detail.contains("authentication failed"), "{detail}");
    // (Block 7 of b really is what was copied.)
    assert!(
        fb.read_at(DISK, eb.logical_offset, 4096).unwrap()
            == b_data[eb.logical_offset as usize..eb.logical_end() as usize]
    );
}

#[test]
fn truncated_encrypted_archive_is_refused() {
    let d = tmp();
    let (out, _) = small_encrypted(&d, "t.hxz", "pw");
    let a = std::fs::read(&out).unwrap();
    let p = d.path("trunc.hxz");
    for cut in [a.len() - 1, a.len() / 2, HEADER_SIZE + 10, 100] {
        std::fs::write(&p, &a[..cut]).unwrap();
        let e = open_pw(&p, "pw").unwrap_err();
        assert!(
            matches!(e, Error::CorruptStructure { .. }),
            "cut {cut}: {e:?}"
        );
    }
}
