//! [`File`]: a thread-safe, random-access reader of one archive, and its public API.
//!
//! The work is split by concept: [`open`](super::open) reads the header and master index
//! and resolves a thin snapshot's chain, [`unlock`](super::unlock) turns a password into
//! the chain's data key, [`index`](super::index) loads index pages lazily into a cache,
//! [`read`](super::read) plans and performs reads ([`streamed`](super::streamed): one-pass
//! remote reads decoded as they arrive), and [`decode`](super::decode) checks and
//! decodes one stored block. A read locates its blocks through the two-level index, serves
//! each block from the decompressed-block cache or decodes it (stored bytes CRC-checked
//! before decoding, decoded bytes BLAKE3-checked after), so corruption is an error naming
//! the block, never wrong bytes.

use super::flight::Flights;
pub use super::index::Entries;
#[cfg(feature = "encryption")]
pub(crate) use super::open::read_header;
use super::reader::StreamReader;
use super::SnapshotStream;
use crate::algo::compression::Compressor;
use crate::algo::encryption::{ArchiveCipher, DataKey, Password};
use crate::cache::bufpool::BufPool;
use crate::cache::fork::ForkFresh;
use crate::cache::{ReadAhead, ShardedLru};
use crate::error::{Error, Result};
use crate::format::index::{IndexPage, MasterIndex, StreamRecord};
use crate::format::{BlockEntry, Header};
use crate::store::StorageBackend;
use std::sync::{Arc, Condvar, Mutex};

/// Tuning knobs for opening an archive. `Default` gives sensible values.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Byte budget of the decompressed-block cache (default 256 MiB; 0 disables it).
    pub cache_bytes: usize,
    /// Byte budget of the index-page cache (default 32 MiB, about 500 pages or 32 GiB of
    /// 64 KiB blocks).
    pub index_cache_bytes: usize,
    /// Largest read-ahead window of a sequential reader (default 8 MiB; 0 disables it).
    /// Remote archives use eight times this (64 MiB by default), split into several
    /// requests in flight. Only readers ([`File::reader`]) read ahead, each on its own.
    pub read_ahead: u64,
    /// Check each decoded block's content against the index (default on). The CRC32 of the
    /// stored bytes is always checked. For a block stored in an archive with the bound CRC
    /// (format 1.1), that CRC covers the content hash too, and is the content check: the
    /// BLAKE3 of the decoded block is then computed only with [`verify_full`](Self::verify_full).
    /// Blocks of format 1.0 archives are BLAKE3-checked. With `false`, only the CRC32 (bound
    /// or not) is checked.
    pub verify_hashes: bool,
    /// BLAKE3-check every decoded block, even where the bound CRC already checks it (default
    /// off). Set by [`require_signer`](Self::require_signer): a CRC is not a cryptographic
    /// check, so only the BLAKE3 carries a signature over the index to the bytes returned.
    pub verify_full: bool,
    /// Map the archive into memory instead of using positional reads (used by
    /// [`File::open_with`]; default off).
    pub mmap: bool,
    /// The parent archive of a thin snapshot, supplied by the caller instead of being opened
    /// from the path recorded in the child. Its identity is checked all the same.
    pub parent: Option<File>,
    /// Password of an encrypted archive (and of its encrypted ancestors).
    pub password: Option<Password>,
    /// Require a valid Ed25519 signature by this public key: unsigned or mis-signed archives
    /// are refused at open, and every block is checked against the signed hashes.
    pub require_signer: Option<[u8; 32]>,
    /// Options for archives opened by URL (timeouts, retries, restricted addresses, disk
    /// cache); used by [`File::open_location`].
    pub remote: crate::store::RemoteOptions,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            cache_bytes: 256 << 20,
            index_cache_bytes: 32 << 20,
            read_ahead: 8 << 20,
            verify_hashes: true,
            verify_full: false,
            mmap: false,
            parent: None,
            password: None,
            require_signer: None,
            remote: crate::store::RemoteOptions::default(),
        }
    }
}

/// Key of a decoded block in the cache: (archive in the chain, stored offset, first 8 bytes
/// of the content hash). Deduplicated blocks share one stored copy and hash, and therefore
/// one cache entry; see [`block_key`](super::read::block_key).
pub(super) type BlockKey = (u16, u64, u64);

