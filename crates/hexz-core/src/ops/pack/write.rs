//! Writing and indexing: where the archive's bytes go ([`PackSink`], [`FileSink`]), and the
//! writer stage that stores each distinct block once and emits index pages as they fill.

use super::chunk::Batch;
use super::compress::Cooked;
use super::StreamStats;
use crate::algo::encryption::ArchiveCipher;
use crate::algo::hash;
use crate::api::SnapshotStream;
use crate::error::{Error, Result};
use crate::format::index::{IndexPage, PageRef, DEFAULT_ENTRIES_PER_PAGE, ENTRY_FLAG_ZERO};
use crate::format::{BlockEntry, Codec};
use crate::ops::atomic::AtomicFile;
use crate::ops::writeback::WriteBack;
use crate::store::REMOTE_ALIGN;
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a pack writes the archive.
///
/// Contract: the packer [`append`](PackSink::append)s the archive front to back (starting
/// with a zeroed header), then overwrites the header once with
/// [`write_header`](PackSink::write_header), then calls [`finish`](PackSink::finish), after
/// which the archive must be complete and durable under its final name. A sink dropped
/// without `finish` (an error or a panic on the way) must leave nothing behind: no partial
/// archive, no temporary file, no half-done upload. A sink streaming to object storage can
/// send the body as it comes and the first part (holding the header) last.
pub trait PackSink: Send {
    /// Appends `buf` at the end of what was written so far.
    fn append(&mut self, buf: &[u8]) -> Result<()>;
    /// Overwrites the first `header.len()` bytes (already appended as zeros).
    fn write_header(&mut self, header: &[u8]) -> Result<()>;
    /// Makes the archive durable and publishes it under its final name.
    fn finish(&mut self) -> Result<()>;
    /// The local path the archive will have, if it is a local file: used to refuse
    /// overwriting a thin child's own base and to record the base's path relative to it.
    fn local_path(&self) -> Option<&Path> {
        None
    }
}

/// A [`PackSink`] writing a local file crash-safely: a temporary file beside the target,
/// written by a [`WriteBack`] thread (large writes, writeback overlapped with packing, page
/// cache dropped behind), then fdatasync, fsync and an atomic rename.
pub struct FileSink {
    atomic: Option<AtomicFile>,
    wb: Option<WriteBack>,
    target: PathBuf,
}

impl FileSink {
    /// Creates the temporary file for `target`.
    pub fn create(target: &Path) -> Result<Self> {
        let mut atomic = AtomicFile::create(target)?;
        let name = atomic.temp_path().display().to_string();
        let wb = WriteBack::new(atomic.file(), 0, &name, true)?;
        Ok(FileSink {
            atomic: Some(atomic),
            wb: Some(wb),
            target: target.to_path_buf(),
        })
    }

    fn atomic(&mut self) -> Result<&mut AtomicFile> {
        self.atomic
            .as_mut()
            .ok_or_else(|| Error::InvalidArgument("archive output already finished".into()))
    }
}

impl PackSink for FileSink {
    fn append(&mut self, buf: &[u8]) -> Result<()> {
        match &mut self.wb {
            Some(wb) => wb.write(buf),
            None => Err(Error::InvalidArgument(
                "archive output already finished".into(),
            )),
        }
    }

    fn write_header(&mut self, header: &[u8]) -> Result<()> {
        if let Some(wb) = self.wb.take() {
            wb.finish()?;
        }
        let a = self.atomic()?;
        let name = a.temp_path().display().to_string();
        a.file()
            .write_all_at(header, 0)
            .map_err(|e| Error::io(format!("writing header of {name}"), e))
    }

    fn finish(&mut self) -> Result<()> {
        if let Some(wb) = self.wb.take() {
            wb.finish()?;
        }
        let a = self
            .atomic
            .take()
            .ok_or_else(|| Error::InvalidArgument("archive output already finished".into()))?;
        a.commit()
    }

    fn local_path(&self) -> Option<&Path> {
        Some(&self.target)
    }
}

#[derive(Clone, Copy)]
pub(super) struct StoredLoc {
    pub(super) offset: u64,
    pub(super) len: u32,
    pub(super) crc: u32,
    pub(super) codec: Codec,
    /// 0 for this archive, n for the n-th ancestor.
    pub(super) source: u16,
}

/// Output state shared by the streams of one archive.
pub(super) struct Writer<'a> {
    pub(super) sink: &'a mut dyn PackSink,
    pub(super) pos: u64,
    pub(super) dedup: HashMap<[u8; 32], StoredLoc>,
    /// Blocks held by the parent chain, by content hash.
    pub(super) parent: HashMap<[u8; 32], StoredLoc>,
    pub(super) dedup_on: bool,
    pub(super) dedup_max: usize,
    /// Seals blocks and index of an encrypted archive.
    pub(super) cipher: Option<Arc<ArchiveCipher>>,
    /// Entries carry the bound CRC of format 1.1 (content hash ‖ stored bytes).
    pub(super) bound_crc: bool,
}

