//! Thin snapshots (parent chains).
//!
//! - Round trips over chains of 1-4 levels in every combination of fixed/CDC blocks,
//!   LZ4/zstd and one or two streams, each level modifying the previous version (overwrite,
//!   insert, append, zero), read back through `read_at` and the `StreamReader`.
//! - What a child stores: references to the parent (and grandparents) by content hash.
//! - Shift resistance: why content-defined chunking exists.
//! - Wrong, modified, missing, supplied and looping parents; the chain depth limit.
//! - `flatten` and `diff`.
//!
//! Everything here is self-contained (only the watchdog `within` comes from tests/common),
//! deterministic, and asserts bytes, errors and counts, never timings.

use hexz_core::format::header::{FLAG_CDC, FLAG_HAS_PARENT};
use hexz_core::format::index::META_PARENT_PATH;
use hexz_core::format::{BlockEntry, Codec};
use hexz_core::ops::pack::StreamStats;
use hexz_core::ops::{self, pack, CdcParams, PackInput, PackOptions, PackSource, PackStats};
use hexz_core::{File, OpenOptions, SnapshotStream};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

#[path = "../common/mod.rs"]
mod common;
use common::within;

mod chains;
mod child;
mod diff;
mod parents;

const DISK: SnapshotStream = SnapshotStream::Disk;
const MEM: SnapshotStream = SnapshotStream::Memory;

// ---------------------------------------------------------------------------------------
// Data generation
// ---------------------------------------------------------------------------------------

/// splitmix64: tiny, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x9e37_79b9_7f4a_7c15)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    fn fill(&mut self, out: &mut [u8]) {
        for c in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.fill(&mut v);
        v
    }
}

/// Text-like bytes: words from a random 4096-word vocabulary, spaces, punctuation and line
/// breaks. Compresses about 2-3x but never repeats a run of more than a few hundred bytes,
/// so no two blocks are equal and content-defined cut points are plentiful.
fn text_like(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed ^ 0x7e57);
    let vocab: Vec<Vec<u8>> = (0..4096)
        .map(|_| {
            let n = 2 + rng.below(9) as usize;
            (0..n).map(|_| b'a' + rng.below(26) as u8).collect()
        })
        .collect();
    let mut v = Vec::with_capacity(len + 16);
    let mut on_line = 0;
    while v.len() < len {
        v.extend_from_slice(&vocab[rng.below(4096) as usize]);
        on_line += 1;
        match rng.below(16) {
            0 => v.extend_from_slice(b", "),
            1 => v.extend_from_slice(b". "),
            _ => v.push(b' '),
        }
        if on_line > 8 + rng.below(8) {
            v.push(b'\n');
            on_line = 0;
        }
    }
    v.truncate(len);
    v
}

/// A disk-image-like mix: text, random (incompressible) runs, zero runs (whole zero blocks
/// for any block size up to 64 KiB), 4 KiB-aligned copies of earlier data (so fixed blocks
/// dedup) and repeated short patterns.
fn mixed(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut v: Vec<u8> = Vec::with_capacity(len + (1 << 18));
    while v.len() < len {
        match rng.below(10) {
            0..=3 => {
                let n = 1 + rng.below(150_000) as usize;
                v.extend_from_slice(&text_like(n, rng.next_u64()));
            }
            4 | 5 => {
                let n = 1 + rng.below(80_000) as usize;
                v.extend_from_slice(&rng.bytes(n));
            }
            6 => {
                let n = 1 + rng.below(200_000) as usize;
                v.resize(v.len() + n, 0);
            }
            7 | 8 => {
                let pad = (4096 - v.len() % 4096) % 4096;
                v.extend_from_slice(&text_like(pad, rng.next_u64()));
                let have = v.len() / 4096;
                if have > 0 {
                    let k = rng.below(have as u64) as usize;
                    let n = (1 + rng.below(4) as usize).min(have - k);
                    let copy = v[k * 4096..(k + n) * 4096].to_vec();
                    v.extend_from_slice(&copy);
                }
            }
            _ => {
                let plen = 1 + rng.below(12) as usize;
                let pat = rng.bytes(plen);
                let n = 1 + rng.below(40_000) as usize;
                v.extend(pat.iter().cycle().take(n));
            }
        }
    }
    v.truncate(len);
    v
}

