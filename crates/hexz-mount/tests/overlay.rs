//! The writable overlay against a model: random writes, zeroing and reopenings compared
//! byte for byte with a plain `Vec`, crash recovery (torn tails), identity and lock checks,
//! and encryption of what is written.

use hexz_core::ops::{pack, PackInput, PackOptions, PackSource};
use hexz_core::{File, SnapshotStream};
use hexz_mount::overlay::Overlay;
use hexz_mount::Volume;
use std::path::{Path, PathBuf};

const DISK: SnapshotStream = SnapshotStream::Disk;

fn data(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|i| {
            if (i / 8192) % 3 == 0 {
                0
            } else {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            }
        })
        .collect()
}

fn archive(dir: &Path, name: &str, bytes: &[u8], opts: &PackOptions) -> PathBuf {
    let raw = dir.join(format!("{name}.raw"));
    std::fs::write(&raw, bytes).unwrap();
    let out = dir.join(name);
    pack(
        PackInput {
            disk: Some(PackSource::Path(raw)),
            memory: None,
        },
        &out,
        opts,
        None,
    )
    .unwrap();
    out
}

fn read_all(v: &Volume) -> Vec<u8> {
    let mut buf = vec![0u8; v.size(DISK) as usize];
    assert_eq!(v.read_at(DISK, 0, &mut buf).unwrap(), buf.len());
    buf
}

fn rng(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn model_random_writes_survive_reopen() {
    let d = tempfile::tempdir().unwrap();
    // An odd size: the last chunk is short.
    let base_bytes = data((3 << 20) + 1234, 1);
    let arc = archive(d.path(), "a.hxz", &base_bytes, &PackOptions::default());
    let ovp = d.path().join("a.ovl");
    let mut model = base_bytes.clone();
    let mut st = 0x1234_5678_9abc_def0u64;
    for round in 0..4 {
        let file = File::open(&arc).unwrap();
        let ov = Overlay::open_or_create(&ovp, &file, arc.to_str().unwrap()).unwrap();
        let vol = Volume::with_overlay(file, ov);
        assert!(
            read_all(&vol) == model,
            "round {round}: reopened overlay differs"
        );
        for _ in 0..60 {
            let size = model.len() as u64;
            let off = rng(&mut st) % size;
            let len = (1 + rng(&mut st) % 70_000).min(size - off);
            if rng(&mut st) % 5 == 0 {
                vol.zero(DISK, off, len).unwrap();
                model[off as usize..(off + len) as usize].fill(0);
            } else {
                let b: Vec<u8> = (0..len).map(|_| rng(&mut st) as u8).collect();
                vol.write_at(DISK, off, &b).unwrap();
                model[off as usize..(off + len) as usize].copy_from_slice(&b);
            }
            // Spot check a random range.
            let o = rng(&mut st) % size;
            let l = (rng(&mut st) % 200_000).min(size - o) as usize;
            let mut got = vec![0u8; l];
            vol.read_at(DISK, o, &mut got).unwrap();
            assert!(got[..] == model[o as usize..o as usize + l]);
        }
        // Writing past the end is refused and changes nothing.
        let size = model.len() as u64;
        let e = vol.write_at(DISK, size - 2, b"abc").unwrap_err();
        assert!(e.to_string().contains("past the end"), "{e}");
        if round % 2 == 0 {
            vol.sync().unwrap();
        }
        assert!(read_all(&vol) == model);
    }
    // The archive itself never changes.
    assert!(read_all(&Volume::new(File::open(&arc).unwrap())) == base_bytes);
}

#[test]
fn torn_tail_is_cut_and_synced_data_kept() {
    let d = tempfile::tempdir().unwrap();
    let base_bytes = data(1 << 20, 2);
    let arc = archive(d.path(), "a.hxz", &base_bytes, &PackOptions::default());
    let ovp = d.path().join("a.ovl");
    let mut model = base_bytes.clone();
    {
        let file = File::open(&arc).unwrap();
        let ov = Overlay::create(&ovp, &file, arc.to_str().unwrap()).unwrap();
        let vol = Volume::with_overlay(file, ov);
        vol.write_at(DISK, 4096, &[0xaa; 8192]).unwrap();
        model[4096..4096 + 8192].fill(0xaa);
        vol.sync().unwrap();
        vol.write_at(DISK, 65536, &[0xbb; 4096]).unwrap();
        vol.write_at(DISK, 131072, &[0xcc; 4096]).unwrap();
    }
    let full = std::fs::read(&ovp).unwrap();
    // Simulate a crash in the middle of the last record's data (a torn write).
    let torn_len = full.len() - 100;
    std::fs::write(&ovp, &full[..torn_len]).unwrap();
    model[65536..65536 + 4096].fill(0xbb);
    let file = File::open(&arc).unwrap();
    let ov = Overlay::open(&ovp, &file, true).unwrap();
    let vol = Volume::with_overlay(file, ov);
    assert!(
        read_all(&vol) == model,
        "recovery lost synced data or kept a torn record"
    );
    drop(vol);
    assert!(
        (std::fs::metadata(&ovp).unwrap().len() as usize) < torn_len,
        "torn tail not cut"
    );
    // Garbage in the middle of the header: refused with a clear error.
    let mut bad = std::fs::read(&ovp).unwrap();
    bad[50] ^= 1;
    std::fs::write(&ovp, &bad).unwrap();
    let e = Overlay::open(&ovp, &File::open(&arc).unwrap(), true).unwrap_err();
    assert!(e.to_string().contains("CRC32"), "{e}");
}

#[test]
fn identity_lock_and_version_checks() {
    let d = tempfile::tempdir().unwrap();
    let a = archive(
        d.path(),
        "a.hxz",
        &data(1 << 20, 3),
        &PackOptions::default(),
    );
    let b = archive(
        d.path(),
        "b.hxz",
        &data(1 << 20, 3),
        &PackOptions::default(),
    );
    let ovp = d.path().join("a.ovl");
    let fa = File::open(&a).unwrap();
    let ov = Overlay::create(&ovp, &fa, a.to_str().unwrap()).unwrap();
    // Locked while open.
    let e = Overlay::open(&ovp, &fa, true).unwrap_err();
    assert!(e.to_string().contains("in use"), "{e}");
    drop(ov);
    let e = Overlay::open(&ovp, &File::open(&b).unwrap(), true).unwrap_err();
    assert!(e.to_string().contains("another archive"), "{e}");
    // A newer major version is refused by name.
    let mut bytes = std::fs::read(&ovp).unwrap();
    bytes[8] = 2;
    let crc = crc32fast::hash(&bytes[..4092]);
    bytes[4092..4096].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&ovp, &bytes).unwrap();
    let e = Overlay::open(&ovp, &fa, true).unwrap_err();
    assert!(e.to_string().contains("version 2.0"), "{e}");
    // Not an overlay at all.
    std::fs::write(&ovp, b"hello").unwrap();
    let e = Overlay::open(&ovp, &fa, true).unwrap_err();
    assert!(e.to_string().contains("shorter"), "{e}");
}

