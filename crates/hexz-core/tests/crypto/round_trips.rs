//! Round trips and what the file reveals.

use super::*;

fn check_round_trip(codec: Codec, cdc: bool) {
    let tag = format!("{codec:?} cdc={cdc}");
    let d = tmp();
    let disk = mixed(5 << 20, 11);
    let mut memory = text(1 << 20, 12);
    memory.extend_from_slice(&random(300_001, 13));
    let opts = PackOptions {
        codec,
        level: 3,
        block_size: 4096,
        cdc: cdc.then_some(CdcParams {
            min: 1024,
            avg: 2048,
            max: 8192,
        }),
        encryption: enc("round trip password"),
        ..PackOptions::default()
    };
    let (out, stats) = pack_ok(&d, "e.hxz", Some(&disk), Some(&memory), &opts);
    let a = std::fs::read(&out).unwrap();

    // Header: encrypted flag, sizes and stream bits hidden, key wrap present.
    assert_eq!(le_u32(&a, 12) & 1, 1, "{tag}: ENCRYPTED flag");
    assert!(
        a[32..49].iter().all(|&b| b == 0),
        "{tag}: header stream sizes/bits must be zero, got {:?}",
        &a[32..49]
    );
    assert_eq!(a[144], 2, "{tag}: KDF id Argon2id");
    assert_eq!(
        (le_u32(&a, 148), le_u32(&a, 152), le_u32(&a, 156)),
        (1024, 1, 1),
        "{tag}: KDF params"
    );

    // Opening needs the password.
    assert!(
        matches!(File::open(&out), Err(Error::PasswordRequired(_))),
        "{tag}"
    );
    let f = open_pw(&out, "round trip password").unwrap();
    assert!(f.header().is_encrypted());
    assert_eq!(f.size(DISK), disk.len() as u64, "{tag}");
    assert_eq!(f.size(MEM), memory.len() as u64, "{tag}");
    assert_eq!(f.streams(), vec![DISK, MEM]);
    assert!(
        f.master().stream(DISK).unwrap().pages.len() >= 2,
        "{tag}: want several index pages"
    );
    assert_eq!(stats.disk.as_ref().unwrap().input_bytes, disk.len() as u64);
    assert!(
        stats.disk.as_ref().unwrap().dedup_blocks > 0 || cdc,
        "{tag}: repeated 4 KiB blocks dedup"
    );

    // Whole streams, random ranges, a Read + Seek pass.
    assert!(read_all(&f, DISK).unwrap() == disk, "{tag}: disk");
    assert!(read_all(&f, MEM).unwrap() == memory, "{tag}: memory");
    let mut rng = Rng::new(99);
    for i in 0..400 {
        let (s, data) = if i % 3 == 0 {
            (MEM, &memory)
        } else {
            (DISK, &disk)
        };
        let off = rng.below(data.len() as u64 + 100);
        let len = match rng.below(4) {
            0 => rng.below(16) as usize,
            1 => rng.below(5000) as usize,
            2 => rng.below(40_000) as usize,
            _ => rng.below(400_000) as usize,
        };
        let got = f.read_at(s, off, len).unwrap();
        let start = off.min(data.len() as u64) as usize;
        let end = (start + len).min(data.len());
        assert!(
            got == data[start..end],
            "{tag}: {s} read at {off} len {len} differs"
        );
    }
    let mut r = f.reader(MEM).unwrap();
    let mut back = Vec::new();
    r.read_to_end(&mut back).unwrap();
    assert!(back == memory, "{tag}: reader");

    // Verification of every block works on an encrypted archive.
    let rep = verify(&f, None).unwrap();
    assert_eq!(rep.bytes, (disk.len() + memory.len()) as u64);

    // Nothing recognisable in the file: no distinctive 64-byte window of either stream, no
    // plain BLAKE3 of any block, and the index holds keyed hashes only.
    let mut windows = distinctive_windows(&disk, 16);
    windows.extend(distinctive_windows(&memory, 16));
    assert!(windows.len() > 100_000, "{tag}: {} windows", windows.len());
    let mut hashes = plain_block_hashes(&f, DISK, &disk);
    hashes.extend(plain_block_hashes(&f, MEM, &memory));
    let (nw, nh) = leaks(&a, &windows, &hashes);
    assert_eq!(
        nw, 0,
        "{tag}: {nw} plaintext windows found in the encrypted archive"
    );
    assert_eq!(
        nh, 0,
        "{tag}: {nh} plain block hashes found in the encrypted archive"
    );
    for e in entries(&f, DISK).iter().filter(|e| !e.is_zero()).take(50) {
        let b = &disk[e.logical_offset as usize..e.logical_end() as usize];
        assert_ne!(
            &e.hash,
            blake3::hash(b).as_bytes(),
            "{tag}: index hash is plain BLAKE3"
        );
    }

    // Control: the same input unencrypted does show both (so the search above can find them).
    if codec == Codec::None && !cdc {
        let plain_opts = PackOptions {
            encryption: None,
            ..opts.clone()
        };
        let (pout, _) = pack_ok(&d, "p.hxz", Some(&disk), Some(&memory), &plain_opts);
        let pa = std::fs::read(&pout).unwrap();
        let pf = File::open(&pout).unwrap();
        let ph = plain_block_hashes(&pf, DISK, &disk);
        let (pw_, ph_) = leaks(&pa, &windows, &ph);
        assert!(pw_ > windows.len() / 2, "control: {pw_} windows found");
        assert!(
            ph_ >= ph.len(),
            "control: {ph_} of {} hashes found",
            ph.len()
        );
        assert_eq!(
            le_u64(&pa, 32),
            disk.len() as u64,
            "control: header disk size"
        );
    }
}

