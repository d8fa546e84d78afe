//! One-pass reads of a remote archive that decode each block as its bytes arrive.
//!
//! The batched path ([`read`](super::read)) fetches every stored block of a batch into a
//! buffer of its own, then decodes them. For a one-pass read of megabytes that costs twice:
//! the HTTP client's copy of the body lands in cold memory (a fresh buffer per block, several
//! MiB of them per part), and the decoder reads those bytes back from memory after the whole
//! part has arrived. A caller that decodes on its own thread (extraction's part workers)
//! instead streams the part: one range request whose body is copied into one small buffer
//! block by block, each block decoded into the caller's buffer as soon as its last byte is
//! in, while it is still in the core's L1/L2 cache. Blocks stored raw go straight into the
//! caller's buffer and are checked there. A block that fails its check is fetched again
//! afterwards, as on the batched path.

use super::decode::Verify;
use super::file::{File, Held};
use super::read::Fetch;
use super::SnapshotStream;
use crate::error::{Error, Result};
use crate::store::RangeSink;
use std::sync::Arc;

/// Largest gap between two blocks of one streamed request (read through): blocks further
/// apart (a dedup reference to bytes stored far away) go to the batched path.
const STREAM_MAX_GAP: u64 = 1 << 20;

impl File {
    /// Fetches and decodes what it can of `leads` with one streamed request
    /// ([`StreamDecoder`]), and returns the rest for the batched path. It streams only for a
    /// caller that decodes on its own thread
    /// ([`decode_on_this_thread`](super::decode_on_this_thread)) and only blocks of a
    /// one-pass read ([`File::read_once_into`]) covered whole, stored in a remote archive
    /// whose backend streams: of those, the run of the first one's archive with the most
    /// stored bytes, without overlaps or gaps over [`STREAM_MAX_GAP`].
    pub(super) fn fetch_streamed<'a, 'b>(
        &self,
        stream: SnapshotStream,
        leads: Vec<Fetch<'a, 'b>>,
    ) -> Result<Vec<Fetch<'a, 'b>>> {
        if leads.is_empty() || !super::pool::decodes_on_caller() {
            return Ok(leads);
        }
        let src = leads
            .iter()
            .find(|f| self.may_stream(f))
            .map(|f| f.entry.source);
        let (mut mine, mut rest): (Vec<_>, Vec<_>) = leads
            .into_iter()
            .partition(|f| Some(f.entry.source) == src && self.may_stream(f));
        let Some(src) = src else {
            return Ok(rest);
        };
        for f in &mine {
            self.stored_source(stream, f.block_no, &f.entry)?;
        }
        mine.sort_by_key(|f| f.entry.stored_offset);
        let ranges: Vec<(u64, u64)> = mine
            .iter()
            .map(|f| {
                let e = &f.entry;
                (e.stored_offset, e.stored_offset + e.stored_len as u64)
            })
            .collect();
        let (lo, hi) = densest_run(&ranges);
        rest.extend(mine.drain(hi..));
        rest.extend(mine.drain(..lo));
        let ranges = ranges[lo..hi].to_vec();
        let (start, end) = (ranges[0].0, ranges[ranges.len() - 1].1);
        let longest = ranges.iter().map(|(s, e)| e - s).max().unwrap_or(0) as usize;
        let mut sink = StreamDecoder {
            file: self,
            stream,
            verify: self.read_verify(),
            plain: mine
                .iter()
                .map(|f| self.stored_is_content(&f.entry))
                .collect(),
            blocks: mine.into_iter().map(Some).collect(),
            ranges,
            next: 0,
            scratch: self.inner.bufs().take(longest),
            again: Vec::new(),
            failed: None,
        };
        let streamed = self.inner.archives[src as usize].read_streamed(start, end, &mut sink)?;
        let StreamDecoder {
            blocks,
            scratch,
            again,
            failed,
            ..
        } = sink;
        self.inner.bufs().give(scratch);
        if let Some(err) = failed {
            return Err(err);
        }
        // Not streamed (the backend does not), or blocks a response passed without
        // delivering: the batched path reads them.
        rest.extend(blocks.into_iter().flatten());
        if !streamed {
            return Ok(rest);
        }
        // Blocks whose first copy failed its check: fetched again, once.
        for f in again {
            let fresh = self.refetch_stored(&f.entry)?;
            if let Some((_, err)) = self.decode_fetch(stream, f, fresh)? {
                return Err(err);
            }
        }
        Ok(rest)
    }

    /// Whether `f` may be streamed: a one-pass read of a whole block of a remote archive.
    fn may_stream(&self, f: &Fetch<'_, '_>) -> bool {
        let e = &f.entry;
        !f.keep
            && e.stored_len > 0
            && matches!(&f.dst, Some((0, d)) if d.len() == e.logical_len as usize)
            && self
                .inner
                .archives
                .get(e.source as usize)
                .is_some_and(|b| b.is_remote())
    }
}

/// The run `lo..hi` of `ranges` (sorted by start, not empty) with the most bytes in which
/// each range starts at or after the end of the one before, at most [`STREAM_MAX_GAP`]
/// past it.
fn densest_run(ranges: &[(u64, u64)]) -> (usize, usize) {
    let (mut best, mut best_bytes) = ((0, 0), 0);
    let (mut lo, mut bytes) = (0, 0);
    for (i, &(s, e)) in ranges.iter().enumerate() {
        if i > 0 {
            let prev_end = ranges[i - 1].1;
            if s < prev_end || s - prev_end > STREAM_MAX_GAP {
                (lo, bytes) = (i, 0);
            }
        }
        bytes += e - s;
        if bytes > best_bytes {
            (best, best_bytes) = ((lo, i + 1), bytes);
        }
    }
    best
}

