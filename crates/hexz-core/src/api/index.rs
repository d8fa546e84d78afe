//! Index pages: fetched lazily, several in one batched backend call when a read needs more
//! than one, checked against the master index, kept in a byte-bounded cache, and shared
//! between concurrent readers (one fetch per page however many threads want it).

use super::file::File;
use super::flight::Claim;
use super::SnapshotStream;
use crate::error::{Error, Result};
use crate::format::index::{IndexPage, StreamRecord};
use crate::format::BlockEntry;
use crate::store::ReadRequest;
use std::ops::Range;
use std::sync::Arc;

impl File {
    /// Checks and decodes the stored bytes of page `page_no` of `rec` (decrypting them first
    /// for an encrypted archive).
    pub(super) fn decode_page(
        &self,
        rec: &StreamRecord,
        page_no: usize,
        mut bytes: Vec<u8>,
    ) -> Result<IndexPage> {
        let r = &rec.pages[page_no];
        let name = format!("index page {page_no} of {} stream", rec.stream);
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
        Ok(page)
    }

    /// Index pages `range` of `rec`: cached ones from the cache, the rest in one batched
    /// backend call (pages another thread is fetching are waited for, not fetched again).
    pub(super) fn pages(
        &self,
        rec: &StreamRecord,
        range: Range<usize>,
    ) -> Result<Vec<Arc<IndexPage>>> {
        if range.end > rec.pages.len() {
            return Err(Error::corrupt(
                "index",
                format!("{} stream has no page {}", rec.stream, range.end - 1),
            ));
        }
        let sid = rec.stream.id();
        let mut out: Vec<Option<Arc<IndexPage>>> = vec![None; range.len()];
        let mut leads = Vec::new();
        let mut waits = Vec::new();
        for (i, page_no) in range.clone().enumerate() {
            let key = (sid, page_no as u32);
            if let Some(p) = self.inner.pages.get(&key) {
                out[i] = Some(p);
                continue;
            }
            match self.inner.page_flights.claim(key) {
                Claim::Lead(l) => {
                    // Someone may have finished it between the cache lookup and the claim.
                    if let Some(p) = self.inner.pages.get(&key) {
                        l.finish(|| p.clone());
                        out[i] = Some(p);
                    } else {
                        leads.push((i, page_no, l));
                    }
                }
                Claim::Wait(s) => waits.push((i, page_no, s)),
            }
        }
        if !leads.is_empty() {
            let mut bufs: Vec<Vec<u8>> = leads
                .iter()
                .map(|(_, p, _)| vec![0u8; rec.pages[*p].len as usize])
                .collect();
            let mut reqs: Vec<ReadRequest<'_>> = leads
                .iter()
                .zip(bufs.iter_mut())
                .map(|((_, p, _), b)| ReadRequest {
                    offset: rec.pages[*p].offset,
                    buf: b,
                })
                .collect();
            self.inner.archives[0].read_batch(&mut reqs)?;
            drop(reqs);
            for ((i, page_no, lead), bytes) in leads.into_iter().zip(bufs) {
                let page = Arc::new(self.decode_page(rec, page_no, bytes)?);
                self.inner.pages.insert((sid, page_no as u32), page.clone());
                lead.finish(|| page.clone());
                out[i] = Some(page);
            }
        }
        for (i, page_no, slot) in waits {
            out[i] = Some(match slot.wait() {
                Some(p) => p,
                None => self.fetch_page(rec, page_no)?,
            });
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Fetches one page on its own (a fallback when the thread fetching it failed).
    fn fetch_page(&self, rec: &StreamRecord, page_no: usize) -> Result<Arc<IndexPage>> {
        let r = &rec.pages[page_no];
        let mut bytes = vec![0u8; r.len as usize];
        self.inner.archives[0].read_exact_at(r.offset, &mut bytes)?;
        let page = Arc::new(self.decode_page(rec, page_no, bytes)?);
        self.inner
            .pages
            .insert((rec.stream.id(), page_no as u32), page.clone());
        Ok(page)
    }

    /// Index page `page_no` of `rec`, from the cache or the archive.
    pub(super) fn page(&self, rec: &StreamRecord, page_no: usize) -> Result<Arc<IndexPage>> {
        let mut v = self.pages(rec, page_no..page_no + 1)?;
        v.pop()
            .ok_or_else(|| Error::corrupt("index", format!("{} stream page {page_no}", rec.stream)))
    }

    /// Number of the page holding logical `offset` (which must be < the stream size).
    pub(super) fn page_of(rec: &StreamRecord, offset: u64) -> usize {
        rec.pages
            .partition_point(|p| p.first_logical <= offset)
            .saturating_sub(1)
    }

    /// Index of the entry of `page` holding logical `offset` (which the page must cover).
    pub(super) fn entry_of(page: &IndexPage, offset: u64) -> usize {
        // Fixed-size blocks: the entry index is a division away; verify, else binary search
        // (content-defined blocks, or the short last block).
        let first = &page.entries[0];
        let guess = (offset.saturating_sub(first.logical_offset) / first.logical_len.max(1) as u64)
            as usize;
        match page.entries.get(guess) {
            Some(e) if e.logical_offset <= offset && offset < e.logical_end() => guess,
            _ => page.entries.partition_point(|e| e.logical_end() <= offset),
        }
    }

    /// Decodes the pages that lie wholly inside `tail` (bytes read at archive offset
    /// `tail_offset` while opening) into the page cache, so the first reads near the end of
    /// the archive need no fetch. Damaged pages are skipped: the read that needs them reports.
    pub(super) fn prime_pages(&self, tail_offset: u64, tail: &[u8]) {
        for rec in &self.inner.master.streams {
            for (page_no, r) in rec.pages.iter().enumerate() {
                let Some(start) = r.offset.checked_sub(tail_offset) else {
                    continue;
                };
                let end = start + r.len as u64;
                if end > tail.len() as u64 {
                    continue;
                }
                let bytes = tail[start as usize..end as usize].to_vec();
                if let Ok(p) = self.decode_page(rec, page_no, bytes) {
                    self.inner
                        .pages
                        .insert((rec.stream.id(), page_no as u32), Arc::new(p));
                }
            }
        }
    }
}

/// Index pages a read of a remote archive loads together when one it needs is not cached:
/// a group as the packer writes them (16 full pages in 1 MiB, docs/FORMAT.md), fetched with
/// one request where a page at a time would cost a request each.
pub(super) const PAGE_GROUP: usize = 16;

impl File {
    /// Index page `page_no` of `stream`. For a remote archive, a page that is not cached is
    /// loaded with the pages stored right after it (its group as the packer wrote it, at
    /// most [`PAGE_GROUP`] more): one request, so a walk over the index costs a request per
    /// group, not per page.
    fn page_with_group(&self, stream: SnapshotStream, page_no: usize) -> Result<Arc<IndexPage>> {
        let rec = self.stream_record(stream)?;
        let cached = self
            .inner
            .pages
            .contains(&(rec.stream.id(), page_no as u32));
        if cached || !self.is_remote() || page_no >= rec.pages.len() {
            return self.page(rec, page_no);
        }
        let follows = |w: &[crate::format::index::PageRef]| {
            w[0].offset.checked_add(u64::from(w[0].len)) == Some(w[1].offset)
        };
        let run = rec.pages[page_no..]
            .windows(2)
            .take(PAGE_GROUP)
            .take_while(|w| follows(w))
            .count();
        let mut got = self.pages(rec, page_no..page_no + 1 + run)?;
        Ok(got.swap_remove(0))
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
            match self.file.page_with_group(self.stream, self.page_no) {
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