/// The next version of `prev`: some ranges overwritten with new bytes, one range zeroed,
/// (when `insert`) a few short insertions that shift everything after them, and an append.
fn next_version(prev: &[u8], seed: u64, insert: bool) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut v = prev.to_vec();
    for _ in 0..3 {
        let n = 1 + rng.below(20_000) as usize;
        let at = rng.below((v.len() - n) as u64) as usize;
        rng.fill(&mut v[at..at + n]);
    }
    let n = 10_000 + rng.below(60_000) as usize;
    let at = rng.below((v.len() - n) as u64) as usize;
    v[at..at + n].fill(0);
    if insert {
        for _ in 0..2 {
            let n = 1 + rng.below(100) as usize;
            let at = rng.below(v.len() as u64) as usize;
            let ins = rng.bytes(n);
            v.splice(at..at, ins);
        }
    }
    let n = 1 + rng.below(70_000) as usize;
    v.extend_from_slice(&text_like(n, rng.next_u64()));
    v
}

// ---------------------------------------------------------------------------------------
// Packing and checking helpers
// ---------------------------------------------------------------------------------------

fn sized(data: &[u8]) -> PackSource {
    PackSource::SizedReader(
        Box::new(std::io::Cursor::new(data.to_vec())),
        data.len() as u64,
    )
}

fn pack_to(
    out: &Path,
    disk: Option<&[u8]>,
    memory: Option<&[u8]>,
    opts: &PackOptions,
) -> PackStats {
    let input = PackInput {
        disk: disk.map(sized),
        memory: memory.map(sized),
    };
    pack(input, out, opts, None).unwrap_or_else(|e| panic!("packing {}: {e}", out.display()))
}

fn with_base(opts: &PackOptions, base: &Path) -> PackOptions {
    PackOptions {
        base: Some(base.to_path_buf()),
        ..opts.clone()
    }
}

fn fixed(codec: Codec, bs: u32) -> PackOptions {
    PackOptions {
        codec,
        level: 3,
        block_size: bs,
        threads: 2,
        ..PackOptions::default()
    }
}

fn cdc(codec: Codec, min: u32, avg: u32, max: u32) -> PackOptions {
    PackOptions {
        codec,
        level: 3,
        cdc: Some(CdcParams { min, avg, max }),
        threads: 2,
        ..PackOptions::default()
    }
}

/// Block lengths the packer must produce for `data` (computed independently of hexz).
fn expected_lens(data: &[u8], opts: &PackOptions) -> Vec<usize> {
    match opts.cdc {
        None => data
            .chunks(opts.block_size as usize)
            .map(|c| c.len())
            .collect(),
        Some(p) => {
            fastcdc::v2020::FastCDC::new(data, p.min as usize, p.avg as usize, p.max as usize)
                .map(|c| c.length)
                .collect()
        }
    }
}

/// Logical bytes of `data` in blocks that are not all zero, for the packer's block layout.
fn nonzero_block_bytes(data: &[u8], opts: &PackOptions) -> u64 {
    let mut at = 0;
    let mut n = 0u64;
    for len in expected_lens(data, opts) {
        if data[at..at + len].iter().any(|&b| b != 0) {
            n += len as u64;
        }
        at += len;
    }
    n
}

fn entries(f: &File, s: SnapshotStream) -> Vec<BlockEntry> {
    let pages = f.master().stream(s).map_or(0, |r| r.pages.len());
    let mut v = Vec::new();
    for p in 0..pages {
        v.extend(f.index_page(s, p).unwrap().entries.iter().copied());
    }
    v
}

fn clip(data: &[u8], off: u64, len: usize) -> &[u8] {
    let start = off.min(data.len() as u64) as usize;
    let end = (start + len).min(data.len());
    &data[start..end]
}