/// A block held in memory: in the block cache, and what a fetch hands the readers waiting
/// for it.
#[derive(Debug, Clone)]
pub(super) enum Held {
    /// The block's content, checked.
    Plain(Arc<Vec<u8>>),
    /// The stored bytes of a block of a remote archive, fetched (by read-ahead, or for a
    /// reader that decoded them into its own buffer) but kept undecoded: whoever reads the
    /// block decodes and checks them straight into its buffer, in parallel with the other
    /// blocks of its read. Cheaper than a decoded copy (smaller, no copy out of the cache).
    Stored(Arc<Vec<u8>>),
}

impl Held {
    /// Bytes held, for the cache's budget: the allocation, not the length (a recycled
    /// buffer, [`BufPool`], may be longer than the block it holds).
    pub(super) fn weight(&self) -> usize {
        match self {
            Held::Plain(b) | Held::Stored(b) => b.capacity() + 64,
        }
    }
}
pub(super) type PageKey = (u8, u32);

pub(super) struct Inner {
    pub(super) header: Header,
    pub(super) master: MasterIndex,
    /// `archives[0]` is this archive; `archives[n]` its n-th ancestor.
    pub(super) archives: Vec<Arc<dyn StorageBackend>>,
    /// The parent of a thin snapshot (itself with its own chain).
    pub(super) parent: Option<File>,
    /// Ciphers of the chain's archives (`None` for unencrypted ones), parallel to `archives`.
    pub(super) ciphers: Vec<Option<Arc<ArchiveCipher>>>,
    /// The data key of an encrypted archive (shared along its chain).
    #[cfg_attr(not(feature = "encryption"), allow(dead_code))]
    pub(super) data_key: Option<DataKey>,
    pub(super) compressor: Box<dyn Compressor>,
    #[cfg(feature = "compression-zstd")]
    pub(super) zstd: crate::algo::compression::zstd::ZstdCompressor,
    pub(super) blocks: ShardedLru<BlockKey, Held>,
    pub(super) pages: ShardedLru<PageKey, Arc<IndexPage>>,
    /// Blocks being fetched right now, so concurrent readers share one fetch.
    pub(super) block_flights: Flights<BlockKey, Held>,
    /// Index pages being fetched right now.
    pub(super) page_flights: Flights<PageKey, Arc<IndexPage>>,
    /// Largest read-ahead window of a local reader ([`OpenOptions::read_ahead`]).
    pub(super) read_ahead: u64,
    /// Background read-ahead jobs not finished yet and the condition signalled when none is
    /// left; fresh in a forked child, which does not wait for its parent's.
    pub(super) pending: ForkFresh<Pending>,
    /// Buffers of fetched stored blocks, recycled once decoded or evicted (this process's).
    pub(super) bufs: ForkFresh<BufPool>,
    pub(super) verify_hashes: bool,
    /// BLAKE3-check every block, bound CRC or not ([`OpenOptions::verify_full`]).
    pub(super) verify_full: bool,
    /// Whether each archive of the chain (parallel to `archives`) has the bound CRC: the
    /// CRC kind of a block is that of the archive that stores it.
    pub(super) bound_crc: Vec<bool>,
}

/// A read-only, random-access view of an archive's streams.
///
/// `File` is `Send + Sync` and cheap to clone (clones share caches): many threads may read
/// one `File` at once.
#[derive(Clone)]
pub struct File {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("File")
            .field("archive", &self.describe())
            .field("chain_len", &self.inner.archives.len())
            .finish()
    }
}

/// Most ancestors a thin snapshot may have.
pub const MAX_CHAIN_DEPTH: usize = 255;

pub(super) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<File>();
};

impl File {
    /// Archive ids of this archive and all its ancestors, child first.
    pub fn chain_ids(&self) -> Vec<[u8; 16]> {
        let mut v = vec![self.inner.header.archive_id];
        let mut p = self.parent();
        while let Some(f) = p {
            v.push(f.inner.header.archive_id);
            p = f.parent();
        }
        v
    }

