//! The read path: plan, fetch in one batch, decode in parallel.
//!
//! A read first *plans*: it loads every index page it spans (cached pages from the cache,
//! the others in one batched backend call) and splits the caller's buffer into one piece per
//! block. Pieces are served from the block cache when they can be; for the rest the reader
//! either *leads* the block (nobody else is fetching it) or *waits* for whoever does (see
//! [`flight`](super::flight)). Then the led blocks' stored bytes are *fetched* with one
//! [`read_batch`](crate::store::StorageBackend::read_batch) per archive of the chain, which a
//! remote backend coalesces and issues in parallel, and *decoded* in parallel on the
//! crate's decode pool, straight into the caller's buffer when a block is covered whole.
//! An 8 MiB read of a cold remote archive thus costs two round trips (index page, blocks)
//! instead of one per block.
//!
//! Read-ahead runs the same machinery on the IO pool, for blocks only (into the cache); it is
//! driven by each reader's own sequential detector (see [`StreamReader`](super::StreamReader)).
//! For a remote archive it only fetches: blocks are cached as their stored bytes
//! ([`Held::Stored`]) and decoded by the reader that needs them, straight into its buffer.
//! Batches with little content are decoded on the calling thread, larger ones on the pool.
//! A one-pass read by a caller that decodes on its own thread streams the remote blocks it
//! covers whole instead of fetching them into buffers first ([`streamed`](super::streamed)).

use super::decode::Verify;
use super::file::{BlockKey, File, Held};
use super::flight::{Claim, Lead, Slot};
use super::index::PAGE_GROUP;
use super::pool::pools;
use super::SnapshotStream;
use crate::error::{Error, Result};
use crate::format::index::StreamRecord;
use crate::format::BlockEntry;
use crate::store::{GridCells, ReadRequest, REMOTE_ALIGN};
use rayon::prelude::*;
use std::sync::Arc;

/// Most stored bytes one batch holds in memory: a larger read is fetched in several batches.
const MAX_BATCH_STORED: u64 = 32 << 20;

/// Least content a batch of blocks must hold to be decoded on the decode pool rather than on
/// the calling thread. Handing two 64 KiB blocks to the pool saves less than it costs (waking
/// its threads, waiting for them on a busy machine), and keeping small reads on the caller
/// lets N reading threads use N cores instead of all queueing for one pool.
const PARALLEL_DECODE_MIN: u64 = 256 << 10;

/// Whether decoding blocks `entries` is worth spreading over the decode pool: several
/// blocks, enough content, a caller that did not ask to decode itself
/// ([`decode_on_this_thread`](super::pool::decode_on_this_thread)), and a pool of more than
/// one thread (a pool of one, as in a DataLoader worker process, cannot decode in parallel:
/// handing it the batch only adds two wake-ups).
fn worth_parallel<'e>(entries: impl Iterator<Item = &'e BlockEntry>) -> bool {
    let mut n = 0;
    let mut total = 0u64;
    for e in entries {
        n += 1;
        total += u64::from(e.logical_len);
    }
    n > 1
        && total >= PARALLEL_DECODE_MIN
        && !super::pool::decodes_on_caller()
        && pools().decode_threads() > 1
}

/// Bytes of stored blocks read, then CRC-checked, at a time on the direct path: small
/// enough to stay in a core's L2 cache between the read and the check.
const CHECK_PIECE: usize = 256 << 10;

pub(super) type BlockLead<'a> = Lead<'a, BlockKey, Held>;

/// The cache and flight key of the block `e` names: the archive and offset of its stored
/// bytes, and the first 8 bytes of its content hash. Entries sharing a stored copy (dedup)
/// share a key; an entry that points at another block's bytes (a wrong reference) does not,
/// so it is decoded and refused by its own check, never served that block from the cache.
pub(super) fn block_key(e: &BlockEntry) -> BlockKey {
    let h = u64::from_le_bytes(e.hash[..8].try_into().expect("8 bytes"));
    (e.source, e.stored_offset, h)
}

/// A piece waiting for a block someone else fetches.
type Waiting<'b> = (Piece<'b>, Arc<Slot<Held>>);

