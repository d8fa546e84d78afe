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
//! Everything here is self-contained (no shared helpers), deterministic, and asserts bytes,
//! errors and counts, never timings.

use hexz_core::format::header::{FLAG_CDC, FLAG_HAS_PARENT};
use hexz_core::format::index::META_PARENT_PATH;
use hexz_core::format::{BlockEntry, Codec};
use hexz_core::ops::pack::StreamStats;
use hexz_core::ops::{self, pack, CdcParams, PackInput, PackOptions, PackSource, PackStats};
use hexz_core::{File, OpenOptions, SnapshotStream};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// Runs `f` on a thread with a deadline, so a reader that recursed forever (or hung) fails
/// the test instead of hanging it.
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || {
            let _ = tx.send(f());
        })
        .unwrap();
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("did not finish within {secs} s: endless recursion or a hang?")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(h.join().expect_err("thread ended without a result"))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Round trips over chains
// ---------------------------------------------------------------------------------------

struct Level {
    path: PathBuf,
    disk: Vec<u8>,
    memory: Option<Vec<u8>>,
    stats: PackStats,
}

/// Builds a chain of `levels` archives with `opts`, each level the next version of the
/// previous one, and checks every level after building it and again at the end.
fn chain_round_trip(opts: &PackOptions, two_streams: bool, levels: usize, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let insert = opts.cdc.is_some();
    let what0 = format!(
        "{} {} {} stream(s)",
        if insert { "cdc" } else { "fixed" },
        opts.codec,
        if two_streams { 2 } else { 1 }
    );
    let mut chain: Vec<Level> = Vec::new();
    for k in 1..=levels {
        let (disk, memory) = match chain.last() {
            None => (
                mixed(5 << 20, seed),
                two_streams.then(|| mixed(2 << 20, seed + 1)),
            ),
            Some(prev) => (
                next_version(&prev.disk, seed * 100 + k as u64, insert),
                prev.memory
                    .as_ref()
                    .map(|m| next_version(m, seed * 100 + 50 + k as u64, insert)),
            ),
        };
        let path = dir.path().join(format!("level{k}.hxz"));
        let o = match chain.last() {
            None => opts.clone(),
            Some(prev) => with_base(opts, &prev.path),
        };
        let stats = pack_to(&path, Some(&disk), memory.as_deref(), &o);
        let what = format!("{what0}, level {k}");

        // Statistics: a child refers to its ancestors for what did not change.
        let mut sts: Vec<(&StreamStats, &[u8], SnapshotStream)> =
            vec![(stats.disk.as_ref().unwrap(), &disk, DISK)];
        if let Some(m) = &memory {
            sts.push((stats.memory.as_ref().unwrap(), m, MEM));
        }
        let f = File::open(&path).unwrap();
        for (st, data, s) in &sts {
            assert_eq!(st.input_bytes, data.len() as u64, "{what}: {s} input");
            assert_eq!(
                st.blocks,
                expected_lens(data, opts).len() as u64,
                "{what}: {s} block count"
            );
            let rec = f.master().stream(*s).unwrap();
            assert_eq!(rec.stored_bytes, st.stored_bytes, "{what}: {s} record");
            if k == 1 {
                assert_eq!(st.parent_blocks, 0, "{what}: {s} parent blocks");
            } else {
                assert!(st.parent_blocks > 0, "{what}: {s} found nothing in parent");
                assert!(
                    st.stored_bytes < st.input_bytes / 5,
                    "{what}: {s} child stores {} of {} bytes",
                    st.stored_bytes,
                    st.input_bytes
                );
                let first = &chain[0].stats;
                let first = if *s == DISK {
                    first.disk.as_ref()
                } else {
                    first.memory.as_ref()
                };
                // Small blocks: the edits touch a small share; 64 KiB blocks on a 2 MiB
                // stream: a larger one.
                let factor = if opts.cdc.map_or(opts.block_size, |c| c.avg) <= 16384 {
                    4
                } else {
                    2
                };
                assert!(
                    st.stored_bytes * factor < first.unwrap().stored_bytes,
                    "{what}: {s} child stores {} bytes, the first level {}",
                    st.stored_bytes,
                    first.unwrap().stored_bytes
                );
            }
        }

        // Structure of the chain.
        assert_eq!(f.chain_len(), k, "{what}: chain_len");
        assert_eq!(f.chain_ids().len(), k, "{what}: chain_ids");
        assert_eq!(
            f.header().flags & FLAG_HAS_PARENT != 0,
            k > 1,
            "{what}: THIN flag"
        );
        assert_eq!(
            f.master().meta(META_PARENT_PATH).is_some(),
            k > 1,
            "{what}: parent path metadata"
        );
        if k > 1 {
            assert_eq!(
                f.master().meta(META_PARENT_PATH).unwrap(),
                format!("level{}.hxz", k - 1).as_bytes(),
                "{what}: recorded parent path"
            );
            let parent = f.parent().expect("parent");
            assert_eq!(
                f.header().parent.archive_id,
                parent.header().archive_id,
                "{what}: parent id"
            );
            assert_eq!(f.header().parent.index_digest, parent.master().digest);
        }
        let mut sources = HashSet::new();
        let mut nonzero = 0u64;
        for (_, data, s) in &sts {
            let es = entries(&f, *s);
            let lens: Vec<usize> = es.iter().map(|e| e.logical_len as usize).collect();
            assert_eq!(lens, expected_lens(data, opts), "{what}: {s} block layout");
            for e in &es {
                sources.insert(e.source);
                if !e.is_zero() {
                    nonzero += e.logical_len as u64;
                }
            }
            assert_eq!(
                nonzero_block_bytes(data, opts),
                es.iter()
                    .filter(|e| !e.is_zero())
                    .map(|e| e.logical_len as u64)
                    .sum::<u64>(),
                "{what}: {s} zero blocks"
            );
        }
        assert!(
            sources.iter().all(|&s| (s as usize) < k),
            "{what}: sources {sources:?}"
        );
        // Blocks unchanged since the first version are still read from the first archive.
        assert!(
            sources.contains(&((k - 1) as u16)),
            "{what}: no block refers to the root archive (sources {sources:?})"
        );
        let links = ops::inspect::chain(&f).unwrap();
        assert_eq!(links.len(), k, "{what}: chain links");
        assert_eq!(
            links.iter().map(|l| l.supplied_bytes).sum::<u64>(),
            nonzero,
            "{what}: supplied bytes"
        );
        for (d, l) in links.iter().enumerate() {
            assert_eq!(l.depth, d);
            assert!(
                l.supplied_bytes > 0,
                "{what}: ancestor {d} supplies nothing"
            );
        }
        assert_eq!(links[0].location, path.display().to_string());

        check_stream(&f, DISK, &disk, seed + k as u64, &what);
        if let Some(m) = &memory {
            check_stream(&f, MEM, m, seed + 7 * k as u64, &what);
        } else {
            assert!(!f.has_stream(MEM));
        }
        chain.push(Level {
            path,
            disk,
            memory,
            stats,
        });
    }

    // Every level still reads back after the later ones were made (with a fresh File and
    // with verification of the whole chain).
    for (i, l) in chain.iter().enumerate() {
        let what = format!("{what0}, level {} at the end", i + 1);
        let f = File::open_with(
            &l.path,
            OpenOptions {
                mmap: i % 2 == 0,
                cache_bytes: 0,
                ..OpenOptions::default()
            },
        )
        .unwrap();
        let rep = ops::verify(&f, None).unwrap();
        assert_eq!(rep.archives, (i + 1) as u64, "{what}: verify archives");
        check_stream(&f, DISK, &l.disk, 99 + i as u64, &what);
        if let Some(m) = &l.memory {
            check_stream(&f, MEM, m, 98 + i as u64, &what);
        }
    }

    // Flatten the last level: standalone, same content, same layout, same size as a fresh
    // pack of that content with the same options.
    let last = chain.last().unwrap();
    let flat = dir.path().join("flat.hxz");
    let fresh = dir.path().join("fresh.hxz");
    let child = File::open(&last.path).unwrap();
    let fs = ops::flatten(&child, &flat, None, None).unwrap();
    let fresh_stats = pack_to(&fresh, Some(&last.disk), last.memory.as_deref(), opts);
    assert_eq!(
        fs.archive_bytes, fresh_stats.archive_bytes,
        "{what0}: flattened size differs from a fresh pack"
    );
    drop(child);
    for l in &chain[..chain.len() - 1] {
        std::fs::remove_file(&l.path).unwrap();
    }
    let f = File::open(&flat).unwrap();
    let g = File::open(&fresh).unwrap();
    assert_eq!(f.chain_len(), 1);
    assert!(f.parent().is_none());
    assert_eq!(f.header().flags & FLAG_HAS_PARENT, 0);
    assert_eq!(
        f.header().flags & FLAG_CDC != 0,
        opts.cdc.is_some(),
        "{what0}: flatten keeps the chunking"
    );
    assert_eq!(f.header().codec, opts.codec);
    assert_eq!(
        (
            f.header().block_size,
            f.header().cdc_min,
            f.header().cdc_max
        ),
        (
            g.header().block_size,
            g.header().cdc_min,
            g.header().cdc_max
        )
    );
    assert!(f.master().meta(META_PARENT_PATH).is_none());
    let info = ops::inspect(&f, fs.archive_bytes);
    assert!(!info.flags.contains(&"thin"), "{:?}", info.flags);
    for s in f.streams() {
        let (ef, eg) = (entries(&f, s), entries(&g, s));
        assert!(ef.iter().all(|e| e.source == 0));
        let hf: Vec<_> = ef.iter().map(|e| (e.logical_len, e.hash)).collect();
        let hg: Vec<_> = eg.iter().map(|e| (e.logical_len, e.hash)).collect();
        assert!(
            hf == hg,
            "{what0}: flattened {s} blocks differ from a fresh pack"
        );
    }
    check_stream(&f, DISK, &last.disk, 5, &format!("{what0}, flattened"));
    if let Some(m) = &last.memory {
        check_stream(&f, MEM, m, 6, &format!("{what0}, flattened"));
    }
    let d = ops::diff(&f, &g).unwrap();
    assert!(d.identical() && d.unique_a == 0 && d.unique_b == 0 && d.decoded_bytes == 0);
    // The chain is gone, so the last level no longer opens; the flattened copy does not care.
    let e = err_of(File::open(&last.path));
    assert!(
        e.contains(&format!("level{}.hxz", chain.len() - 1)),
        "{what0}: {e}"
    );
}

