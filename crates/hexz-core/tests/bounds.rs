//! Resource bounds: hostile headers and indexes that claim huge counts, sizes, key-derivation
//! costs or chain depths are refused before anything is allocated for them, measured as the
//! peak resident memory (VmHWM) of a child process — the whole process, every thread —
//! running just that case; deep and cyclic parent chains are refused without a stack
//! overflow; opening and dropping archives (good, damaged, thin) leaks no file descriptors.

mod common;

use common::*;
use hexz_core::format::header::{FLAG_HAS_PARENT, HEADER_SIZE};
use hexz_core::format::index::META_PARENT_PATH;
use hexz_core::format::{Header, MasterIndex};
use hexz_core::ops::PackOptions;
use hexz_core::{Error, File, OpenOptions, SnapshotStream};
use std::path::{Path, PathBuf};
use std::process::Command;

const BS: usize = 4096;
/// Extra peak memory a hostile case may cost over the baseline case.
const BOUND_KIB: u64 = 48 * 1024;

fn peak_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Runs `case` in a child process (this test binary, re-run for one test) and returns its
/// peak RSS in KiB and what it printed. In the child, runs the case, prints the error it
/// produced and the peak, and exits.
fn in_child(test: &str, case: impl FnOnce() -> String) -> (u64, String) {
    if std::env::var("HEXZ_BOUNDS_CHILD").is_ok_and(|c| c == test) {
        let what = case();
        println!("\nOUTCOME {what}");
        println!("PEAK {}", peak_kib());
        std::process::exit(0);
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("HEXZ_BOUNDS_CHILD", test)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{test}: child failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peak = text
        .lines()
        .find_map(|l| l.strip_prefix("PEAK "))
        .unwrap_or_else(|| panic!("{test}: no peak in {text}"))
        .trim()
        .parse()
        .unwrap();
    let outcome = text
        .lines()
        .find_map(|l| l.strip_prefix("OUTCOME "))
        .unwrap_or("")
        .to_string();
    (peak, outcome)
}

/// The peak of a child that packs and opens a small archive and reads it (the baseline).
fn baseline() -> u64 {
    in_child("baseline_case", baseline_work).0
}

fn baseline_work() -> String {
    let d = tempfile::tempdir().unwrap();
    let (p, _) = pack_files(
        d.path(),
        "a.hxz",
        Some(&mixed_data(20 * BS, BS, 1)),
        None,
        &small(),
    );
    let f = File::open(&p).unwrap();
    read_all(&f, SnapshotStream::Disk).unwrap();
    "ok".into()
}

#[test]
fn baseline_case() {
    in_child("baseline_case", baseline_work);
}

fn small() -> PackOptions {
    PackOptions {
        block_size: BS as u32,
        threads: 1,
        ..PackOptions::default()
    }
}

fn sample(dir: &Path) -> (PathBuf, Vec<u8>) {
    let data = mixed_data(20 * BS, BS, 1);
    let (p, _) = pack_files(dir, "a.hxz", Some(&data), None, &small());
    let bytes = std::fs::read(&p).unwrap();
    (p, bytes)
}

fn open_err(bytes: Vec<u8>) -> String {
    let opts = OpenOptions {
        password: Some(hexz_core::algo::encryption::Password::new("x")),
        ..OpenOptions::default()
    };
    let f = File::open_backend(std::sync::Arc::new(MemBackend(bytes)), None, opts);
    match f {
        Err(e) => e.to_string(),
        Ok(f) => match read_all(&f, SnapshotStream::Disk) {
            Err(e) => e.to_string(),
            Ok(_) => "opened and read".into(),
        },
    }
}

/// Each hostile edit of the sample archive, with the error text it must produce.
fn hostile_cases() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let d = tempfile::tempdir().unwrap();
    let (_, a) = sample(d.path());
    let (mo, ml) = master_range(&a);
    let mut v = Vec::new();

    let mut b = a.clone();
    b[64..68].copy_from_slice(&u32::MAX.to_le_bytes()); // master length 4 GiB
    fix_header_crc(&mut b);
    v.push(("master length 4 GiB", b, "master index"));

    // Stream record claims 2^32-1 index pages (digest recomputed).
    let mut b = a.clone();
    b[mo + 16 + 4..mo + 16 + 8].copy_from_slice(&u32::MAX.to_le_bytes());
    fix_master_digest(&mut b);
    v.push(("4 billion index pages", b, "master index"));

    // Stream record claims a block count and size of 2^64-1.
    let mut b = a.clone();
    b[mo + 16 + 8..mo + 16 + 16].copy_from_slice(&u64::MAX.to_le_bytes());
    b[mo + 16 + 32..mo + 16 + 40].copy_from_slice(&u64::MAX.to_le_bytes());
    fix_master_digest(&mut b);
    v.push(("2^64 blocks and bytes", b, "master index"));

    // Metadata length 4 GiB.
    let mut b = a.clone();
    b[mo + 8..mo + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    fix_master_digest(&mut b);
    v.push(("4 GiB of metadata", b, "metadata"));

    // Page reference: 8192 entries (the maximum) at an offset far outside the file.
    let mut b = a.clone();
    let r = page_ref_offset(&b, 0, 0);
    b[r + 8..r + 16].copy_from_slice(&(1u64 << 40).to_le_bytes());
    b[r + 16..r + 20].copy_from_slice(&(16 + 8192 * 64u32).to_le_bytes());
    b[r + 20..r + 24].copy_from_slice(&8192u32.to_le_bytes());
    fix_master_digest(&mut b);
    v.push(("index page of 8192 entries at 1 TiB", b, "outside"));

    // A block claims its bytes are stored at 2^64-16 (page resealed).
    let mut b = a.clone();
    let page_off = le_u64(&b, r + 8);
    let e = entry_offset(page_off, 2);
    b[e + 12..e + 16].copy_from_slice(&4096u32.to_le_bytes());
    b[e + 16..e + 24].copy_from_slice(&(u64::MAX - 16).to_le_bytes());
    reseal_page(&mut b, 0, 0);
    v.push(("block stored at 2^64-16", b, "outside"));

    // Block at logical offset near 2^64 (the logical_end overflow).
    let mut b = a.clone();
    let e = entry_offset(page_off, 0);
    b[e..e + 8].copy_from_slice(&(u64::MAX - 100).to_le_bytes());
    reseal_page(&mut b, 0, 0);
    v.push(("logical offset 2^64-100", b, "logical offset"));

    // Key derivation: Argon2id with 4 TiB of memory, 2^32-1 passes; PBKDF2 2^32-1 rounds.
    for (name, kdf, p1, p2, p3) in [
        ("Argon2id 4 TiB", 2u8, u32::MAX, 1, 1),
        ("Argon2id 1 GiB + 1 KiB", 2, (1 << 20) + 1, 1, 1),
        ("Argon2id 2^32 passes", 2, 64, u32::MAX, 1),
        ("Argon2id 2^32 lanes", 2, 64, 1, u32::MAX),
        ("PBKDF2 2^32 iterations", 1, u32::MAX, 0, 0),
    ] {
        let mut h = Header::decode(&a[..HEADER_SIZE], a.len() as u64).unwrap();
        h.flags |= hexz_core::format::header::FLAG_ENCRYPTED;
        h.key_wrap.kdf = kdf;
        h.key_wrap.param1 = p1;
        h.key_wrap.param2 = p2;
        h.key_wrap.param3 = p3;
        let mut b = a.clone();
        b[..HEADER_SIZE].copy_from_slice(&h.encode());
        v.push((name, b, "key-derivation parameters"));
    }
    let _ = ml;
    v
}

#[test]
fn hostile_sizes_are_refused_within_a_memory_bound() {
    let base = baseline();
    let (peak, outcome) = in_child("hostile_sizes_are_refused_within_a_memory_bound", || {
        let mut out = Vec::new();
        for (name, bytes, want) in hostile_cases() {
            let e = open_err(bytes);
            assert!(
                e.contains(want),
                "{name}: expected an error about '{want}', got: {e}"
            );
            out.push(format!("{name}: {e}"));
        }
        out.join(" | ")
    });
    eprintln!("BOUNDS hostile sizes: peak {peak} KiB (baseline {base} KiB): {outcome}");
    assert!(
        peak <= base + BOUND_KIB,
        "peak RSS {peak} KiB exceeds baseline {base} KiB + {BOUND_KIB} KiB"
    );
}

/// Rewrites `a` (a standalone archive) into a thin snapshot claiming `parent_path`, with
/// archive id `id` and parent reference (`parent_id`, `parent_digest`). Returns the bytes
/// and the new index digest.
fn forge_child(
    a: &[u8],
    id: [u8; 16],
    parent_path: &str,
    parent_id: [u8; 16],
    parent_digest: [u8; 32],
) -> (Vec<u8>, [u8; 32]) {
    let f = File::open_backend(
        std::sync::Arc::new(MemBackend(a.to_vec())),
        None,
        OpenOptions::default(),
    )
    .unwrap();
    let mut meta = f.master().metadata.clone();
    meta.push((META_PARENT_PATH, parent_path.as_bytes().to_vec()));
    let (master, digest) = MasterIndex::encode(&f.master().streams, &meta);
    let mut h = f.header().clone();
    let mut out = a.to_vec();
    h.master_offset = out.len() as u64;
    h.master_len = master.len() as u32;
    out.extend_from_slice(&master);
    h.flags |= FLAG_HAS_PARENT;
    h.archive_id = id;
    h.parent.archive_id = parent_id;
    h.parent.index_digest = parent_digest;
    out[..HEADER_SIZE].copy_from_slice(&h.encode());
    (out, digest)
}

#[test]
fn deep_chains_are_refused_without_stack_overflow() {
    let d = tempfile::tempdir().unwrap();
    let (_, a) = sample(d.path());
    // A 300-deep chain: archive i's parent is i+1; 299 is standalone.
    const DEPTH: usize = 300;
    let last = File::open_backend(
        std::sync::Arc::new(MemBackend(a.clone())),
        None,
        OpenOptions::default(),
    )
    .unwrap();
    let mut parent_id = last.header().archive_id;
    let mut parent_digest = last.master().digest;
    std::fs::write(d.path().join(format!("c{}.hxz", DEPTH - 1)), &a).unwrap();
    for i in (0..DEPTH - 1).rev() {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        let (bytes, digest) =
            forge_child(&a, id, &format!("c{}.hxz", i + 1), parent_id, parent_digest);
        std::fs::write(d.path().join(format!("c{i}.hxz")), bytes).unwrap();
        (parent_id, parent_digest) = (id, digest);
    }
    // On a thread with a small (1 MiB) stack: recursion depth must be bounded well below.
    let top = d.path().join("c0.hxz");
    let e = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || File::open(&top).map(|_| ()))
        .unwrap()
        .join()
        .expect("opening a deep chain must not overflow the stack")
        .unwrap_err();
    assert!(e.to_string().contains("ancestors"), "{e}");
    // The deepest allowed chain still opens: c(DEPTH-256) has 255 ancestors.
    let ok = d.path().join(format!("c{}.hxz", DEPTH - 256));
    let f = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || File::open(&ok).map(|f| f.chain_len()))
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(f, 256);
}

