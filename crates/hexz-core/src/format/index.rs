//! Block entries, index pages and the master index (docs/FORMAT.md, "Index").
//!
//! The index is two levels deep: the master index (read at open) lists, for each stream, the
//! index pages; each page holds up to [`MAX_ENTRIES_PER_PAGE`] block entries and is loaded only
//! when a read needs it. A page is committed to by its BLAKE3 digest in the master index, and
//! the master index by a trailing BLAKE3 digest, so one 32-byte value (the *index digest*)
//! commits to every block hash in the archive.

use super::{le_u16, le_u32, le_u64, Codec, MAX_BLOCK_SIZE, MAX_STORED_OVERHEAD};
use crate::error::{Error, Result};
use crate::format::section::{SectionRecord, MAX_SECTIONS, SECTION_RECORD_SIZE};
use crate::format::SnapshotStream;

/// Size of one encoded block entry.
pub const ENTRY_SIZE: usize = 64;
/// Size of the fixed part of an index page, before its entries.
pub const PAGE_HEADER_SIZE: usize = 16;
/// Block entries per index page written by this build.
pub const DEFAULT_ENTRIES_PER_PAGE: usize = 1024;
/// Most entries a reader accepts in one page (bounds the allocation for a page to 512 KiB).
pub const MAX_ENTRIES_PER_PAGE: usize = 8192;
/// Magic of an index page.
pub const PAGE_MAGIC: [u8; 4] = *b"HXIP";
/// Magic of the master index.
pub const MASTER_MAGIC: [u8; 4] = *b"HXMI";
/// Size of the fixed part of the master index.
pub const MASTER_HEADER_SIZE: usize = 16;
/// Size of one stream record in the master index.
pub const STREAM_RECORD_SIZE: usize = 48;
/// Size of one page reference in the master index.
pub const PAGE_REF_SIZE: usize = 64;
/// Largest master index a reader accepts (256 MiB: ~4 million pages, far beyond 100 TiB).
pub const MAX_MASTER_LEN: u32 = 256 * 1024 * 1024;
/// Largest metadata area in the master index.
pub const MAX_METADATA_LEN: u32 = 1024 * 1024;
/// Metadata record type: the parent archive's path, UTF-8, relative to the child's directory
/// when it was packed that way.
pub const META_PARENT_PATH: u16 = 1;
/// Metadata record type: the recorded parent path of every ancestor (the parent's, then
/// the grandparent's as recorded in the parent, …), so that a reader can fetch a remote
/// chain's ancestors in parallel instead of one after another. Only a hint: each ancestor
/// is still checked by archive id and index digest (docs/FORMAT.md, "Thin snapshots").
pub const META_ANCESTOR_PATHS: u16 = 2;
/// Largest encoded [`META_ANCESTOR_PATHS`] record a packer writes (a longer chain of long
/// paths simply goes without the hint).
pub const MAX_ANCESTOR_PATHS_LEN: usize = 64 << 10;

/// Encodes a [`META_ANCESTOR_PATHS`] record: per path, its length (u16 LE) then its UTF-8
/// bytes. `None` if a path or the whole record is too long to be worth a hint.
pub fn encode_ancestor_paths(paths: &[String]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for p in paths {
        out.extend_from_slice(&u16::try_from(p.len()).ok()?.to_le_bytes());
        out.extend_from_slice(p.as_bytes());
    }
    (out.len() <= MAX_ANCESTOR_PATHS_LEN).then_some(out)
}

/// Decodes a [`META_ANCESTOR_PATHS`] record, at most `max` paths; `None` if it is malformed
/// (a reader then opens the chain one ancestor after another, as without the record).
pub fn decode_ancestor_paths(mut b: &[u8], max: usize) -> Option<Vec<String>> {
    let mut paths = Vec::new();
    while !b.is_empty() {
        if paths.len() == max || b.len() < 2 {
            return None;
        }
        let n = usize::from(u16::from_le_bytes([b[0], b[1]]));
        let body = b.get(2..2 + n)?;
        paths.push(String::from_utf8(body.to_vec()).ok()?);
        b = &b[2 + n..];
    }
    Some(paths)
}

/// Entry flag: the block is all zeros and has no stored bytes.
pub const ENTRY_FLAG_ZERO: u8 = 1;