/// A piece whose block is held as stored bytes ([`Held::Stored`]): decoded by this reader.
type Staged<'b> = (Piece<'b>, Arc<Vec<u8>>);

/// One block's share of a read.
struct Piece<'b> {
    entry: BlockEntry,
    block_no: u64,
    offset_in_block: usize,
    dst: &'b mut [u8],
}

/// A block this reader leads: fetch it, decode it into `dst` (if any) and the cache.
pub(super) struct Fetch<'a, 'b> {
    pub(super) entry: BlockEntry,
    pub(super) block_no: u64,
    /// The caller's piece; `None` for read-ahead (cache only).
    pub(super) dst: Option<(usize, &'b mut [u8])>,
    /// Whether a remote block decoded whole into `dst` is kept in the block cache (as its
    /// stored bytes) for later reads; not for a one-pass read ([`File::read_once_into`]).
    pub(super) keep: bool,
    pub(super) lead: BlockLead<'a>,
}

impl File {
    /// Fills `buf` with the bytes of `rec`'s stream at `offset` (the range lies inside it).
    /// With `keep` false (a one-pass read), remote blocks decoded whole into `buf` are not
    /// kept in the block cache.
    pub(super) fn read_range(
        &self,
        rec: &StreamRecord,
        offset: u64,
        buf: &mut [u8],
        keep: bool,
    ) -> Result<()> {
        let stream = rec.stream;
        let end = offset + buf.len() as u64;
        let first = Self::page_of(rec, offset);
        let last = Self::page_of(rec, end - 1);
        let pages = self.pages(rec, first..last + 1)?;
        let mut pieces = Vec::new();
        let mut rest = buf;
        let mut pos = offset;
        for (k, page) in pages.iter().enumerate() {
            let page_no = first + k;
            let mut idx = if k == 0 { Self::entry_of(page, pos) } else { 0 };
            while pos < end {
                let Some(e) = page.entries.get(idx) else {
                    break;
                };
                if !(e.logical_offset <= pos && pos < e.logical_end()) {
                    return Err(Error::corrupt(
                        format!("index page {page_no} of {stream} stream"),
                        format!("no block covers logical offset {pos}"),
                    ));
                }
                let take = (e.logical_end().min(end) - pos) as usize;
                let (head, tail) = std::mem::take(&mut rest).split_at_mut(take);
                pieces.push(Piece {
                    entry: *e,
                    block_no: rec.pages[page_no].first_block + idx as u64,
                    offset_in_block: (pos - e.logical_offset) as usize,
                    dst: head,
                });
                rest = tail;
                pos += take as u64;
                idx += 1;
            }
        }
        if pos < end {
            return Err(Error::corrupt(
                format!("index of {stream} stream"),
                format!("no block covers logical offset {pos}"),
            ));
        }
        // Fetch in batches of bounded stored size, so a huge read holds little at once.
        let mut batch = Vec::new();
        let mut stored = 0u64;
        for p in pieces {
            let s = if p.entry.is_zero() {
                0
            } else {
                p.entry.stored_len as u64
            };
            if !batch.is_empty() && stored + s > MAX_BATCH_STORED {
                self.read_pieces(stream, std::mem::take(&mut batch), keep)?;
                stored = 0;
            }
            stored += s;
            batch.push(p);
        }
        self.read_pieces(stream, batch, keep)
    }

