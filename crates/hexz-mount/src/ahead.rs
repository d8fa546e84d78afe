//! Read-ahead of a mount's file handle in whole requests.
//!
//! The kernel reads a sequentially read file ahead in requests of up to 1 MiB, a window
//! (8 MiB) at a time, and waits for their replies before it asks for the next window; traced
//! during a `dd` of a disk image, no request was in flight 11-20% of the time, and the
//! decoder idled. The library's own read-ahead does not follow reads of 1 MiB (it expects
//! them to be decoded in parallel by the caller), and following them through the block cache
//! would add a copy and an allocation per block.
//!
//! So a handle whose requests form a run gets the [`DEPTH`] requests after the furthest one
//! decoded in the background, each into a buffer of its own; the request that then arrives
//! is answered straight from that buffer (no copy; buffers are reused, so no allocation and
//! no page faults either). Requests may reach the handle slightly out of order (several
//! request threads); one that lands elsewhere ends the run and drops what was read ahead.

use crate::volume::Volume;
use hexz_core::SnapshotStream;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{mpsc, Arc, Condvar, Mutex};

/// Requests decoded ahead of the furthest request of a run.
pub const DEPTH: u64 = 4;

/// Smallest request that is read ahead: smaller ones are left to the library's own
/// read-ahead (see [`hexz_core::StreamReader`]).
pub const MIN_REQUEST: u64 = 128 << 10;

/// How many requests' length a request may land before or after the end of the run and
/// still continue it (request threads take requests in order but may get here in another).
const REORDER: u64 = 4;

/// Background threads decoding ahead, each one chunk at a time on its own thread
/// ([`hexz_core::api::decode_on_this_thread`]): handing each chunk's blocks to the decode
/// pool cost two wake-ups per chunk, and on a 2-core VM `dd` through the mount was 1.93 s
/// with the hand-off against 1.44 s without (medians of 9, interleaved).
pub const WORKERS: usize = 2;

/// One request's worth of a stream, decoded or being decoded.
struct Chunk {
    offset: u64,
    len: u64,
    /// `None` while decoding.
    data: Option<Arc<Vec<u8>>>,
    failed: bool,
}

impl Chunk {
    fn end(&self) -> u64 {
        self.offset + self.len
    }
}

#[derive(Default)]
struct State {
    /// End of the furthest request of the current run (`None` before the first request).
    furthest: Option<u64>,
    /// Chunks ahead, contiguous and in offset order.
    chunks: VecDeque<Chunk>,
    /// Buffers to reuse.
    spare: Vec<Vec<u8>>,
    /// Bumped when a run ends: background results of an older run are dropped.
    epoch: u64,
}

/// The read-ahead state of one file handle.
pub(crate) struct Ahead {
    stream: SnapshotStream,
    size: u64,
    state: Mutex<State>,
    decoded: Condvar,
}

/// A chunk to decode in the background.
pub(crate) struct Job {
    ahead: Arc<Ahead>,
    offset: u64,
    len: u64,
    epoch: u64,
}

/// A request served from the read-ahead.
pub(crate) enum Served {
    /// One chunk holds the whole request: reply with `data[range]`.
    Chunk(Arc<Vec<u8>>, Range<usize>),
    /// Copied from several chunks into the caller's buffer (this many bytes).
    Copied(usize),
}

impl Ahead {
    /// Read-ahead state for a handle of `stream` (of `size` bytes).
    pub(crate) fn new(stream: SnapshotStream, size: u64) -> Arc<Ahead> {
        Arc::new(Ahead {
            stream,
            size,
            state: Mutex::new(State::default()),
            decoded: Condvar::new(),
        })
    }