impl Writer<'_> {
    pub(super) fn write(&mut self, b: &[u8]) -> Result<u64> {
        let at = self.pos;
        self.sink.append(b)?;
        self.pos += b.len() as u64;
        Ok(at)
    }
}

/// Encoded index pages held back until [`PAGE_GROUP_BYTES`] of them are written together.
pub(super) const PAGE_GROUP_BYTES: usize = 1 << 20;

/// Per-stream index building.
pub(super) struct StreamBuild {
    pub(super) stream: SnapshotStream,
    pub(super) page: Vec<BlockEntry>,
    pub(super) pages: Vec<PageRef>,
    pub(super) next_logical: u64,
    pub(super) blocks_before_page: u64,
    pub(super) stats: StreamStats,
    /// Finished pages not written yet: the page's reference (offset still unset) and its
    /// plain encoded bytes, in logical order.
    pub(super) held: Vec<(PageRef, Vec<u8>)>,
}

impl StreamBuild {
    /// A stream with no blocks yet.
    pub(super) fn new(stream: SnapshotStream) -> Self {
        StreamBuild {
            stream,
            page: Vec::with_capacity(DEFAULT_ENTRIES_PER_PAGE),
            pages: Vec::new(),
            next_logical: 0,
            blocks_before_page: 0,
            stats: StreamStats::default(),
            held: Vec::new(),
        }
    }

    /// Ends the current page, and writes the held pages once they fill a group. Pages are
    /// written in groups (docs/FORMAT.md) so that a remote reader fetches many with one
    /// request.
    pub(super) fn flush_page(&mut self, w: &mut Writer) -> Result<()> {
        if !self.page.is_empty() {
            let page = IndexPage {
                stream: self.stream,
                entries: std::mem::take(&mut self.page),
            };
            let bytes = page.encode();
            let r = PageRef {
                first_logical: page.entries[0].logical_offset,
                offset: 0,
                len: 0,
                entry_count: page.entries.len() as u32,
                first_block: self.blocks_before_page,
                hash: hash::blake3(&bytes),
            };
            self.blocks_before_page += page.entries.len() as u64;
            self.held.push((r, bytes));
        }
        let held: usize = self.held.iter().map(|(_, b)| b.len()).sum();
        if held >= PAGE_GROUP_BYTES {
            self.write_held(w)?;
        }
        Ok(())
    }

    /// Ends the stream's index: the last page and every held page are written.
    pub(super) fn finish_pages(&mut self, w: &mut Writer) -> Result<()> {
        self.flush_page(w)?;
        self.write_held(w)
    }

    /// Writes the held pages back to back (sealed at their final offsets when encrypting).
    fn write_held(&mut self, w: &mut Writer) -> Result<()> {
        for (mut r, mut bytes) in std::mem::take(&mut self.held) {
            if let Some(c) = &w.cipher {
                c.seal_index(false, self.stream.id(), w.pos, &mut bytes)?;
            }
            r.offset = w.write(&bytes)?;
            r.len = bytes.len() as u32;
            self.pages.push(r);
        }
        Ok(())
    }

    pub(super) fn push(&mut self, w: &mut Writer, e: BlockEntry) -> Result<()> {
        self.next_logical += e.logical_len as u64;
        self.page.push(e);
        if self.page.len() >= DEFAULT_ENTRIES_PER_PAGE {
            self.flush_page(w)?;
        }
        Ok(())
    }
}

/// Where a block's stored bytes are, as decided by the writer.
enum Place {
    /// All zeros: nothing stored.
    Zero,
    /// Already stored (earlier in this archive, or in the parent chain).
    At(StoredLoc),
    /// Stored by this batch: index into the batch's new blocks.
    New(usize),
}

/// A block this batch stores for the first time.
struct Fresh {
    cooked: usize,
    /// Zero bytes written before it, so that it does not cross a line of the part grid.
    pad: u64,
    offset: u64,
    len: usize,
    crc: u32,
}

/// Zero bytes to write at archive offset `pos` before a stored block of `len` bytes so that
/// it does not cross a multiple of [`REMOTE_ALIGN`] (8 MiB): the part size uploads use, and
/// the grid remote reads are cut at. A request for the blocks of one cell then stays inside
/// one part of the object: S3 stores serve that for less than a range across two parts
/// (SeaweedFS spent 22% more CPU on 8 MiB ranges that ran 64 KiB into the next part; see
/// docs/BENCHMARKS.md). Costs at most one block per 8 MiB, about 0.2% on average; a block
/// longer than the grid cannot be kept inside a cell and is not padded for.
pub(super) fn grid_pad(pos: u64, len: u64) -> u64 {
    let line = (pos / REMOTE_ALIGN + 1) * REMOTE_ALIGN;
    if len <= REMOTE_ALIGN && pos + len > line {
        line - pos
    } else {
        0
    }
}

