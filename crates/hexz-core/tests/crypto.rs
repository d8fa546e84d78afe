//! Encryption and signing end to end: encrypted round trips for every codec and chunking,
//! what an encrypted archive leaks (nothing recognisable), tampering of every stored object,
//! blocks moved or transplanted between archives, dedup and thin snapshots under encryption,
//! and Ed25519 signatures (including what a consistent index rewrite does to them).
//!
//! Library tests use Argon2id with tiny parameters so that each open costs microseconds,
//! except where the key-derivation function itself is under test.

#![cfg(all(feature = "encryption", feature = "signing"))]

use hexz_core::algo::encryption::{
    unwrap_key, ArchiveCipher, Kdf, Password, DEFAULT_PBKDF2_ITERATIONS, TAG_LEN,
};
use hexz_core::algo::hash::bound_crc32;
use hexz_core::algo::signing;
use hexz_core::format::{Codec, Header, HEADER_SIZE};
use hexz_core::ops::pack::EncryptOptions;
use hexz_core::ops::rewrite::{change_password, sign, Rewrite};
use hexz_core::ops::{pack, verify, CdcParams, PackInput, PackOptions, PackSource, PackStats};
use hexz_core::{Error, File, OpenOptions, SnapshotStream};
use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------------
// Helpers.

const DISK: SnapshotStream = SnapshotStream::Disk;
const MEM: SnapshotStream = SnapshotStream::Memory;

/// Argon2id with tiny parameters: fast opens where the KDF is not the subject.
fn fast_kdf() -> Kdf {
    Kdf::Argon2id {
        m_kib: 1024,
        t: 1,
        p: 1,
    }
}

fn pw(s: &str) -> Password {
    Password::new(s.as_bytes().to_vec())
}

fn enc(p: &str) -> Option<EncryptOptions> {
    Some(EncryptOptions {
        password: pw(p),
        kdf: fast_kdf(),
    })
}

fn opts_with(p: Option<&str>, signer: Option<[u8; 32]>) -> OpenOptions {
    OpenOptions {
        password: p.map(pw),
        require_signer: signer,
        ..OpenOptions::default()
    }
}

fn open_pw(path: &Path, p: &str) -> hexz_core::Result<File> {
    File::open_with(path, opts_with(Some(p), None))
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    fn fill(&mut self, out: &mut [u8]) {
        for c in out.chunks_mut(8) {
            c.copy_from_slice(&self.next_u64().to_le_bytes()[..c.len()]);
        }
    }
}

const WORDS: [&str; 12] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima",
];

/// Distinctive, compressible, non-zero text: numbered lines of words.
fn text(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut v = Vec::with_capacity(len + 128);
    let mut i = 0u64;
    while v.len() < len {
        let line = format!(
            "secret-plaintext {seed} line {i:08}: the quick brown fox jumps over {} {} {}\n",
            WORDS[rng.below(12) as usize],
            WORDS[rng.below(12) as usize],
            WORDS[rng.below(12) as usize]
        );
        v.extend_from_slice(line.as_bytes());
        i += 1;
    }
    v.truncate(len);
    v
}

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng::new(seed).fill(&mut v);
    v
}

/// `len` bytes of text regions, random regions, zero runs and repeats of earlier 4 KiB-aligned
/// regions (so fixed 4 KiB blocks dedup).
fn mixed(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut v: Vec<u8> = Vec::with_capacity(len + (64 << 10));
    let mut k = 0u64;
    while v.len() < len {
        k += 1;
        let n = 1 + rng.below(48 << 10) as usize;
        match rng.below(4) {
            0 => v.extend_from_slice(&text(n, seed * 1000 + k)),
            1 => v.extend_from_slice(&random(n, seed * 1000 + k)),
            2 => v.resize(v.len() + n, 0),
            _ => {
                let pad = (4096 - v.len() % 4096) % 4096;
                v.extend(std::iter::repeat_n(b'#', pad));
                let blocks = v.len() / 4096;
                if blocks > 0 {
                    let b = rng.below(blocks as u64) as usize;
                    let copy = v[b * 4096..(b + 1) * 4096].to_vec();
                    for _ in 0..1 + rng.below(3) {
                        v.extend_from_slice(&copy);
                    }
                }
            }
        }
    }
    v.truncate(len);
    v
}

