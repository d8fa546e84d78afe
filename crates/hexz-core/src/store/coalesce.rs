//! Turning a batch of reads into few, large, parallel range requests.
//!
//! A read of a few MiB touches dozens of blocks and index pages. Over a network each request
//! costs a round trip, so [`plan`] merges neighbouring ranges into spans (reading small gaps
//! through: a few hundred KiB of waste is cheaper than another round trip), caps each span so
//! that one slow request does not serialise a big read, and [`run`] fetches the spans in
//! parallel on a few scoped threads of the calling thread. Those threads live only for the
//! batch: there is no pool to inherit across `fork()` and nothing runs on the decode pool.
//!
//! Fetched bytes go straight into the callers' buffers ([`Span::scatter`]): nothing is
//! buffered per span, whatever its size.

use crate::error::{Error, Result};
use crate::store::RangeSink;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Tuning of [`plan`] and [`run`].
#[derive(Debug, Clone, Copy)]
pub struct CoalesceConfig {
    /// Largest gap between two ranges that is read through to merge them.
    pub max_gap: u64,
    /// The grid requests are aligned to: a span holds the pieces that start in one cell of
    /// this many bytes (a longer request is cut at the grid lines).
    pub max_span: u64,
    /// Most requests in flight at once for one batch.
    pub parallel: usize,
}

impl Default for CoalesceConfig {
    fn default() -> Self {
        CoalesceConfig {
            max_gap: 1 << 20,
            max_span: crate::store::REMOTE_ALIGN,
            parallel: 6,
        }
    }
}

/// The open request's body is kept whole.
impl RangeSink for Vec<u8> {
    fn put(&mut self, pos: u64, data: &[u8]) {
        debug_assert_eq!(pos, self.len() as u64);
        self.extend_from_slice(data);
    }
}

/// A caller's buffer (or a part of one) and the archive offset of its first byte.
#[derive(Debug)]
pub(crate) struct Piece<'a> {
    pub offset: u64,
    pub buf: &'a mut [u8],
}

/// One request to make: the archive range `start..end` and the buffers it fills.
#[derive(Debug)]
pub(crate) struct Span<'a> {
    pub start: u64,
    pub end: u64,
    /// Sorted by offset; they may overlap, and may leave gaps in the span.
    pieces: Vec<Piece<'a>>,
    /// Pieces before this index are completely behind the scatter position.
    cursor: usize,
}

impl<'a> Span<'a> {
    /// Copies `data`, the span's bytes at archive offset `pos`, into every piece it overlaps.
    pub fn scatter(&mut self, pos: u64, data: &[u8]) {
        let end = pos + data.len() as u64;
        while self.cursor < self.pieces.len() && piece_end(&self.pieces[self.cursor]) <= pos {
            self.cursor += 1;
        }
        for p in &mut self.pieces[self.cursor..] {
            if p.offset >= end {
                break;
            }
            let pe = piece_end(p);
            if pe <= pos {
                continue;
            }
            let from = pos.max(p.offset);
            let to = end.min(pe);
            p.buf[(from - p.offset) as usize..(to - p.offset) as usize]
                .copy_from_slice(&data[(from - pos) as usize..(to - pos) as usize]);
        }
    }

    /// The part of a caller's buffer that takes the span's bytes from `pos` on, up to the
    /// end of that buffer or the start of the next one. `None` in a gap between buffers
    /// and where two buffers overlap (both need the bytes: [`Span::scatter`] copies them).
    pub fn direct(&mut self, pos: u64) -> Option<&mut [u8]> {
        while self.cursor < self.pieces.len() && piece_end(&self.pieces[self.cursor]) <= pos {
            self.cursor += 1;
        }
        let i = self.cursor;
        let p = self.pieces.get(i)?;
        let next = self.pieces.get(i + 1).map_or(u64::MAX, |n| n.offset);
        if p.offset > pos || next <= pos {
            return None;
        }
        let (from, to) = (pos - p.offset, piece_end(p).min(next) - p.offset);
        Some(&mut self.pieces[i].buf[from as usize..to as usize])
    }

    /// Number of caller ranges (or parts of ranges) this span fills.
    #[cfg(test)]
    pub fn pieces(&self) -> usize {
        self.pieces.len()
    }
}

impl RangeSink for Span<'_> {
    fn direct(&mut self, pos: u64) -> Option<&mut [u8]> {
        Span::direct(self, pos)
    }
    fn put(&mut self, pos: u64, data: &[u8]) {
        self.scatter(pos, data);
    }
}

fn piece_end(p: &Piece<'_>) -> u64 {
    p.offset + p.buf.len() as u64
}

