//! Storage backends: where archive bytes come from. Local file and mmap live in [`local`];
//! remote backends (HTTP range requests, S3) implement the same [`StorageBackend`] trait.
//!
//! # Why reads are positional and batched
//! A reader of one archive is shared by many threads, so the trait has no cursor: every read
//! names its offset. And a read of a few MiB touches dozens of blocks and index pages; on a
//! backend where each call costs a network round trip, asking for them one after another
//! multiplies the latency. [`StorageBackend::read_batch`] hands the backend every range a
//! read needs at once, so a remote backend can merge neighbours and issue the rest in
//! parallel, while a local backend simply reads them in turn.
//!
//! # Remote backends
//! With the `http` feature, [`http::HttpBackend`] reads `http(s)://` URLs with checked range
//! requests; with `s3`, [`s3::S3Backend`] reads `s3://BUCKET/KEY` with presigned requests
//! through the same client. Both share [`retry`] (what is retried, how long),
//! [`coalesce`] (merging and parallel fetching of a batch) and [`net`] (restricted
//! addresses). [`open_location`] picks the backend from the string the user gave.

#[cfg(feature = "http")]
pub mod coalesce;
#[cfg(feature = "http")]
pub mod http;
pub mod local;
pub mod location;
#[cfg(feature = "http")]
pub mod net;
#[cfg(feature = "http")]
pub mod retry;
#[cfg(feature = "s3")]
pub mod s3;
mod sigbus;
#[doc(hidden)]
pub mod testing;

pub use location::{open_location, Location, RemoteOptions};

use crate::error::Result;
use std::sync::Arc;

/// The grid remote reads are aligned to: the part size `push` uploads an archive with, and
/// the cell one coalesced request covers ([`coalesce`]). Object stores charge per request,
/// and more for a range across two parts than inside one (SeaweedFS: 8 MiB ranges 1 MiB off
/// the grid cost it about a fifth more CPU than aligned ones, and the 3.7 MiB requests
/// read-ahead made before it was cut at these lines cost it twice as much; see
/// docs/BENCHMARKS.md).
pub const REMOTE_ALIGN: u64 = 8 << 20;

/// Where a run of blocks being grouped into one remote request lies on the [`REMOTE_ALIGN`]
/// grid: the cell each archive of the chain is at. Read-ahead and extraction both cut their
/// runs where a block's stored bytes move on to a later cell, so that each request covers
/// one part of the uploaded object.
#[derive(Debug, Default)]
pub struct GridCells(Vec<(u16, u64)>);

impl GridCells {
    /// Whether a block of archive `source` stored at `offset` lies in a later cell than the
    /// run's earlier blocks of that archive (the run should be cut before it). The first
    /// block of an archive in the run records its cell; blocks stored earlier (dedup
    /// references) join the run.
    pub fn advances(&mut self, source: u16, offset: u64) -> bool {
        let cell = offset / REMOTE_ALIGN;
        match self.0.iter().find(|(s, _)| *s == source) {
            Some(&(_, c)) => cell > c,
            None => {
                self.0.push((source, cell));
                false
            }
        }
    }

    /// Starts a new run at the block of archive `source` stored at `offset`.
    pub fn restart(&mut self, source: u16, offset: u64) {
        self.0.clear();
        self.0.push((source, offset / REMOTE_ALIGN));
    }
}

/// One range of a batched read: fill `buf` with the archive bytes starting at `offset`.
#[derive(Debug)]
pub struct ReadRequest<'a> {
    /// Archive offset of the first byte.
    pub offset: u64,
    /// Destination; its length is the length of the range.
    pub buf: &'a mut [u8],
}

/// Where the body of a range read goes, in order, as it arrives: straight into the buffers
/// the sink offers, else through a scratch buffer. Used by coalesced batches (each span
/// scatters into its requests' buffers) and by [`StorageBackend::read_streamed`] (a reader
/// that decodes each block as soon as its bytes are in).
pub trait RangeSink {
    /// A buffer to read the bytes at archive offset `pos` into directly (no intermediate
    /// copy), or `None` to have them read into a scratch buffer and passed to [`Self::put`].
    fn direct(&mut self, _pos: u64) -> Option<&mut [u8]> {
        None
    }
    /// The `n` bytes at `pos` were read into the start of the buffer [`Self::direct`] gave
    /// for `pos`.
    fn wrote(&mut self, _pos: u64, _n: usize) {}
    /// Takes the bytes at `pos` that [`Self::direct`] had no buffer for.
    fn put(&mut self, pos: u64, data: &[u8]);
}

