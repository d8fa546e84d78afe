//! Header.

use super::*;

#[test]
fn every_header_byte_flip_is_detected() {
    let fx = fixture();
    for pos in 0..HEADER_SIZE {
        for mask in [0x01u8, 0x80] {
            let mut a = fx.bytes.clone();
            a[pos] ^= mask;
            let e = err_of(open_mem(a), &format!("header byte {pos} ^ {mask:#x}"));
            match (pos, &e) {
                (0..=7, Error::NotAnArchive(m)) => assert!(m.contains("magic"), "{e}"),
                (8..=9, Error::UnsupportedVersion { major, .. }) => assert_ne!(*major, 1),
                (10.., Error::CorruptStructure { structure, detail }) => {
                    assert!(structure.starts_with("header"), "byte {pos}: {e}");
                    assert!(detail.contains("CRC32"), "byte {pos}: {e}");
                }
                _ => panic!("header byte {pos} ^ {mask:#x}: unexpected error {e:?}"),
            }
        }
    }
    // Through a file, the message names the file.
    let mut a = fx.bytes.clone();
    a[100] ^= 0x10;
    let p = fx.write("hdr.hxz", &a);
    let msg = err_of(File::open(&p), "flipped header").to_string();
    assert!(msg.contains("header") && msg.contains("hdr.hxz"), "{msg}");
}

#[test]
fn unknown_major_version_is_refused_with_a_clear_message() {
    let fx = fixture();
    let mut a = fx.bytes.clone();
    a[8..10].copy_from_slice(&2u16.to_le_bytes());
    fix_header_crc(&mut a);
    let p = fx.write("v2.hxz", &a);
    let e = err_of(File::open(&p), "major version 2");
    assert!(
        matches!(
            e,
            Error::UnsupportedVersion {
                major: 2,
                minor: 1,
                supported: 1
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("unsupported archive format version 2"),
        "{e}"
    );
    // Major 0 as well.
    a[8..10].copy_from_slice(&0u16.to_le_bytes());
    fix_header_crc(&mut a);
    let e = err_of(open_mem(a), "major version 0");
    assert!(
        e.to_string()
            .contains("unsupported archive format version 0.1"),
        "{e}"
    );
}

#[test]
fn newer_minor_version_opens_and_reads() {
    let fx = fixture();
    let mut a = fx.bytes.clone();
    a[10..12].copy_from_slice(&7u16.to_le_bytes());
    fix_header_crc(&mut a);
    let p = fx.write("minor7.hxz", &a);
    let f = File::open(&p).unwrap();
    assert_eq!((f.header().major, f.header().minor), (1, 7));
    assert!(read_all(&f, SnapshotStream::Disk).unwrap() == fx.disk);
    assert!(read_all(&f, SnapshotStream::Memory).unwrap() == fx.memory);
    ops::verify(&f, None).unwrap();
}

#[test]
fn unknown_required_flag_is_refused_and_optional_flag_ignored() {
    let fx = fixture();
    let mut a = fx.bytes.clone();
    // The fixture's own flags (BOUND_CRC) stay set: each case adds one bit.
    let own = u32::from_le_bytes(a[12..16].try_into().unwrap());
    a[12..16].copy_from_slice(&(own | 1u32 << 9).to_le_bytes());
    fix_header_crc(&mut a);
    let e = err_of(open_mem(a.clone()), "unknown required flag");
    assert!(matches!(e, Error::Unsupported(_)), "{e:?}");
    assert!(e.to_string().contains("0x0200"), "{e}");
    // Bit 0: encrypted.
    a[12..16].copy_from_slice(&(own | 1).to_le_bytes());
    fix_header_crc(&mut a);
    let e = err_of(open_mem(a.clone()), "encrypted");
    assert!(e.to_string().contains("encrypted"), "{e}");
    // High (optional) bits are ignored.
    a[12..16].copy_from_slice(&(own | 1u32 << 20).to_le_bytes());
    fix_header_crc(&mut a);
    let f = open_mem(a).unwrap();
    assert!(read_all(&f, SnapshotStream::Memory).unwrap() == fx.memory);
}

#[test]
fn header_fields_inconsistent_with_the_index_are_refused() {
    let fx = fixture();
    type Mutation = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Mutation, &str)> = vec![
        (
            "disk size",
            Box::new(|a| {
                let v = le_u64(a, 32) + 1;
                a[32..40].copy_from_slice(&v.to_le_bytes())
            }),
            "master index",
        ),
        (
            "memory bit cleared",
            Box::new(|a| a[48] = 1),
            "master index",
        ),
        ("unknown stream bit", Box::new(|a| a[48] = 7), "stream bits"),
        ("codec id", Box::new(|a| a[16] = 9), "unknown codec id 9"),
        (
            "block size 0",
            Box::new(|a| a[20..24].copy_from_slice(&0u32.to_le_bytes())),
            "block size",
        ),
        (
            "block size 1 GiB",
            Box::new(|a| a[20..24].copy_from_slice(&(1u32 << 30).to_le_bytes())),
            "block size",
        ),
        (
            "master inside the header",
            Box::new(|a| a[56..64].copy_from_slice(&100u64.to_le_bytes())),
            "master index at offset 100",
        ),
        (
            "master offset overflows",
            Box::new(|a| a[56..64].copy_from_slice(&(u64::MAX - 3).to_le_bytes())),
            "lies outside",
        ),
        (
            "master too short",
            Box::new(|a| a[64..68].copy_from_slice(&20u32.to_le_bytes())),
            "master index",
        ),
        (
            "master one byte short",
            Box::new(|a| {
                let v = le_u32(a, 64) - 1;
                a[64..68].copy_from_slice(&v.to_le_bytes())
            }),
            "master index",
        ),
    ];
    for (what, edit, want) in cases {
        let mut a = fx.bytes.clone();
        edit(&mut a);
        fix_header_crc(&mut a);
        let (r, big) = max_alloc(|| open_mem(a));
        let e = err_of(r, what);
        assert!(e.to_string().contains(want), "{what}: {e}");
        assert!(big < 1 << 20, "{what}: allocated {big} bytes");
    }
}