struct Tmp {
    _t: tempfile::TempDir,
    p: PathBuf,
}

fn tmp() -> Tmp {
    let t = tempfile::tempdir().unwrap();
    Tmp {
        p: t.path().to_path_buf(),
        _t: t,
    }
}

impl Tmp {
    fn path(&self, n: &str) -> PathBuf {
        self.p.join(n)
    }
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

/// Packs in-memory streams (as files) into `dir/name`.
fn pack_into(
    dir: &Tmp,
    name: &str,
    disk: Option<&[u8]>,
    memory: Option<&[u8]>,
    opts: &PackOptions,
) -> hexz_core::Result<(PathBuf, PackStats)> {
    let mut input = PackInput::default();
    if let Some(d) = disk {
        let p = dir.path(&format!("{name}.disk.raw"));
        std::fs::write(&p, d).unwrap();
        input.disk = Some(PackSource::Path(p));
    }
    if let Some(m) = memory {
        let p = dir.path(&format!("{name}.mem.raw"));
        std::fs::write(&p, m).unwrap();
        input.memory = Some(PackSource::Path(p));
    }
    let out = dir.path(name);
    let stats = pack(input, &out, opts, None)?;
    Ok((out, stats))
}

fn pack_ok(
    dir: &Tmp,
    name: &str,
    disk: Option<&[u8]>,
    memory: Option<&[u8]>,
    opts: &PackOptions,
) -> (PathBuf, PackStats) {
    pack_into(dir, name, disk, memory, opts).unwrap_or_else(|e| panic!("pack {name}: {e}"))
}

fn le_u16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes(b[o..o + 2].try_into().unwrap())
}
fn le_u32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn le_u64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

fn fix_header_crc(a: &mut [u8]) {
    let crc = crc32fast::hash(&a[..508]);
    a[508..512].copy_from_slice(&crc.to_le_bytes());
}

/// All block entries of `stream`, in order, with their block numbers.
fn entries(f: &File, s: SnapshotStream) -> Vec<hexz_core::format::BlockEntry> {
    let rec = f.master().stream(s).unwrap();
    let mut out = Vec::new();
    for p in 0..rec.pages.len() {
        out.extend(f.index_page(s, p).unwrap().entries.iter().copied());
    }
    out
}

fn read_all(f: &File, s: SnapshotStream) -> hexz_core::Result<Vec<u8>> {
    f.read_at(s, 0, f.size(s) as usize)
}

/// A read of block `block` of `stream` (a fresh open so no cache hides anything).
fn read_block(
    path: &Path,
    p: &str,
    s: SnapshotStream,
    e: &hexz_core::format::BlockEntry,
) -> hexz_core::Result<Vec<u8>> {
    let f = open_pw(path, p)?;
    f.read_at(s, e.logical_offset, e.logical_len as usize)
}

fn assert_corrupt_block(
    r: hexz_core::Result<Vec<u8>>,
    stream: SnapshotStream,
    block: u64,
) -> String {
    match r {
        Err(Error::CorruptBlock {
            stream: s,
            block: b,
            detail,
            ..
        }) => {
            assert_eq!((s, b), (stream, block), "wrong block named: {detail}");
            detail
        }
        Err(e) => panic!("expected CorruptBlock of block {block} of {stream}, got {e}"),
        Ok(_) => panic!("expected CorruptBlock of block {block} of {stream}, the read succeeded"),
    }
}

