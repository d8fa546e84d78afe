//! Index pages: loaded lazily (one backend read each), checked against the master index,
//! and kept in a byte-bounded cache; locating the block that holds a logical offset.

use super::file::File;
use super::SnapshotStream;
use crate::error::{Error, Result};
use crate::format::index::{IndexPage, StreamRecord};
use crate::format::BlockEntry;
use std::sync::Arc;

impl File {
    pub(super) fn page(&self, rec: &StreamRecord, page_no: usize) -> Result<Arc<IndexPage>> {
        let key = (rec.stream.id(), page_no as u32);
        if let Some(p) = self.inner.pages.get(&key) {
            return Ok(p);
        }
        let r = rec.pages.get(page_no).ok_or_else(|| {
            Error::corrupt(
                "index",
                format!("{} stream has no page {page_no}", rec.stream),
            )
        })?;
        let name = format!("index page {page_no} of {} stream", rec.stream);
        let mut bytes = vec![0u8; r.len as usize];
        self.inner.archives[0].read_exact_at(r.offset, &mut bytes)?;
        if let Some(c) = &self.inner.ciphers[0] {
            c.open_index(false, rec.stream.id(), r.offset, &mut bytes)
                .map_err(|e| Error::corrupt(&name, e))?;
        }
        let page = IndexPage::decode(&bytes, r, rec.stream, &name)?;
        // The page must end exactly where the next one starts (or at the end of the stream),
        // so no logical range is left without a block.
        let end = page
            .entries
            .last()
            .map_or(r.first_logical, |e| e.logical_end());
        let want = rec
            .pages
            .get(page_no + 1)
            .map_or(rec.logical_size, |n| n.first_logical);
        if end != want {
            return Err(Error::corrupt(
                name,
                format!("blocks end at logical offset {end}, expected {want}"),
            ));
        }
        for e in &page.entries {
            if e.source as usize >= self.inner.archives.len() {
                return Err(Error::corrupt(
                    &name,
                    format!(
                        "block at logical offset {} refers to ancestor {} which this archive \
                         does not have",
                        e.logical_offset, e.source
                    ),
                ));
            }
        }
        let page = Arc::new(page);
        self.inner.pages.insert(key, page.clone());
        Ok(page)
    }

    /// Finds the page and entry index holding logical `offset` (which must be < size).
    pub(super) fn locate(
        &self,
        rec: &StreamRecord,
        offset: u64,
    ) -> Result<(usize, Arc<IndexPage>, usize)> {
        let page_no = rec
            .pages
            .partition_point(|p| p.first_logical <= offset)
            .saturating_sub(1);
        let page = self.page(rec, page_no)?;
        // Fixed-size blocks: the entry index is a division away; verify, else binary search
        // (content-defined blocks, or the short last block).
        let first = &page.entries[0];
        let guess = ((offset - first.logical_offset) / first.logical_len as u64) as usize;
        let idx = match page.entries.get(guess) {
            Some(e) if e.logical_offset <= offset && offset < e.logical_end() => guess,
            _ => page.entries.partition_point(|e| e.logical_end() <= offset),
        };
        Ok((page_no, page, idx))
    }
}

/// Iterator over the block entries of one stream; see [`File::entries`].
pub struct Entries<'a> {
    pub(super) file: &'a File,
    pub(super) stream: SnapshotStream,
    pub(super) pages: usize,
    pub(super) page_no: usize,
    pub(super) page: Option<Arc<IndexPage>>,
    pub(super) idx: usize,
}

impl Iterator for Entries<'_> {
    type Item = Result<BlockEntry>;

    fn next(&mut self) -> Option<Result<BlockEntry>> {
        loop {
            if let Some(p) = &self.page {
                if let Some(e) = p.entries.get(self.idx) {
                    self.idx += 1;
                    return Some(Ok(*e));
                }
                self.page_no += 1;
            }
            if self.page_no >= self.pages {
                return None;
            }
            match self.file.index_page(self.stream, self.page_no) {
                Ok(p) => {
                    self.page = Some(p);
                    self.idx = 0;
                }
                Err(e) => {
                    self.page_no = self.pages; // stop after the error
                    return Some(Err(e));
                }
            }
        }
    }
}
