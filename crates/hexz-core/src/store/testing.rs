//! Test helpers: a backend wrapper that counts calls and injects latency, so tests can assert
//! how many round trips a read costs (and that this does not silently regress).

use super::{RangeSink, ReadRequest, StorageBackend};
use crate::error::Result;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Counters shared by a [`CountingBackend`] and the backends it opens for related archives
/// (a thin snapshot's parents), so a test sees every call the reader made.
#[derive(Debug, Default)]
pub struct Counters {
    /// Backend calls (`read_exact_at` or `read_batch`, one each).
    pub calls: AtomicU64,
    /// Ranges requested (1 per `read_exact_at`, one per request of a `read_batch`).
    pub ranges: AtomicU64,
    /// Bytes requested.
    pub bytes: AtomicU64,
    /// Calls running right now.
    pub in_flight: AtomicU64,
    /// Most calls that ran at the same time (shows whether a reader fetches in parallel).
    pub max_in_flight: AtomicU64,
}

impl Counters {
    /// Backend calls so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Ranges requested so far.
    pub fn ranges(&self) -> u64 {
        self.ranges.load(Ordering::SeqCst)
    }

    /// Bytes requested so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }

    /// Most calls that ran at the same time so far.
    pub fn max_in_flight(&self) -> u64 {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    /// Sets every counter back to zero.
    pub fn reset(&self) {
        self.max_in_flight.store(0, Ordering::SeqCst);
        self.calls.store(0, Ordering::SeqCst);
        self.ranges.store(0, Ordering::SeqCst);
        self.bytes.store(0, Ordering::SeqCst);
    }
}

/// Wraps any backend, counting calls, ranges and bytes, and optionally sleeping on every call
/// (a stand-in for network latency) and claiming to be remote (so readers batch and read ahead
/// as they would over a network).
pub struct CountingBackend {
    inner: Arc<dyn StorageBackend>,
    counters: Arc<Counters>,
    latency: Duration,
    remote: bool,
}

impl CountingBackend {
    /// Wraps `inner` with fresh counters, no latency, reporting `inner`'s remoteness.
    pub fn new(inner: Arc<dyn StorageBackend>) -> Self {
        let remote = inner.is_remote();
        CountingBackend {
            inner,
            counters: Arc::default(),
            latency: Duration::ZERO,
            remote,
        }
    }

    /// Sleeps `latency` on every call.
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Reports itself as remote (or not), whatever the wrapped backend is.
    pub fn with_remote(mut self, remote: bool) -> Self {
        self.remote = remote;
        self
    }

    /// The counters (shared with backends opened through [`StorageBackend::open_relative`]).
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Counts a call and runs it (after the injected latency).
    fn count<T>(&self, ranges: u64, bytes: u64, call: impl FnOnce() -> T) -> T {
        let c = &self.counters;
        c.calls.fetch_add(1, Ordering::SeqCst);
        c.ranges.fetch_add(ranges, Ordering::SeqCst);
        c.bytes.fetch_add(bytes, Ordering::SeqCst);
        let now = c.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        c.max_in_flight.fetch_max(now, Ordering::SeqCst);
        if !self.latency.is_zero() {
            std::thread::sleep(self.latency);
        }
        let r = call();
        c.in_flight.fetch_sub(1, Ordering::SeqCst);
        r
    }
}

impl StorageBackend for CountingBackend {
    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.count(1, buf.len() as u64, || {
            self.inner.read_exact_at(offset, buf)
        })
    }

    fn read_batch(&self, reqs: &mut [ReadRequest<'_>]) -> Result<()> {
        let bytes = reqs.iter().map(|r| r.buf.len() as u64).sum();
        self.count(reqs.len() as u64, bytes, || self.inner.read_batch(reqs))
    }

    fn refetch(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.count(1, buf.len() as u64, || self.inner.refetch(offset, buf))
    }

    /// Counted as one call of one range, when the wrapped backend streams.
    fn read_streamed(&self, start: u64, end: u64, sink: &mut dyn RangeSink) -> Result<bool> {
        let streamed = self.inner.read_streamed(start, end, sink)?;
        if streamed {
            let c = &self.counters;
            c.calls.fetch_add(1, Ordering::SeqCst);
            c.ranges.fetch_add(1, Ordering::SeqCst);
            c.bytes.fetch_add(end - start, Ordering::SeqCst);
        }
        Ok(streamed)
    }

    fn identity(&self) -> Option<String> {
        self.inner.identity()
    }

    fn is_remote(&self) -> bool {
        self.remote
    }

    // `as_slice` is deliberately not forwarded: a mapped archive would bypass the counter.

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn open_relative(&self, path: &str) -> Result<Arc<dyn StorageBackend>> {
        Ok(Arc::new(CountingBackend {
            inner: self.inner.open_relative(path)?,
            counters: self.counters.clone(),
            latency: self.latency,
            remote: self.remote,
        }))
    }
}