/// One block of a stream: where its bytes are and how to check them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockEntry {
    /// Offset of the block's first byte in its stream.
    pub logical_offset: u64,
    /// Uncompressed length of the block.
    pub logical_len: u32,
    /// Length of the stored (compressed) bytes; 0 for zero blocks.
    pub stored_len: u32,
    /// Absolute offset of the stored bytes in the archive named by `source`.
    pub stored_offset: u64,
    /// CRC32 (IEEE) of the stored bytes.
    pub crc32: u32,
    /// Codec of the stored bytes.
    pub codec: Codec,
    /// `ENTRY_FLAG_*` bits.
    pub flags: u8,
    /// Which archive holds the stored bytes: 0 this one, n the n-th ancestor (1 = parent).
    pub source: u16,
    /// BLAKE3 of the uncompressed block content.
    pub hash: [u8; 32],
}

impl BlockEntry {
    /// Whether this is an all-zero block without stored bytes.
    pub fn is_zero(&self) -> bool {
        self.flags & ENTRY_FLAG_ZERO != 0
    }

    /// Logical end offset (exclusive). Decoded entries never overflow (checked by the
    /// decoder); for hand-built ones the sum saturates instead of wrapping or panicking.
    pub fn logical_end(&self) -> u64 {
        self.logical_offset.saturating_add(self.logical_len as u64)
    }

    /// Appends the 64-byte encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.logical_offset.to_le_bytes());
        out.extend_from_slice(&self.logical_len.to_le_bytes());
        out.extend_from_slice(&self.stored_len.to_le_bytes());
        out.extend_from_slice(&self.stored_offset.to_le_bytes());
        out.extend_from_slice(&self.crc32.to_le_bytes());
        out.push(self.codec as u8);
        out.push(self.flags);
        out.extend_from_slice(&self.source.to_le_bytes());
        out.extend_from_slice(&self.hash);
    }

    /// Decodes one entry from exactly [`ENTRY_SIZE`] bytes; `what` names it in errors.
    fn decode(b: &[u8], what: &dyn Fn() -> String) -> Result<BlockEntry> {
        let codec = Codec::from_u8(b[28])
            .ok_or_else(|| Error::corrupt(what(), format!("unknown codec id {}", b[28])))?;
        let e = BlockEntry {
            logical_offset: le_u64(b, 0),
            logical_len: le_u32(b, 8),
            stored_len: le_u32(b, 12),
            stored_offset: le_u64(b, 16),
            crc32: le_u32(b, 24),
            codec,
            flags: b[29],
            source: le_u16(b, 30),
            hash: b[32..64].try_into().expect("32 bytes"),
        };
        if e.flags & !ENTRY_FLAG_ZERO != 0 {
            return Err(Error::corrupt(
                what(),
                format!("unknown flags {:#04x}", e.flags),
            ));
        }
        if e.logical_len == 0 || e.logical_len > MAX_BLOCK_SIZE {
            return Err(Error::corrupt(
                what(),
                format!("logical length {} out of range", e.logical_len),
            ));
        }
        if e.logical_offset.checked_add(e.logical_len as u64).is_none() {
            return Err(Error::corrupt(
                what(),
                format!(
                    "logical offset {} plus length {} overflows",
                    e.logical_offset, e.logical_len
                ),
            ));
        }
        if e.is_zero() {
            if e.stored_len != 0 {
                return Err(Error::corrupt(what(), "zero block with stored bytes"));
            }
        } else if e.stored_len == 0 || e.stored_len > e.logical_len + MAX_STORED_OVERHEAD {
            return Err(Error::corrupt(
                what(),
                format!(
                    "stored length {} out of range for a {}-byte block",
                    e.stored_len, e.logical_len
                ),
            ));
        }
        Ok(e)
    }
}

/// A decoded index page: consecutive block entries of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPage {
    /// The stream the page belongs to.
    pub stream: SnapshotStream,
    /// Entries in logical order, contiguous.
    pub entries: Vec<BlockEntry>,
}

