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

// ---------------------------------------------------------------------------------------
// File table (tree archives, format 1.2)
// ---------------------------------------------------------------------------------------

/// Most entries the tree oracle iterates (bounds one execution's work).
const TREE_MAX_ENTRIES: usize = 4096;
/// Most bytes of file contents the tree oracle reads in one execution.
const TREE_MAX_READ: u64 = 4 << 20;

/// File table oracle, dispatching on the input's magic:
/// * `HXFT`: a plain file table page, decoded at the level its header names (and at 0 and 1);
///   whatever decodes re-encodes to a canonical form (reserved bytes zero) of the same length
///   that decodes to the same page.
/// * `HXFH`: a file table header, the same round trip.
/// * anything else: an archive, opened as is and again after [`fix_tree_checksums`] and
///   [`fix_checksums`] (so mutated pages and headers get past their digests), then looked
///   into with [`exercise_tree`].
pub fn check_file_table(data: &[u8]) {
    if data.starts_with(&hexz_core::format::tree::TREE_PAGE_MAGIC) {
        check_tree_page(data);
    } else if data.starts_with(&hexz_core::format::tree::TREE_HEADER_MAGIC) {
        check_tree_header(data);
    } else {
        let seed = &data[data.len().saturating_sub(32)..];
        if let Ok(f) = open(data.to_vec(), tree_options(data)) {
            exercise_tree(&f, seed);
        }
        let mut a = data.to_vec();
        fix_tree_checksums(&mut a);
        fix_checksums(&mut a);
        if a != data {
            if let Ok(f) = open(a.clone(), tree_options(&a)) {
                exercise_tree(&f, seed);
            }
        }
    }
}

/// [`options`] with the corpus password (`fuzz`) when the archive's key derivation is cheap
/// (a mutated header may ask for a gigabyte of Argon2id; the caps are unit-tested).
pub fn tree_options(a: &[u8]) -> OpenOptions {
    use hexz_core::algo::encryption::{Kdf, Password};
    let cheap = a.len() < 160 || {
        let p = |o: usize| u32::from_le_bytes(a[o..o + 4].try_into().expect("4 bytes"));
        match Kdf::from_params(a[144], p(148), p(152), p(156)) {
            Ok(Kdf::Pbkdf2 { iterations }) => iterations <= 2000,
            Ok(Kdf::Argon2id { m_kib, t, .. }) => m_kib <= 256 && t <= 2,
            _ => true,
        }
    };
    OpenOptions {
        password: cheap.then(|| Password::new(b"fuzz")),
        ..options()
    }
}

fn encode_tree_page(p: &hexz_core::format::tree::TreePage) -> Vec<u8> {
    use hexz_core::format::tree::{encode_interior, encode_leaf, TreePage};
    match p {
        TreePage::Leaf(es) => {
            let mut body = Vec::new();
            for e in es {
                e.encode_into(&mut body);
            }
            encode_leaf(es.len(), &body)
        }
        TreePage::Interior { level, children } => encode_interior(*level, children),
    }
}

/// Plain page oracle (see [`check_file_table`]).
pub fn check_tree_page(data: &[u8]) {
    use hexz_core::format::tree::{check_path, key_cmp, TreePage};
    use std::cmp::Ordering;
    let own = data.get(4).copied().unwrap_or(0);
    for level in [own, 0, 1] {
        let Ok(p) = TreePage::decode(data, level, "fuzzed page") else {
            continue;
        };
        let enc = encode_tree_page(&p);
        assert_eq!(enc.len(), data.len(), "canonical form changes the length");
        let again = TreePage::decode(&enc, level, "re-encoded page").expect("canonical decodes");
        assert_eq!(again, p);
        assert_eq!(encode_tree_page(&again), enc);
        match &p {
            TreePage::Leaf(es) => {
                assert_eq!(level, 0);
                for e in es {
                    assert!(check_path(&e.path).is_ok());
                }
                for w in es.windows(2) {
                    assert_eq!(key_cmp(&w[0].path, &w[1].path), Ordering::Less);
                }
            }
            TreePage::Interior { level: l, children } => {
                assert_eq!(*l, level);
                assert!(level > 0 && !children.is_empty());
                for w in children.windows(2) {
                    assert_eq!(key_cmp(&w[0].first_path, &w[1].first_path), Ordering::Less);
                }
            }
        }
    }
}

