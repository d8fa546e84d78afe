//! The read path: split a read into per-block pieces, serve them from the block cache or
//! decode them (in parallel when there are several), and prefetch ahead of sequential readers.

use super::file::File;
use super::SnapshotStream;
use crate::error::Result;
use crate::format::index::StreamRecord;
use crate::format::BlockEntry;
use rayon::prelude::*;
use std::sync::Arc;

/// One block's share of a multi-block read.
struct Piece<'a> {
    entry: BlockEntry,
    block_no: u64,
    offset_in_block: usize,
    dst: &'a mut [u8],
}

impl File {
    pub(super) fn read_range(&self, rec: &StreamRecord, offset: u64, buf: &mut [u8]) -> Result<()> {
        let stream = rec.stream;
        let end = offset + buf.len() as u64;
        let (mut page_no, mut page, mut idx) = self.locate(rec, offset)?;
        let first = page.entries[idx];
        if end <= first.logical_end() {
            // Fast path: the whole read lies in one block.
            let block_no = rec.pages[page_no].first_block + idx as u64;
            return self.fill(
                stream,
                Piece {
                    entry: first,
                    block_no,
                    offset_in_block: (offset - first.logical_offset) as usize,
                    dst: buf,
                },
            );
        }
        let mut pieces = Vec::new();
        let mut rest = buf;
        let mut pos = offset;
        loop {
            while idx < page.entries.len() && pos < end {
                let e = page.entries[idx];
                let take = (e.logical_end().min(end) - pos) as usize;
                let (head, tail) = std::mem::take(&mut rest).split_at_mut(take);
                pieces.push(Piece {
                    entry: e,
                    block_no: rec.pages[page_no].first_block + idx as u64,
                    offset_in_block: (pos - e.logical_offset) as usize,
                    dst: head,
                });
                rest = tail;
                pos += take as u64;
                idx += 1;
            }
            if pos >= end {
                break;
            }
            page_no += 1;
            page = self.page(rec, page_no)?;
            idx = 0;
        }
        let work = pieces.iter().filter(|p| !p.entry.is_zero()).count();
        if work >= 2 {
            pieces
                .into_par_iter()
                .try_for_each(|p| self.fill(stream, p))
        } else {
            pieces.into_iter().try_for_each(|p| self.fill(stream, p))
        }
    }

    fn fill(&self, stream: SnapshotStream, p: Piece<'_>) -> Result<()> {
        let e = &p.entry;
        if e.is_zero() {
            p.dst.fill(0);
            return Ok(());
        }
        let key = (e.source, e.stored_offset);
        if let Some(b) = self.inner.blocks.get(&key) {
            p.dst
                .copy_from_slice(&b[p.offset_in_block..p.offset_in_block + p.dst.len()]);
            return Ok(());
        }
        if p.offset_in_block == 0 && p.dst.len() == e.logical_len as usize {
            // Covered whole: decode in place, no intermediate buffer.
            return self.decode_block(stream, p.block_no, e, p.dst, self.inner.verify_hashes);
        }
        let b = self.load_block(stream, p.block_no, e)?;
        p.dst
            .copy_from_slice(&b[p.offset_in_block..p.offset_in_block + p.dst.len()]);
        Ok(())
    }

    /// Returns the decoded block, from the cache or freshly decoded (and then cached).
    fn load_block(
        &self,
        stream: SnapshotStream,
        block_no: u64,
        e: &BlockEntry,
    ) -> Result<Arc<Vec<u8>>> {
        let key = (e.source, e.stored_offset);
        if let Some(b) = self.inner.blocks.get(&key) {
            return Ok(b);
        }
        let mut v = vec![0u8; e.logical_len as usize];
        self.decode_block(stream, block_no, e, &mut v, self.inner.verify_hashes)?;
        let v = Arc::new(v);
        self.inner.blocks.insert(key, v.clone());
        Ok(v)
    }

    /// Decodes the non-zero, uncached blocks overlapping `[from, to)` of `stream` into the
    /// cache. Runs on the rayon pool; errors are left for the foreground read to report.
    pub(super) fn prefetch(&self, stream: SnapshotStream, from: u64, to: u64) {
        let Ok(rec) = self.stream_record(stream) else {
            return;
        };
        let to = to.min(rec.logical_size);
        let mut todo = Vec::new();
        let mut pos = from;
        while pos < to {
            let Ok((page_no, page, idx)) = self.locate(rec, pos) else {
                return;
            };
            let before = pos;
            for (i, e) in page.entries[idx..].iter().enumerate() {
                if e.logical_offset >= to {
                    break;
                }
                pos = e.logical_end();
                let key = (e.source, e.stored_offset);
                if e.is_zero() || self.inner.blocks.contains(&key) {
                    continue;
                }
                let mut inflight = self
                    .inner
                    .inflight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if inflight.insert(key) {
                    todo.push((rec.pages[page_no].first_block + (idx + i) as u64, *e));
                }
            }
            if pos == before {
                break;
            }
        }
        todo.par_iter().for_each(|(block_no, e)| {
            let _ = self.load_block(stream, *block_no, e);
        });
        let mut inflight = self
            .inner
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (_, e) in &todo {
            inflight.remove(&(e.source, e.stored_offset));
        }
    }
}