    /// Records a request of `len` bytes at `offset` and returns the chunks to decode in the
    /// background because of it.
    pub(crate) fn on_request(self: &Arc<Self>, offset: u64, len: u64) -> Vec<Job> {
        let len = len.min(self.size.saturating_sub(offset));
        let Ok(mut st) = self.state.lock() else {
            return Vec::new();
        };
        let end = offset + len;
        let slack = len.saturating_mul(REORDER);
        let in_chunks = st
            .chunks
            .front()
            .is_some_and(|c| c.offset <= offset && offset < st.chunks.back().map_or(0, Chunk::end));
        let continues = in_chunks
            || st
                .furthest
                .is_some_and(|f| offset.saturating_add(slack) >= f && offset <= f + slack);
        if len == 0 || !continues {
            self.end_run(&mut st);
            st.furthest = Some(end);
            return Vec::new();
        }
        let furthest = st.furthest.map_or(end, |f| f.max(end));
        st.furthest = Some(furthest);
        // Chunks the run has passed for good are dropped (a late request still finds its own).
        while st
            .chunks
            .front()
            .is_some_and(|c| c.end().saturating_add(slack) <= furthest && c.data.is_some())
        {
            let c = st.chunks.pop_front().map(|c| c.data);
            recycle_into(&mut st.spare, c.flatten());
        }
        if len < MIN_REQUEST {
            return Vec::new();
        }
        let mut next = st.chunks.back().map_or(furthest, |c| c.end().max(furthest));
        let limit = furthest
            .saturating_add(len.saturating_mul(DEPTH))
            .min(self.size);
        let mut jobs = Vec::new();
        while next < limit {
            let n = len.min(self.size - next);
            if st.chunks.back().is_some_and(|c| c.end() != next) {
                // The run jumped past the chunks (within the slack): start over from here.
                self.end_run(&mut st);
                jobs.clear();
            }
            st.chunks.push_back(Chunk {
                offset: next,
                len: n,
                data: None,
                failed: false,
            });
            jobs.push(Job {
                ahead: self.clone(),
                offset: next,
                len: n,
                epoch: st.epoch,
            });
            next += n;
        }
        jobs
    }

    /// Drops the chunks of the run (background jobs of it drop their results) and wakes
    /// anyone waiting for them.
    fn end_run(&self, st: &mut State) {
        if st.chunks.is_empty() {
            return;
        }
        st.epoch += 1;
        let old: Vec<Chunk> = st.chunks.drain(..).collect();
        for c in old {
            recycle_into(&mut st.spare, c.data);
        }
        self.decoded.notify_all();
    }

    /// Serves `buf.len()` bytes at `offset` from the chunks, waiting for chunks still
    /// decoding; `None` when the chunks do not cover the request (or one failed: the caller
    /// reads it itself and reports the error).
    pub(crate) fn serve(&self, offset: u64, buf: &mut [u8]) -> Option<Served> {
        let len = (buf.len() as u64).min(self.size.saturating_sub(offset));
        let end = offset + len;
        let mut st = self.state.lock().ok()?;
        loop {
            let first = st
                .chunks
                .iter()
                .position(|c| c.offset <= offset && offset < c.end())?;
            let mut last = first;
            while st.chunks[last].end() < end {
                let reach = st.chunks[last].end();
                match st.chunks.get(last + 1) {
                    Some(c) if c.offset == reach => last += 1,
                    _ => return None,
                }
            }
            let span = first..last + 1;
            if st.chunks.range(span.clone()).any(|c| c.failed) {
                return None;
            }
            if st.chunks.range(span.clone()).any(|c| c.data.is_none()) {
                st = self.decoded.wait(st).ok()?;
                continue;
            }
            let served = if first == last {
                let c = &st.chunks[first];
                let from = (offset - c.offset) as usize;
                Served::Chunk(c.data.clone()?, from..from + len as usize)
            } else {
                let mut done = 0usize;
                for c in st.chunks.range(span.clone()) {
                    let data = c.data.as_ref()?;
                    let a = offset.max(c.offset) - c.offset;
                    let b = end.min(c.end()) - c.offset;
                    let piece = &data[a as usize..b as usize];
                    buf[done..done + piece.len()].copy_from_slice(piece);
                    done += piece.len();
                }
                Served::Copied(done)
            };
            // Chunks this request read to their end are used up.
            for i in span.rev() {
                if st.chunks[i].end() <= end {
                    if let Some(c) = st.chunks.remove(i) {
                        recycle_into(&mut st.spare, c.data);
                    }
                }
            }
            return Some(served);
        }
    }