/// File table header oracle (see [`check_file_table`]).
pub fn check_tree_header(data: &[u8]) {
    use hexz_core::format::tree::TreeHeader;
    if let Ok(h) = TreeHeader::decode(data) {
        let enc = h.encode();
        assert_eq!(enc.len(), data.len());
        let again = TreeHeader::decode(&enc).expect("canonical header decodes");
        assert_eq!(again, h);
        assert_eq!(again.encode(), enc);
    }
}

/// A page reference as stored (in the file table header or an interior entry).
struct RawRef {
    codec: u8,
    offset: u64,
    stored: u32,
    plain: u32,
    hash: [u8; 32],
}

/// Recomputes, where the structures can be found in an unencrypted tree archive, the digest
/// (and plain length) of every file table page reachable from the header (children first;
/// a compressed interior page whose children changed is recompressed in place when it still
/// fits), the header's root reference and the section record's digest of the header, so
/// mutations of entries, keys and references reach the code that interprets them. Run
/// [`fix_checksums`] afterwards for the master digest and header CRC. Bounded work (at most
/// 256 pages of at most 1 MiB); never panics.
pub fn fix_tree_checksums(a: &mut [u8]) {
    let _ = fix_tree(a);
}

fn fix_tree(a: &mut [u8]) -> Option<()> {
    if le_u32(a, 12)? & 1 != 0 {
        return None;
    }
    let mo = usize::try_from(le_u64(a, 56)?).ok()?;
    let ml = le_u32(a, 64)? as usize;
    let end = mo.checked_add(ml)?;
    if end > a.len() || ml < 48 {
        return None;
    }
    let nstreams = u16::from_le_bytes([a[mo + 4], a[mo + 5]]) as usize;
    let meta = le_u32(a, mo + 8)? as usize;
    let nsec = le_u32(a, mo + 12)? as usize;
    let mut pages = 0usize;
    for s in 0..nstreams.min(2) {
        pages = pages.checked_add(le_u32(a, mo + 16 + s * 48 + 4)? as usize)?;
    }
    let secs = mo
        .checked_add(16 + nstreams.min(2) * 48)?
        .checked_add(pages.checked_mul(64)?)?
        .checked_add(meta)?;
    let mut budget = 256u32;
    for i in 0..nsec.min(16) {
        let rec = secs.checked_add(i * 64)?;
        if rec + 64 > end - 32 {
            break;
        }
        if u16::from_le_bytes([a[rec], a[rec + 1]])
            != hexz_core::format::section::SECTION_FILE_TABLE
        {
            continue;
        }
        let ho = usize::try_from(le_u64(a, rec + 8)?).ok()?;
        let hl = usize::try_from(le_u64(a, rec + 16)?).ok()?;
        if hl != 128 || ho.checked_add(hl)? > a.len() {
            continue;
        }
        let mut root = RawRef {
            codec: a[ho + 6],
            offset: le_u64(a, ho + 56)?,
            stored: le_u32(a, ho + 64)?,
            plain: le_u32(a, ho + 68)?,
            hash: a[ho + 72..ho + 104].try_into().ok()?,
        };
        fix_ref(a, &mut root, &mut budget, 0);
        a[ho + 64..ho + 68].copy_from_slice(&root.stored.to_le_bytes());
        a[ho + 68..ho + 72].copy_from_slice(&root.plain.to_le_bytes());
        a[ho + 72..ho + 104].copy_from_slice(&root.hash);
        let h = hexz_core::algo::hash::blake3(&a[ho..ho + 128]);
        a[rec + 32..rec + 64].copy_from_slice(&h);
    }
    Some(())
}