    /// Serves `pieces`: zeros and cache hits at once, the rest led (fetched in one batch and
    /// decoded) or waited for.
    fn read_pieces(
        &self,
        stream: SnapshotStream,
        pieces: Vec<Piece<'_>>,
        keep: bool,
    ) -> Result<()> {
        let mut leads: Vec<Fetch<'_, '_>> = Vec::new();
        let mut waits: Vec<Waiting<'_>> = Vec::new();
        let mut staged: Vec<Staged<'_>> = Vec::new();
        for p in pieces {
            let e = &p.entry;
            if e.is_zero() {
                p.dst.fill(0);
                continue;
            }
            let key = block_key(e);
            if let Some(h) = self.inner.blocks.get(&key) {
                serve(h, p, &mut staged);
                continue;
            }
            match self.inner.block_flights.claim(key) {
                Claim::Lead(lead) => {
                    // Someone may have finished it between the cache lookup and the claim.
                    if let Some(h) = self.inner.blocks.get(&key) {
                        lead.finish(|| h.clone());
                        serve(h, p, &mut staged);
                        continue;
                    }
                    leads.push(Fetch {
                        entry: p.entry,
                        block_no: p.block_no,
                        dst: Some((p.offset_in_block, p.dst)),
                        keep,
                        lead,
                    });
                }
                Claim::Wait(slot) => waits.push((p, slot)),
            }
        }
        // Finish every lead before waiting for anyone else's (no waiting while leading).
        self.fetch_and_decode(stream, leads)?;
        for (p, slot) in waits {
            match slot.wait() {
                Some(h) => serve(h, p, &mut staged),
                None => {
                    // The leader failed: try on our own (and report our own error).
                    let b = self.load_block(stream, p.block_no, &p.entry)?;
                    copy_piece(&b, p.offset_in_block, p.dst);
                }
            }
        }
        self.decode_staged(stream, staged)
    }

    /// Decodes the stored bytes of `staged` into their pieces, in parallel when there are
    /// several. A piece that covers its block whole gets it decoded in place; a partial one
    /// through a buffer that then replaces the stored bytes in the cache, so that further
    /// small reads of the block copy instead of decoding again. Stored bytes that fail their
    /// check leave the cache; those of a remote archive are fetched again at once, on this
    /// thread ([`may_refetch`](Self::may_refetch)).
    fn decode_staged<'b>(&self, stream: SnapshotStream, staged: Vec<Staged<'b>>) -> Result<()> {
        let verify = self.read_verify();
        // A piece whose stored bytes fail a check that fetching them again may cure comes
        // back, and is fetched again below, on this thread: no network I/O on the pool.
        let one = |(mut p, raw): Staged<'b>| -> Result<Option<Piece<'b>>> {
            let e = p.entry;
            match self.decode_piece(stream, &mut p, &raw, verify) {
                Ok(()) => Ok(None),
                Err(err) => {
                    self.inner.blocks.remove(&block_key(&e));
                    if self.may_refetch(&e, &err) {
                        Ok(Some(p))
                    } else {
                        Err(err)
                    }
                }
            }
        };
        let again: Vec<Option<Piece<'b>>> = if worth_parallel(staged.iter().map(|(p, _)| &p.entry))
        {
            pools().decode(|| staged.into_par_iter().map(one).collect::<Result<_>>())?
        } else {
            staged.into_iter().map(one).collect::<Result<_>>()?
        };
        for mut p in again.into_iter().flatten() {
            let fresh = self.refetch_stored(&p.entry)?;
            let r = self.decode_piece(stream, &mut p, &fresh, verify);
            self.inner.bufs().give(fresh);
            r?;
        }
        Ok(())
    }

    /// Decodes the stored bytes `raw` of the piece's block into the piece: in place when it
    /// covers the block whole, else through a buffer that is then cached decoded.
    fn decode_piece(
        &self,
        stream: SnapshotStream,
        p: &mut Piece<'_>,
        raw: &[u8],
        verify: Verify,
    ) -> Result<()> {
        let e = &p.entry;
        if p.offset_in_block == 0 && p.dst.len() == e.logical_len as usize {
            return self.decode_stored(stream, p.block_no, e, raw, p.dst, verify);
        }
        let v = self.decode_stored_vec(stream, p.block_no, e, raw, verify)?;
        copy_piece(&v, p.offset_in_block, p.dst);
        self.cache_block(block_key(e), Held::Plain(Arc::new(v)));
        Ok(())
    }

