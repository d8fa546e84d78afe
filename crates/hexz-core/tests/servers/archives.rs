//! The archives every remote test reads: plain, CDC + zstd, encrypted, signed, and thin
//! chains (one at the root of the server, one in a subdirectory), with the bytes they hold.

use crate::common::{mixed_data, pack_files, read_all, Rng};
use hexz_core::algo::encryption::{Kdf, Password};
use hexz_core::format::Codec;
use hexz_core::ops::pack::EncryptOptions;
use hexz_core::ops::{CdcParams, PackOptions};
use hexz_core::store::RemoteOptions;
use hexz_core::{File, OpenOptions, SnapshotStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One packed archive and what it must read back as.
pub struct Archive {
    /// Path relative to the server root / bucket prefix (`chain/child.hxz`).
    pub name: String,
    /// The local file.
    pub path: PathBuf,
    /// Expected disk stream.
    pub disk: Vec<u8>,
    /// Expected memory stream.
    pub memory: Option<Vec<u8>>,
    /// Password, for encrypted archives.
    pub password: Option<&'static str>,
    /// Public key the archive is signed with.
    pub signer: Option<[u8; 32]>,
}

/// Remote options for loopback test servers: restricted addresses allowed, short timeouts,
/// few attempts.
pub fn test_remote() -> RemoteOptions {
    RemoteOptions {
        allow_restricted: true,
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(2),
        max_attempts: 4,
        max_retry_time: Duration::from_secs(20),
        ..RemoteOptions::default()
    }
}

impl Archive {
    /// Open options for this archive (password, signer) over `remote`.
    pub fn options(&self, remote: RemoteOptions) -> OpenOptions {
        OpenOptions {
            password: self.password.map(|p| Password::new(p.as_bytes().to_vec())),
            require_signer: self.signer,
            remote,
            ..OpenOptions::default()
        }
    }

    /// Checks every byte of every stream of `f`, read and extracted (extraction streams
    /// its parts, decoding each block as it arrives), and a few random reads.
    pub fn check(&self, f: &File) {
        // Extraction first: it keeps nothing in the block cache, so the reads below fetch
        // again (and reads before it would leave it nothing to fetch).
        let mut out = Vec::new();
        hexz_core::ops::extract::extract_to_writer(f, SnapshotStream::Disk, &mut out, None)
            .unwrap_or_else(|e| panic!("{}: extracting disk stream: {e}", self.name));
        assert!(
            out == self.disk,
            "{}: extracted disk stream differs",
            self.name
        );
        let disk = read_all(f, SnapshotStream::Disk)
            .unwrap_or_else(|e| panic!("{}: reading disk stream: {e}", self.name));
        assert!(disk == self.disk, "{}: disk stream differs", self.name);
        match &self.memory {
            Some(m) => {
                let got = read_all(f, SnapshotStream::Memory)
                    .unwrap_or_else(|e| panic!("{}: reading memory stream: {e}", self.name));
                assert!(&got == m, "{}: memory stream differs", self.name);
            }
            None => assert_eq!(f.size(SnapshotStream::Memory), 0, "{}", self.name),
        }
        let mut rng = Rng::new(self.disk.len() as u64);
        for _ in 0..20 {
            let off = rng.below(self.disk.len() as u64);
            let len = 1 + rng.below(200_000) as usize;
            let got = f
                .read_at(SnapshotStream::Disk, off, len)
                .unwrap_or_else(|e| panic!("{}: read_at {off}+{len}: {e}", self.name));
            let end = (off as usize + len).min(self.disk.len());
            assert!(
                got == self.disk[off as usize..end],
                "{}: read_at {off}+{len} differs",
                self.name
            );
        }
    }
}

fn fast_kdf() -> Kdf {
    Kdf::Argon2id {
        m_kib: 1024,
        t: 1,
        p: 1,
    }
}

/// Packs the test archives under `dir` (names are relative paths under `dir`).
pub fn build(dir: &Path) -> Vec<Archive> {
    std::fs::create_dir_all(dir.join("chain")).unwrap();
    let disk = mixed_data(2_500_000, 65536, 11);
    let memory = mixed_data(700_000, 65536, 12);
    let mut out = Vec::new();
    let mk = |name: &str, disk: &[u8], memory: Option<&[u8]>, opts: &PackOptions| {
        let (path, _) = pack_files(dir, name, Some(disk), memory, opts);
        let _ = std::fs::remove_file(dir.join(format!("{name}.disk.raw")));
        let _ = std::fs::remove_file(dir.join(format!("{name}.mem.raw")));
        path
    };

    let plain = mk("plain.hxz", &disk, Some(&memory), &PackOptions::default());
    out.push(Archive {
        name: "plain.hxz".into(),
        path: plain,
        disk: disk.clone(),
        memory: Some(memory.clone()),
        password: None,
        signer: None,
    });

    let cdc_opts = PackOptions {
        codec: Codec::Zstd,
        level: 3,
        cdc: Some(CdcParams::default()),
        ..PackOptions::default()
    };
    let cdc = mk("cdc.hxz", &disk, None, &cdc_opts);
    out.push(Archive {
        name: "cdc.hxz".into(),
        path: cdc,
        disk: disk.clone(),
        memory: None,
        password: None,
        signer: None,
    });

    let enc_opts = PackOptions {
        encryption: Some(EncryptOptions {
            password: Password::new(b"remote-pw".to_vec()),
            kdf: fast_kdf(),
        }),
        ..PackOptions::default()
    };
    let enc = mk("enc.hxz", &disk, Some(&memory), &enc_opts);
    out.push(Archive {
        name: "enc.hxz".into(),
        path: enc,
        disk: disk.clone(),
        memory: Some(memory.clone()),
        password: Some("remote-pw"),
        signer: None,
    });

    let signed = mk("signed.hxz", &disk, None, &PackOptions::default());
    let (seed, public) = hexz_core::algo::signing::generate_keypair().unwrap();
    hexz_core::ops::rewrite::sign(&signed, &seed, None, Default::default()).unwrap();
    out.push(Archive {
        name: "signed.hxz".into(),
        path: signed,
        disk: disk.clone(),
        memory: None,
        password: None,
        signer: Some(public),
    });

    // Thin chains: the child changes part of the base. One pair at the root (the parent URL
    // must keep the '/' after the host), one in a subdirectory.
    let mut changed = disk.clone();
    let mut rng = Rng::new(99);
    for _ in 0..8 {
        let at = rng.below(changed.len() as u64 - 70_000) as usize;
        rng.fill(&mut changed[at..at + 70_000]);
    }
    changed.extend_from_slice(&mixed_data(300_000, 65536, 13));
    for (base, child) in [
        ("thinbase.hxz", "thin.hxz"),
        ("chain/base.hxz", "chain/child.hxz"),
    ] {
        let bp = mk(base, &disk, None, &PackOptions::default());
        let opts = PackOptions {
            base: Some(bp.clone()),
            ..PackOptions::default()
        };
        let cp = mk(child, &changed, None, &opts);
        out.push(Archive {
            name: base.into(),
            path: bp,
            disk: disk.clone(),
            memory: None,
            password: None,
            signer: None,
        });
        out.push(Archive {
            name: child.into(),
            path: cp,
            disk: changed.clone(),
            memory: None,
            password: None,
            signer: None,
        });
    }
    out
}

/// A plain archive of `len` incompressible bytes (so the archive is about as large), in a
/// new directory.
pub fn archive_of(len: usize) -> (tempfile::TempDir, Archive) {
    let mut disk = vec![0u8; len];
    Rng::new(5).fill(&mut disk);
    archive_with(disk, &PackOptions::default())
}

/// A plain archive of `disk`, packed with `opts`, in a new directory.
pub fn archive_with(disk: Vec<u8>, opts: &PackOptions) -> (tempfile::TempDir, Archive) {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = pack_files(dir.path(), "a.hxz", Some(&disk), None, opts);
    (
        dir,
        Archive {
            name: "a.hxz".into(),
            path,
            disk,
            memory: None,
            password: None,
            signer: None,
        },
    )
}

/// The bytes of `a`'s archive file.
pub fn file_bytes(a: &Archive) -> Vec<u8> {
    std::fs::read(&a.path).unwrap()
}

/// The inclusive byte range of a `Range: bytes=A-B` header.
pub fn range_of(h: &str) -> (u64, u64) {
    let (a, b) = h
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .unwrap_or_else(|| panic!("range header {h:?}"));
    (a.parse().unwrap(), b.parse().unwrap())
}