fn fix_ref(a: &mut [u8], r: &mut RawRef, budget: &mut u32, depth: u32) -> Option<()> {
    use hexz_core::algo::compression::compressor_for;
    use hexz_core::format::Codec;
    if *budget == 0 || depth > 33 {
        return None;
    }
    *budget -= 1;
    let so = usize::try_from(r.offset).ok()?;
    let se = so.checked_add(r.stored as usize)?;
    if se > a.len() {
        return None;
    }
    let codec = Codec::from_u8(r.codec)?;
    let mut plain = if codec == Codec::None {
        a[so..se].to_vec()
    } else {
        if r.plain > 1 << 20 {
            return None;
        }
        let mut out = vec![0u8; r.plain as usize];
        compressor_for(codec, 3)
            .ok()?
            .decompress_into(&a[so..se], &mut out)
            .ok()?;
        out
    };
    let original = plain.clone();
    if plain.len() >= 16 && plain[..4] == hexz_core::format::tree::TREE_PAGE_MAGIC && plain[4] > 0 {
        let count = le_u32(&plain, 8)? as usize;
        let mut pos = 16usize;
        for _ in 0..count.min(4096) {
            if pos + 64 > plain.len() {
                break;
            }
            let klen = u16::from_le_bytes([plain[pos], plain[pos + 1]]) as usize;
            let mut c = RawRef {
                codec: plain[pos + 2],
                stored: le_u32(&plain, pos + 4)?,
                offset: le_u64(&plain, pos + 8)?,
                plain: le_u32(&plain, pos + 16)?,
                hash: plain[pos + 32..pos + 64].try_into().ok()?,
            };
            let _ = fix_ref(a, &mut c, budget, depth + 1);
            plain[pos + 4..pos + 8].copy_from_slice(&c.stored.to_le_bytes());
            plain[pos + 16..pos + 20].copy_from_slice(&c.plain.to_le_bytes());
            plain[pos + 32..pos + 64].copy_from_slice(&c.hash);
            pos += 64 + klen;
        }
        if plain != original {
            if codec == Codec::None {
                a[so..se].copy_from_slice(&plain);
            } else {
                let mut z = Vec::new();
                let fits = compressor_for(codec, 3)
                    .ok()
                    .and_then(|c| c.compress(&plain, &mut z).ok())
                    .is_some()
                    && z.len() <= r.stored as usize;
                if fits {
                    a[so..so + z.len()].copy_from_slice(&z);
                    r.stored = z.len() as u32;
                } else {
                    plain = original;
                }
            }
        }
    }
    r.plain = plain.len() as u32;
    r.hash = hexz_core::algo::hash::blake3(&plain);
    Some(())
}