/// Plans the requests of a batch: requests longer than `max_span` are cut at multiples of
/// `max_span`, and pieces are merged into spans by the `max_span`-aligned cell their first
/// byte lies in (neighbours at most `max_gap` apart merge; a span ends at most one piece past
/// its cell). So a long read goes out as requests aligned to a grid of `max_span` bytes,
/// [`REMOTE_ALIGN`](crate::store::REMOTE_ALIGN) by default: the part size of the uploaded
/// object, where S3 stores serve a range inside one part for less than one straddling two.
/// Spans come out in archive order; empty requests are dropped.
pub(crate) fn plan<'a>(
    pieces: impl IntoIterator<Item = Piece<'a>>,
    cfg: &CoalesceConfig,
) -> Vec<Span<'a>> {
    let max_span = cfg.max_span.max(1);
    let mut all: Vec<Piece<'a>> = Vec::new();
    for p in pieces {
        let mut off = p.offset;
        let mut rest = p.buf;
        if rest.len() as u64 <= max_span {
            // Short enough for one request: kept whole even where it crosses a grid line,
            // so a block is never fetched in two requests.
            if !rest.is_empty() {
                all.push(Piece {
                    offset: off,
                    buf: rest,
                });
            }
            continue;
        }
        while !rest.is_empty() {
            let to_line = max_span - off % max_span;
            let n = (rest.len() as u64).min(to_line) as usize;
            let (head, tail) = rest.split_at_mut(n);
            all.push(Piece {
                offset: off,
                buf: head,
            });
            off += n as u64;
            rest = tail;
        }
    }
    all.sort_by_key(|p| p.offset);
    let mut spans: Vec<Span<'a>> = Vec::new();
    for p in all {
        let pe = piece_end(&p);
        if let Some(s) = spans.last_mut() {
            if p.offset / max_span == s.start / max_span
                && p.offset <= s.end.saturating_add(cfg.max_gap)
            {
                s.end = s.end.max(pe);
                s.pieces.push(p);
                continue;
            }
        }
        spans.push(Span {
            start: p.offset,
            end: pe,
            pieces: vec![p],
            cursor: 0,
        });
    }
    spans
}