/// Windows of 64 bytes of `plain` (one every `stride` bytes) that are distinctive: at least 12
/// distinct byte values, so zero runs and short repeated patterns, which also occur in
/// ciphertext-free structure like padding, are left out.
fn distinctive_windows(plain: &[u8], stride: usize) -> HashSet<[u8; 64]> {
    let mut set = HashSet::new();
    let mut i = 0;
    while i + 64 <= plain.len() {
        let w: [u8; 64] = plain[i..i + 64].try_into().unwrap();
        let mut seen = [false; 256];
        let distinct = w
            .iter()
            .filter(|&&b| !std::mem::replace(&mut seen[b as usize], true))
            .count();
        if distinct >= 12 {
            set.insert(w);
        }
        i += stride;
    }
    set
}

/// Counts offsets of `hay` where a 64-byte window of `windows` or a 32-byte value of `hashes`
/// starts.
fn leaks(hay: &[u8], windows: &HashSet<[u8; 64]>, hashes: &HashSet<[u8; 32]>) -> (usize, usize) {
    let wpre: HashSet<u64> = windows.iter().map(|w| le_u64(w, 0)).collect();
    let hpre: HashSet<u64> = hashes.iter().map(|h| le_u64(h, 0)).collect();
    let (mut nw, mut nh) = (0, 0);
    for i in 0..hay.len().saturating_sub(8) {
        let pre = le_u64(hay, i);
        if i + 64 <= hay.len() && wpre.contains(&pre) {
            let w: [u8; 64] = hay[i..i + 64].try_into().unwrap();
            if windows.contains(&w) {
                nw += 1;
            }
        }
        if i + 32 <= hay.len() && hpre.contains(&pre) {
            let h: [u8; 32] = hay[i..i + 32].try_into().unwrap();
            if hashes.contains(&h) {
                nh += 1;
            }
        }
    }
    (nw, nh)
}

/// Plain BLAKE3 of every non-zero block of `stream` as the index cuts it.
fn plain_block_hashes(f: &File, s: SnapshotStream, data: &[u8]) -> HashSet<[u8; 32]> {
    entries(f, s)
        .iter()
        .filter(|e| !e.is_zero())
        .map(|e| {
            let b = &data[e.logical_offset as usize..e.logical_end() as usize];
            *blake3::hash(b).as_bytes()
        })
        .collect()
}

/// Rewrites, with the archive's own keys, index page `page_no` of `stream` after `edit` has
/// changed its plaintext, and fixes the page hash and digest of the master index: what an
/// adversary who could forge the index would produce. Lets the tests reach the AEAD of the
/// blocks behind the CRC32 check (which a swapped or transplanted block already fails).
fn forge_page(
    a: &mut [u8],
    password: &str,
    stream: SnapshotStream,
    page_no: usize,
    edit: impl FnOnce(&mut Vec<u8>),
) {
    let h = Header::decode(&a[..HEADER_SIZE], a.len() as u64).unwrap();
    let key = unwrap_key(&h.key_wrap, &pw(password), &h.archive_id).unwrap();
    let c = ArchiveCipher::new(&key, &h.archive_id);
    let (mo, ml) = (h.master_offset as usize, h.master_len as usize);
    let mut m = a[mo..mo + ml].to_vec();
    c.open_index(true, 0, mo as u64, &mut m).unwrap();
    let nstreams = le_u16(&m, 4) as usize;
    let mut pr = 16 + nstreams * 48;
    let mut found = false;
    for s in 0..nstreams {
        let rec = 16 + s * 48;
        if m[rec] == stream.id() {
            found = true;
            break;
        }
        pr += le_u32(&m, rec + 4) as usize * 64;
    }
    assert!(found, "no {stream} stream");
    pr += page_no * 64;
    let (off, len) = (le_u64(&m, pr + 8) as usize, le_u32(&m, pr + 16) as usize);
    let mut p = a[off..off + len].to_vec();
    c.open_index(false, stream.id(), off as u64, &mut p)
        .unwrap();
    edit(&mut p);
    let ph = *blake3::hash(&p).as_bytes();
    m[pr + 32..pr + 64].copy_from_slice(&ph);
    c.seal_index(false, stream.id(), off as u64, &mut p)
        .unwrap();
    assert_eq!(p.len(), len);
    a[off..off + len].copy_from_slice(&p);
    let body = m.len() - 32;
    let d = *blake3::hash(&m[..body]).as_bytes();
    m[body..].copy_from_slice(&d);
    c.seal_index(true, 0, mo as u64, &mut m).unwrap();
    assert_eq!(m.len(), ml);
    a[mo..mo + ml].copy_from_slice(&m);
}