#[test]
fn cyclic_chains_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let (_, a) = sample(d.path());
    // Self loop: the archive names itself as its parent.
    let me = File::open_backend(
        std::sync::Arc::new(MemBackend(a.clone())),
        None,
        OpenOptions::default(),
    )
    .unwrap();
    let id = me.header().archive_id;
    let (bytes, _) = forge_child(&a, id, "self.hxz", id, [0; 32]);
    std::fs::write(d.path().join("self.hxz"), bytes).unwrap();
    let e = File::open(d.path().join("self.hxz")).unwrap_err();
    assert!(e.to_string().contains("loops"), "{e}");

    // Two archives naming each other.
    let (x, _) = forge_child(&a, [0xa; 16], "y.hxz", [0xb; 16], [0; 32]);
    let (y, _) = forge_child(&a, [0xb; 16], "x.hxz", [0xa; 16], [0; 32]);
    std::fs::write(d.path().join("x.hxz"), x).unwrap();
    std::fs::write(d.path().join("y.hxz"), y).unwrap();
    let e = File::open(d.path().join("x.hxz")).unwrap_err();
    assert!(e.to_string().contains("loops"), "{e}");
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn opening_and_dropping_archives_leaks_no_descriptors() {
    // In a child process: other tests of this binary open files concurrently.
    let (_, outcome) = in_child(
        "opening_and_dropping_archives_leaks_no_descriptors",
        descriptors_case,
    );
    eprintln!("BOUNDS descriptors: {outcome}");
}