impl IndexPage {
    /// Encodes the page (header and entries).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PAGE_HEADER_SIZE + ENTRY_SIZE * self.entries.len());
        out.extend_from_slice(&PAGE_MAGIC);
        out.push(self.stream.id());
        out.extend_from_slice(&[0u8; 3]);
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0u8; 4]);
        for e in &self.entries {
            e.encode_into(&mut out);
        }
        out
    }

    /// Decodes and validates a page against the master index's reference to it.
    /// `name` describes the page in errors ("index page 3 of disk stream").
    pub fn decode(b: &[u8], r: &PageRef, stream: SnapshotStream, name: &str) -> Result<IndexPage> {
        let digest = blake3::hash(b);
        if digest.as_bytes() != &r.hash {
            return Err(Error::corrupt(
                name,
                "BLAKE3 digest does not match the master index",
            ));
        }
        if b.len() < PAGE_HEADER_SIZE || b[0..4] != PAGE_MAGIC {
            return Err(Error::corrupt(name, "bad page magic"));
        }
        if b[4] != stream.id() {
            return Err(Error::corrupt(
                name,
                format!("page belongs to stream id {}", b[4]),
            ));
        }
        let count = le_u32(b, 8) as usize;
        if count != r.entry_count as usize
            || count == 0
            || count > MAX_ENTRIES_PER_PAGE
            || b.len() != PAGE_HEADER_SIZE + count * ENTRY_SIZE
        {
            return Err(Error::corrupt(
                name,
                format!(
                    "entry count {count} does not match its {}-byte length",
                    b.len()
                ),
            ));
        }
        let mut entries = Vec::with_capacity(count);
        let mut expect = r.first_logical;
        for i in 0..count {
            let off = PAGE_HEADER_SIZE + i * ENTRY_SIZE;
            let what = || format!("{name}, entry {i}");
            let e = BlockEntry::decode(&b[off..off + ENTRY_SIZE], &what)?;
            if e.logical_offset != expect {
                return Err(Error::corrupt(
                    what(),
                    format!(
                        "logical offset {} breaks the sequence (expected {expect})",
                        e.logical_offset
                    ),
                ));
            }
            expect = e.logical_end();
            entries.push(e);
        }
        Ok(IndexPage { stream, entries })
    }
}

/// The master index's reference to one index page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRef {
    /// Logical offset of the page's first block.
    pub first_logical: u64,
    /// Absolute offset of the page in the archive.
    pub offset: u64,
    /// Stored length of the page (encoded length, plus the tag when encrypted).
    pub len: u32,
    /// Number of entries in the page.
    pub entry_count: u32,
    /// Block number (within the stream) of the page's first entry. Derived, not stored.
    pub first_block: u64,
    /// BLAKE3 of the encoded (plaintext) page.
    pub hash: [u8; 32],
}

/// Per-stream summary in the master index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    /// Which stream.
    pub stream: SnapshotStream,
    /// Logical size of the stream (must equal the header's).
    pub logical_size: u64,
    /// Number of blocks.
    pub block_count: u64,
    /// Number of all-zero blocks (no stored bytes).
    pub zero_blocks: u64,
    /// Stored bytes of blocks this archive holds for the stream (dedup'd copies counted once).
    pub stored_bytes: u64,
    /// The stream's index pages, in logical order.
    pub pages: Vec<PageRef>,
}

/// The decoded master index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterIndex {
    /// One record per present stream.
    pub streams: Vec<StreamRecord>,
    /// Metadata records (type, bytes), e.g. the parent path.
    pub metadata: Vec<(u16, Vec<u8>)>,
    /// Section table (format 1.2): extra stored objects such as a file table. Empty in
    /// streams-only archives.
    pub sections: Vec<SectionRecord>,
    /// BLAKE3 of the encoded master index (without the digest itself): the index digest.
    pub digest: [u8; 32],
}

impl MasterIndex {
    /// The record of `stream`, if present.
    pub fn stream(&self, stream: SnapshotStream) -> Option<&StreamRecord> {
        self.streams.iter().find(|s| s.stream == stream)
    }

    /// The first metadata record of type `ty`.
    pub fn meta(&self, ty: u16) -> Option<&[u8]> {
        self.metadata
            .iter()
            .find(|(t, _)| *t == ty)
            .map(|(_, v)| v.as_slice())
    }

    /// The first section of type `ty`.
    pub fn section(&self, ty: u16) -> Option<&SectionRecord> {
        self.sections.iter().find(|s| s.ty == ty)
    }

    /// Encodes the master index and returns the bytes and its digest (also stored at the end).
    pub fn encode(streams: &[StreamRecord], metadata: &[(u16, Vec<u8>)]) -> (Vec<u8>, [u8; 32]) {
        Self::encode_with_sections(streams, metadata, &[])
    }

