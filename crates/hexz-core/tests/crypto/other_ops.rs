//! Other operations on encrypted archives.

use super::*;

#[test]
fn empty_and_all_zero_streams_encrypted() {
    let d = tmp();
    let zeros = vec![0u8; 300_000];
    let (out, _) = pack_ok(
        &d,
        "z.hxz",
        Some(&[]),
        Some(&zeros),
        &PackOptions {
            encryption: enc("z"),
            ..PackOptions::default()
        },
    );
    let f = open_pw(&out, "z").unwrap();
    assert_eq!((f.size(DISK), f.size(MEM)), (0, zeros.len() as u64));
    assert!(f.read_at(DISK, 0, 10).unwrap().is_empty());
    assert!(read_all(&f, MEM).unwrap() == zeros);
    assert!(matches!(open_pw(&out, "y"), Err(Error::WrongPassword)));
}

#[test]
fn flatten_an_encrypted_thin_child() {
    let t = thin_fixture();
    let (child, _) = pack_ok(
        &t.d,
        "child.hxz",
        Some(&t.child_data),
        None,
        &PackOptions {
            block_size: 4096,
            base: Some(t.parent.clone()),
            encryption: enc("chain pw"),
            ..PackOptions::default()
        },
    );
    let f = open_pw(&child, "chain pw").unwrap();
    let flat = t.d.path("flat.hxz");
    let e = hexz_core::ops::flatten(&f, &flat, None, None).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    assert!(!flat.exists());
    hexz_core::ops::flatten(&f, &flat, enc("flat pw"), None).unwrap();
    let a = std::fs::read(&flat).unwrap();
    assert_eq!(le_u32(&a, 12) & 0b11, 0b01, "encrypted, no parent");
    let g = open_pw(&flat, "flat pw").unwrap();
    assert_eq!(g.chain_len(), 1);
    assert!(read_all(&g, DISK).unwrap() == t.child_data);
    let w = distinctive_windows(&t.child_data, 16);
    assert_eq!(leaks(&a, &w, &HashSet::new()).0, 0);
}

/// `diff` compares aligned blocks by their index hashes. Encrypted archives hold keyed hashes
/// (one key per chain), so equal content in archives with different keys must still compare
/// equal.
#[test]
fn diff_of_equal_content_across_encryption_is_identical() {
    let d = tmp();
    let data = mixed(1 << 20, 71);
    let o = |encryption| PackOptions {
        block_size: 4096,
        encryption,
        ..PackOptions::default()
    };
    let (plain, _) = pack_ok(&d, "p.hxz", Some(&data), None, &o(None));
    let (e1, _) = pack_ok(&d, "e1.hxz", Some(&data), None, &o(enc("pw")));
    let (e2, _) = pack_ok(&d, "e2.hxz", Some(&data), None, &o(enc("pw")));
    let fp = File::open(&plain).unwrap();
    let f1 = open_pw(&e1, "pw").unwrap();
    let f2 = open_pw(&e2, "pw").unwrap();
    // Sanity: the same archive against itself, and plain against plain.
    assert!(hexz_core::ops::diff(&f1, &f1).unwrap().identical());
    assert!(hexz_core::ops::diff(&fp, &fp).unwrap().identical());
    for (name, a, b) in [
        ("plain vs encrypted", &fp, &f1),
        ("two encryptions", &f1, &f2),
    ] {
        let r = hexz_core::ops::diff(a, b).unwrap();
        assert!(
            r.identical(),
            "{name}: equal content reported as different: {} differing bytes of {}, unique \
             {} / {}",
            r.streams[0].differing_bytes(),
            data.len(),
            r.unique_a,
            r.unique_b
        );
        assert_eq!((r.unique_a, r.unique_b), (0, 0), "{name}");
    }
}