#[test]
fn chain_fixed_lz4_disk() {
    chain_round_trip(&fixed(Codec::Lz4, 4096), false, 4, 1);
}

#[test]
fn chain_fixed_lz4_disk_and_memory() {
    chain_round_trip(&fixed(Codec::Lz4, 4096), true, 4, 2);
}

#[test]
fn chain_fixed_zstd_disk() {
    chain_round_trip(&fixed(Codec::Zstd, 4096), false, 4, 3);
}

#[test]
fn chain_fixed_zstd_disk_and_memory() {
    chain_round_trip(&fixed(Codec::Zstd, 4096), true, 4, 4);
}

#[test]
fn chain_cdc_lz4_disk() {
    chain_round_trip(&cdc(Codec::Lz4, 1024, 4096, 16384), false, 4, 5);
}

#[test]
fn chain_cdc_lz4_disk_and_memory() {
    chain_round_trip(&cdc(Codec::Lz4, 1024, 4096, 16384), true, 4, 6);
}

#[test]
fn chain_cdc_zstd_disk() {
    chain_round_trip(&cdc(Codec::Zstd, 1024, 4096, 16384), false, 4, 7);
}

#[test]
fn chain_cdc_zstd_disk_and_memory() {
    chain_round_trip(&cdc(Codec::Zstd, 1024, 4096, 16384), true, 4, 8);
}

#[test]
fn chain_of_two_with_default_block_sizes() {
    chain_round_trip(&fixed(Codec::Lz4, 64 * 1024), true, 2, 9);
    let d = CdcParams::default();
    chain_round_trip(&cdc(Codec::Zstd, d.min, d.avg, d.max), true, 2, 10);
}

