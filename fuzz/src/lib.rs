//! Helpers shared by the hexz fuzz targets: an in-memory backend, checksum fix-ups that let
//! mutated archives get past the CRC and digest checks into the structures behind them, and
//! a read oracle that compares every read against a whole-stream read.

use hexz_core::store::StorageBackend;
use hexz_core::{File, OpenOptions, SnapshotStream};
use std::sync::Arc;

/// An archive held in memory.
pub struct MemBackend(pub Vec<u8>);

impl StorageBackend for MemBackend {
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
            _ => Err(hexz_core::Error::io(
                format!("reading {} bytes at {offset}", buf.len()),
                std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
            )),
        }
    }
    fn describe(&self) -> String {
        "fuzz input".into()
    }
}

/// Small caches (so eviction happens), no read-ahead threads.
pub fn options() -> OpenOptions {
    OpenOptions {
        cache_bytes: 64 << 10,
        index_cache_bytes: 64 << 10,
        read_ahead: 0,
        ..OpenOptions::default()
    }
}

/// Opens `bytes` as an archive.
pub fn open(bytes: Vec<u8>, opts: OpenOptions) -> hexz_core::Result<File> {
    File::open_backend(Arc::new(MemBackend(bytes)), None, opts)
}

fn le_u32(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn le_u64(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// Recomputes, where the structures can be found, the BLAKE3 of every index page in the
/// master index, the master index digest and the header CRC, so a mutation of a field
/// reaches the code that interprets the field. Never panics on any input.
pub fn fix_checksums(a: &mut [u8]) {
    fix_master(a);
    if a.len() >= 512 {
        let crc = hexz_core::algo::hash::crc32(&a[..508]);
        a[508..512].copy_from_slice(&crc.to_le_bytes());
    }
}

fn fix_master(a: &mut [u8]) -> Option<()> {
    let encrypted = le_u32(a, 12)? & 1 != 0;
    let mo = usize::try_from(le_u64(a, 56)?).ok()?;
    let ml = le_u32(a, 64)? as usize;
    let end = mo.checked_add(ml)?;
    if end > a.len() || ml < 48 || encrypted {
        return None;
    }
    let nstreams = u16::from_le_bytes([a[mo + 4], a[mo + 5]]) as usize;
    let mut pos = mo + 16 + nstreams.min(2) * 48;
    for s in 0..nstreams.min(2) {
        let pages = le_u32(a, mo + 16 + s * 48 + 4)? as usize;
        for _ in 0..pages.min(4096) {
            if pos + 64 > end - 32 {
                break;
            }
            let off = usize::try_from(le_u64(a, pos + 8)?).ok()?;
            let len = le_u32(a, pos + 16)? as usize;
            if let Some(page) = off.checked_add(len).and_then(|e| a.get(off..e)) {
                let h = hexz_core::algo::hash::blake3(page);
                a[pos + 32..pos + 64].copy_from_slice(&h);
            }
            pos += 64;
        }
    }
    let h = hexz_core::algo::hash::blake3(&a[mo..end - 32]);
    a[end - 32..end].copy_from_slice(&h);
    Some(())
}

/// Largest stream the oracle reads whole (larger claimed sizes are sampled).
const WHOLE: u64 = 1 << 20;

/// Reads every stream of `f`: the whole stream when small, then sub-ranges, which must equal
/// the matching slice of the whole read (a second path: cache hits, partial blocks). Errors
/// are fine; panics, hangs and disagreeing bytes are bugs.
pub fn exercise(f: &File, seed: &[u8]) {
    for s in SnapshotStream::ALL {
        let size = f.size(s);
        if !f.has_stream(s) {
            assert!(f.read_at(s, 0, 1).is_err());
            continue;
        }
        if size <= WHOLE {
            let Ok(all) = f.read_at(s, 0, size as usize) else {
                continue;
            };
            assert_eq!(all.len() as u64, size, "whole read of {s} is short");
            for w in seed.chunks(4).take(8) {
                let (o, l) = range(w, size);
                match f.read_at(s, o, l) {
                    Ok(b) => {
                        assert_eq!(&b[..], &all[o as usize..o as usize + b.len()], "{s} at {o}")
                    }
                    Err(e) => panic!("{s}: whole read worked but {l} bytes at {o} failed: {e}"),
                }
            }
            let _ = f.read_at(s, size, 10).map(|b| assert!(b.is_empty()));
        } else {
            for w in seed.chunks(4).take(4) {
                let (o, l) = range(w, size);
                let _ = f.read_at(s, o, l.min(64 << 10));
            }
        }
    }
    let _ = hexz_core::ops::verify(f, None);
}

fn range(w: &[u8], size: u64) -> (u64, usize) {
    let mut x = [0u8; 4];
    x[..w.len()].copy_from_slice(w);
    let v = u32::from_le_bytes(x) as u64;
    let o = if size == 0 {
        0
    } else {
        (v * 2654435761) % size
    };
    let l = ((v >> 8) % 20_000) as usize;
    (o, l.min((size - o) as usize))
}

/// Master index oracle: decoding never panics; with the digest fixed up, whatever decodes
/// re-encodes to a canonical form (reserved bytes zero, as docs/FORMAT.md says readers ignore
/// them) that decodes to the same index and re-encodes to itself.
pub fn check_master_index(data: &[u8]) {
    use hexz_core::format::MasterIndex;
    let _ = MasterIndex::decode(data, u64::MAX, 0);
    if data.len() < 48 {
        return;
    }
    let mut b = data.to_vec();
    let n = b.len() - 32;
    let h = hexz_core::algo::hash::blake3(&b[..n]);
    b[n..].copy_from_slice(&h);
    for (len, overhead) in [(u64::MAX, 0), (1 << 20, 16), (b.len() as u64, 0)] {
        if let Ok(m) = MasterIndex::decode(&b, len, overhead) {
            let (enc, digest) =
                MasterIndex::encode_with_sections(&m.streams, &m.metadata, &m.sections);
            assert_eq!(enc.len(), b.len(), "canonical form changes the length");
            let again = MasterIndex::decode(&enc, len, overhead).expect("canonical form decodes");
            assert_eq!(again.digest, digest);
            assert_eq!(again.streams, m.streams);
            assert_eq!(again.metadata, m.metadata);
            assert_eq!(again.sections, m.sections);
            let (enc2, _) =
                MasterIndex::encode_with_sections(&again.streams, &again.metadata, &again.sections);
            assert_eq!(enc2, enc);
        }
    }
}

/// Index page oracle (first byte: the expected stream id; the rest: the page). The page
/// reference is derived from the page itself so mutations get past the digest check; a page
/// that decodes has contiguous entries and a canonical encoding that decodes to the same page.
pub fn check_index_page(data: &[u8]) {
    use hexz_core::format::{IndexPage, PageRef};
    let Some((&sid, page)) = data.split_first() else {
        return;
    };
    let stream = SnapshotStream::from_id(sid & 1).expect("0 or 1");
    let le = |r: std::ops::Range<usize>| {
        page.get(r).map_or(0u64, |c| {
            let mut a = [0u8; 8];
            a[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(a)
        })
    };
    let r = PageRef {
        first_logical: le(16..24),
        offset: 512,
        len: page.len() as u32,
        entry_count: le(8..12) as u32,
        first_block: 0,
        hash: hexz_core::algo::hash::blake3(page),
    };
    if let Ok(p) = IndexPage::decode(page, &r, stream, "fuzzed page") {
        let enc = p.encode();
        assert_eq!(enc.len(), page.len(), "canonical form changes the length");
        let r2 = PageRef {
            hash: hexz_core::algo::hash::blake3(&enc),
            ..r
        };
        let again = IndexPage::decode(&enc, &r2, stream, "re-encoded page").expect("re-decodes");
        assert_eq!(again, p);
        let mut at = r.first_logical;
        for e in &p.entries {
            assert_eq!(e.logical_offset, at);
            at = e
                .logical_offset
                .checked_add(e.logical_len as u64)
                .expect("no overflow");
        }
    }
}
