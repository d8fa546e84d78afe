//! Corruption sweep: small real archives of every kind — LZ4 with two streams, Zstandard
//! with content-defined blocks, stored (no codec), encrypted, signed, a thin child over its
//! parent, a damaged parent under an intact child, and a file tree (every file looked up and
//! read through its file table) — get one byte changed at every offset
//! and are truncated at every length; each damaged archive is opened, read whole and
//! verified. Every outcome must be the exact original bytes or a clean one-line error: zero
//! panics, zero hangs, zero wrong bytes.
//!
//! The normal test run sweeps a sample (every 11th offset, truncations in steps of 61; about
//! 15 000 mutations, a few seconds in release). `HEXZ_SWEEP=full` (`make sweep`) changes
//! every byte twice (inverted, and one bit flipped) and truncates at every length. The
//! counts are printed (`cargo test --test sweep -- --nocapture`) and recorded in
//! docs/RELIABILITY.md.

mod common;

use common::*;
use hexz_core::algo::encryption::{Kdf, Password};
use hexz_core::api::FileTree;
use hexz_core::ops::pack::EncryptOptions;
use hexz_core::ops::{self, CdcParams, PackOptions};
use hexz_core::store::StorageBackend;
use hexz_core::{Error, File, OpenOptions, SnapshotStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BS: usize = 4096;
const PASSWORD: &[u8] = b"sweep password";
#[cfg(feature = "signing")]
const SIGNING_SEED: [u8; 32] = [42; 32];

/// An in-memory archive that exposes its bytes as a slice, like the mmap backend: reads of
/// blocks take the zero-copy path.
struct SliceBackend(Vec<u8>);

impl StorageBackend for SliceBackend {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> hexz_core::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        match end {
            Some(e) if e <= self.0.len() as u64 => {
                buf.copy_from_slice(&self.0[offset as usize..e as usize]);
                Ok(())
            }
            _ => Err(Error::io(
                format!("reading {} bytes at {offset} of memory", buf.len()),
                std::io::ErrorKind::UnexpectedEof.into(),
            )),
        }
    }
    fn as_slice(&self) -> Option<&[u8]> {
        Some(&self.0)
    }
    fn describe(&self) -> String {
        "<memory, sliced>".into()
    }
}

fn full() -> bool {
    std::env::var("HEXZ_SWEEP").is_ok_and(|v| v == "full")
}

/// What happened to each mutation.
#[derive(Default, Debug)]
struct Tally {
    mutations: u64,
    exact: u64,
    clean_errors: u64,
    wrong: u64,
    panics: u64,
    messy_errors: u64,
    verify_missed: u64,
    first_problem: Option<String>,
}

impl Tally {
    fn problem(&mut self, what: String) {
        if self.first_problem.is_none() {
            self.first_problem = Some(what);
        }
    }

    fn report_and_check(&self, name: &str) {
        eprintln!(
            "SWEEP {name}: {} mutations, {} exact reads, {} clean errors, {} wrong, {} panics, \
             {} messy errors, {} verify misses",
            self.mutations,
            self.exact,
            self.clean_errors,
            self.wrong,
            self.panics,
            self.messy_errors,
            self.verify_missed
        );
        assert!(self.mutations > 0);
        assert_eq!(
            (
                self.wrong,
                self.panics,
                self.messy_errors,
                self.verify_missed
            ),
            (0, 0, 0, 0),
            "{name}: first problem: {:?}",
            self.first_problem
        );
        assert_eq!(
            self.exact + self.clean_errors,
            self.mutations,
            "{name}: every mutation is an exact read or a clean error"
        );
    }
}

/// An error is clean when it has a one-line, non-empty message.
fn clean(e: &Error) -> bool {
    let m = e.to_string();
    !m.is_empty() && !m.contains('\n') && m.len() < 1000
}

/// Watchdog: fails the process (a hang is a failure) if `beat` stops moving for 120 s.
fn watchdog(name: &'static str, beat: Arc<AtomicU64>) -> Arc<AtomicU64> {
    let done = Arc::new(AtomicU64::new(0));
    let d = done.clone();
    std::thread::spawn(move || {
        let mut last = (u64::MAX, Instant::now());
        while d.load(Ordering::Relaxed) == 0 {
            std::thread::sleep(Duration::from_millis(500));
            let now = beat.load(Ordering::Relaxed);
            if now != last.0 {
                last = (now, Instant::now());
            } else if last.1.elapsed() > Duration::from_secs(120) {
                eprintln!("SWEEP {name}: no progress for 120 s at mutation {now}: hang");
                std::process::abort();
            }
        }
    });
    done
}