/// Sets the CRC32 of entry `idx` (within its page) in plaintext page bytes.
fn set_entry_crc(page: &mut [u8], idx: usize, crc: u32) {
    let o = 16 + idx * 64 + 24;
    page[o..o + 4].copy_from_slice(&crc.to_le_bytes());
}

// ---------------------------------------------------------------------------------------------
// Round trips and what the file reveals.

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

// ---------------------------------------------------------------------------------------------
// Passwords.

#[test]
fn wrong_or_missing_password() {
    let d = tmp();
    let data = mixed(300_000, 4);
    let (out, _) = pack_ok(
        &d,
        "w.hxz",
        Some(&data),
        None,
        &PackOptions {
            encryption: enc("correct horse"),
            ..PackOptions::default()
        },
    );
    let e = open_pw(&out, "correct hors").unwrap_err();
    assert!(matches!(e, Error::WrongPassword), "{e:?}");
    assert_eq!(e.to_string(), "wrong password or not a hexz key");
    assert!(matches!(open_pw(&out, ""), Err(Error::WrongPassword)));
    let e = File::open(&out).unwrap_err();
    assert!(matches!(e, Error::PasswordRequired(_)), "{e:?}");
    let m = e.to_string();
    assert!(m.contains("w.hxz") && m.contains("is encrypted"), "{m}");
    assert!(m.contains("HEXZ_PASSWORD"), "{m}");
    // A password given for an unencrypted archive is simply unused.
    let (plain, _) = pack_ok(&d, "u.hxz", Some(&data), None, &PackOptions::default());
    assert!(read_all(&open_pw(&plain, "anything").unwrap(), DISK).unwrap() == data);
}

// ---------------------------------------------------------------------------------------------
// Tampering.

fn small_encrypted(d: &Tmp, name: &str, p: &str) -> (PathBuf, Vec<u8>) {
    let data = mixed(1 << 20, 21);
    let o = PackOptions {
        block_size: 4096,
        encryption: enc(p),
        ..PackOptions::default()
    };
    let (out, _) = pack_ok(d, name, Some(&data), None, &o);
    (out, data)
}

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

// ---------------------------------------------------------------------------------------------
// Dedup and thin snapshots.

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

struct Thin {
    d: Tmp,
    parent: PathBuf,
    parent_data: Vec<u8>,
    child_data: Vec<u8>,
}

fn thin_fixture() -> Thin {
    let d = tmp();
    let parent_data = mixed(3 << 20, 51);
    let (parent, _) = pack_ok(
        &d,
        "parent.hxz",
        Some(&parent_data),
        None,
        &PackOptions {
            block_size: 4096,
            encryption: enc("chain pw"),
            ..PackOptions::default()
        },
    );
    let mut child_data = parent_data.clone();
    let mut rng = Rng::new(52);
    for _ in 0..20 {
        let at = rng.below(child_data.len() as u64 - 5000) as usize;
        child_data[at..at + 3000].copy_from_slice(&random(3000, at as u64));
    }
    Thin {
        d,
        parent,
        parent_data,
        child_data,
    }
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

// ---------------------------------------------------------------------------------------------
// Signatures.

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

// ---------------------------------------------------------------------------------------------
// Other operations on encrypted archives.

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