/// Looks into the file table of `f` (if it has one) with bounded work, checking that the
/// views agree: a full iteration (at most [`TREE_MAX_ENTRIES`] entries) is strictly
/// increasing; when it completes, every entry is found by `lookup` (also under `/`-decorated
/// forms of its path), `read_dir` and `walk` return exactly the entries the iteration puts
/// under each directory, and every regular file reads the same through `read_file` (whole
/// and in pieces) as through the disk stream. Lookups of paths taken from `seed` never
/// panic. Errors are fine anywhere; panics, hangs and disagreements are bugs.
pub fn exercise_tree(f: &File, seed: &[u8]) {
    use hexz_core::api::tree::{normalize_path, EntryKind};
    use hexz_core::api::FileTree;
    use hexz_core::format::tree::{key_cmp, split_path};
    use std::cmp::Ordering;
    let t = match FileTree::open(f) {
        Ok(Some(t)) => t,
        Ok(None) => return,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let _ = format!("{t:?}");
    let mut all = Vec::new();
    let mut complete = false;
    if let Ok(mut it) = t.iter() {
        loop {
            match it.next() {
                None => {
                    complete = true;
                    break;
                }
                Some(Ok(e)) => {
                    if all.len() == TREE_MAX_ENTRIES {
                        break;
                    }
                    all.push(e);
                }
                Some(Err(e)) => {
                    let _ = e.to_string();
                    assert!(it.next().is_none(), "cursor goes on after an error");
                    break;
                }
            }
        }
    }
    for w in all.windows(2) {
        assert_eq!(key_cmp(&w[0].path, &w[1].path), Ordering::Less);
    }
    for chunk in seed.chunks(7).take(4) {
        if let Ok(Some(e)) = t.lookup(chunk) {
            assert_eq!(e.path, normalize_path(chunk).expect("looked up"));
        }
    }
    if !complete {
        // A damaged or oversized table: lookups of what was seen must not panic.
        for e in all.iter().take(32) {
            let _ = t.lookup(&e.path);
            let _ = t.read_dir(&e.path);
        }
        return;
    }
    let mut budget = TREE_MAX_READ;
    for (i, e) in all.iter().enumerate() {
        if i < 64 || i % 61 == 0 {
            let got = t.lookup(&e.path).expect("an iterated entry looks up");
            assert_eq!(got.as_ref(), Some(e), "lookup disagrees with iteration");
            let mut decorated = b"/".to_vec();
            decorated.extend_from_slice(&e.path);
            decorated.extend_from_slice(b"/.");
            assert_eq!(
                t.lookup(&decorated).expect("decorated lookup").as_ref(),
                Some(e)
            );
        }
        match e.kind {
            EntryKind::Dir if i < 32 => {
                let want: Vec<_> = all
                    .iter()
                    .filter(|x| !x.path.is_empty() && split_path(&x.path).0 == e.path.as_slice())
                    .cloned()
                    .collect();
                assert_eq!(t.read_dir(&e.path).expect("read_dir"), want, "read_dir");
                let mut walked = Vec::new();
                t.walk(&e.path, &mut |x| {
                    walked.push(x);
                    Ok(())
                })
                .expect("walk");
                let mut below = e.path.clone();
                below.push(b'/');
                let want: Vec<_> = if e.path.is_empty() {
                    all.clone()
                } else {
                    std::iter::once(e.clone())
                        .chain(
                            all.iter()
                                .filter(|x| split_path(&x.path).0 == e.path.as_slice())
                                .cloned(),
                        )
                        .chain(
                            all.iter()
                                .filter(|x| split_path(&x.path).0.starts_with(&below))
                                .cloned(),
                        )
                        .collect()
                };
                assert_eq!(walked, want, "walk");
            }
            EntryKind::File if e.size <= budget => {
                budget -= e.size;
                let Ok(whole) = t.read_file(e, 0, e.size as usize) else {
                    continue;
                };
                assert_eq!(whole.len() as u64, e.size, "short read_file");
                if e.size == 0 {
                    continue;
                }
                let direct = f
                    .read_at(SnapshotStream::Disk, e.data_offset, e.size as usize)
                    .expect("read_file worked, the same range of the disk stream must");
                assert_eq!(whole, direct, "read_file disagrees with the disk stream");
                for w in seed.chunks(4).take(3) {
                    let (o, l) = range(w, e.size);
                    let part = t.read_file(e, o, l).expect("part of a readable file");
                    assert_eq!(&part[..], &whole[o as usize..o as usize + l]);
                }
                assert!(t.read_file(e, e.size, 10).expect("past end").is_empty());
            }
            EntryKind::File | EntryKind::Dir => {}
            _ => assert!(t.read_file(e, 0, 1).is_err()),
        }
    }
    if all.first().is_some_and(|r| r.path.is_empty()) {
        let mut n = 0usize;
        t.walk(b"", &mut |_| {
            n += 1;
            Ok(())
        })
        .expect("walk of the root");
        assert_eq!(n, all.len());
    }
}