fn descriptors_case() -> String {
    let d = tempfile::tempdir().unwrap();
    let (p, a) = sample(d.path());
    let data = mixed_data(20 * BS, BS, 1);
    let mut child = data.clone();
    child[100..5000].fill(3);
    let (c, _) = pack_files(
        d.path(),
        "c.hxz",
        Some(&child),
        None,
        &PackOptions {
            base: Some(p.clone()),
            ..small()
        },
    );
    let mut bad = a.clone();
    let n = bad.len();
    bad[n - 10] ^= 1;
    let bad_p = d.path().join("bad.hxz");
    std::fs::write(&bad_p, &bad).unwrap();
    let orphan = d.path().join("orphan.hxz");
    std::fs::copy(&c, &orphan).unwrap();
    std::fs::create_dir(d.path().join("sub")).unwrap();
    let moved = d.path().join("sub/c.hxz");
    std::fs::copy(&c, &moved).unwrap();
    let run = || {
        for mmap in [false, true] {
            let o = || OpenOptions {
                mmap,
                ..OpenOptions::default()
            };
            let f = File::open_with(&p, o()).unwrap();
            read_all(&f, SnapshotStream::Disk).unwrap();
            let f = File::open_with(&c, o()).unwrap();
            assert_eq!(read_all(&f, SnapshotStream::Disk).unwrap(), child);
            let r: Result<File, Error> = File::open_with(&bad_p, o());
            assert!(r.is_err());
            assert!(File::open_with(&moved, o()).is_err()); // parent not beside it
            assert!(File::open_with(d.path().join("missing.hxz"), o()).is_err());
        }
    };
    run(); // warm up (thread pools, caches)
    let before = fd_count();
    for _ in 0..100 {
        run();
    }
    let after = fd_count();
    assert_eq!(before, after, "file descriptors leaked");
    format!("{before} open before and after 1000 opens (good, thin, damaged, orphaned, missing)")
}