    /// The parent paths recorded along the chain: this archive's, then its parent's, … up
    /// to the first archive without one (for a child's ancestor-path hint).
    pub(crate) fn recorded_parent_paths(&self) -> Vec<String> {
        let mut v = Vec::new();
        let mut f = Some(self);
        while let Some(x) = f {
            match x
                .inner
                .master
                .meta(crate::format::index::META_PARENT_PATH)
                .and_then(|p| std::str::from_utf8(p).ok())
            {
                Some(p) => v.push(p.to_string()),
                None => break,
            }
            f = x.parent();
        }
        v
    }

    /// The parent of a thin snapshot (`None` for a standalone archive).
    pub fn parent(&self) -> Option<&File> {
        self.inner.parent.as_ref()
    }

    /// The data key of an encrypted archive, for packing a thin child that shares it.
    #[cfg_attr(not(feature = "encryption"), allow(dead_code))]
    pub(crate) fn data_key(&self) -> Option<&DataKey> {
        self.inner.data_key.as_ref()
    }

    /// A 32-byte key derived from an encrypted archive's data key for `context` and bound to
    /// this archive's id, so tools that keep this archive's data elsewhere (the mount's
    /// writable overlay) can encrypt it without a second password. `None` when the archive is
    /// not encrypted. `context` must be unique to its use (BLAKE3 key-derivation context).
    pub fn derive_key(&self, context: &str) -> Option<zeroize::Zeroizing<[u8; 32]>> {
        self.inner
            .data_key
            .as_ref()
            .map(|k| k.derive(context, &self.inner.header.archive_id))
    }

    /// Identifies the key of the content hashes in the index: all zero for plain BLAKE3,
    /// otherwise a fingerprint of the chain's hash key. Hashes of two archives are comparable
    /// only when these are equal.
    pub fn hash_domain(&self) -> [u8; 32] {
        match &self.inner.ciphers[0] {
            Some(c) => c.hash_domain(),
            None => [0; 32],
        }
    }

    /// Number of archives in the chain, this one included (1 for a standalone archive).
    pub fn chain_len(&self) -> usize {
        self.inner.archives.len()
    }

    /// The archive header.
    pub fn header(&self) -> &Header {
        &self.inner.header
    }

    /// The master index (stream records, page table, metadata).
    pub fn master(&self) -> &MasterIndex {
        &self.inner.master
    }

    /// The streams present in the archive, disk first.
    pub fn streams(&self) -> Vec<SnapshotStream> {
        self.inner.master.streams.iter().map(|s| s.stream).collect()
    }

    /// Whether the archive holds `stream`.
    pub fn has_stream(&self, stream: SnapshotStream) -> bool {
        self.inner.master.stream(stream).is_some()
    }

    /// Logical size of `stream` in bytes (0 when the stream is absent).
    pub fn size(&self, stream: SnapshotStream) -> u64 {
        self.inner
            .master
            .stream(stream)
            .map_or(0, |s| s.logical_size)
    }

    /// Describes where the archive lives (path or URL).
    pub fn describe(&self) -> String {
        self.inner.archives[0].describe()
    }

    /// Size in bytes of the archive itself (this archive only, not its ancestors), as its
    /// backend reports it: what `hexz info` calls the archive size, also for URLs.
    pub fn archive_len(&self) -> u64 {
        self.inner.archives[0].len()
    }

    /// Reads up to `len` bytes of `stream` at `offset`. The result is shorter than `len` only
    /// when the range runs past the end of the stream (empty at or past the end).
    pub fn read_at(&self, stream: SnapshotStream, offset: u64, len: usize) -> Result<Vec<u8>> {
        let size = self.stream_record(stream)?.logical_size;
        let n = size.saturating_sub(offset).min(len as u64) as usize;
        let mut buf = vec![0u8; n];
        let got = self.read_at_into(stream, offset, &mut buf)?;
        debug_assert_eq!(got, n);
        Ok(buf)
    }