    /// Returns the decoded block, from the cache or read and decoded on its own (and cached).
    fn load_block(
        &self,
        stream: SnapshotStream,
        block_no: u64,
        e: &BlockEntry,
    ) -> Result<Arc<Vec<u8>>> {
        let key = block_key(e);
        let v = match self.inner.blocks.get(&key) {
            Some(Held::Plain(b)) => return Ok(b),
            Some(Held::Stored(raw)) => {
                match self.decode_stored_vec(stream, block_no, e, &raw, self.read_verify()) {
                    Ok(v) => v,
                    Err(err) => {
                        self.inner.blocks.remove(&key);
                        if !self.may_refetch(e, &err) {
                            return Err(err);
                        }
                        let mut v = vec![0u8; e.logical_len as usize];
                        self.decode_refetched(stream, block_no, e, &mut v, self.read_verify())?;
                        v
                    }
                }
            }
            None => {
                let mut v = vec![0u8; e.logical_len as usize];
                self.decode_block(stream, block_no, e, &mut v, self.read_verify())?;
                v
            }
        };
        let v = Arc::new(v);
        self.cache_block(key, Held::Plain(v.clone()));
        Ok(v)
    }

    /// The stored bytes of `blocks` (`(block number, entry)`, all non-zero): one
    /// `read_batch` per archive of the chain; an empty vector for a block of a mapped archive
    /// (decode it from the mapping).
    fn fetch_stored(
        &self,
        stream: SnapshotStream,
        blocks: &[(u64, BlockEntry)],
    ) -> Result<Vec<Vec<u8>>> {
        let mut stored = Vec::with_capacity(blocks.len());
        for (block_no, e) in blocks {
            let b = self.stored_source(stream, *block_no, e)?;
            stored.push(if b.as_slice().is_some() {
                Vec::new()
            } else {
                self.inner.bufs().take(e.stored_len as usize)
            });
        }
        let mut sources: Vec<u16> = blocks.iter().map(|(_, e)| e.source).collect();
        sources.sort_unstable();
        sources.dedup();
        for src in sources {
            let backend = &self.inner.archives[src as usize];
            if backend.as_slice().is_some() {
                continue;
            }
            let mut reqs: Vec<ReadRequest<'_>> = blocks
                .iter()
                .zip(stored.iter_mut())
                .filter(|((_, e), _)| e.source == src)
                .map(|((_, e), buf)| ReadRequest {
                    offset: e.stored_offset,
                    buf,
                })
                .collect();
            backend.read_batch(&mut reqs)?;
        }
        Ok(stored)
    }

