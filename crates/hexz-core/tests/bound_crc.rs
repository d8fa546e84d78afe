//! Format 1.1's bound CRC (docs/FORMAT.md, "Bound CRC"): every new archive carries it, each
//! entry's CRC32 covers the content hash and the stored bytes, a wrong reference is caught
//! without the per-read BLAKE3 (and never returns wrong bytes), format 1.0 archives still read
//! and are still BLAKE3-checked, and in a chain each block is checked the way the archive
//! storing it says.

mod common;

use common::*;
use hexz_core::algo::hash::{bound_crc32, crc32};
use hexz_core::format::header::{FLAG_BOUND_CRC, FORMAT_MINOR};
use hexz_core::format::{BlockEntry, Codec};
use hexz_core::ops::{self, PackOptions};
use hexz_core::{Error, File, OpenOptions, SnapshotStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const BS: usize = 4096;
const DISK: SnapshotStream = SnapshotStream::Disk;

/// `n` blocks: incompressible random ones (stored raw, all `BS` long, so one can stand in
/// for another), a zero block and a compressible one now and then.
fn blocks(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut v = vec![0u8; n * BS];
    for (i, b) in v.chunks_mut(BS).enumerate() {
        match i % 8 {
            3 => {}
            6 => b.fill(i as u8 | 1),
            _ => rng.fill(b),
        }
    }
    v
}

fn opts(bound_crc: bool, base: Option<&Path>) -> PackOptions {
    PackOptions {
        codec: Codec::Lz4,
        block_size: BS as u32,
        bound_crc,
        base: base.map(Path::to_path_buf),
        ..PackOptions::default()
    }
}

fn entries(f: &File) -> Vec<BlockEntry> {
    f.entries(DISK).map(|e| e.unwrap()).collect()
}

fn open(p: &Path, o: OpenOptions) -> File {
    File::open_with(p, o).unwrap()
}

/// Uncached reads (every read decodes) with the given checks.
fn uncached(verify_hashes: bool, verify_full: bool) -> OpenOptions {
    OpenOptions {
        cache_bytes: 0,
        read_ahead: 0,
        verify_hashes,
        verify_full,
        ..OpenOptions::default()
    }
}

/// Asserts that `r` is a corrupt-block error for block `block` at logical offset `offset`
/// whose detail contains `what`; returns the message.
fn assert_block_err<T>(r: hexz_core::Result<T>, block: u64, offset: u64, what: &str) -> String {
    match r {
        Ok(_) => panic!("expected a corrupt-block error ({what}) for block {block}, got bytes"),
        Err(e) => {
            let msg = e.to_string();
            match e {
                Error::CorruptBlock {
                    block: b,
                    offset: o,
                    detail,
                    ..
                } => {
                    assert_eq!((b, o), (block, offset), "{msg}");
                    assert!(detail.contains(what), "expected '{what}' in: {msg}");
                }
                other => {
                    // verify() wraps errors of an ancestor; the block is still named.
                    let s = other.to_string();
                    assert!(
                        s.contains(&format!("corrupt block {block} "))
                            && s.contains(&format!("logical offset {offset}"))
                            && s.contains(what),
                        "expected block {block} at {offset} and '{what}' in: {s}"
                    );
                }
            }
            msg
        }
    }
}

/// Rewrites entry `idx` (page 0 of the disk stream) of the archive at `path` with `edit`,
/// reseals the page hash and master digest, and writes the result to `out`.
fn patch_entry(path: &Path, out: &Path, idx: usize, edit: impl Fn(&mut [u8])) {
    let f = File::open(path).unwrap();
    let page_off = f.master().stream(DISK).unwrap().pages[0].offset;
    drop(f);
    let mut a = std::fs::read(path).unwrap();
    let at = entry_offset(page_off, idx);
    edit(&mut a[at..at + 64]);
    reseal_page(&mut a, 0, 0);
    std::fs::write(out, a).unwrap();
}

/// Points entry `i` at the stored bytes of entry `j` (length, offset, CRC, codec, source):
/// a wrong reference, consistent in every field but the content hash.
fn point_at(e: &mut [u8], j: &BlockEntry) {
    e[12..16].copy_from_slice(&j.stored_len.to_le_bytes());
    e[16..24].copy_from_slice(&j.stored_offset.to_le_bytes());
    e[24..28].copy_from_slice(&j.crc32.to_le_bytes());
    e[28] = j.codec as u8;
    e[30..32].copy_from_slice(&j.source.to_le_bytes());
}

/// Two distinct raw `BS`-byte blocks of `es` stored in archive `source` (first after `from`).
fn two_raw(es: &[BlockEntry], source: u16, from: usize) -> (usize, usize) {
    let raw: Vec<usize> = (from..es.len())
        .filter(|&i| {
            let e = &es[i];
            !e.is_zero()
                && e.codec == Codec::None
                && e.stored_len as usize == BS
                && e.source == source
                && es.iter().filter(|x| x.hash == e.hash).count() == 1
        })
        .collect();
    (raw[0], raw[1])
}

fn pack(dir: &Path, name: &str, data: &[u8], o: &PackOptions) -> PathBuf {
    pack_files(dir, name, Some(data), None, o).0
}

#[test]
fn new_archives_are_1_1_and_every_entry_carries_the_bound_crc() {
    let d = tempfile::tempdir().unwrap();
    let data = blocks(64, 1);
    let p = pack(
        d.path(),
        "a.hxz",
        &data,
        &PackOptions {
            block_size: BS as u32,
            ..PackOptions::default()
        },
    );
    let a = std::fs::read(&p).unwrap();
    assert_eq!(u16::from_le_bytes([a[10], a[11]]), 1, "minor version");
    assert_eq!(FORMAT_MINOR, 1);
    let flags = u32::from_le_bytes(a[12..16].try_into().unwrap());
    assert_eq!(flags & FLAG_BOUND_CRC, FLAG_BOUND_CRC, "flag bit 3");
    assert_eq!(FLAG_BOUND_CRC, 1 << 3);
    let f = File::open(&p).unwrap();
    let es = entries(&f);
    let mut checked = 0;
    for e in es.iter().filter(|e| !e.is_zero()) {
        let s = &a[e.stored_offset as usize..e.stored_offset as usize + e.stored_len as usize];
        // Recomputed from the file's bytes: CRC32 of hash ‖ stored bytes, not of the bytes.
        let mut h = crc32fast::Hasher::new();
        h.update(&e.hash);
        h.update(s);
        assert_eq!(e.crc32, h.finalize());
        assert_eq!(e.crc32, bound_crc32(&e.hash, s));
        assert_ne!(e.crc32, crc32(s));
        checked += 1;
    }
    assert!(checked > 40);
    assert!(read_all(&f, DISK).unwrap() == data);
    assert!(ops::inspect(&f, a.len() as u64)
        .flags
        .contains(&"bound-crc"));

    // A 1.0 archive (the writer option) has the plain CRC and neither flag nor minor.
    let p0 = pack(d.path(), "old.hxz", &data, &opts(false, None));
    let b = std::fs::read(&p0).unwrap();
    assert_eq!(u16::from_le_bytes([b[10], b[11]]), 0);
    assert_eq!(
        u32::from_le_bytes(b[12..16].try_into().unwrap()) & FLAG_BOUND_CRC,
        0
    );
    let f0 = File::open(&p0).unwrap();
    for e in entries(&f0).iter().filter(|e| !e.is_zero()) {
        let s = &b[e.stored_offset as usize..e.stored_offset as usize + e.stored_len as usize];
        assert_eq!(e.crc32, crc32(s));
    }
    assert!(read_all(&f0, DISK).unwrap() == data);
    ops::verify(&f0, None).unwrap();
}

#[test]
fn wrong_reference_is_caught_by_the_bound_crc_with_and_without_hash_checks() {
    let d = tempfile::tempdir().unwrap();
    let data = blocks(64, 2);
    let p = pack(d.path(), "a.hxz", &data, &opts(true, None));
    let es = entries(&File::open(&p).unwrap());
    let (i, j) = two_raw(&es, 0, 1);
    let (ei, ej) = (es[i], es[j]);
    let bad = d.path().join("bad.hxz");
    patch_entry(&p, &bad, i, |e| point_at(e, &ej));
    let off = ei.logical_offset;
    for (vh, full) in [(true, false), (false, false), (true, true)] {
        let f = open(&bad, uncached(vh, full));
        let msg = assert_block_err(f.read_at(DISK, off, BS), i as u64, off, "bound CRC32");
        assert!(
            msg.contains(&format!("archive offset {}", ej.stored_offset)),
            "{msg}"
        );
        assert_block_err(f.read_at(DISK, off + 100, 10), i as u64, off, "bound CRC32");
        // A read spanning the bad block fails as a whole, returning nothing.
        assert_block_err(
            f.read_at(DISK, off - BS as u64, 3 * BS),
            i as u64,
            off,
            "CRC32",
        );
        // The good block j still reads.
        let jo = ej.logical_offset as usize;
        assert!(f.read_at(DISK, jo as u64, BS).unwrap() == data[jo..jo + BS]);
    }
    // With the default (cached) options, and through verification.
    let f = File::open(&bad).unwrap();
    assert_block_err(f.read_at(DISK, off, BS), i as u64, off, "bound CRC32");
    assert_block_err(ops::verify(&f, None), i as u64, off, "bound CRC32");

    // The same edit on a 1.0 archive passes the plain CRC: the BLAKE3 catches it by default,
    // and with hash checks off the wrong bytes come back (why 1.1 binds the CRC).
    let p0 = pack(d.path(), "old.hxz", &data, &opts(false, None));
    let es0 = entries(&File::open(&p0).unwrap());
    let bad0 = d.path().join("bad0.hxz");
    patch_entry(&p0, &bad0, i, |e| point_at(e, &es0[j]));
    let f = open(&bad0, uncached(true, false));
    assert_block_err(f.read_at(DISK, off, BS), i as u64, off, "BLAKE3");
    let f = open(&bad0, uncached(false, false));
    let jo = ej.logical_offset as usize;
    assert!(f.read_at(DISK, off, BS).unwrap() == data[jo..jo + BS]);
}

#[test]
fn blake3_is_skipped_for_bound_blocks_unless_full_verification_is_asked() {
    // An entry whose hash and bound CRC are both rewritten consistently (a deliberate forgery
    // the CRC cannot see) reads by default, and is refused by full verification, `hexz
    // verify` and `decode_block_into`: the documented limit of a non-cryptographic check.
    let d = tempfile::tempdir().unwrap();
    let data = blocks(32, 3);
    let p = pack(d.path(), "a.hxz", &data, &opts(true, None));
    let a = std::fs::read(&p).unwrap();
    let es = entries(&File::open(&p).unwrap());
    let (i, _) = two_raw(&es, 0, 0);
    let e = es[i];
    let forged_hash = [0x5a; 32];
    let s = &a[e.stored_offset as usize..e.stored_offset as usize + e.stored_len as usize];
    let crc = bound_crc32(&forged_hash, s);
    let bad = d.path().join("bad.hxz");
    patch_entry(&p, &bad, i, |x| {
        x[24..28].copy_from_slice(&crc.to_le_bytes());
        x[32..64].copy_from_slice(&forged_hash);
    });
    let off = e.logical_offset;
    let o = off as usize;
    let f = open(&bad, uncached(true, false));
    assert!(f.read_at(DISK, off, BS).unwrap() == data[o..o + BS]);
    let f = open(&bad, uncached(true, true));
    assert_block_err(f.read_at(DISK, off, BS), i as u64, off, "BLAKE3");
    assert_block_err(ops::verify(&f, None), i as u64, off, "BLAKE3");
    let g = File::open(&bad).unwrap();
    let mut buf = vec![0u8; BS];
    assert_block_err(
        g.decode_block_into(DISK, i as u64, &e_with_hash(e, forged_hash, crc), &mut buf),
        i as u64,
        off,
        "BLAKE3",
    );
}

fn e_with_hash(mut e: BlockEntry, hash: [u8; 32], crc: u32) -> BlockEntry {
    e.hash = hash;
    e.crc32 = crc;
    e
}

#[test]
fn format_1_0_archive_reads_and_is_still_blake3_checked() {
    let d = tempfile::tempdir().unwrap();
    let data = blocks(48, 4);
    let p = pack(d.path(), "old.hxz", &data, &opts(false, None));
    let f = open(&p, uncached(true, false));
    assert_eq!(f.header().minor, 0);
    assert!(read_all(&f, DISK).unwrap() == data);
    // Only the hash changed (the plain CRC stays valid): the per-read BLAKE3 catches it.
    let es = entries(&f);
    let (i, _) = two_raw(&es, 0, 0);
    let bad = d.path().join("bad.hxz");
    patch_entry(&p, &bad, i, |x| x[40] ^= 1);
    let off = es[i].logical_offset;
    let g = open(&bad, uncached(true, false));
    assert_block_err(g.read_at(DISK, off, BS), i as u64, off, "BLAKE3");
    // On a 1.1 archive the same edit breaks the bound CRC.
    let p1 = pack(d.path(), "new.hxz", &data, &opts(true, None));
    let bad1 = d.path().join("bad1.hxz");
    patch_entry(&p1, &bad1, i, |x| x[40] ^= 1);
    let g = open(&bad1, uncached(false, false));
    assert_block_err(g.read_at(DISK, off, BS), i as u64, off, "bound CRC32");
}

/// Child data: the parent's with a few blocks changed, so most blocks are references.
fn child_data(parent: &[u8]) -> Vec<u8> {
    let mut v = parent.to_vec();
    for k in [1usize, 9, 17] {
        v[k * BS..(k + 1) * BS].fill(0xc0 | k as u8);
    }
    v
}

#[test]
fn thin_child_checks_each_block_the_way_its_storing_archive_says() {
    let d = tempfile::tempdir().unwrap();
    let pdata = blocks(40, 5);
    let cdata = child_data(&pdata);
    for (parent_bound, child_bound) in [(false, true), (true, false), (true, true)] {
        let tag = format!(
            "parent 1.{} child 1.{}",
            parent_bound as u8, child_bound as u8
        );
        let pp = pack(
            d.path(),
            &format!("p{tag}.hxz"),
            &pdata,
            &opts(parent_bound, None),
        );
        let cp = pack(
            d.path(),
            &format!("c{tag}.hxz"),
            &cdata,
            &opts(child_bound, Some(&pp)),
        );
        let f = open(&cp, uncached(true, false));
        assert_eq!(f.chain_len(), 2, "{tag}");
        assert!(read_all(&f, DISK).unwrap() == cdata, "{tag}");
        ops::verify(&f, None).unwrap();
        let es = entries(&f);
        // Entries referring to the parent carry the parent's CRC kind.
        let pa = std::fs::read(&pp).unwrap();
        for e in es.iter().filter(|e| e.source == 1) {
            let s = &pa[e.stored_offset as usize..][..e.stored_len as usize];
            let want = if parent_bound {
                bound_crc32(&e.hash, s)
            } else {
                crc32(s)
            };
            assert_eq!(e.crc32, want, "{tag}");
        }
        // A child entry pointing at the wrong parent block.
        let (i, j) = two_raw(&es, 1, 0);
        let bad = d.path().join(format!("bad{tag}.hxz"));
        patch_entry(&cp, &bad, i, |x| point_at(x, &es[j]));
        let off = es[i].logical_offset;
        let g = open(&bad, uncached(true, false));
        // The parent's kind decides: bound CRC for a 1.1 parent, BLAKE3 for a 1.0 one.
        let what = if parent_bound {
            "bound CRC32"
        } else {
            "BLAKE3"
        };
        assert_block_err(g.read_at(DISK, off, BS), i as u64, off, what);
        if parent_bound {
            let g = open(&bad, uncached(false, false));
            assert_block_err(g.read_at(DISK, off, BS), i as u64, off, what);
        }
        // Flattening writes a 1.1 archive with the same content, whatever the chain was.
        let flat = d.path().join(format!("flat{tag}.hxz"));
        ops::flatten(&f, &flat, None, None).unwrap();
        let ff = File::open(&flat).unwrap();
        assert!(
            ff.header().has_bound_crc() && ff.header().minor == 1,
            "{tag}"
        );
        assert!(read_all(&ff, DISK).unwrap() == cdata, "{tag}");
    }
}

#[test]
fn wrong_reference_in_memory_backend_never_returns_wrong_bytes() {
    // Whole-stream reads (batched, parallel decode) of a 1.1 archive with a wrong reference
    // fail; every other block reads correctly.
    let d = tempfile::tempdir().unwrap();
    let data = blocks(64, 6);
    let p = pack(d.path(), "a.hxz", &data, &opts(true, None));
    let es = entries(&File::open(&p).unwrap());
    let (i, j) = two_raw(&es, 0, 10);
    let bad = d.path().join("bad.hxz");
    patch_entry(&p, &bad, i, |e| point_at(e, &es[j]));
    let bytes = std::fs::read(&bad).unwrap();
    let f = File::open_backend(
        Arc::new(MemBackend(bytes)),
        None,
        OpenOptions {
            verify_hashes: false,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    let off = es[i].logical_offset;
    assert_block_err(read_all(&f, DISK), i as u64, off, "bound CRC32");
    for (k, e) in es.iter().enumerate() {
        if k == i {
            continue;
        }
        let o = e.logical_offset as usize;
        assert!(
            f.read_at(DISK, o as u64, BS).unwrap() == data[o..o + BS],
            "block {k}"
        );
    }
    assert_block_err(f.read_at(DISK, off, BS), i as u64, off, "bound CRC32");
}