    /// Encodes a master index with a section table (format 1.2; the archive's header must set
    /// [`crate::format::header::FLAG_SECTIONS`] when `sections` is not empty).
    pub fn encode_with_sections(
        streams: &[StreamRecord],
        metadata: &[(u16, Vec<u8>)],
        sections: &[SectionRecord],
    ) -> (Vec<u8>, [u8; 32]) {
        let meta_len: usize = metadata.iter().map(|(_, v)| 8 + v.len()).sum();
        let mut out = Vec::new();
        out.extend_from_slice(&MASTER_MAGIC);
        out.extend_from_slice(&(streams.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0u8; 2]);
        out.extend_from_slice(&(meta_len as u32).to_le_bytes());
        out.extend_from_slice(&(sections.len() as u32).to_le_bytes());
        for s in streams {
            out.push(s.stream.id());
            out.extend_from_slice(&[0u8; 3]);
            out.extend_from_slice(&(s.pages.len() as u32).to_le_bytes());
            out.extend_from_slice(&s.block_count.to_le_bytes());
            out.extend_from_slice(&s.zero_blocks.to_le_bytes());
            out.extend_from_slice(&s.stored_bytes.to_le_bytes());
            out.extend_from_slice(&s.logical_size.to_le_bytes());
            out.extend_from_slice(&[0u8; 8]);
        }
        for s in streams {
            for p in &s.pages {
                out.extend_from_slice(&p.first_logical.to_le_bytes());
                out.extend_from_slice(&p.offset.to_le_bytes());
                out.extend_from_slice(&p.len.to_le_bytes());
                out.extend_from_slice(&p.entry_count.to_le_bytes());
                out.extend_from_slice(&[0u8; 8]);
                out.extend_from_slice(&p.hash);
            }
        }
        for (t, v) in metadata {
            out.extend_from_slice(&t.to_le_bytes());
            out.extend_from_slice(&[0u8; 2]);
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v);
        }
        for r in sections {
            r.encode_into(&mut out);
        }
        let digest = *blake3::hash(&out).as_bytes();
        out.extend_from_slice(&digest);
        (out, digest)
    }

    /// Decodes and validates the (decrypted) master index. `archive_len` bounds page
    /// locations; `page_overhead` is what encryption adds to each stored page (0 or the tag).
    pub fn decode(b: &[u8], archive_len: u64, page_overhead: u32) -> Result<MasterIndex> {
        const NAME: &str = "master index";
        if b.len() < MASTER_HEADER_SIZE + 32 {
            return Err(Error::corrupt(
                NAME,
                format!("{} bytes is too short", b.len()),
            ));
        }
        let body = &b[..b.len() - 32];
        let digest = *blake3::hash(body).as_bytes();
        if digest != b[b.len() - 32..] {
            return Err(Error::corrupt(
                NAME,
                "BLAKE3 digest mismatch (index damaged)",
            ));
        }
        if body[0..4] != MASTER_MAGIC {
            return Err(Error::corrupt(NAME, "bad magic"));
        }
        let nstreams = le_u16(body, 4) as usize;
        let meta_len = le_u32(body, 8) as usize;
        let nsections = le_u32(body, 12);
        if nstreams > 2 || meta_len > MAX_METADATA_LEN as usize || nsections > MAX_SECTIONS {
            return Err(Error::corrupt(
                NAME,
                format!(
                    "{nstreams} streams / {meta_len} metadata bytes / {nsections} sections out \
                     of range"
                ),
            ));
        }
        let mut pos = MASTER_HEADER_SIZE;
        let need = pos + nstreams * STREAM_RECORD_SIZE;
        if body.len() < need {
            return Err(Error::corrupt(NAME, "truncated stream records"));
        }
        let mut streams = Vec::with_capacity(nstreams);
        let mut counts = Vec::with_capacity(nstreams);
        let mut total_pages: u64 = 0;
        for _ in 0..nstreams {
            let r = &body[pos..pos + STREAM_RECORD_SIZE];
            let stream = SnapshotStream::from_id(r[0])
                .ok_or_else(|| Error::corrupt(NAME, format!("unknown stream id {}", r[0])))?;
            if streams.iter().any(|s: &StreamRecord| s.stream == stream) {
                return Err(Error::corrupt(
                    NAME,
                    format!("{stream} stream listed twice"),
                ));
            }
            let pages = le_u32(r, 4);
            total_pages += pages as u64;
            counts.push(pages as usize);
            streams.push(StreamRecord {
                stream,
                block_count: le_u64(r, 8),
                zero_blocks: le_u64(r, 16),
                stored_bytes: le_u64(r, 24),
                logical_size: le_u64(r, 32),
                pages: Vec::new(),
            });
            pos += STREAM_RECORD_SIZE;
        }
        let expected = need as u64
            + total_pages * PAGE_REF_SIZE as u64
            + meta_len as u64
            + nsections as u64 * SECTION_RECORD_SIZE as u64;
        if expected != body.len() as u64 {
            return Err(Error::corrupt(
                NAME,
                format!(
                    "length {} does not match {total_pages} pages, {meta_len} metadata bytes \
                     and {nsections} sections",
                    b.len()
                ),
            ));
        }
        for (s, &n) in streams.iter_mut().zip(&counts) {
            let mut pages = Vec::with_capacity(n);
            let mut first_block = 0u64;
            for i in 0..n {
                let p = &body[pos..pos + PAGE_REF_SIZE];
                let r = PageRef {
                    first_logical: le_u64(p, 0),
                    offset: le_u64(p, 8),
                    len: le_u32(p, 16),
                    entry_count: le_u32(p, 20),
                    first_block,
                    hash: p[32..64].try_into().expect("32 bytes"),
                };
                let name = || format!("{NAME}, {} stream page {i}", s.stream);
                let expected_len = PAGE_HEADER_SIZE as u64
                    + r.entry_count as u64 * ENTRY_SIZE as u64
                    + page_overhead as u64;
                if r.entry_count == 0
                    || r.entry_count as usize > MAX_ENTRIES_PER_PAGE
                    || r.len as u64 != expected_len
                    || r.offset
                        .checked_add(r.len as u64)
                        .is_none_or(|e| e > archive_len)
                {
                    return Err(Error::corrupt(
                        name(),
                        format!(
                            "page at offset {} length {} with {} entries is invalid or outside the \
                             {archive_len}-byte archive",
                            r.offset, r.len, r.entry_count
                        ),
                    ));
                }
                let ok_start = match pages.last() {
                    None => r.first_logical == 0,
                    Some(prev) => {
                        let prev: &PageRef = prev;
                        r.first_logical > prev.first_logical
                    }
                };
                if !ok_start || r.first_logical >= s.logical_size {
                    return Err(Error::corrupt(
                        name(),
                        format!("first logical offset {} out of order", r.first_logical),
                    ));
                }
                first_block += r.entry_count as u64;
                pages.push(r);
                pos += PAGE_REF_SIZE;
            }
            if first_block != s.block_count || (n == 0) != (s.logical_size == 0) {
                return Err(Error::corrupt(
                    NAME,
                    format!(
                        "{} stream: pages hold {first_block} blocks, record says {}",
                        s.stream, s.block_count
                    ),
                ));
            }
            s.pages = pages;
        }
        let mut metadata = Vec::new();
        let end = pos + meta_len;
        while pos < end {
            if end - pos < 8 {
                return Err(Error::corrupt(NAME, "truncated metadata record"));
            }
            let ty = le_u16(body, pos);
            let len = le_u32(body, pos + 4) as usize;
            pos += 8;
            if len > end - pos {
                return Err(Error::corrupt(
                    NAME,
                    format!("metadata record type {ty} length {len} overruns the area"),
                ));
            }
            metadata.push((ty, body[pos..pos + len].to_vec()));
            pos += len;
        }
        let mut sections = Vec::with_capacity(nsections as usize);
        for i in 0..nsections as usize {
            let r = &body[pos..pos + SECTION_RECORD_SIZE];
            sections.push(SectionRecord::decode(r, i, archive_len)?);
            pos += SECTION_RECORD_SIZE;
        }
        Ok(MasterIndex {
            streams,
            metadata,
            sections,
            digest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestor_paths_round_trip_and_reject_malformed_records() {
        let paths = vec!["c/g3.hxz".to_string(), "../é/g2.hxz".to_string()];
        let rec = encode_ancestor_paths(&paths).unwrap();
        assert_eq!(decode_ancestor_paths(&rec, 255), Some(paths.clone()));
        assert_eq!(
            decode_ancestor_paths(&rec, 1),
            None,
            "more paths than allowed"
        );
        assert_eq!(
            decode_ancestor_paths(&rec[..rec.len() - 1], 255),
            None,
            "truncated"
        );
        assert_eq!(decode_ancestor_paths(&rec[..1], 255), None, "half a length");
        assert_eq!(decode_ancestor_paths(&[1, 0, 0xff], 255), None, "not UTF-8");
        assert_eq!(decode_ancestor_paths(&[], 255), Some(vec![]));
        let long = vec!["x".repeat(70_000)];
        assert_eq!(encode_ancestor_paths(&long), None, "a path longer than u16");
    }
}