/// Writes one batch: decides for each block whether it is a hole, a reference (parent chain
/// or dedup) or new; gives new blocks consecutive offsets; seals them in parallel when
/// encrypting (the nonce is the offset, so sealing waits for the offsets); writes them in
/// order; and only then appends the index entries (which may flush an index page).
pub(super) fn write_batch(w: &mut Writer, sb: &mut StreamBuild, b: &Batch) -> Result<()> {
    let tag = if w.cipher.is_some() {
        crate::algo::encryption::TAG_LEN
    } else {
        0
    };
    let mut places = Vec::with_capacity(b.cooked.len());
    let mut fresh: Vec<Fresh> = Vec::new();
    let mut batch_new: HashMap<[u8; 32], usize> = HashMap::new();
    let mut pos = w.pos;
    for (i, c) in b.cooked.iter().enumerate() {
        sb.stats.blocks += 1;
        sb.stats.input_bytes += c.len as u64;
        if c.zero {
            sb.stats.zero_blocks += 1;
            places.push(Place::Zero);
            continue;
        }
        if let Some(loc) = w.parent.get(&c.hash) {
            sb.stats.parent_blocks += 1;
            places.push(Place::At(*loc));
            continue;
        }
        if w.dedup_on {
            if let Some(loc) = w.dedup.get(&c.hash) {
                sb.stats.dedup_blocks += 1;
                places.push(Place::At(*loc));
                continue;
            }
            if let Some(&j) = batch_new.get(&c.hash) {
                sb.stats.dedup_blocks += 1;
                places.push(Place::New(j));
                continue;
            }
            batch_new.insert(c.hash, fresh.len());
        }
        let len = c.out_len + tag;
        let pad = grid_pad(pos, len as u64);
        pos += pad;
        places.push(Place::New(fresh.len()));
        fresh.push(Fresh {
            cooked: i,
            pad,
            offset: pos,
            len,
            crc: c.crc,
        });
        pos += len as u64;
    }
    let stored = |c: &Cooked| &b.out[c.out_start..c.out_start + c.out_len];
    let bound = w.bound_crc;
    let sealed: Vec<Vec<u8>> = match &w.cipher {
        Some(k) => {
            use rayon::prelude::*;
            fresh
                .par_iter_mut()
                .map(|f| {
                    let c = &b.cooked[f.cooked];
                    let mut buf = stored(c).to_vec();
                    k.seal_block(f.offset, c.len, c.codec, &mut buf)?;
                    f.crc = hash::entry_crc32(bound, &c.hash, &buf);
                    Ok(buf)
                })
                .collect::<Result<_>>()?
        }
        None => Vec::new(),
    };
    for (j, f) in fresh.iter().enumerate() {
        let c = &b.cooked[f.cooked];
        let bytes = sealed.get(j).map_or_else(|| stored(c), |v| &v[..]);
        if f.pad > 0 {
            w.write(&vec![0u8; f.pad as usize])?;
            sb.stats.padding_bytes += f.pad;
        }
        let at = w.write(bytes)?;
        debug_assert_eq!(at, f.offset);
        sb.stats.stored_bytes += f.len as u64;
        if w.dedup_on && w.dedup.len() < w.dedup_max {
            w.dedup.insert(c.hash, fresh_loc(f, c));
        }
    }
    for (c, place) in b.cooked.iter().zip(places) {
        let logical_offset = sb.next_logical;
        let e = match place {
            Place::Zero => BlockEntry {
                logical_offset,
                logical_len: c.len,
                stored_len: 0,
                stored_offset: 0,
                crc32: 0,
                codec: Codec::None,
                flags: ENTRY_FLAG_ZERO,
                source: 0,
                hash: [0; 32],
            },
            Place::At(loc) => entry_at(logical_offset, c, loc),
            Place::New(j) => entry_at(
                logical_offset,
                c,
                fresh_loc(&fresh[j], &b.cooked[fresh[j].cooked]),
            ),
        };
        sb.push(w, e)?;
    }
    Ok(())
}

fn fresh_loc(f: &Fresh, c: &Cooked) -> StoredLoc {
    StoredLoc {
        offset: f.offset,
        len: f.len as u32,
        crc: f.crc,
        codec: c.codec,
        source: 0,
    }
}

fn entry_at(logical_offset: u64, c: &Cooked, loc: StoredLoc) -> BlockEntry {
    BlockEntry {
        logical_offset,
        logical_len: c.len,
        stored_len: loc.len,
        stored_offset: loc.offset,
        crc32: loc.crc,
        codec: loc.codec,
        flags: 0,
        source: loc.source,
        hash: c.hash,
    }
}