/// One archive flavour: how to open a (damaged) copy and what its streams must hold.
struct Flavour {
    name: &'static str,
    bytes: Vec<u8>,
    expect: Vec<(SnapshotStream, Vec<u8>)>,
    /// Opens damaged bytes (`sliced` picks the zero-copy backend).
    open: Box<dyn Fn(Vec<u8>, bool) -> hexz_core::Result<File>>,
    /// For a file-tree archive, its regular files (path, content), each looked up and read
    /// back through the file table.
    files: Vec<(String, Vec<u8>)>,
}

fn base_options() -> OpenOptions {
    OpenOptions {
        cache_bytes: 32 << 10,
        index_cache_bytes: 16 << 10,
        read_ahead: 0,
        ..OpenOptions::default()
    }
}

fn backend(bytes: Vec<u8>, sliced: bool) -> Arc<dyn StorageBackend> {
    if sliced {
        Arc::new(SliceBackend(bytes))
    } else {
        Arc::new(MemBackend(bytes))
    }
}

fn opener(opts: OpenOptions) -> Box<dyn Fn(Vec<u8>, bool) -> hexz_core::Result<File>> {
    Box::new(move |b, sliced| File::open_backend(backend(b, sliced), None, opts.clone()))
}

/// Opens, reads every stream whole and in pieces, and verifies one damaged archive.
fn check_one(f: &Flavour, bytes: Vec<u8>, sliced: bool, what: &str, t: &mut Tally) {
    t.mutations += 1;
    let r = catch_unwind(AssertUnwindSafe(|| -> hexz_core::Result<Option<String>> {
        let file = (f.open)(bytes, sliced)?;
        let mut wrong = None;
        let mut read_err = None;
        for (s, want) in &f.expect {
            match file.read_at(*s, 0, want.len() + 10) {
                Ok(got) if &got == want => {}
                Ok(got) => {
                    wrong = Some(format!(
                        "{s}: {} bytes read, {} differ",
                        got.len(),
                        got.iter().zip(want).filter(|(a, b)| a != b).count()
                    ))
                }
                Err(e) => {
                    read_err.get_or_insert(e);
                }
            }
            // Small reads in the middle of blocks (the cached, partial-block path).
            for off in (0..want.len()).step_by(BS + 1000) {
                if let Ok(got) = file.read_at(*s, off as u64, 300) {
                    if got[..] != want[off..(off + 300).min(want.len())] {
                        wrong = Some(format!("{s}: 300 bytes at {off} differ"));
                    }
                }
            }
        }
        if !f.files.is_empty() {
            match read_tree(&file, &f.files) {
                Ok(Some(w)) => wrong = Some(w),
                Ok(None) => {}
                Err(e) => {
                    read_err.get_or_insert(e);
                }
            }
        }
        let verified = ops::verify(&file, None);
        if let Some(w) = wrong {
            return Ok(Some(w));
        }
        match (verified, read_err) {
            (Ok(_), Some(e)) => Ok(Some(format!("verify passed but a read failed: {e}"))),
            (Err(e), _) => Err(e),
            (Ok(_), None) => Ok(None),
        }
    }));
    match r {
        Err(p) => {
            t.panics += 1;
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            t.problem(format!("{what}: panic: {msg}"));
        }
        Ok(Ok(None)) => t.exact += 1,
        Ok(Ok(Some(w))) if w.starts_with("verify passed") => {
            t.verify_missed += 1;
            t.problem(format!("{what}: {w}"));
        }
        Ok(Ok(Some(w))) => {
            t.wrong += 1;
            t.problem(format!("{what}: WRONG BYTES: {w}"));
        }
        Ok(Err(e)) if clean(&e) => t.clean_errors += 1,
        Ok(Err(e)) => {
            t.messy_errors += 1;
            t.problem(format!("{what}: unclear error: {e:?}"));
        }
    }
}

/// Looks up every file of `files` through the archive's file table and reads it whole and
/// past its end: `Some` describes a file whose bytes differ, `Err` is the first error.
fn read_tree(file: &File, files: &[(String, Vec<u8>)]) -> hexz_core::Result<Option<String>> {
    let tree = FileTree::open(file)?.ok_or_else(|| {
        Error::InvalidArgument("the file table is gone".into()) // a section-list change
    })?;
    for (path, want) in files {
        let e = tree
            .lookup(path)?
            .ok_or_else(|| Error::InvalidArgument(format!("{path} is not in the file table")))?;
        let got = tree.read_file(&e, 0, want.len() + 10)?;
        if &got != want {
            return Ok(Some(format!(
                "file {path}: {} bytes read, content differs",
                got.len()
            )));
        }
    }
    Ok(None)
}