#[test]
fn encrypted_overlay_has_no_plaintext_and_random_nonces() {
    use hexz_core::algo::encryption::Password;
    let d = tempfile::tempdir().unwrap();
    let pw = Password::new(b"pw".to_vec());
    let opts = PackOptions {
        encryption: Some(hexz_core::ops::pack::EncryptOptions {
            password: pw.clone(),
            kdf: hexz_core::algo::encryption::Kdf::Pbkdf2 {
                iterations: 600_000,
            },
        }),
        ..PackOptions::default()
    };
    let arc = archive(d.path(), "e.hxz", &data(1 << 20, 4), &opts);
    let open = || {
        File::open_with(
            &arc,
            hexz_core::OpenOptions {
                password: Some(pw.clone()),
                ..Default::default()
            },
        )
        .unwrap()
    };
    let ovp = d.path().join("e.ovl");
    let secret = b"PLAINTEXT-MARKER".repeat(256);
    {
        let f = open();
        let vol = Volume::with_overlay(f.clone(), Overlay::create(&ovp, &f, "e.hxz").unwrap());
        // The same chunk twice: the two records must use different nonces.
        vol.write_at(DISK, 0, &secret).unwrap();
        vol.write_at(DISK, 0, &secret).unwrap();
        vol.sync().unwrap();
    }
    let bytes = std::fs::read(&ovp).unwrap();
    assert!(!bytes.windows(16).any(|w| w == b"PLAINTEXT-MARKER"));
    let r1 = &bytes[4096..4096 + 64];
    let r2 = &bytes[4096 + 64 + 4096 + 16..4096 + 128 + 4096 + 16];
    assert_eq!(&r1[..4], b"HXOR");
    assert_eq!(&r2[..4], b"HXOR");
    assert_ne!(r1[32..44], r2[32..44], "nonce reused");
    let f = open();
    let vol = Volume::with_overlay(f.clone(), Overlay::open(&ovp, &f, true).unwrap());
    let mut got = vec![0u8; secret.len()];
    vol.read_at(DISK, 0, &mut got).unwrap();
    assert_eq!(got, secret);
    drop(vol);
    // Tampering with a sealed chunk is detected on read.
    let mut bad = bytes.clone();
    bad[4096 + 64 + 4096 + 16 + 64 + 10] ^= 1;
    // Fix the data CRC so only authentication can catch it.
    let start = 4096 + 64 + 4096 + 16 + 64;
    let crc = crc32fast::hash(&bad[start..start + 4096 + 16]);
    bad[start - 64 + 44..start - 64 + 48].copy_from_slice(&crc.to_le_bytes());
    let hcrc = crc32fast::hash(&bad[start - 64..start - 4]);
    bad[start - 4..start].copy_from_slice(&hcrc.to_le_bytes());
    std::fs::write(&ovp, &bad).unwrap();
    let f = open();
    let vol = Volume::with_overlay(f.clone(), Overlay::open(&ovp, &f, true).unwrap());
    let e = vol.read_at(DISK, 0, &mut got).unwrap_err();
    assert!(e.to_string().contains("authentication"), "{e}");
}