/// Random-access, read-only byte source holding one archive.
///
/// Implementations must be `Send + Sync`: one backend serves many concurrent readers.
///
/// # Contract
/// - Reads are positional and must not depend on earlier calls: the same range always yields
///   the same bytes, or an error (a remote object that changed is
///   [`Error::ArchiveChanged`](crate::error::Error::ArchiveChanged), never a mix of versions).
/// - Errors say what failed and where (path or URL, offset); [`crate::Error::is_transient`]
///   tells failures worth retrying from permanent ones.
/// - Only [`len`](Self::len), [`read_exact_at`](Self::read_exact_at) and
///   [`describe`](Self::describe) are required; the defaults of the others are correct but
///   naive (`read_batch` reads the ranges one after another).
///
/// # Wrappers
/// A wrapper (a cache tier, a fault injector, a call counter) must forward every method to
/// the backend it wraps, including the provided ones ([`read_batch`](Self::read_batch),
/// [`refetch`](Self::refetch), [`identity`](Self::identity), [`is_remote`](Self::is_remote),
/// [`open_relative`](Self::open_relative), wrapping the result of the latter again), or the
/// wrapped backend silently loses its batching, its cache bypass, its identity pinning or
/// its parents. The exception is a tier that keeps copies of what it reads: it leaves
/// [`read_streamed`](Self::read_streamed) to its default, so every read passes through it.
pub trait StorageBackend: Send + Sync {
    /// Total length of the archive in bytes.
    fn len(&self) -> u64;

    /// Whether the archive is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` with the bytes at `offset`. Reading past the end is an error.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// Fills every request's buffer, as one batch. Remote backends merge neighbouring ranges
    /// (reading small gaps through) and fetch the rest in parallel, bounded; the requests may
    /// be in any order and may overlap. On error, the contents of the buffers are unspecified.
    fn read_batch(&self, reqs: &mut [ReadRequest<'_>]) -> Result<()> {
        for r in reqs.iter_mut() {
            self.read_exact_at(r.offset, r.buf)?;
        }
        Ok(())
    }

    /// Reads the bytes at `offset` again from where the archive lives, past any copy a cache
    /// tier or an earlier response holds, and replaces that copy. A reader calls it once for
    /// a block of a remote archive whose check failed: bytes damaged in transit or in a disk
    /// cache are fetched anew instead of failing this and every later read. The default
    /// reads them again.
    fn refetch(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.read_exact_at(offset, buf)
    }

    /// Reads `start..end` with one request, handing the bytes to `sink` in order as they
    /// arrive, where that is how the backend reads (a remote object): the sink can use each
    /// block while it is still in the CPU's caches. Returns `Ok(false)`, having done
    /// nothing, where the backend does not stream (local files, cache tiers, which see
    /// blocks through [`read_batch`](Self::read_batch)); the caller then reads otherwise.
    fn read_streamed(&self, _start: u64, _end: u64, _sink: &mut dyn RangeSink) -> Result<bool> {
        Ok(false)
    }

    /// A string that changes whenever the stored object changes (an ETag, or Last-Modified
    /// and size), pinned when the backend was opened; `None` when the backend cannot tell.
    /// Disk caches key their entries by it.
    fn identity(&self) -> Option<String> {
        None
    }

    /// Whether each call costs a network round trip: readers then batch harder and read
    /// ahead further.
    fn is_remote(&self) -> bool {
        false
    }

    /// The whole archive as one slice, when the backend has it mapped (zero-copy reads).
    fn as_slice(&self) -> Option<&[u8]> {
        None
    }

    /// A short human description for error messages (a path or a URL).
    fn describe(&self) -> String;

    /// Opens another archive named relative to this one (a thin snapshot's parent path).
    /// Relative paths resolve against the directory holding this archive; absolute paths
    /// are used as they are. Backends that cannot locate siblings return an error.
    fn open_relative(&self, path: &str) -> Result<Arc<dyn StorageBackend>> {
        Err(crate::error::Error::Unsupported(format!(
            "{} cannot open the related archive '{path}' by itself; supply it explicitly",
            self.describe()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_cells_cut_where_an_archive_moves_to_a_later_cell() {
        let mut c = GridCells::default();
        c.restart(0, 100);
        assert!(!c.advances(0, REMOTE_ALIGN - 1), "same cell");
        assert!(
            !c.advances(1, 5 * REMOTE_ALIGN),
            "a parent's first block sets its cell"
        );
        assert!(!c.advances(1, 5 * REMOTE_ALIGN + 10));
        assert!(!c.advances(0, 0), "a block stored earlier joins");
        assert!(c.advances(0, REMOTE_ALIGN), "the next cell of archive 0");
        assert!(
            c.advances(1, 6 * REMOTE_ALIGN),
            "the next cell of archive 1"
        );
        c.restart(0, REMOTE_ALIGN);
        assert!(!c.advances(0, REMOTE_ALIGN + 1));
        assert!(
            !c.advances(1, 6 * REMOTE_ALIGN),
            "restart forgets the other archives"
        );
    }
}