#[test]
fn round_trip_lz4_fixed() {
    check_round_trip(Codec::Lz4, false);
}

#[test]
fn round_trip_lz4_cdc() {
    check_round_trip(Codec::Lz4, true);
}

#[test]
fn round_trip_zstd_fixed() {
    check_round_trip(Codec::Zstd, false);
}

#[test]
fn round_trip_zstd_cdc() {
    check_round_trip(Codec::Zstd, true);
}

#[test]
fn round_trip_none_fixed() {
    check_round_trip(Codec::None, false);
}

#[test]
fn round_trip_none_cdc() {
    check_round_trip(Codec::None, true);
}

#[test]
fn same_input_and_password_give_unrelated_ciphertexts() {
    let d = tmp();
    let data = text(256 << 10, 5);
    let o = PackOptions {
        codec: Codec::None,
        encryption: enc("pw"),
        ..PackOptions::default()
    };
    let (a, _) = pack_ok(&d, "a.hxz", Some(&data), None, &o);
    let (b, _) = pack_ok(&d, "b.hxz", Some(&data), None, &o);
    let (a, b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert_eq!(a.len(), b.len());
    assert_ne!(a[160..192], b[160..192], "salts differ");
    assert_ne!(a[72..88], b[72..88], "archive ids differ");
    let same = a[HEADER_SIZE..]
        .iter()
        .zip(&b[HEADER_SIZE..])
        .filter(|(x, y)| x == y)
        .count();
    // Independent keys: about 1/256 of the bytes agree by chance.
    assert!(
        same < (a.len() - HEADER_SIZE) / 100,
        "{same} of {} body bytes equal",
        a.len() - HEADER_SIZE
    );
}

#[test]
fn default_pbkdf2_round_trip_and_weak_iteration_count_refused() {
    let d = tmp();
    let data = mixed(600_000, 3);
    let o = PackOptions {
        encryption: Some(EncryptOptions {
            password: pw("pbkdf2 pw"),
            kdf: Kdf::default(),
        }),
        ..PackOptions::default()
    };
    let (out, _) = pack_ok(&d, "p.hxz", Some(&data), None, &o);
    let a = std::fs::read(&out).unwrap();
    assert_eq!(a[144], 1, "KDF id PBKDF2");
    assert_eq!(le_u32(&a, 148), DEFAULT_PBKDF2_ITERATIONS);
    assert_eq!(DEFAULT_PBKDF2_ITERATIONS, 600_000);
    let f = open_pw(&out, "pbkdf2 pw").unwrap();
    assert!(read_all(&f, DISK).unwrap() == data);

    let weak = PackOptions {
        encryption: Some(EncryptOptions {
            password: pw("x"),
            kdf: Kdf::Pbkdf2 { iterations: 1000 },
        }),
        ..PackOptions::default()
    };
    let before = d.names();
    let err = pack_into(&d, "weak.hxz", Some(&data[..5000]), None, &weak).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(err.to_string().contains("600000"), "{err}");
    let mut after = d.names();
    after.retain(|n| n != "weak.hxz.disk.raw");
    assert_eq!(after, before, "a refused pack leaves nothing");
}