/// Sweeps byte changes and truncations over `f`.
fn sweep(f: &Flavour, name: &'static str) -> Tally {
    let mut t = Tally::default();
    let beat = Arc::new(AtomicU64::new(0));
    let done = watchdog(name, beat.clone());
    let n = f.bytes.len();
    // The undamaged archive reads exactly.
    check_one(f, f.bytes.clone(), false, "intact", &mut t);
    assert_eq!(t.exact, 1, "{name}: intact archive: {:?}", t.first_problem);
    let (stride, trunc_step) = if full() { (1, 1) } else { (11, 61) };
    let masks: &[u8] = if full() { &[0xff, 0] } else { &[0] };
    for i in (0..n).step_by(stride) {
        for &m in masks {
            // 0 stands for "one bit, rotating with the offset".
            let mask = if m == 0 { 1u8 << ((i / stride) % 8) } else { m };
            let mut b = f.bytes.clone();
            b[i] ^= mask;
            check_one(f, b, i % 2 == 1, &format!("byte {i} ^ {mask:#04x}"), &mut t);
            beat.fetch_add(1, Ordering::Relaxed);
        }
    }
    for len in (0..n).step_by(trunc_step) {
        check_one(
            f,
            f.bytes[..len].to_vec(),
            len % 2 == 1,
            &format!("truncated to {len}"),
            &mut t,
        );
        beat.fetch_add(1, Ordering::Relaxed);
    }
    done.store(1, Ordering::Relaxed);
    t
}

fn small_opts() -> PackOptions {
    PackOptions {
        block_size: BS as u32,
        threads: 1,
        ..PackOptions::default()
    }
}

fn pack_flavour(
    dir: &Path,
    name: &str,
    disk: &[u8],
    memory: Option<&[u8]>,
    opts: &PackOptions,
) -> Vec<u8> {
    let (p, _) = pack_files(dir, name, Some(disk), memory, opts);
    std::fs::read(p).unwrap()
}

fn expect(disk: &[u8], memory: Option<&[u8]>) -> Vec<(SnapshotStream, Vec<u8>)> {
    let mut v = vec![(SnapshotStream::Disk, disk.to_vec())];
    if let Some(m) = memory {
        v.push((SnapshotStream::Memory, m.to_vec()));
    }
    v
}

#[test]
fn sweep_lz4_two_streams() {
    let d = tempfile::tempdir().unwrap();
    let disk = mixed_data(6 * BS + 777, BS, 1);
    let mem = mixed_data(2 * BS + 10, BS, 2);
    let f = Flavour {
        name: "lz4",
        bytes: pack_flavour(d.path(), "a.hxz", &disk, Some(&mem), &small_opts()),
        expect: expect(&disk, Some(&mem)),
        files: Vec::new(),
        open: opener(base_options()),
    };
    sweep(&f, "lz4 (disk + memory)").report_and_check(f.name);
}

#[test]
fn sweep_zstd_cdc() {
    let d = tempfile::tempdir().unwrap();
    let disk = mixed_data(40_000, BS, 3);
    let opts = PackOptions {
        codec: hexz_core::format::Codec::Zstd,
        level: 3,
        cdc: Some(CdcParams {
            min: 1024,
            avg: 4096,
            max: 16384,
        }),
        ..small_opts()
    };
    let f = Flavour {
        name: "zstd-cdc",
        bytes: pack_flavour(d.path(), "z.hxz", &disk, None, &opts),
        expect: expect(&disk, None),
        files: Vec::new(),
        open: opener(base_options()),
    };
    sweep(&f, "zstd + CDC").report_and_check(f.name);
}

#[test]
fn sweep_stored_blocks() {
    let d = tempfile::tempdir().unwrap();
    let disk = mixed_data(3 * BS + 5, BS, 4);
    let opts = PackOptions {
        codec: hexz_core::format::Codec::None,
        ..small_opts()
    };
    let f = Flavour {
        name: "none",
        bytes: pack_flavour(d.path(), "n.hxz", &disk, None, &opts),
        expect: expect(&disk, None),
        files: Vec::new(),
        open: opener(base_options()),
    };
    sweep(&f, "stored (no codec)").report_and_check(f.name);
}

fn enc_opts() -> PackOptions {
    PackOptions {
        encryption: Some(EncryptOptions {
            password: Password::new(PASSWORD),
            // Cheap derivation so thousands of opens stay fast; the format is the same.
            kdf: Kdf::Argon2id {
                m_kib: 8,
                t: 1,
                p: 1,
            },
        }),
        ..small_opts()
    }
}