/// Each level of the chain uses different chunking, block sizes and codecs: blocks are
/// decoded through the chain with the codec of the archive that stores them. Levels 1 and 4
/// share their parent's block layout, so they refer to blocks compressed with another codec.
#[test]
fn chain_mixing_codecs_and_chunking_per_level() {
    let dir = tempfile::tempdir().unwrap();
    let per_level = [
        fixed(Codec::Lz4, 64 * 1024),
        fixed(Codec::Zstd, 64 * 1024),
        fixed(Codec::Zstd, 16 * 1024),
        cdc(Codec::Lz4, 16 * 1024, 64 * 1024, 256 * 1024),
        cdc(Codec::None, 16 * 1024, 64 * 1024, 256 * 1024),
    ];
    let mut versions: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    for (k, opts) in per_level.iter().enumerate() {
        let data = match versions.last() {
            None => mixed(4 << 20, 77),
            Some((_, prev)) => next_version(prev, 700 + k as u64, k == 4),
        };
        let path = dir.path().join(format!("m{k}.hxz"));
        let o = match versions.last() {
            None => opts.clone(),
            Some((p, _)) => with_base(opts, p),
        };
        let st = pack_to(&path, Some(&data), None, &o).disk.unwrap();
        if k == 1 || k == 4 {
            assert!(
                st.parent_blocks > 0,
                "level {k} found nothing in its parent"
            );
        }
        versions.push((path, data));
    }
    for (k, (p, data)) in versions.iter().enumerate() {
        let f = File::open(p).unwrap();
        assert_eq!(f.chain_len(), k + 1);
        check_stream(&f, DISK, data, 300 + k as u64, &format!("mixed level {k}"));
        assert_eq!(ops::verify(&f, None).unwrap().archives, (k + 1) as u64);
    }
    let codecs_by_source = |k: usize| {
        let f = File::open(&versions[k].0).unwrap();
        let mut m: HashMap<u16, HashSet<Codec>> = HashMap::new();
        for e in entries(&f, DISK).iter().filter(|e| !e.is_zero()) {
            m.entry(e.source).or_default().insert(e.codec);
        }
        m
    };
    // Level 1 (zstd) takes unchanged blocks from level 0 (LZ4).
    let m1 = codecs_by_source(1);
    assert!(
        m1.get(&1).is_some_and(|c| c.contains(&Codec::Lz4)),
        "{m1:?}"
    );
    assert!(!m1[&0].contains(&Codec::Lz4), "{m1:?}");
    // Level 4 (no compression) takes unchanged chunks from level 3 (LZ4).
    let m4 = codecs_by_source(4);
    assert!(
        m4.get(&1).is_some_and(|c| c.contains(&Codec::Lz4)),
        "{m4:?}"
    );
    assert!(
        m4.get(&0)
            .is_some_and(|c| c == &HashSet::from([Codec::None])),
        "{m4:?}"
    );
}

/// `PackOptions::base` promises that blocks "the parent (or any of its ancestors) already
/// holds" are stored as references. Content the grandparent stores but the parent no longer
/// uses (a file deleted in v2 and restored in v3) is held by an ancestor, so v3 should refer
/// to it (source 2) instead of storing it again.
#[test]
fn blocks_held_only_by_a_grandparent_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let bs = 64 * 1024;
    let opts = fixed(Codec::Lz4, bs as u32);
    let v1 = text_like(8 * bs, 61);
    let mut v2 = v1.clone();
    v2[2 * bs..3 * bs].copy_from_slice(&text_like(bs, 62)); // block 2 "deleted"
    let v3 = v1.clone(); // and restored
    let (p1, p2, p3) = (
        dir.path().join("1.hxz"),
        dir.path().join("2.hxz"),
        dir.path().join("3.hxz"),
    );
    pack_to(&p1, Some(&v1), None, &opts);
    pack_to(&p2, Some(&v2), None, &with_base(&opts, &p1));
    let s3 = pack_to(&p3, Some(&v3), None, &with_base(&opts, &p2))
        .disk
        .unwrap();
    let f = File::open(&p3).unwrap();
    check_stream(&f, DISK, &v3, 1, "restored block");
    let src: Vec<u16> = entries(&f, DISK).iter().map(|e| e.source).collect();
    assert_eq!(
        (s3.parent_blocks, s3.stored_bytes, src),
        (8, 0, vec![2u16; 8]),
        "v3 (= v1) over v2 over v1: the block v2 dropped is stored again instead of \
         referring to v1"
    );
}

// ---------------------------------------------------------------------------------------
// What a child stores
// ---------------------------------------------------------------------------------------

/// 4 MiB of 64 KiB blocks: unique text blocks, a zero block, and repeats (dedup).
fn dedup_data() -> Vec<u8> {
    let bs = 64 * 1024;
    let mut v = Vec::new();
    for i in 0..64 {
        match i % 8 {
            3 => v.extend(std::iter::repeat_n(0u8, bs)),
            5 | 6 => {
                let k = (i / 8) * 8;
                let copy = v[k * bs..(k + 1) * bs].to_vec();
                v.extend_from_slice(&copy);
            }
            _ => v.extend_from_slice(&text_like(bs, 1000 + i as u64)),
        }
    }
    v
}

#[test]
fn thin_child_of_deduplicated_parent_stores_only_new_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let bs = 64 * 1024;
    let data = dedup_data();
    let opts = fixed(Codec::Zstd, bs as u32);
    let parent = dir.path().join("parent.hxz");
    let ps = pack_to(&parent, Some(&data), None, &opts);
    let pd = ps.disk.unwrap();
    assert_eq!(pd.zero_blocks, 8);
    assert_eq!(pd.dedup_blocks, 16);
    let nonzero_blocks = 64 - 8;

    // Same content: everything is a reference, nothing is stored.
    let same = dir.path().join("same.hxz");
    let s = pack_to(&same, Some(&data), None, &with_base(&opts, &parent));
    let sd = s.disk.unwrap();
    assert_eq!(sd.parent_blocks, nonzero_blocks);
    assert_eq!(sd.stored_bytes, 0);
    assert_eq!(sd.dedup_blocks, 0);
    assert_eq!(sd.zero_blocks, 8);
    let f = File::open(&same).unwrap();
    assert_eq!(f.master().stream(DISK).unwrap().stored_bytes, 0);
    assert!(
        s.archive_bytes < 16 * 1024,
        "identical child is {} bytes",
        s.archive_bytes
    );
    // Duplicated parent blocks resolve to the parent's single stored copy.
    let es = entries(&f, DISK);
    assert_eq!(es[5].stored_offset, es[0].stored_offset);
    assert_eq!(es[5].source, 1);
    check_stream(&f, DISK, &data, 1, "identical child");

    // One byte changed in a unique block: exactly one block stored.
    let mut one = data.clone();
    one[2 * bs + 777] ^= 0x55;
    let onep = dir.path().join("one.hxz");
    let o = pack_to(&onep, Some(&one), None, &with_base(&opts, &parent));
    let od = o.disk.unwrap();
    assert_eq!(od.parent_blocks, nonzero_blocks - 1);
    assert!(od.stored_bytes > 0 && od.stored_bytes <= bs as u64);
    let f = File::open(&onep).unwrap();
    let es = entries(&f, DISK);
    let own: Vec<usize> = (0..es.len())
        .filter(|&i| es[i].source == 0 && !es[i].is_zero())
        .collect();
    assert_eq!(own, vec![2]);
    check_stream(&f, DISK, &one, 2, "one-byte child");

    // The same new block three times: stored once in the child (its own dedup).
    let mut rep = data.clone();
    let newb = text_like(bs, 4242);
    for i in [9usize, 20, 40] {
        rep[i * bs..(i + 1) * bs].copy_from_slice(&newb);
    }
    let repp = dir.path().join("rep.hxz");
    let r = pack_to(&repp, Some(&rep), None, &with_base(&opts, &parent));
    let rd = r.disk.unwrap();
    assert_eq!(rd.dedup_blocks, 2);
    assert_eq!(rd.parent_blocks, nonzero_blocks - 3);
    let single = pack_to(
        &dir.path().join("single.hxz"),
        Some(&newb),
        None,
        &fixed(Codec::Zstd, bs as u32),
    );
    assert_eq!(rd.stored_bytes, single.disk.unwrap().stored_bytes);
    check_stream(&File::open(&repp).unwrap(), DISK, &rep, 3, "repeat child");

    // A block of the parent's disk stream is found for the child's memory stream too.
    let memp = dir.path().join("mem.hxz");
    let m = pack_to(
        &memp,
        None,
        Some(&data[..8 * bs]),
        &with_base(&opts, &parent),
    );
    let md = m.memory.unwrap();
    assert_eq!(md.stored_bytes, 0);
    assert_eq!(md.parent_blocks, 7);
    check_stream(
        &File::open(&memp).unwrap(),
        MEM,
        &data[..8 * bs],
        4,
        "memory child",
    );
}