/// The sink of a streamed one-pass read: blocks sorted by stored offset, disjoint, each
/// decoded into its piece once its last byte has arrived.
struct StreamDecoder<'f, 'a, 'b> {
    file: &'f File,
    stream: SnapshotStream,
    verify: Verify,
    /// Whether each block's stored bytes are its content (read straight into its piece).
    plain: Vec<bool>,
    /// The blocks not yet complete (`None` once decoded or given up).
    blocks: Vec<Option<Fetch<'a, 'b>>>,
    /// Each block's stored range in the archive.
    ranges: Vec<(u64, u64)>,
    /// The block the next bytes belong to (or a gap before it).
    next: usize,
    /// The stored bytes of the block being received (not used for plain blocks).
    scratch: Vec<u8>,
    /// Blocks whose check failed in a way that fetching them again may cure.
    again: Vec<Fetch<'a, 'b>>,
    /// The first error that fetching again cannot cure; later blocks are not decoded.
    failed: Option<Error>,
}

impl StreamDecoder<'_, '_, '_> {
    /// Where the bytes at `pos` go: the rest of the next block's buffer, or `None` in a gap.
    fn target(&mut self, pos: u64) -> Option<&mut [u8]> {
        let (s, e) = *self.ranges.get(self.next)?;
        if pos < s || pos >= e {
            return None;
        }
        let at = (pos - s) as usize;
        if self.plain[self.next] {
            match self.blocks[self.next].as_mut()?.dst.as_mut() {
                Some((_, d)) => d.get_mut(at..),
                None => None,
            }
        } else {
            self.scratch.get_mut(at..(e - s) as usize)
        }
    }

    /// The next block's bytes are all in: decode it into its piece and hand it to waiters.
    fn complete(&mut self) {
        let i = self.next;
        self.next += 1;
        let Some(mut f) = self.blocks[i].take() else {
            return;
        };
        if self.failed.is_some() {
            return;
        }
        let len = (self.ranges[i].1 - self.ranges[i].0) as usize;
        let (file, stream, verify) = (self.file, self.stream, self.verify);
        let checked = match f.dst.as_mut() {
            Some((_, d)) if self.plain[i] => {
                file.check_plain(stream, f.block_no, &f.entry, d, verify)
            }
            Some((_, d)) => file.decode_stored(
                stream,
                f.block_no,
                &f.entry,
                &self.scratch[..len],
                d,
                verify,
            ),
            None => Ok(()),
        };
        match checked {
            Ok(()) => {
                // Decoded into the piece only: waiters (if any) get a copy of it.
                let Fetch { lead, dst, .. } = f;
                lead.finish(|| {
                    Held::Plain(Arc::new(dst.map(|(_, d)| d.to_vec()).unwrap_or_default()))
                });
            }
            Err(err) if file.may_refetch(&f.entry, &err) => self.again.push(f),
            Err(err) => self.failed = Some(err),
        }
    }
}

impl RangeSink for StreamDecoder<'_, '_, '_> {
    fn direct(&mut self, pos: u64) -> Option<&mut [u8]> {
        self.target(pos)
    }

    fn wrote(&mut self, pos: u64, n: usize) {
        if self
            .ranges
            .get(self.next)
            .is_some_and(|r| pos + n as u64 == r.1)
        {
            self.complete();
        }
    }

    /// Bytes read through a scratch buffer: a gap, possibly running on into blocks.
    fn put(&mut self, mut pos: u64, mut data: &[u8]) {
        while let Some(&(s, e)) = self.ranges.get(self.next) {
            if pos >= e {
                // Passed without its bytes (an in-order body never does this): the block is
                // left for the batched path.
                self.next += 1;
                continue;
            }
            let end = pos + data.len() as u64;
            if end <= s {
                return;
            }
            if pos < s {
                data = &data[(s - pos) as usize..];
                pos = s;
            }
            let take = (e - pos).min(data.len() as u64) as usize;
            if let Some(t) = self.target(pos) {
                t[..take].copy_from_slice(&data[..take]);
            }
            pos += take as u64;
            data = &data[take..];
            if pos == e {
                self.complete();
            }
            if data.is_empty() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn densest_run_breaks_at_overlaps_and_wide_gaps() {
        let g = STREAM_MAX_GAP;
        // Contiguous, then a gap of exactly STREAM_MAX_GAP (read through): one run.
        assert_eq!(densest_run(&[(0, 10), (10, 20), (20 + g, 30 + g)]), (0, 3));
        // A wider gap splits; the run with more bytes wins, even if later.
        let r = [(0, 10), (11 + g, 100 + g), (100 + g, 200 + g)];
        assert_eq!(densest_run(&r), (1, 3));
        // An overlap (a hostile index: two entries sharing bytes) starts a new run.
        assert_eq!(densest_run(&[(0, 50), (40, 60), (60, 70)]), (0, 1));
        assert_eq!(densest_run(&[(0, 10), (5, 60), (60, 70)]), (1, 3));
        assert_eq!(densest_run(&[(7, 9)]), (0, 1));
    }
}