    /// The stored bytes of `e` as fetched into `raw`, or from the mapping when `raw` is empty.
    fn stored_bytes<'r>(
        &'r self,
        stream: SnapshotStream,
        block_no: u64,
        e: &BlockEntry,
        raw: &'r [u8],
    ) -> Result<&'r [u8]> {
        if !raw.is_empty() || e.stored_len == 0 {
            return Ok(raw);
        }
        let s = e.stored_offset as usize;
        Ok(match self.stored_source(stream, block_no, e)?.as_slice() {
            Some(all) => &all[s..s + e.stored_len as usize],
            None => raw,
        })
    }

    /// Fetches the stored bytes of `leads` in one batch and decodes them, in parallel when
    /// there are several.
    fn fetch_and_decode<'a, 'b>(
        &self,
        stream: SnapshotStream,
        leads: Vec<Fetch<'a, 'b>>,
    ) -> Result<()> {
        let (direct, leads): (Vec<_>, Vec<_>) =
            leads.into_iter().partition(|f| self.reads_direct(f));
        self.fetch_direct(stream, direct)?;
        let leads = self.fetch_streamed(stream, leads)?;
        if leads.is_empty() {
            return Ok(());
        }
        let blocks: Vec<(u64, BlockEntry)> = leads.iter().map(|f| (f.block_no, f.entry)).collect();
        let stored = self.fetch_stored(stream, &blocks)?;
        let work: Vec<(Fetch<'a, 'b>, Vec<u8>)> = leads.into_iter().zip(stored).collect();
        let one = |(f, raw): (Fetch<'a, 'b>, Vec<u8>)| self.decode_fetch(stream, f, raw);
        let again: Vec<Option<(Fetch<'a, 'b>, Error)>> =
            if worth_parallel(work.iter().map(|(f, _)| &f.entry)) {
                pools().decode(|| work.into_par_iter().map(one).collect::<Result<_>>())?
            } else {
                work.into_iter().map(one).collect::<Result<_>>()?
            };
        // Blocks whose first copy failed its check: fetched again here, off the decode pool.
        // A second failure is the archive's own damage.
        for (f, _) in again.into_iter().flatten() {
            let fresh = self.refetch_stored(&f.entry)?;
            if let Some((_, err)) = self.decode_fetch(stream, f, fresh)? {
                return Err(err);
            }
        }
        Ok(())
    }

    /// Whether `f` is read straight into the caller's buffer: its piece covers the block
    /// whole, the block is stored raw and unencrypted (its stored bytes are its content), and
    /// it lives in a local, unmapped archive (an extra call there is one cheap `pread`).
    fn reads_direct(&self, f: &Fetch<'_, '_>) -> bool {
        let e = &f.entry;
        matches!(&f.dst, Some((0, d)) if d.len() == e.logical_len as usize)
            && self.stored_is_content(e)
            && self
                .inner
                .archives
                .get(e.source as usize)
                .is_some_and(|b| !b.is_remote() && b.as_slice().is_none())
    }

    /// Reads the blocks of `direct` (see [`reads_direct`](Self::reads_direct)) into their
    /// pieces with `read_batch` calls, no intermediate buffer and no copy, then checks them
    /// in place and hands them to waiters. CRC32-only checks run on the calling thread, a
    /// piece of about [`CHECK_PIECE`] bytes at a time right after it is read (so the check
    /// reads cached bytes, not memory); BLAKE3 checks run in parallel after one read of all.
    fn fetch_direct(&self, stream: SnapshotStream, mut direct: Vec<Fetch<'_, '_>>) -> Result<()> {
        if direct.is_empty() {
            return Ok(());
        }
        for f in &direct {
            self.stored_source(stream, f.block_no, &f.entry)?;
        }
        let verify = self.read_verify();
        let check = |f: Fetch<'_, '_>| -> Result<()> {
            let Some((_, dst)) = f.dst else {
                return Ok(());
            };
            self.check_plain(stream, f.block_no, &f.entry, dst, verify)?;
            f.lead.finish(|| Held::Plain(Arc::new(dst.to_vec())));
            Ok(())
        };
        // A CRC32 runs at tens of GB/s (PCLMULQDQ; ~50 GB/s on this project's AVX-512
        // test machine), faster than the copy that brought the bytes in: handing such checks
        // to the decode pool costs more (waking its threads, and waiting for them to be
        // scheduled on a busy machine) than it saves. Only BLAKE3 checks are spread over it.
        if direct.len() > 1 && direct.iter().any(|f| self.hashes_content(&f.entry, verify)) {
            self.read_direct(&mut direct)?;
            return pools().decode(|| direct.into_par_iter().try_for_each(check));
        }
        let len = |f: &Fetch<'_, '_>| f.dst.as_ref().map_or(0, |(_, b)| b.len());
        let mut rest = direct.into_iter().peekable();
        loop {
            let mut piece = Vec::new();
            let mut bytes = 0;
            while let Some(f) = rest.next_if(|f| piece.is_empty() || bytes + len(f) <= CHECK_PIECE)
            {
                bytes += len(&f);
                piece.push(f);
            }
            if piece.is_empty() {
                return Ok(());
            }
            self.read_direct(&mut piece)?;
            piece.into_iter().try_for_each(check)?;
        }
    }

    /// Reads the stored bytes of `direct` into their pieces, one `read_batch` per archive.
    fn read_direct(&self, direct: &mut [Fetch<'_, '_>]) -> Result<()> {
        let mut sources: Vec<u16> = direct.iter().map(|f| f.entry.source).collect();
        sources.sort_unstable();
        sources.dedup();
        for src in sources {
            let mut reqs: Vec<ReadRequest<'_>> = direct
                .iter_mut()
                .filter(|f| f.entry.source == src)
                .filter_map(|f| {
                    let offset = f.entry.stored_offset;
                    f.dst.as_mut().map(|(_, buf)| ReadRequest {
                        offset,
                        buf: &mut buf[..],
                    })
                })
                .collect();
            self.inner.archives[src as usize].read_batch(&mut reqs)?;
        }
        Ok(())
    }

    /// Checks every block of `entries` (consecutive blocks of `stream`, the first numbered
    /// `first_block`) completely, CRC32 and BLAKE3, without caching: their stored
    /// bytes are fetched in batches and decoded in parallel. Used by verification.
    pub fn verify_blocks(
        &self,
        stream: SnapshotStream,
        first_block: u64,
        entries: &[BlockEntry],
    ) -> Result<()> {
        let blocks: Vec<(u64, BlockEntry)> = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.is_zero())
            .map(|(i, e)| (first_block + i as u64, *e))
            .collect();
        let mut start = 0;
        while start < blocks.len() {
            let mut end = start;
            let mut bytes = 0u64;
            while end < blocks.len()
                && (end == start || bytes + blocks[end].1.stored_len as u64 <= MAX_BATCH_STORED)
            {
                bytes += blocks[end].1.stored_len as u64;
                end += 1;
            }
            let batch = &blocks[start..end];
            let stored = self.fetch_stored(stream, batch)?;
            // Blocks that fail a check fetching them again may cure come back by index, and
            // are fetched again on this thread (no network I/O on the decode pool).
            let again = pools().decode(|| {
                batch
                    .par_iter()
                    .zip(stored.par_iter())
                    .enumerate()
                    .map_init(Vec::new, |buf, (i, ((block_no, e), raw))| {
                        buf.resize(e.logical_len as usize, 0);
                        let s = self.stored_bytes(stream, *block_no, e, raw)?;
                        match self.decode_stored(stream, *block_no, e, s, buf, Verify::Full) {
                            Ok(()) => Ok(None),
                            Err(err) if self.may_refetch(e, &err) => Ok(Some(i)),
                            Err(err) => Err(err),
                        }
                    })
                    .collect::<Result<Vec<Option<usize>>>>()
            })?;
            for i in again.into_iter().flatten() {
                let (block_no, e) = &batch[i];
                let mut buf = vec![0u8; e.logical_len as usize];
                self.decode_refetched(stream, *block_no, e, &mut buf, Verify::Full)?;
            }
            stored.into_iter().for_each(|b| self.inner.bufs().give(b));
            start = end;
        }
        Ok(())
    }

    /// Decodes one fetched block into its piece and/or the cache, and hands it to waiters.
    /// `raw` is what [`fetch_stored`](Self::fetch_stored) fetched for it (empty when mapped).
    /// Blocks of a remote archive are cached as their stored bytes ([`Held::Stored`]), and
    /// read-ahead does not decode them at all: the reader that needs them decodes them
    /// straight into its buffer. A remote block whose stored bytes fail a check that fetching
    /// them again may cure ([`may_refetch`](Self::may_refetch)) is handed back with the
    /// error, for the caller to fetch again off the decode pool.
    pub(super) fn decode_fetch<'a, 'b>(
        &self,
        stream: SnapshotStream,
        mut f: Fetch<'a, 'b>,
        raw: Vec<u8>,
    ) -> Result<Option<(Fetch<'a, 'b>, Error)>> {
        match self.decode_fetched(
            stream,
            f.block_no,
            &f.entry,
            reborrow(&mut f.dst),
            raw,
            f.keep,
        ) {
            Ok(Some(h)) => {
                f.lead.finish(|| h);
                Ok(None)
            }
            Ok(None) => {
                // Decoded into the piece only: waiters (if any) get a copy of it.
                let Fetch { lead, dst, .. } = f;
                lead.finish(|| {
                    Held::Plain(Arc::new(dst.map(|(_, d)| d.to_vec()).unwrap_or_default()))
                });
                Ok(None)
            }
            Err(err) if self.may_refetch(&f.entry, &err) => Ok(Some((f, err))),
            Err(err) => Err(err),
        }
    }

    /// The work of [`decode_fetch`](Self::decode_fetch) for one copy `raw` of the stored
    /// bytes: decodes into the piece `dst` and/or the cache, and returns what waiters get:
    /// `None` when the block went only into `dst` (which holds it whole), so waiters get a
    /// copy of it, made only if there are any. `keep` is [`Fetch::keep`].
    fn decode_fetched(
        &self,
        stream: SnapshotStream,
        block_no: u64,
        e: &BlockEntry,
        dst: Option<(usize, &mut [u8])>,
        raw: Vec<u8>,
        keep: bool,
    ) -> Result<Option<Held>> {
        let verify = self.read_verify();
        let remote = !raw.is_empty() && self.inner.archives[e.source as usize].is_remote();
        match dst {
            Some((0, dst)) if dst.len() == e.logical_len as usize => {
                // Covered whole: decode in place. Keep the stored bytes for the cache and
                // waiters when the next fetch would cost a round trip (unless this is a
                // one-pass read); else waiters get a copy of `dst`, made only if any wait.
                let stored = self.stored_bytes(stream, block_no, e, &raw)?;
                self.decode_stored(stream, block_no, e, stored, dst, verify)?;
                if remote && keep {
                    let h = if self.stored_is_content(e) {
                        Held::Plain(Arc::new(raw))
                    } else {
                        Held::Stored(Arc::new(raw))
                    };
                    self.cache_block(block_key(e), h.clone());
                    Ok(Some(h))
                } else {
                    self.inner.bufs().give(raw);
                    Ok(None)
                }
            }
            None if remote && !self.stored_is_content(e) => {
                let h = Held::Stored(Arc::new(raw));
                self.cache_block(block_key(e), h.clone());
                Ok(Some(h))
            }
            dst => {
                let v = if !raw.is_empty() && self.stored_is_content(e) {
                    // Stored raw (incompressible) and not encrypted: the fetched bytes are
                    // the content; check them and keep the buffer instead of copying it.
                    self.check_plain(stream, block_no, e, &raw, verify)?;
                    raw
                } else {
                    let stored = self.stored_bytes(stream, block_no, e, &raw)?;
                    let v = self.decode_stored_vec(stream, block_no, e, stored, verify)?;
                    self.inner.bufs().give(raw);
                    v
                };
                if let Some((off, dst)) = dst {
                    copy_piece(&v, off, dst);
                }
                let h = Held::Plain(Arc::new(v));
                self.cache_block(block_key(e), h.clone());
                Ok(Some(h))
            }
        }
    }

    /// Caches `h` under `key`; the buffers of what that evicts go back to the buffer pool
    /// once nobody else holds them.
    pub(super) fn cache_block(&self, key: BlockKey, h: Held) {
        self.inner.blocks.insert_evicting(key, h, |old| {
            let (Held::Plain(b) | Held::Stored(b)) = old;
            if let Ok(v) = Arc::try_unwrap(b) {
                self.inner.bufs().give(v);
            }
        });
    }

    /// Decodes the non-zero, uncached blocks overlapping `[from, to)` of `stream` into the
    /// cache, skipping blocks someone is already fetching. Runs on the IO pool; errors are
    /// left for the foreground read to report.
    fn prefetch(&self, stream: SnapshotStream, from: u64, to: u64) {
        let Ok(rec) = self.stream_record(stream) else {
            return;
        };
        let to = to.min(rec.logical_size);
        if from >= to {
            return;
        }
        let first = Self::page_of(rec, from);
        let last = Self::page_of(rec, to - 1);
        let Ok(pages) = self.pages(rec, first..last + 1) else {
            return;
        };
        let mut leads = Vec::new();
        for (k, page) in pages.iter().enumerate() {
            let start = if k == 0 {
                Self::entry_of(page, from)
            } else {
                0
            };
            for (i, e) in page.entries.iter().enumerate().skip(start) {
                if e.logical_offset >= to {
                    break;
                }
                let key = block_key(e);
                if e.is_zero() || self.inner.blocks.contains(&key) {
                    continue;
                }
                if let Some(lead) = self.inner.block_flights.try_lead(key) {
                    leads.push(Fetch {
                        entry: *e,
                        block_no: rec.pages[first + k].first_block + i as u64,
                        dst: None,
                        keep: true,
                        lead,
                    });
                }
            }
        }
        let _ = self.fetch_and_decode(stream, leads);
    }

    /// Starts reading `[from, to)` of `stream` ahead in the background. See
    /// [`File::wait_for_read_ahead`]. A remote archive's range is planned on the IO pool (it
    /// may need index pages) and fetched as several requests in flight
    /// ([`remote_parts`](Self::remote_parts)).
    pub(super) fn spawn_read_ahead(&self, stream: SnapshotStream, from: u64, to: u64) {
        if to <= from {
            return;
        }
        let guard = self.read_ahead_started();
        if !self.is_remote() {
            pools().spawn_io(move || guard.file().prefetch(stream, from, to));
            return;
        }
        pools().spawn_io(move || {
            let file = guard.file();
            let mut parts = file.remote_parts(stream, from, to).into_iter();
            let first = parts.next();
            for (a, b) in parts {
                // Counted as started before this job's own guard drops.
                let g = file.read_ahead_started();
                pools().spawn_io(move || g.file().prefetch(stream, a, b));
            }
            if let Some((a, b)) = first {
                file.prefetch(stream, a, b);
            }
        });
    }

    /// Cuts the remote read-ahead range `[from, to)` of `stream` into parts, one request
    /// each: a new part starts where a block's stored bytes lie in a later
    /// [`REMOTE_ALIGN`] cell of its archive than the part's earlier blocks. The end is moved
    /// on to the next cut (by at most one cell of stored bytes), so the next read-ahead
    /// starts on a grid line too. Every request then covers one part of the uploaded object,
    /// instead of straddling two. Blocks stored earlier (dedup references) join the part
    /// they are read in. When the index pages cannot be read, the range is one part and the
    /// fetch reports.
    fn remote_parts(&self, stream: SnapshotStream, from: u64, to: u64) -> Vec<(u64, u64)> {
        let Ok(rec) = self.stream_record(stream) else {
            return Vec::new();
        };
        let to = to.min(rec.logical_size);
        if from >= to {
            return Vec::new();
        }
        let first = Self::page_of(rec, from);
        // One page more than the range needs, to find where its last cell ends; and when one
        // of those is not cached, the next group too: the packer writes pages in groups
        // (docs/FORMAT.md), so one request brings many, where a page at a time would cost a
        // request each.
        let n = rec.pages.len();
        let need = (Self::page_of(rec, to - 1) + 2).min(n);
        let sid = rec.stream.id();
        let cached = (first..need).all(|p| self.inner.pages.contains(&(sid, p as u32)));
        let load = if cached {
            need
        } else {
            (need + PAGE_GROUP).min(n)
        };
        let Ok(pages) = self.pages(rec, first..load) else {
            return vec![(from, to)];
        };
        let mut parts = Vec::new();
        let mut start = from;
        let mut cells = GridCells::default();
        let mut beyond = 0u64;
        let mut end = to;
        for (k, page) in pages.iter().enumerate() {
            let skip = if k == 0 {
                Self::entry_of(page, from)
            } else {
                0
            };
            for e in page.entries.iter().skip(skip) {
                end = e.logical_end();
                if e.is_zero() {
                    continue;
                }
                let at = e.logical_offset.max(start);
                let cut = cells.advances(e.source, e.stored_offset);
                if at >= to && (cut || beyond >= REMOTE_ALIGN) {
                    parts.push((start, at));
                    return parts;
                }
                if at >= to {
                    beyond += u64::from(e.stored_len);
                }
                if cut {
                    if at > start {
                        parts.push((start, at));
                        start = at;
                    }
                    cells.restart(e.source, e.stored_offset);
                }
            }
        }
        parts.push((start, end.max(to)));
        parts
    }
}

/// Serves `p` from a held block: a copy of its content, or (stored bytes) a place in
/// `staged` to be decoded with the rest of the read.
fn serve<'b>(h: Held, p: Piece<'b>, staged: &mut Vec<Staged<'b>>) {
    match h {
        Held::Plain(b) => copy_piece(&b, p.offset_in_block, p.dst),
        Held::Stored(raw) => staged.push((p, raw)),
    }
}

/// A fetch's piece, borrowed again for one more try at decoding into it.
fn reborrow<'s>(d: &'s mut Option<(usize, &mut [u8])>) -> Option<(usize, &'s mut [u8])> {
    d.as_mut().map(|(o, b)| (*o, &mut **b))
}

fn copy_piece(block: &[u8], off: usize, dst: &mut [u8]) {
    dst.copy_from_slice(&block[off..off + dst.len()]);
}