/// A child of a child refers to the grandparent directly (source 2) for blocks the parent
/// itself took from the grandparent; the middle archive is not read for them.
#[test]
fn grandchild_refers_to_grandparent_directly() {
    let dir = tempfile::tempdir().unwrap();
    let bs = 64 * 1024;
    let opts = fixed(Codec::Lz4, bs as u32);
    let v1 = text_like(16 * bs, 1);
    let mut v2 = v1.clone();
    v2[3 * bs..4 * bs].copy_from_slice(&text_like(bs, 2));
    let mut v3 = v2.clone();
    v3[7 * bs..8 * bs].copy_from_slice(&text_like(bs, 3));
    let (p1, p2, p3) = (
        dir.path().join("1.hxz"),
        dir.path().join("2.hxz"),
        dir.path().join("3.hxz"),
    );
    pack_to(&p1, Some(&v1), None, &opts);
    pack_to(&p2, Some(&v2), None, &with_base(&opts, &p1));
    let s3 = pack_to(&p3, Some(&v3), None, &with_base(&opts, &p2));
    assert_eq!(s3.disk.unwrap().parent_blocks, 15);
    let f = File::open(&p3).unwrap();
    let src: Vec<u16> = entries(&f, DISK).iter().map(|e| e.source).collect();
    let mut want = vec![2u16; 16];
    want[3] = 1;
    want[7] = 0;
    assert_eq!(src, want);
    let links = ops::inspect::chain(&f).unwrap();
    let sup: Vec<u64> = links.iter().map(|l| l.supplied_bytes).collect();
    assert_eq!(sup, vec![bs as u64, bs as u64, 14 * bs as u64]);
    check_stream(&f, DISK, &v3, 1, "grandchild");
}

/// Inserting a few bytes near the start shifts every later byte. Content-defined chunks
/// re-synchronise after the edit, so the CDC child stores almost nothing; fixed blocks all
/// move, so the fixed-block child stores almost everything again. This is why `--cdc` exists.
#[test]
fn cdc_child_survives_an_insertion_fixed_child_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = text_like(24 << 20, 2024);
    let mut v2 = v1.clone();
    v2.splice(1000..1000, *b"INSERTED");
    let input = v2.len() as u64;

    let c = CdcParams::default();
    let copts = cdc(Codec::Lz4, c.min, c.avg, c.max);
    let cp = dir.path().join("cdc1.hxz");
    let cparent = pack_to(&cp, Some(&v1), None, &copts);
    let cc = dir.path().join("cdc2.hxz");
    let cchild = pack_to(&cc, Some(&v2), None, &with_base(&copts, &cp))
        .disk
        .unwrap();

    let fopts = fixed(Codec::Lz4, 64 * 1024);
    let fp = dir.path().join("fixed1.hxz");
    let fparent = pack_to(&fp, Some(&v1), None, &fopts);
    let fc = dir.path().join("fixed2.hxz");
    let fchild = pack_to(&fc, Some(&v2), None, &with_base(&fopts, &fp))
        .disk
        .unwrap();

    let cpar = cparent.disk.unwrap().stored_bytes;
    let fpar = fparent.disk.unwrap().stored_bytes;
    eprintln!(
        "shift: input {input}, cdc parent {cpar} child {} ({} of {} blocks from parent); \
         fixed parent {fpar} child {} ({} of {} blocks from parent)",
        cchild.stored_bytes,
        cchild.parent_blocks,
        cchild.blocks,
        fchild.stored_bytes,
        fchild.parent_blocks,
        fchild.blocks
    );
    assert!(
        cchild.stored_bytes * 20 < input,
        "CDC child stores {} of {input} bytes (want < 5%)",
        cchild.stored_bytes
    );
    assert!(cchild.stored_bytes * 20 < cpar);
    assert!(cchild.parent_blocks * 100 >= cchild.blocks * 95);
    assert!(
        fchild.stored_bytes * 2 > fpar,
        "fixed child stores {} bytes, its parent {fpar} (want > 50%)",
        fchild.stored_bytes
    );
    assert!(fchild.parent_blocks <= 1, "{}", fchild.parent_blocks);
    check_stream(&File::open(&cc).unwrap(), DISK, &v2, 1, "shifted cdc child");
    check_stream(
        &File::open(&fc).unwrap(),
        DISK,
        &v2,
        2,
        "shifted fixed child",
    );
}

// ---------------------------------------------------------------------------------------
// Wrong, modified, missing, supplied and looping parents
// ---------------------------------------------------------------------------------------

struct Pair {
    dir: tempfile::TempDir,
    parent: PathBuf,
    child: PathBuf,
    v1: Vec<u8>,
    v2: Vec<u8>,
}