    /// Gives a chunk's buffer back once its reply is sent.
    pub(crate) fn recycle(&self, data: Arc<Vec<u8>>) {
        if let Ok(mut st) = self.state.lock() {
            recycle_into(&mut st.spare, Some(data));
        }
    }

    /// Marks the chunk at `offset` failed (its request is then read inline) and wakes its
    /// waiters.
    fn fail(&self, offset: u64) {
        if let Ok(mut st) = self.state.lock() {
            if let Some(c) = st
                .chunks
                .iter_mut()
                .find(|c| c.offset == offset && c.data.is_none())
            {
                c.failed = true;
            }
        }
        self.decoded.notify_all();
    }

    /// Whether any chunk is still decoding.
    pub(crate) fn busy(&self) -> bool {
        self.state
            .lock()
            .map(|st| st.chunks.iter().any(|c| c.data.is_none() && !c.failed))
            .unwrap_or(false)
    }
}

/// Keeps `data`'s buffer for reuse when nobody else holds it (a few at most).
fn recycle_into(spare: &mut Vec<Vec<u8>>, data: Option<Arc<Vec<u8>>>) {
    if let Some(v) = data.and_then(|d| Arc::try_unwrap(d).ok()) {
        if spare.len() < DEPTH as usize + 2 {
            spare.push(v);
        }
    }
}

impl Job {
    /// Decodes the chunk from `volume` and hands it to whoever waits for it.
    fn run(self, volume: &Volume) {
        let a = &self.ahead;
        let buf = a.state.lock().ok().and_then(|mut st| {
            // A run that ended meanwhile: skip the work.
            (st.epoch == self.epoch).then(|| st.spare.pop().unwrap_or_default())
        });
        let Some(mut buf) = buf else {
            return;
        };
        buf.resize(self.len as usize, 0);
        let read = || volume.read_at(a.stream, self.offset, &mut buf);
        let ok = matches!(hexz_core::api::decode_on_this_thread(read), Ok(n) if n == buf.len());
        let Ok(mut st) = a.state.lock() else {
            return;
        };
        if st.epoch != self.epoch {
            recycle_into(&mut st.spare, Some(Arc::new(buf)));
            return;
        }
        if let Some(c) = st
            .chunks
            .iter_mut()
            .find(|c| c.offset == self.offset && c.data.is_none())
        {
            if ok {
                c.data = Some(Arc::new(buf));
            } else {
                c.failed = true;
            }
        }
        drop(st);
        a.decoded.notify_all();
    }
}

/// Background threads running [`Job`]s; they end when the pool is dropped.
pub(crate) struct Workers {
    tx: Mutex<mpsc::Sender<Job>>,
}

impl Workers {
    /// Starts [`WORKERS`] threads decoding from `volume`.
    pub(crate) fn start(volume: &Arc<Volume>) -> Workers {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..WORKERS {
            let (rx, volume) = (rx.clone(), volume.clone());
            let _ = std::thread::Builder::new()
                .name(format!("hexz-ahead-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else {
                        return;
                    };
                    // A panic must not leave the chunk "decoding" for ever (its reader
                    // would wait): it fails, and the request is read inline.
                    let (ahead, offset) = (job.ahead.clone(), job.offset);
                    let run = std::panic::AssertUnwindSafe(|| job.run(&volume));
                    if std::panic::catch_unwind(run).is_err() {
                        ahead.fail(offset);
                    }
                });
        }
        Workers { tx: Mutex::new(tx) }
    }

    /// Queues `jobs`; if the threads are gone, the chunks are marked failed (read inline).
    pub(crate) fn submit(&self, jobs: Vec<Job>) {
        let Ok(tx) = self.tx.lock() else {
            return;
        };
        for job in jobs {
            if let Err(mpsc::SendError(job)) = tx.send(job) {
                job.ahead.fail(job.offset);
            }
        }
    }
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers").finish()
    }
}