    /// Fills `buf` with the bytes of `stream` at `offset` and returns how many were read:
    /// `buf.len()` unless the stream ends first (0 at or past the end). Cached blocks are
    /// copied straight into `buf`; the others are fetched in one batch and decoded in
    /// parallel, straight into `buf` when covered whole. It does not read ahead: sequential
    /// readers use a [`StreamReader`] ([`File::reader`]), which does.
    pub fn read_at_into(
        &self,
        stream: SnapshotStream,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize> {
        self.read_clamped(stream, offset, buf, true)
    }

    /// Like [`read_at_into`](Self::read_at_into), for a read that will not come back to
    /// these bytes (extraction, a one-pass copy): blocks of a remote archive that are
    /// fetched for it and decoded whole into `buf` are not kept in the block cache, so a
    /// pass over a large archive neither grows the process nor evicts what others cached.
    pub fn read_once_into(
        &self,
        stream: SnapshotStream,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize> {
        self.read_clamped(stream, offset, buf, false)
    }

    /// The work of [`read_at_into`](Self::read_at_into) and
    /// [`read_once_into`](Self::read_once_into): the read clamped to the stream's end.
    fn read_clamped(
        &self,
        stream: SnapshotStream,
        offset: u64,
        buf: &mut [u8],
        keep: bool,
    ) -> Result<usize> {
        let rec = self.stream_record(stream)?;
        if offset >= rec.logical_size || buf.is_empty() {
            return Ok(0);
        }
        let n = (rec.logical_size - offset).min(buf.len() as u64) as usize;
        self.read_range(rec, offset, &mut buf[..n], keep)?;
        Ok(n)
    }

    /// A `Read + Seek` adapter over `stream`, starting at offset 0, with its own read-ahead.
    pub fn reader(&self, stream: SnapshotStream) -> Result<StreamReader> {
        self.stream_record(stream)?;
        Ok(StreamReader::new(self.clone(), stream))
    }

    /// Index page `page_no` of `stream`, from the page cache or the archive.
    pub fn index_page(&self, stream: SnapshotStream, page_no: usize) -> Result<Arc<IndexPage>> {
        let rec = self.stream_record(stream)?;
        self.page(rec, page_no)
    }

    /// Reads the stored bytes of a section object (format 1.2) of this archive, at `offset`
    /// for `len` bytes, and decrypts them when the archive is encrypted. `name` describes the
    /// object in errors. Used by [`crate::api::tree`]; the caller checks the digest.
    pub(crate) fn read_section_object(&self, offset: u64, len: u64, name: &str) -> Result<Vec<u8>> {
        let backend = &self.inner.archives[0];
        if offset.checked_add(len).is_none_or(|e| e > backend.len()) || len > (256 << 20) {
            return Err(Error::corrupt(
                name,
                format!("offset {offset} length {len} lies outside the archive"),
            ));
        }
        let mut bytes = vec![0u8; len as usize];
        backend.read_exact_at(offset, &mut bytes)?;
        if let Some(c) = &self.inner.ciphers[0] {
            c.open_section(offset, &mut bytes)
                .map_err(|e| Error::corrupt(name, e))?;
        }
        Ok(bytes)
    }

    /// Every block entry of `stream` in logical order, loading index pages as it goes (one
    /// page in memory at a time besides the page cache). Empty for an absent stream.
    pub fn entries(&self, stream: SnapshotStream) -> Entries<'_> {
        Entries {
            file: self,
            stream,
            pages: self
                .inner
                .master
                .stream(stream)
                .map_or(0, |r| r.pages.len()),
            page_no: 0,
            page: None,
            idx: 0,
        }
    }

    /// Decodes and checks block `block_no` of `stream` (described by `entry`) into `dst`,
    /// bypassing the cache: CRC32 and BLAKE3, whatever the open options. Used by
    /// verification; `dst` must be `entry.logical_len` long.
    pub fn decode_block_into(
        &self,
        stream: SnapshotStream,
        block_no: u64,
        entry: &BlockEntry,
        dst: &mut [u8],
    ) -> Result<()> {
        if entry.is_zero() {
            dst.fill(0);
            return Ok(());
        }
        self.decode_block(stream, block_no, entry, dst, super::decode::Verify::Full)
    }

    pub(super) fn stream_record(&self, stream: SnapshotStream) -> Result<&StreamRecord> {
        self.inner
            .master
            .stream(stream)
            .ok_or(Error::NoSuchStream(stream))
    }

    /// Whether the archive is read over a network (its backend says so).
    pub fn is_remote(&self) -> bool {
        self.inner.archives[0].is_remote()
    }

    /// A fresh read-ahead detector sized for this archive (see [`OpenOptions::read_ahead`]).
    pub fn new_read_ahead(&self) -> ReadAhead {
        let remote = self.is_remote();
        let max = if remote {
            self.inner.read_ahead.saturating_mul(REMOTE_WINDOW_FACTOR)
        } else {
            self.inner.read_ahead
        };
        ReadAhead::new(max, remote)
    }

    /// Blocks until every read-ahead started so far (by any reader of this archive) has
    /// finished. Tests use it to observe read-ahead deterministically.
    pub fn wait_for_read_ahead(&self) {
        let (count, done) = self.inner.pending();
        let mut g = count.lock().unwrap_or_else(|p| p.into_inner());
        while *g > 0 {
            g = done.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Counts a read-ahead job as started; dropping the guard counts it as finished.
    pub(super) fn read_ahead_started(&self) -> ReadAheadGuard {
        let (count, _) = self.inner.pending();
        *count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        ReadAheadGuard(self.clone())
    }
}

/// A remote reader's read-ahead window grows to this many times
/// [`OpenOptions::read_ahead`] (a window must cover the bandwidth-delay product with several
/// requests in flight); a cache holding a remote read-ahead must be larger than that.
pub const REMOTE_WINDOW_FACTOR: u64 = 8;

/// Most bytes of stored-block buffers an archive keeps for reuse ([`BufPool`]). A one-pass
/// read gives buffers back (evicted from the cache) as fast as it takes them, so a few MiB
/// cover the churn.
pub(super) const BUF_POOL_BYTES: usize = 8 << 20;

/// [`BUF_POOL_BYTES`] of a remote archive: a one-pass read (extraction) decodes whole parts
/// of [`REMOTE_ALIGN`](crate::store::REMOTE_ALIGN) stored bytes on several threads at once
/// and gives each part's buffers back together.
pub(super) const REMOTE_BUF_POOL_BYTES: usize = 4 * crate::store::REMOTE_ALIGN as usize;

/// Count of running read-ahead jobs and the condition signalled when it reaches 0.
pub(super) type Pending = (Mutex<usize>, Condvar);

impl Inner {
    /// This process's read-ahead job count ([`ForkFresh`]).
    pub(super) fn pending(&self) -> &Pending {
        self.pending.get(|| (Mutex::new(0), Condvar::new()))
    }

    /// This process's pool of stored-block buffers.
    pub(super) fn bufs(&self) -> &BufPool {
        self.bufs.get(|| {
            let remote = self.archives.first().is_some_and(|a| a.is_remote());
            BufPool::new(if remote {
                REMOTE_BUF_POOL_BYTES
            } else {
                BUF_POOL_BYTES
            })
        })
    }
}

/// One running read-ahead job of a [`File`]; see [`File::wait_for_read_ahead`].
pub(super) struct ReadAheadGuard(File);

impl ReadAheadGuard {
    /// The archive being read ahead.
    pub(super) fn file(&self) -> &File {
        &self.0
    }
}

impl Drop for ReadAheadGuard {
    fn drop(&mut self) {
        // A job started in the parent and dropped in a child (never: the parent's pool
        // threads do not exist there) would only saturate at 0 in the child's fresh count.
        let (count, done) = self.0.inner.pending();
        let mut g = count.lock().unwrap_or_else(|p| p.into_inner());
        *g = g.saturating_sub(1);
        if *g == 0 {
            done.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_buffers_weigh_their_allocation() {
        // A recycled buffer (cache/bufpool.rs) may be longer than the block it holds.
        let mut v = Vec::with_capacity(100_000);
        v.extend_from_slice(&[1u8; 10]);
        let w = Held::Stored(Arc::new(v)).weight();
        assert!(w >= 100_000, "weight {w}");
        assert_eq!(Held::Plain(Arc::new(vec![0u8; 4096])).weight(), 4096 + 64);
    }
}