fn pair() -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let v1 = mixed(1 << 20, 31);
    let v2 = next_version(&v1, 32, false);
    let opts = fixed(Codec::Lz4, 4096);
    let parent = dir.path().join("parent.hxz");
    let child = dir.path().join("child.hxz");
    pack_to(&parent, Some(&v1), None, &opts);
    pack_to(&child, Some(&v2), None, &with_base(&opts, &parent));
    Pair {
        dir,
        parent,
        child,
        v1,
        v2,
    }
}

#[test]
fn parent_replaced_by_another_archive_is_refused_naming_the_expected_id() {
    let p = pair();
    let want = hex(&File::open(&p.parent).unwrap().header().archive_id);
    // Another archive, and the very same content packed again (new archive id).
    for other in [mixed(1 << 20, 99), p.v1.clone()] {
        let tmp = p.dir.path().join("other.hxz");
        pack_to(&tmp, Some(&other), None, &fixed(Codec::Lz4, 4096));
        let got = hex(&File::open(&tmp).unwrap().header().archive_id);
        std::fs::rename(&tmp, &p.parent).unwrap();
        let e = err_of(File::open(&p.child));
        assert!(e.contains(&want), "error does not name expected id: {e}");
        assert!(e.contains(&got), "error does not name the found id: {e}");
        assert!(e.contains("is not the parent"), "{e}");
        assert!(e.contains("parent.hxz"), "{e}");
    }
}

#[test]
fn parent_with_modified_index_is_refused() {
    let p = pair();
    let want = hex(&File::open(&p.parent).unwrap().header().archive_id);
    let orig = std::fs::read(&p.parent).unwrap();

    // Same id, index changed in a way that keeps the parent itself valid (a reserved byte
    // of the master index, digest recomputed): the child's digest no longer matches.
    let mut b = orig.clone();
    let (off, _) = master_loc(&b);
    b[off + 6] ^= 1;
    let new_digest = fix_master_digest(&mut b);
    std::fs::write(&p.parent, &b).unwrap();
    File::open(&p.parent).expect("the edited parent is still a valid archive");
    let e = err_of(File::open(&p.child));
    assert!(e.contains("was modified"), "{e}");
    assert!(e.contains(&want), "{e}");
    assert!(e.contains(&hex(&new_digest)), "{e}");

    // Same id, a flipped byte in the master index (digest not fixed): the parent is
    // corrupt, and the error must say it is the parent that is damaged.
    let mut b = orig.clone();
    let (off, len) = master_loc(&b);
    b[off + len / 2] ^= 0x10;
    std::fs::write(&p.parent, &b).unwrap();
    let e = err_of(File::open(&p.child));
    assert!(e.contains("master index"), "{e}");
    assert!(
        e.contains("parent.hxz"),
        "opening the child with a damaged parent gives an error that does not name the \
         parent archive: {e}"
    );

    // Intact again: reads fine.
    std::fs::write(&p.parent, &orig).unwrap();
    check_stream(&File::open(&p.child).unwrap(), DISK, &p.v2, 1, "restored");
}

#[test]
fn parent_with_a_damaged_block_fails_reads_of_that_block_only() {
    let p = pair();
    let f = File::open(&p.child).unwrap();
    let es = entries(&f, DISK);
    let (i, e) = es
        .iter()
        .enumerate()
        .find(|(_, e)| e.source == 1 && e.stored_len > 16)
        .map(|(i, e)| (i, *e))
        .unwrap();
    drop(f);
    let mut b = std::fs::read(&p.parent).unwrap();
    b[e.stored_offset as usize + 3] ^= 0xff;
    std::fs::write(&p.parent, &b).unwrap();
    let f = File::open(&p.child).unwrap();
    let err = err_of(f.read_at(DISK, e.logical_offset, 10));
    assert!(err.contains("CRC32"), "{err}");
    assert!(err.contains(&format!("block {i}")), "{err}");
    // Other blocks still read.
    let other = es
        .iter()
        .find(|x| x.stored_offset != e.stored_offset && !x.is_zero())
        .unwrap();
    let got = f
        .read_at(DISK, other.logical_offset, other.logical_len as usize)
        .unwrap();
    let lo = other.logical_offset as usize;
    assert!(got == p.v2[lo..lo + other.logical_len as usize]);
    let v = err_of(ops::verify(&f, None));
    assert!(v.contains("CRC32"), "{v}");
}

#[test]
fn missing_parent_error_names_the_path() {
    let p = pair();
    let want = hex(&File::open(&p.parent).unwrap().header().archive_id);
    std::fs::remove_file(&p.parent).unwrap();
    let e = err_of(File::open(&p.child));
    assert!(e.contains("parent.hxz"), "{e}");
    assert!(e.contains(&want), "{e}");
    let e = err_of(pack(
        PackInput {
            disk: Some(sized(&p.v2)),
            memory: None,
        },
        &p.dir.path().join("x.hxz"),
        &with_base(&fixed(Codec::Lz4, 4096), &p.child),
        None,
    ));
    assert!(e.contains("parent.hxz"), "{e}");
    assert!(!p.dir.path().join("x.hxz").exists());
}