#[test]
fn sweep_encrypted() {
    let d = tempfile::tempdir().unwrap();
    let disk = mixed_data(5 * BS + 300, BS, 5);
    let mem = mixed_data(BS + 1, BS, 6);
    let f = Flavour {
        name: "encrypted",
        bytes: pack_flavour(d.path(), "e.hxz", &disk, Some(&mem), &enc_opts()),
        expect: expect(&disk, Some(&mem)),
        files: Vec::new(),
        open: opener(OpenOptions {
            password: Some(Password::new(PASSWORD)),
            ..base_options()
        }),
    };
    sweep(&f, "encrypted (AES-256-GCM, Argon2id)").report_and_check(f.name);
}

#[cfg(feature = "signing")]
#[test]
fn sweep_signed() {
    let d = tempfile::tempdir().unwrap();
    let disk = mixed_data(5 * BS + 300, BS, 7);
    let (p, _) = pack_files(d.path(), "s.hxz", Some(&disk), None, &small_opts());
    ops::rewrite::sign(&p, &SIGNING_SEED, None, ops::rewrite::Rewrite::Copy).unwrap();
    let public = hexz_core::algo::signing::public_of(&SIGNING_SEED);
    let f = Flavour {
        name: "signed",
        bytes: std::fs::read(&p).unwrap(),
        expect: expect(&disk, None),
        files: Vec::new(),
        open: opener(OpenOptions {
            require_signer: Some(public),
            ..base_options()
        }),
    };
    sweep(&f, "signed (signature required)").report_and_check(f.name);
}

/// A parent and a thin child made from it with a few changed blocks.
fn thin_pair(dir: &Path) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let parent = mixed_data(6 * BS, BS, 8);
    let mut child = parent.clone();
    child[BS + 10..BS + 900].fill(0x5a);
    child.extend_from_slice(&mixed_data(BS + 99, BS, 9));
    let (pp, _) = pack_files(dir, "p.hxz", Some(&parent), None, &small_opts());
    let (cp, _) = pack_files(
        dir,
        "c.hxz",
        Some(&child),
        None,
        &PackOptions {
            base: Some(pp.clone()),
            ..small_opts()
        },
    );
    (
        std::fs::read(pp).unwrap(),
        std::fs::read(cp).unwrap(),
        child,
    )
}

#[test]
fn sweep_thin_child() {
    let d = tempfile::tempdir().unwrap();
    let (parent, child, data) = thin_pair(d.path());
    let f = Flavour {
        name: "thin-child",
        bytes: child,
        expect: expect(&data, None),
        files: Vec::new(),
        open: Box::new(move |b, sliced| {
            let p = File::open_backend(backend(parent.clone(), false), None, base_options())?;
            File::open_backend(
                backend(b, sliced),
                None,
                OpenOptions {
                    parent: Some(p),
                    ..base_options()
                },
            )
        }),
    };
    sweep(&f, "thin child (intact parent)").report_and_check(f.name);
}

#[test]
fn sweep_damaged_parent_under_intact_child() {
    let d = tempfile::tempdir().unwrap();
    let (parent, child, data) = thin_pair(d.path());
    let f = Flavour {
        name: "damaged-parent",
        bytes: parent,
        expect: expect(&data, None),
        files: Vec::new(),
        open: Box::new(move |damaged_parent, sliced| {
            let p = File::open_backend(backend(damaged_parent, sliced), None, base_options())?;
            File::open_backend(
                backend(child.clone(), false),
                None,
                OpenOptions {
                    parent: Some(p),
                    ..base_options()
                },
            )
        }),
    };
    sweep(&f, "damaged parent (intact child)").report_and_check(f.name);
}

#[test]
fn sweep_file_tree() {
    use hexz_core::ops::tree::{pack_tree, TreePackOptions};
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    let mut files = Vec::new();
    for (i, (path, len)) in [
        ("a.txt", 300),
        ("docs/readme.md", 2 * BS + 123),
        ("docs/deep/x.bin", 5 * BS),
        ("empty", 0),
        ("data/part-1", BS + 1),
        ("data/part-2", 3000),
    ]
    .into_iter()
    .enumerate()
    {
        let content = mixed_data(len, BS, 20 + i as u64);
        let p = src.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &content).unwrap();
        files.push((path.to_string(), content));
    }
    std::os::unix::fs::symlink("docs/readme.md", src.join("link")).unwrap();
    let out = d.path().join("t.hxz");
    pack_tree(&src, &out, &small_opts(), &TreePackOptions::default(), None).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    let intact = File::open(&out).unwrap();
    let disk = intact
        .read_at(
            SnapshotStream::Disk,
            0,
            intact.size(SnapshotStream::Disk) as usize,
        )
        .unwrap();
    let f = Flavour {
        name: "file-tree",
        bytes,
        expect: expect(&disk, None),
        files,
        open: opener(base_options()),
    };
    sweep(&f, "file tree").report_and_check(f.name);
}