/// Reads `s` of `f` in many ways and compares with `data`.
fn check_stream(f: &File, s: SnapshotStream, data: &[u8], seed: u64, what: &str) {
    assert_eq!(f.size(s), data.len() as u64, "{what}: size of {s}");
    let all = f.read_at(s, 0, data.len() + 100).unwrap();
    assert!(all == data, "{what}: whole {s} stream differs");
    let mut rng = Rng::new(seed);
    let len = data.len() as u64;
    for i in 0..150 {
        let off = rng.below(len + 200);
        let n = match i % 3 {
            0 => rng.below(64) as usize,
            1 => rng.below(70_000) as usize,
            _ => rng.below(400_000) as usize,
        };
        let got = f.read_at(s, off, n).unwrap();
        assert!(
            got == clip(data, off, n),
            "{what}: read_at({s}, {off}, {n}) differs"
        );
        let mut buf = vec![0xa5u8; n];
        let k = f.read_at_into(s, off, &mut buf).unwrap();
        assert!(
            &buf[..k] == clip(data, off, n),
            "{what}: read_at_into({s}, {off}, {n}) differs"
        );
    }
    let mut r = f.reader(s).unwrap();
    let mut v = Vec::new();
    r.read_to_end(&mut v).unwrap();
    assert!(v == data, "{what}: StreamReader read_to_end of {s} differs");
    for _ in 0..40 {
        let off = rng.below(len);
        let n = rng.below(100_000) as usize;
        r.seek(SeekFrom::Start(off)).unwrap();
        let mut buf = Vec::new();
        r.by_ref().take(n as u64).read_to_end(&mut buf).unwrap();
        assert!(
            buf == clip(data, off, n),
            "{what}: StreamReader at {off} len {n} of {s} differs"
        );
    }
    let back = rng.below(len.min(50_000)) as i64 + 1;
    r.seek(SeekFrom::End(-back)).unwrap();
    let mut tail = Vec::new();
    r.read_to_end(&mut tail).unwrap();
    assert!(
        tail == data[data.len() - back as usize..],
        "{what}: StreamReader tail of {s}"
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn err_of<T: std::fmt::Debug>(r: hexz_core::Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}

/// Offset and length of the master index, from the header.
fn master_loc(bytes: &[u8]) -> (usize, usize) {
    let off = u64::from_le_bytes(bytes[56..64].try_into().unwrap()) as usize;
    let len = u32::from_le_bytes(bytes[64..68].try_into().unwrap()) as usize;
    (off, len)
}

/// Rewrites the header CRC after editing header bytes.
fn fix_header_crc(bytes: &mut [u8]) {
    let crc = crc32fast::hash(&bytes[..508]);
    bytes[508..512].copy_from_slice(&crc.to_le_bytes());
}

/// Recomputes the trailing BLAKE3 digest of the master index after editing it.
fn fix_master_digest(bytes: &mut [u8]) -> [u8; 32] {
    let (off, len) = master_loc(bytes);
    let body_end = off + len - 32;
    let d = *blake3::hash(&bytes[off..body_end]).as_bytes();
    bytes[body_end..off + len].copy_from_slice(&d);
    d
}

fn archive_id(bytes: &[u8]) -> [u8; 16] {
    bytes[72..88].try_into().unwrap()
}

fn master_digest(bytes: &[u8]) -> [u8; 32] {
    let (off, len) = master_loc(bytes);
    bytes[off + len - 32..off + len].try_into().unwrap()
}

/// Makes the archive at `path` claim (`parent_id`, `parent_digest`) as its parent.
fn set_parent(path: &Path, parent_id: [u8; 16], parent_digest: [u8; 32]) {
    let mut b = std::fs::read(path).unwrap();
    let flags = u32::from_le_bytes(b[12..16].try_into().unwrap()) | FLAG_HAS_PARENT;
    b[12..16].copy_from_slice(&flags.to_le_bytes());
    b[96..112].copy_from_slice(&parent_id);
    b[112..144].copy_from_slice(&parent_digest);
    fix_header_crc(&mut b);
    std::fs::write(path, b).unwrap();
}