#[test]
fn moved_parent_can_be_supplied_explicitly() {
    let p = pair();
    let moved_dir = p.dir.path().join("elsewhere");
    std::fs::create_dir(&moved_dir).unwrap();
    let moved = moved_dir.join("renamed.hxz");
    std::fs::rename(&p.parent, &moved).unwrap();
    assert!(File::open(&p.child).is_err());

    let parent = File::open(&moved).unwrap();
    let f = File::open_with(
        &p.child,
        OpenOptions {
            parent: Some(parent.clone()),
            ..OpenOptions::default()
        },
    )
    .unwrap();
    assert_eq!(f.chain_len(), 2);
    assert_eq!(f.parent().unwrap().describe(), parent.describe());
    check_stream(&f, DISK, &p.v2, 1, "supplied parent");
    assert_eq!(ops::verify(&f, None).unwrap().archives, 2);
    // With mmap too.
    let f = File::open_with(
        &p.child,
        OpenOptions {
            parent: Some(File::open(&moved).unwrap()),
            mmap: true,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    check_stream(&f, DISK, &p.v2, 2, "supplied parent, mmap");
    // A flatten through the supplied parent is standalone.
    let flat = p.dir.path().join("flat.hxz");
    ops::flatten(&f, &flat, None, None).unwrap();
    std::fs::remove_file(&moved).unwrap();
    check_stream(&File::open(&flat).unwrap(), DISK, &p.v2, 3, "flat");

    // Supplying the wrong archive is refused with the expected id named.
    let wrong = p.dir.path().join("wrong.hxz");
    pack_to(&wrong, Some(&p.v1), None, &fixed(Codec::Lz4, 4096));
    let e = err_of(File::open_with(
        &p.child,
        OpenOptions {
            parent: Some(File::open(&wrong).unwrap()),
            ..OpenOptions::default()
        },
    ));
    assert!(e.contains("is not the parent"), "{e}");
    // Supplying a parent to a standalone archive is refused.
    let e = err_of(File::open_with(
        &wrong,
        OpenOptions {
            parent: Some(File::open(&flat).unwrap()),
            ..OpenOptions::default()
        },
    ));
    assert!(e.contains("not a thin snapshot"), "{e}");
}

/// The parent is recorded relative to the child's directory, so moving both together keeps
/// the pair readable from anywhere.
#[test]
fn relative_parent_path_survives_moving_both() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let v1 = mixed(1 << 20, 5);
    let v2 = next_version(&v1, 6, false);
    let opts = fixed(Codec::Zstd, 8192);
    pack_to(&a.join("p.hxz"), Some(&v1), None, &opts);
    pack_to(
        &b.join("c.hxz"),
        Some(&v2),
        None,
        &with_base(&opts, &a.join("p.hxz")),
    );
    let f = File::open(b.join("c.hxz")).unwrap();
    assert_eq!(f.master().meta(META_PARENT_PATH).unwrap(), b"../a/p.hxz");
    drop(f);
    let deeper = dir.path().join("deeper");
    std::fs::create_dir_all(&deeper).unwrap();
    std::fs::rename(&a, deeper.join("a")).unwrap();
    std::fs::rename(&b, deeper.join("b")).unwrap();
    let f = File::open(dir.path().join("deeper/b/c.hxz")).unwrap();
    check_stream(&f, DISK, &v2, 1, "moved pair");
}

/// Packing a thin child over its own parent's path would replace the parent by an archive
/// that refers to itself: the packer must refuse, and the parent must survive.
#[test]
fn pack_refuses_output_equal_to_base() {
    let p = pair();
    let before = std::fs::read(&p.parent).unwrap();
    let r = pack(
        PackInput {
            disk: Some(sized(&p.v2)),
            memory: None,
        },
        &p.parent,
        &with_base(&fixed(Codec::Lz4, 4096), &p.parent),
        None,
    );
    let after = std::fs::read(&p.parent).unwrap();
    assert!(
        after == before,
        "pack --base X -o X replaced the parent X (pack returned {:?}); X now fails to open: {:?}",
        r.as_ref().map(|s| s.archive_bytes),
        File::open(&p.parent).err().map(|e| e.to_string())
    );
    assert!(r.is_err());
    // The same through a different spelling of the path.
    let spelled = p.dir.path().join(".").join("parent.hxz");
    let r = pack(
        PackInput {
            disk: Some(sized(&p.v2)),
            memory: None,
        },
        &spelled,
        &with_base(&fixed(Codec::Lz4, 4096), &p.parent),
        None,
    );
    assert!(r.is_err());
    assert!(std::fs::read(&p.parent).unwrap() == before);
}

/// An archive whose header names itself as its parent (and whose recorded parent path is
/// its own file name) must fail to open with a "loops" error, not recurse.
#[test]
fn self_parent_loop_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let opts = fixed(Codec::Lz4, 4096);
    let x = dir.path().join("x.hxz");
    let c = dir.path().join("c.hxz");
    let v1 = mixed(256 << 10, 1);
    pack_to(&x, Some(&v1), None, &opts);
    pack_to(
        &c,
        Some(&next_version(&v1, 2, false)),
        None,
        &with_base(&opts, &x),
    );
    // c records "x.hxz" as its parent path; move it there and make it claim itself.
    std::fs::rename(&c, &x).unwrap();
    let b = std::fs::read(&x).unwrap();
    set_parent(&x, archive_id(&b), master_digest(&b));
    let xx = x.clone();
    let e = within(30, move || {
        File::open(&xx).map(|_| ()).map_err(|e| e.to_string())
    });
    let e = e.expect_err("a self-referencing archive opened");
    assert!(e.contains("loops"), "{e}");
    assert!(e.contains(&hex(&archive_id(&b))), "{e}");
}

/// A is thin over B and B thin over A: both must fail to open with a "loops" error.
#[test]
fn two_archive_parent_cycle_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let opts = fixed(Codec::Zstd, 4096);
    let a = dir.path().join("a.hxz");
    let b = dir.path().join("b.hxz");
    let a2 = dir.path().join("a2.hxz");
    let v0 = mixed(256 << 10, 3);
    let v1 = next_version(&v0, 4, false);
    let v2 = next_version(&v1, 5, false);
    pack_to(&a, Some(&v0), None, &opts); // P at a.hxz
    pack_to(&b, Some(&v1), None, &with_base(&opts, &a)); // B -> "a.hxz" (P)
    pack_to(&a2, Some(&v2), None, &with_base(&opts, &b)); // A' -> "b.hxz" (B)
    std::fs::rename(&a2, &a).unwrap(); // now a.hxz is A', thin over b.hxz
    let ab = std::fs::read(&a).unwrap();
    // B now claims A' (at its recorded path a.hxz) as its parent.
    set_parent(&b, archive_id(&ab), master_digest(&ab));
    for p in [a.clone(), b.clone()] {
        let pp = p.clone();
        let e = within(30, move || {
            File::open(&pp).map(|_| ()).map_err(|e| e.to_string())
        })
        .expect_err("an archive in a cycle opened");
        assert!(e.contains("loops"), "{}: {e}", p.display());
    }
    // Packing over an archive of the cycle fails the same way.
    let bb = b.clone();
    let out = dir.path().join("out.hxz");
    let e = within(30, move || {
        pack(
            PackInput {
                disk: Some(sized(&[1u8; 5000])),
                memory: None,
            },
            &out,
            &with_base(&fixed(Codec::Lz4, 4096), &bb),
            None,
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    })
    .expect_err("packing over a cycle");
    assert!(e.contains("loops"), "{e}");
}

/// Supplying a child as its own parent is a loop too (checked before the id comparison).
#[test]
fn supplied_parent_containing_the_child_is_a_loop() {
    let p = pair();
    let me = File::open(&p.child).unwrap();
    let e = err_of(File::open_with(
        &p.child,
        OpenOptions {
            parent: Some(me),
            ..OpenOptions::default()
        },
    ));
    assert!(e.contains("loops"), "{e}");
}