/// Fetches every span with `fetch`, up to `parallel` at once (the calling thread is one of
/// the workers; a single span runs on it alone). Stops starting new spans after the first
/// error, which is returned.
pub(crate) fn run<'a>(
    spans: Vec<Span<'a>>,
    parallel: usize,
    fetch: &(dyn Fn(&mut Span<'a>) -> Result<()> + Sync),
) -> Result<()> {
    let workers = parallel.max(1).min(spans.len());
    if workers <= 1 {
        for mut s in spans {
            fetch(&mut s)?;
        }
        return Ok(());
    }
    let queue = Mutex::new(spans.into_iter());
    let failed = AtomicBool::new(false);
    let first_err: Mutex<Option<Error>> = Mutex::new(None);
    let work = || loop {
        if failed.load(Ordering::Relaxed) {
            return;
        }
        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
        let Some(mut span) = next else { return };
        if let Err(e) = fetch(&mut span) {
            failed.store(true, Ordering::Relaxed);
            first_err
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(e);
            return;
        }
    };
    std::thread::scope(|s| {
        for _ in 1..workers {
            s.spawn(work);
        }
        work();
    });
    match first_err.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The pieces of a batch of requests.
#[cfg(test)]
fn pieces<'a, 'b: 'a>(reqs: &'a mut [crate::store::ReadRequest<'b>]) -> Vec<Piece<'a>> {
    reqs.iter_mut()
        .map(|r| Piece {
            offset: r.offset,
            buf: &mut *r.buf,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ReadRequest;
    use std::sync::atomic::AtomicUsize;

    fn cfg(gap: u64, span: u64) -> CoalesceConfig {
        CoalesceConfig {
            max_gap: gap,
            max_span: span,
            parallel: 4,
        }
    }

    fn source(pos: u64) -> u8 {
        (pos % 251) as u8 ^ (pos / 251) as u8
    }

    fn fill(span: &mut Span<'_>) -> Result<()> {
        // Deliver in odd-sized chunks to exercise scatter boundaries.
        let mut pos = span.start;
        while pos < span.end {
            let n = (span.end - pos).min(7);
            let data: Vec<u8> = (pos..pos + n).map(source).collect();
            span.scatter(pos, &data);
            pos += n;
        }
        Ok(())
    }

    #[test]
    fn merges_neighbours_and_reads_gaps_through() {
        let mut bufs = [vec![0u8; 10], vec![0u8; 10], vec![0u8; 10], vec![0u8; 5]];
        let offs = [0u64, 15, 100, 17];
        let mut reqs: Vec<ReadRequest<'_>> = bufs
            .iter_mut()
            .zip(offs)
            .map(|(b, o)| ReadRequest { offset: o, buf: b })
            .collect();
        let spans = plan(pieces(&mut reqs), &cfg(10, 1000));
        assert_eq!(spans.len(), 2);
        assert_eq!((spans[0].start, spans[0].end), (0, 25));
        assert_eq!(spans[0].pieces(), 3);
        assert_eq!((spans[1].start, spans[1].end), (100, 110));
        run(spans, 4, &fill).unwrap();
        for (b, o) in bufs.iter().zip(offs) {
            let want: Vec<u8> = (o..o + b.len() as u64).map(source).collect();
            assert_eq!(b, &want);
        }
    }

    /// Delivers a span the way the HTTP client does: straight into a caller's buffer where
    /// [`Span::direct`] offers one (at most 5 bytes per read, to cross boundaries), through
    /// a 3-byte scratch buffer elsewhere. Returns the bytes that went through the scratch.
    fn deliver(span: &mut Span<'_>) -> u64 {
        let mut pos = span.start;
        let mut via_scratch = 0;
        while pos < span.end {
            let left = (span.end - pos) as usize;
            let n = match span.direct(pos) {
                Some(buf) => {
                    let n = left.min(buf.len()).min(5);
                    for (i, b) in buf[..n].iter_mut().enumerate() {
                        *b = source(pos + i as u64);
                    }
                    n
                }
                None => {
                    let n = left.min(3);
                    let data: Vec<u8> = (pos..pos + n as u64).map(source).collect();
                    span.put(pos, &data);
                    via_scratch += n as u64;
                    n
                }
            };
            pos += n as u64;
        }
        via_scratch
    }

    #[test]
    fn direct_reads_fill_buffers_and_scratch_covers_gaps_and_overlaps() {
        // 0..10 and 10..20 touch, 30..40 leaves a gap, 35..45 overlaps it.
        let offs = [0u64, 10, 30, 35];
        let mut bufs = [vec![0u8; 10], vec![0u8; 10], vec![0u8; 10], vec![0u8; 10]];
        let mut reqs: Vec<ReadRequest<'_>> = bufs
            .iter_mut()
            .zip(offs)
            .map(|(b, o)| ReadRequest { offset: o, buf: b })
            .collect();
        let mut spans = plan(pieces(&mut reqs), &cfg(20, 1000));
        assert_eq!(spans.len(), 1);
        let scratch = deliver(&mut spans[0]);
        drop(spans);
        // Through the scratch buffer in 3-byte reads: the gap 20..30 (to 32, the last read
        // running into the third buffer) and the overlap 35..40 (to 41). The rest, 0..20,
        // 32..35 and 41..45, goes direct.
        assert_eq!(scratch, 12 + 6);
        for (b, o) in bufs.iter().zip(offs) {
            let want: Vec<u8> = (o..o + b.len() as u64).map(source).collect();
            assert_eq!(b, &want, "buffer at {o}");
        }
    }

    #[test]
    fn splits_large_ranges_and_caps_spans() {
        let mut big = vec![0u8; 1000];
        let mut reqs = [ReadRequest {
            offset: 5,
            buf: &mut big,
        }];
        let spans = plan(pieces(&mut reqs), &cfg(0, 300));
        assert_eq!(
            spans.iter().map(|s| (s.start, s.end)).collect::<Vec<_>>(),
            [(5, 300), (300, 600), (600, 900), (900, 1005)]
        );
        let calls = AtomicUsize::new(0);
        run(spans, 3, &|s| {
            calls.fetch_add(1, Ordering::Relaxed);
            fill(s)
        })
        .unwrap();
        assert_eq!(calls.load(Ordering::Relaxed), 4);
        let want: Vec<u8> = (5..1005).map(source).collect();
        assert_eq!(big, want);
    }

    #[test]
    fn spans_follow_the_grid() {
        // Blocks of 30 bytes back to back from 0 on a grid of 100: a span holds the blocks
        // starting in its cell, the one crossing a line included, whole.
        let mut bufs: Vec<Vec<u8>> = (0..10).map(|_| vec![0u8; 30]).collect();
        let mut reqs: Vec<ReadRequest<'_>> = bufs
            .iter_mut()
            .enumerate()
            .map(|(i, b)| ReadRequest {
                offset: i as u64 * 30,
                buf: b,
            })
            .collect();
        let spans = plan(pieces(&mut reqs), &cfg(0, 100));
        assert_eq!(
            spans.iter().map(|s| (s.start, s.end)).collect::<Vec<_>>(),
            [(0, 120), (120, 210), (210, 300)]
        );
        run(spans, 2, &fill).unwrap();
        for (i, b) in bufs.iter().enumerate() {
            let o = i as u64 * 30;
            assert_eq!(b, &(o..o + 30).map(source).collect::<Vec<u8>>());
        }
    }

    #[test]
    fn first_error_is_returned() {
        let mut a = vec![0u8; 10];
        let mut b = vec![0u8; 10];
        let mut reqs = [
            ReadRequest {
                offset: 0,
                buf: &mut a,
            },
            ReadRequest {
                offset: 1000,
                buf: &mut b,
            },
        ];
        let spans = plan(pieces(&mut reqs), &cfg(0, 100));
        let e = run(spans, 2, &|s| {
            if s.start == 1000 {
                Err(Error::InvalidArgument("boom".into()))
            } else {
                fill(s)
            }
        })
        .unwrap_err();
        assert!(e.to_string().contains("boom"));
    }

    #[test]
    fn empty_requests_make_no_span() {
        let mut e: [u8; 0] = [];
        let mut reqs = [ReadRequest {
            offset: 50,
            buf: &mut e,
        }];
        assert!(plan(pieces(&mut reqs), &CoalesceConfig::default()).is_empty());
    }
}
