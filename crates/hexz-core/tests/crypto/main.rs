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

mod other_ops;
mod passwords;
mod round_trips;
mod signatures;
mod tampering;
mod thin;

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