/// 255 ancestors are allowed, 256 are not: the packer refuses to extend a full chain, and
/// a (forged) archive with 256 ancestors fails to open with an error, without overflowing
/// the stack.
#[test]
fn chain_depth_limit_is_255_ancestors() {
    within(240, chain_depth_limit_body);
}

fn chain_depth_limit_body() {
    let dir = tempfile::tempdir().unwrap();
    let opts = PackOptions {
        threads: 1,
        ..fixed(Codec::Lz4, 4096)
    };
    let name = |k: usize| dir.path().join(format!("a{k:03}.hxz"));
    let mut data = text_like(16 * 1024, 0);
    pack_to(&name(0), Some(&data), None, &opts);
    for k in 1..=255usize {
        let b = (k % 4) * 4096;
        data[b..b + 4096].copy_from_slice(&text_like(4096, k as u64));
        pack_to(&name(k), Some(&data), None, &with_base(&opts, &name(k - 1)));
    }
    let top = name(255);
    let f = File::open(&top).unwrap();
    assert_eq!(f.chain_len(), 256);
    assert_eq!(f.read_at(DISK, 0, 1 << 20).unwrap(), data);
    let sources: HashSet<u16> = entries(&f, DISK).iter().map(|e| e.source).collect();
    assert_eq!(sources, HashSet::from([0, 1, 2, 3]));
    drop(f);
    let e = err_of(pack(
        PackInput {
            disk: Some(sized(&data)),
            memory: None,
        },
        &name(256),
        &with_base(&opts, &top),
        None,
    ));
    assert!(e.contains("255"), "{e}");
    assert!(!name(256).exists());

    // Forge a 257th archive over a255: a copy of a255 with a new id, parent a255, and the
    // recorded parent path "a254.hxz" rewritten to "a255.hxz" (same length).
    let topb = std::fs::read(&top).unwrap();
    let mut b = topb.clone();
    let (off, len) = master_loc(&b);
    let at = b[off..off + len]
        .windows(8)
        .position(|w| w == b"a254.hxz")
        .expect("parent path in master index")
        + off;
    b[at..at + 8].copy_from_slice(b"a255.hxz");
    fix_master_digest(&mut b);
    b[72..88].copy_from_slice(&[0xab; 16]);
    std::fs::write(name(256), &b).unwrap();
    set_parent(&name(256), archive_id(&topb), master_digest(&topb));
    let e = err_of(File::open(name(256)));
    assert!(e.contains("255"), "{e}");
}

// ---------------------------------------------------------------------------------------
// diff
// ---------------------------------------------------------------------------------------

fn push_range(v: &mut Vec<(u64, u64)>, off: u64, len: u64) {
    if len == 0 {
        return;
    }
    if let Some(last) = v.last_mut() {
        if last.0 + last.1 == off {
            last.1 += len;
            return;
        }
    }
    v.push((off, len));
}

/// Block-granular differing ranges for two fixed-block layouts of block size `bs`.
fn block_ranges(a: &[u8], b: &[u8], bs: usize) -> Vec<(u64, u64)> {
    let common = a.len().min(b.len());
    let mut v = Vec::new();
    let mut at = 0;
    while at < common {
        let end = (at + bs).min(common);
        let (ea, eb) = ((at + bs).min(a.len()), (at + bs).min(b.len()));
        if a[at..ea] != b[at..eb] {
            push_range(&mut v, at as u64, (end - at) as u64);
        }
        at += bs;
    }
    push_range(
        &mut v,
        common as u64,
        (a.len().max(b.len()) - common) as u64,
    );
    v
}

/// Byte-granular differing ranges.
fn byte_ranges(a: &[u8], b: &[u8]) -> Vec<(u64, u64)> {
    let common = a.len().min(b.len());
    let mut v = Vec::new();
    for i in 0..common {
        if a[i] != b[i] {
            push_range(&mut v, i as u64, 1);
        }
    }
    push_range(
        &mut v,
        common as u64,
        (a.len().max(b.len()) - common) as u64,
    );
    v
}

/// Logical bytes of `x`'s non-zero blocks whose content is not a block of `y`.
fn unique_bytes(x: &[u8], y: &[u8], bs: usize) -> u64 {
    let hy: HashSet<[u8; 32]> = y
        .chunks(bs)
        .filter(|c| c.iter().any(|&b| b != 0))
        .map(|c| *blake3::hash(c).as_bytes())
        .collect();
    x.chunks(bs)
        .filter(|c| c.iter().any(|&b| b != 0) && !hy.contains(blake3::hash(c).as_bytes()))
        .map(|c| c.len() as u64)
        .sum()
}

#[test]
fn diff_of_identical_archives_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let d = mixed(3 << 20, 11);
    let m = mixed(1 << 20, 12);
    for opts in [
        fixed(Codec::Lz4, 65536),
        cdc(Codec::Zstd, 4096, 16384, 65536),
    ] {
        let (a, b) = (dir.path().join("a.hxz"), dir.path().join("b.hxz"));
        pack_to(&a, Some(&d), Some(&m), &opts);
        pack_to(&b, Some(&d), Some(&m), &opts);
        let (fa, fb) = (File::open(&a).unwrap(), File::open(&b).unwrap());
        assert_ne!(fa.header().archive_id, fb.header().archive_id);
        let r = ops::diff(&fa, &fb).unwrap();
        assert!(r.identical());
        assert_eq!(r.streams.len(), 2);
        assert!(r.streams.iter().all(|s| s.ranges.is_empty()));
        assert_eq!((r.unique_a, r.unique_b, r.decoded_bytes), (0, 0, 0));
        // A thin child with the same content against its parent: identical too.
        let c = dir.path().join("c.hxz");
        pack_to(&c, Some(&d), Some(&m), &with_base(&opts, &a));
        let r = ops::diff(&fa, &File::open(&c).unwrap()).unwrap();
        assert!(r.identical());
        assert_eq!((r.unique_a, r.unique_b, r.decoded_bytes), (0, 0, 0));
    }
}

#[test]
fn diff_reports_exactly_the_modified_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let bs = 64 * 1024;
    let a = text_like(4 << 20, 21);
    let mut b = a.clone();
    b[100_000..100_010].copy_from_slice(b"0123456789"); // block 1
    Rng::new(1).fill(&mut b[300_000..400_000]); // blocks 4..=6
    b[1_048_576..1_179_648].fill(0); // blocks 16, 17 become zero blocks
    b[2_000_000..2_010_000].fill(0); // block 30 partly zeroed
    let b2 = b[3_000_000..3_000_000 + bs].to_vec();
    b[40 * bs..41 * bs].copy_from_slice(&b2); // block 40 = misaligned copy: new content
    let blk = a[50 * bs..51 * bs].to_vec();
    b[60 * bs..61 * bs].copy_from_slice(&blk); // block 60 = block 50: differs, not unique
    b.extend_from_slice(&text_like(10_000, 22)); // appended

    let expect = block_ranges(&a, &b, bs);
    assert_eq!(
        expect,
        vec![
            (65536, 65536),
            (4 * 65536, 3 * 65536),
            (16 * 65536, 2 * 65536),
            (30 * 65536, 65536),
            (40 * 65536, 65536),
            (60 * 65536, 65536),
            (4 << 20, 10_000),
        ]
    );
    let opts = fixed(Codec::Zstd, bs as u32);
    let pa = dir.path().join("a.hxz");
    let pb = dir.path().join("b.hxz");
    let pc = dir.path().join("b-thin.hxz");
    pack_to(&pa, Some(&a), None, &opts);
    pack_to(&pb, Some(&b), None, &opts);
    pack_to(
        &pc,
        Some(&b),
        None,
        &with_base(&fixed(Codec::Lz4, bs as u32), &pa),
    );
    let fa = File::open(&pa).unwrap();
    for p in [&pb, &pc] {
        let fb = File::open(p).unwrap();
        let r = ops::diff(&fa, &fb).unwrap();
        assert!(!r.identical());
        assert_eq!(r.streams.len(), 1);
        let s = &r.streams[0];
        assert_eq!((s.size_a, s.size_b), (a.len() as u64, b.len() as u64));
        assert_eq!(s.ranges, expect, "{}", p.display());
        assert_eq!(s.differing_bytes(), expect.iter().map(|r| r.1).sum::<u64>());
        assert_eq!(r.decoded_bytes, 0, "aligned blocks need no decoding");
        assert_eq!(r.unique_a, unique_bytes(&a, &b, bs));
        assert_eq!(r.unique_b, unique_bytes(&b, &a, bs));
        // 1, 4, 5, 6, 30, 40 and the appended block are new in b; 60 is a copy of 50;
        // 16 and 17 are zero.
        assert_eq!(r.unique_b, 6 * bs as u64 + 10_000);
        // In a, blocks 1, 4-6, 16, 17, 30 no longer occur in b (block 40's old content
        // neither, block 60's old content neither).
        assert_eq!(r.unique_a, 9 * bs as u64);
        // And the other way round.
        let r2 = ops::diff(&fb, &fa).unwrap();
        assert_eq!(r2.streams[0].ranges, expect);
        assert_eq!((r2.unique_a, r2.unique_b), (r.unique_b, r.unique_a));
    }
}

/// Fixed 64 KiB blocks against content-defined chunks of the same bytes: no block lines up,
/// so the bytes are decoded and compared, and the result is byte-exact.
#[test]
fn diff_between_fixed_and_cdc_archives_compares_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let a = text_like(3 << 20, 41);
    let pf = dir.path().join("fixed.hxz");
    let pc = dir.path().join("cdc.hxz");
    pack_to(&pf, Some(&a), None, &fixed(Codec::Lz4, 65536));
    let c = CdcParams::default();
    pack_to(&pc, Some(&a), None, &cdc(Codec::Zstd, c.min, c.avg, c.max));
    let (ff, fc) = (File::open(&pf).unwrap(), File::open(&pc).unwrap());
    let r = ops::diff(&ff, &fc).unwrap();
    assert!(r.identical(), "{:?}", r.streams[0].ranges);
    assert!(r.decoded_bytes > 0);
    assert!(r.decoded_bytes <= 2 * a.len() as u64);
    assert_eq!(
        r.unique_a,
        a.len() as u64,
        "no 64 KiB block equals a CDC chunk"
    );

    // A few edits: the ranges are the exact differing bytes.
    let mut b = a.clone();
    b[12_345] ^= 1;
    b[700_000..700_003].copy_from_slice(b"xyz");
    b[700_001] = a[700_001]; // equal byte in the middle splits the range
    b[2_000_000..2_100_000].fill(b'#');
    let pb = dir.path().join("cdc-b.hxz");
    pack_to(&pb, Some(&b), None, &cdc(Codec::Zstd, c.min, c.avg, c.max));
    let fb = File::open(&pb).unwrap();
    let expect = byte_ranges(&a, &b);
    let r = ops::diff(&ff, &fb).unwrap();
    assert_eq!(r.streams[0].ranges, expect);
    let r = ops::diff(&fb, &ff).unwrap();
    assert_eq!(r.streams[0].ranges, expect);

    // Through a thin CDC child of the CDC archive of `a`.
    let pt = dir.path().join("cdc-thin.hxz");
    let st = pack_to(
        &pt,
        Some(&b),
        None,
        &with_base(&cdc(Codec::Lz4, c.min, c.avg, c.max), &pc),
    );
    assert!(st.disk.unwrap().parent_blocks > 0);
    let r = ops::diff(&ff, &File::open(&pt).unwrap()).unwrap();
    assert_eq!(r.streams[0].ranges, expect);
}

#[test]
fn diff_with_a_stream_on_one_side_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = mixed(1 << 20, 51);
    let m = mixed(300_000, 52);
    let (pa, pb) = (dir.path().join("a.hxz"), dir.path().join("b.hxz"));
    pack_to(&pa, Some(&d), Some(&m), &fixed(Codec::Lz4, 65536));
    pack_to(&pb, Some(&d), None, &fixed(Codec::Lz4, 65536));
    let (fa, fb) = (File::open(&pa).unwrap(), File::open(&pb).unwrap());
    let r = ops::diff(&fa, &fb).unwrap();
    assert!(!r.identical());
    let disk = r.streams.iter().find(|s| s.stream == DISK).unwrap();
    assert!(disk.ranges.is_empty());
    let mem = r.streams.iter().find(|s| s.stream == MEM).unwrap();
    assert_eq!((mem.size_a, mem.size_b), (m.len() as u64, 0));
    assert_eq!(mem.ranges, vec![(0, m.len() as u64)]);
    assert_eq!(r.unique_b, 0);
    // Everything of m whose 64 KiB block is not also a block of d is unique to a.
    assert_eq!(r.unique_a, unique_bytes(&m, &d, 65536));
}
