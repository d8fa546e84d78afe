//! [`File`]: a thread-safe, random-access reader of one archive.
//!
//! A read locates its blocks through the two-level index (master index in memory, index
//! pages loaded lazily into a bounded cache), then serves each block from the decompressed
//! block cache or decodes it: the stored bytes are CRC-checked before decoding and the
//! decoded bytes BLAKE3-checked after, so corruption is an error naming the block, never
//! wrong bytes. A read spanning several blocks decodes them in parallel straight into the
//! caller's buffer; small sequential reads trigger read-ahead into the cache.

use super::reader::StreamReader;
use super::SnapshotStream;
use crate::algo::compression::{lz4::Lz4Compressor, Compressor, NoCompression};
use crate::algo::encryption::{ArchiveCipher, DataKey, Password};
use crate::algo::hash;
use crate::cache::{ReadAhead, ShardedLru};
use crate::error::{Error, Result};
use crate::format::header::{FLAG_HAS_PARENT, HEADER_SIZE};
use crate::format::index::{
    IndexPage, MasterIndex, StreamRecord, MAX_MASTER_LEN, META_PARENT_PATH,
};
use crate::format::{BlockEntry, Codec, Header};
use crate::store::local::FileBackend;
use crate::store::StorageBackend;
use rayon::prelude::*;
use std::cell::RefCell;
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Tuning knobs for opening an archive. `Default` gives sensible values.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Byte budget of the decompressed-block cache (default 256 MiB; 0 disables it).
    pub cache_bytes: usize,
    /// Byte budget of the index-page cache (default 32 MiB, about 500 pages or 32 GiB of
    /// 64 KiB blocks).
    pub index_cache_bytes: usize,
    /// Largest read-ahead window for sequential access (default 8 MiB; 0 disables it).
    pub read_ahead: u64,
    /// Check each decoded block's BLAKE3 hash against the index (default on). The CRC32 of
    /// the stored bytes is always checked.
    pub verify_hashes: bool,
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
            mmap: false,
            parent: None,
            password: None,
            require_signer: None,
            remote: crate::store::RemoteOptions::default(),
        }
    }
}

/// Key of a decoded block in the cache: (archive in the chain, stored offset). Deduplicated
/// blocks share one stored copy and therefore one cache entry.
type BlockKey = (u16, u64);
type PageKey = (u8, u32);

struct Inner {
    header: Header,
    master: MasterIndex,
    /// `archives[0]` is this archive; `archives[n]` its n-th ancestor.
    archives: Vec<Arc<dyn StorageBackend>>,
    /// The parent of a thin snapshot (itself with its own chain).
    parent: Option<File>,
    /// Ciphers of the chain's archives (`None` for unencrypted ones), parallel to `archives`.
    ciphers: Vec<Option<Arc<ArchiveCipher>>>,
    /// The data key of an encrypted archive (shared along its chain).
    #[cfg_attr(not(feature = "encryption"), allow(dead_code))]
    data_key: Option<DataKey>,
    compressor: Box<dyn Compressor>,
    #[cfg(feature = "compression-zstd")]
    zstd: crate::algo::compression::zstd::ZstdCompressor,
    blocks: ShardedLru<BlockKey, Arc<Vec<u8>>>,
    pages: ShardedLru<PageKey, Arc<IndexPage>>,
    read_ahead: [ReadAhead; 2],
    inflight: Mutex<HashSet<BlockKey>>,
    verify_hashes: bool,
}

/// A read-only, random-access view of an archive's streams.
///
/// `File` is `Send + Sync` and cheap to clone (clones share caches): many threads may read
/// one `File` at once.
#[derive(Clone)]
pub struct File {
    inner: Arc<Inner>,
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

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<File>();
};

/// One block's share of a multi-block read.
struct Piece<'a> {
    entry: BlockEntry,
    block_no: u64,
    offset_in_block: usize,
    dst: &'a mut [u8],
}

thread_local! {
    /// Per-thread buffers for stored bytes and decrypted bytes of the block being decoded.
    static SCRATCH: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

impl File {
    /// Opens the archive at `path` with positional reads, choosing the decompressor from the
    /// header.
    pub fn open(path: impl AsRef<Path>) -> Result<File> {
        Self::open_with(path, OpenOptions::default())
    }

    /// Opens the archive at `path` with explicit options.
    pub fn open_with(path: impl AsRef<Path>, options: OpenOptions) -> Result<File> {
        let path = path.as_ref();
        let backend: Arc<dyn StorageBackend> = if options.mmap {
            Arc::new(crate::store::local::MmapBackend::new(path)?)
        } else {
            Arc::new(FileBackend::new(path)?)
        };
        Self::open_backend(backend, None, options)
    }

    /// Opens the archive at `location`: a local path, or an `http(s)://` or `s3://` URL.
    pub fn open_location(location: &str, options: OpenOptions) -> Result<File> {
        let backend = crate::store::open_location(location, &options.remote, options.mmap)?;
        Self::open_backend(backend, None, options)
    }

    /// Opens an archive held by `backend`. `compressor` must match the codec recorded in the
    /// header (an LZ4 compressor for an LZ4 archive, …); `None` options mean defaults.
    pub fn new(
        backend: Arc<dyn StorageBackend>,
        compressor: Box<dyn Compressor>,
        options: Option<OpenOptions>,
    ) -> Result<File> {
        Self::open_backend(backend, Some(compressor), options.unwrap_or_default())
    }

    /// Opens an archive from any backend, picking the codec from the header when `compressor`
    /// is `None`.
    pub fn open_backend(
        backend: Arc<dyn StorageBackend>,
        compressor: Option<Box<dyn Compressor>>,
        options: OpenOptions,
    ) -> Result<File> {
        Self::open_chain(backend, compressor, options, &mut Vec::new(), None)
    }

    fn open_chain(
        backend: Arc<dyn StorageBackend>,
        compressor: Option<Box<dyn Compressor>>,
        mut options: OpenOptions,
        seen: &mut Vec<[u8; 16]>,
        chain_key: Option<&DataKey>,
    ) -> Result<File> {
        let opened =
            read_header_and_master(backend.as_ref(), options.password.as_ref(), chain_key)?;
        let (header, master) = (opened.header, opened.master);
        if let Some(pk) = &options.require_signer {
            crate::algo::signing::check_archive_signature(
                &header,
                &master,
                pk,
                &backend.describe(),
            )?;
            options.verify_hashes = true;
        }
        let compressor = match compressor {
            Some(c) => {
                if header.codec != Codec::None && c.codec() != header.codec {
                    return Err(Error::InvalidArgument(format!(
                        "{} is compressed with {}, but a {} compressor was supplied \
                         (File::open picks the codec from the header)",
                        backend.describe(),
                        header.codec,
                        c.codec()
                    )));
                }
                c
            }
            None => crate::algo::compression::compressor_for(
                header.codec,
                (header.level as i32).clamp(1, 22),
            )?,
        };
        if seen.contains(&header.archive_id) {
            return Err(Error::corrupt(
                "parent chain",
                format!(
                    "archive id {} appears twice in the chain ending at {}: the chain loops",
                    hex(&header.archive_id),
                    backend.describe()
                ),
            ));
        }
        seen.push(header.archive_id);
        let supplied = options.parent.take();
        let parent = if header.flags & FLAG_HAS_PARENT != 0 {
            if seen.len() > MAX_CHAIN_DEPTH {
                return Err(Error::corrupt(
                    "parent chain",
                    format!("more than {MAX_CHAIN_DEPTH} ancestors"),
                ));
            }
            Some(Self::open_parent(
                &backend,
                &header,
                &master,
                supplied,
                &options,
                seen,
                opened.data_key.as_ref(),
            )?)
        } else {
            if supplied.is_some() {
                return Err(Error::InvalidArgument(format!(
                    "a parent was supplied, but {} is not a thin snapshot",
                    backend.describe()
                )));
            }
            None
        };
        let mut archives = vec![backend];
        let mut ciphers = vec![opened.cipher];
        if let Some(p) = &parent {
            if p.header().is_encrypted() != header.is_encrypted() {
                return Err(Error::InvalidArgument(format!(
                    "{} and its parent {} differ in encryption; a chain is encrypted as a whole",
                    archives[0].describe(),
                    p.describe()
                )));
            }
            archives.extend(p.inner.archives.iter().cloned());
            ciphers.extend(p.inner.ciphers.iter().cloned());
        }
        // Shard the caches only as far as each shard still holds several of the largest
        // values, so that small budgets still cache.
        let max_block = header.block_size.max(header.cdc_max) as usize + 64;
        let shards_for = |budget: usize, item: usize| (budget / (4 * item)).clamp(1, 16);
        let page_item =
            crate::format::index::MAX_ENTRIES_PER_PAGE * std::mem::size_of::<BlockEntry>();
        Ok(File {
            inner: Arc::new(Inner {
                header,
                master,
                archives,
                parent,
                ciphers,
                data_key: opened.data_key,
                compressor,
                #[cfg(feature = "compression-zstd")]
                zstd: Default::default(),
                blocks: ShardedLru::new(
                    options.cache_bytes,
                    shards_for(options.cache_bytes, max_block),
                    |v: &Arc<Vec<u8>>| v.len() + 64,
                ),
                pages: ShardedLru::new(
                    options.index_cache_bytes,
                    shards_for(options.index_cache_bytes, page_item),
                    |p: &Arc<IndexPage>| p.entries.len() * std::mem::size_of::<BlockEntry>() + 64,
                ),
                read_ahead: [
                    ReadAhead::new(options.read_ahead),
                    ReadAhead::new(options.read_ahead),
                ],
                inflight: Mutex::new(HashSet::new()),
                verify_hashes: options.verify_hashes,
            }),
        })
    }

    /// Opens (or takes) the parent of a thin snapshot and checks it is the archive the child
    /// was made against: same archive id and same index digest.
    fn open_parent(
        child: &Arc<dyn StorageBackend>,
        header: &Header,
        master: &MasterIndex,
        supplied: Option<File>,
        options: &OpenOptions,
        seen: &mut Vec<[u8; 16]>,
        chain_key: Option<&DataKey>,
    ) -> Result<File> {
        let want_id = hex(&header.parent.archive_id);
        let parent = match supplied {
            Some(p) => {
                for id in p.chain_ids() {
                    if seen.contains(&id) {
                        return Err(Error::corrupt(
                            "parent chain",
                            format!(
                                "archive id {} appears twice in the chain: the chain loops",
                                hex(&id)
                            ),
                        ));
                    }
                }
                p
            }
            None => {
                let path = master.meta(META_PARENT_PATH).ok_or_else(|| {
                    Error::corrupt(
                        format!("thin snapshot {}", child.describe()),
                        format!(
                            "no parent path recorded; supply the parent (archive id {want_id}) explicitly"
                        ),
                    )
                })?;
                let path = std::str::from_utf8(path)
                    .map_err(|_| Error::corrupt("master index", "parent path is not UTF-8"))?;
                let pb = child.open_relative(path).map_err(|e| {
                    Error::InvalidArgument(format!(
                        "cannot open parent archive '{path}' of {} (expected archive id {want_id}): {e}",
                        child.describe()
                    ))
                })?;
                let popts = OpenOptions {
                    cache_bytes: 0,
                    index_cache_bytes: 1 << 20,
                    read_ahead: 0,
                    verify_hashes: options.verify_hashes,
                    mmap: options.mmap,
                    parent: None,
                    password: options.password.clone(),
                    require_signer: None,
                    remote: options.remote.clone(),
                };
                // An encrypted chain shares one data key: the child's key opens its
                // ancestors, whatever password each of them is wrapped with.
                Self::open_chain(pb, None, popts, seen, chain_key).map_err(|e| match e {
                    Error::Io { context, err } => Error::Io {
                        context: format!(
                            "opening parent archive '{path}' of {} (expected archive id {want_id}): {context}",
                            child.describe()
                        ),
                        err,
                    },
                    other => other,
                })?
            }
        };
        let ph = parent.header();
        if ph.archive_id != header.parent.archive_id {
            return Err(Error::InvalidArgument(format!(
                "{} is not the parent of {}: its archive id is {}, the child expects {want_id}",
                parent.describe(),
                child.describe(),
                hex(&ph.archive_id)
            )));
        }
        if parent.master().digest != header.parent.index_digest {
            return Err(Error::InvalidArgument(format!(
                "parent archive {} (id {want_id}) was modified after {} was made from it: its index \
                 digest is {}, the child expects {}",
                parent.describe(),
                child.describe(),
                hex(&parent.master().digest),
                hex(&header.parent.index_digest)
            )));
        }
        Ok(parent)
    }

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
    /// copied straight into `buf`; blocks a large read covers whole are decoded into it.
    pub fn read_at_into(
        &self,
        stream: SnapshotStream,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize> {
        let rec = self.stream_record(stream)?;
        if offset >= rec.logical_size || buf.is_empty() {
            return Ok(0);
        }
        let n = (rec.logical_size - offset).min(buf.len() as u64) as usize;
        self.read_range(rec, offset, &mut buf[..n])?;
        if let Some((from, to)) =
            self.inner.read_ahead[stream.id() as usize].on_read(offset, n as u64)
        {
            let f = self.clone();
            rayon::spawn(move || f.prefetch(stream, from, to));
        }
        Ok(n)
    }

    /// A `Read + Seek` adapter over `stream`, starting at offset 0.
    pub fn reader(&self, stream: SnapshotStream) -> Result<StreamReader> {
        self.stream_record(stream)?;
        Ok(StreamReader::new(self.clone(), stream))
    }

    /// Index page `page_no` of `stream`, from the page cache or the archive.
    pub fn index_page(&self, stream: SnapshotStream, page_no: usize) -> Result<Arc<IndexPage>> {
        let rec = self.stream_record(stream)?;
        self.page(rec, page_no)
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
    /// bypassing the cache. Used by verification; `dst` must be `entry.logical_len` long.
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
        self.decode_block(stream, block_no, entry, dst, true)
    }

    fn stream_record(&self, stream: SnapshotStream) -> Result<&StreamRecord> {
        self.inner
            .master
            .stream(stream)
            .ok_or(Error::NoSuchStream(stream))
    }

    fn page(&self, rec: &StreamRecord, page_no: usize) -> Result<Arc<IndexPage>> {
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
    fn locate(&self, rec: &StreamRecord, offset: u64) -> Result<(usize, Arc<IndexPage>, usize)> {
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

    fn read_range(&self, rec: &StreamRecord, offset: u64, buf: &mut [u8]) -> Result<()> {
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

    fn decoder(&self, codec: Codec) -> Result<&dyn Compressor> {
        static NONE: NoCompression = NoCompression;
        static LZ4: Lz4Compressor = Lz4Compressor;
        if codec == self.inner.compressor.codec() {
            return Ok(self.inner.compressor.as_ref());
        }
        match codec {
            Codec::None => Ok(&NONE),
            Codec::Lz4 => Ok(&LZ4),
            #[cfg(feature = "compression-zstd")]
            Codec::Zstd => Ok(&self.inner.zstd),
            #[cfg(not(feature = "compression-zstd"))]
            Codec::Zstd => Err(Error::Unsupported(
                "zstd-compressed blocks (this build lacks the compression-zstd feature)".into(),
            )),
        }
    }

    /// Reads, checks and decodes one non-zero block into `dst` (exactly its logical length).
    fn decode_block(
        &self,
        stream: SnapshotStream,
        block_no: u64,
        e: &BlockEntry,
        dst: &mut [u8],
        verify_hash: bool,
    ) -> Result<()> {
        let corrupt = |detail: String| Error::CorruptBlock {
            stream,
            block: block_no,
            offset: e.logical_offset,
            detail,
        };
        let backend = self
            .inner
            .archives
            .get(e.source as usize)
            .ok_or_else(|| corrupt(format!("refers to missing ancestor {}", e.source)))?
            .as_ref();
        let start = e.stored_offset;
        let len = e.stored_len as usize;
        if start < HEADER_SIZE as u64
            || start
                .checked_add(len as u64)
                .is_none_or(|end| end > backend.len())
        {
            return Err(corrupt(format!(
                "stored bytes at archive offset {start} (length {len}) lie outside the {}-byte \
                 archive",
                backend.len()
            )));
        }
        let cipher = self.inner.ciphers[e.source as usize].as_deref();
        let decode = |stored: &[u8], dst: &mut [u8], plain: &mut Vec<u8>| -> Result<()> {
            let crc = hash::crc32(stored);
            if crc != e.crc32 {
                return Err(corrupt(format!(
                    "CRC32 mismatch in stored bytes at archive offset {start} (expected {:08x}, \
                     computed {crc:08x})",
                    e.crc32
                )));
            }
            let compressed = match cipher {
                Some(c) => {
                    c.open_block_into(start, e.logical_len, e.codec, stored, plain)
                        .map_err(|err| corrupt(err.to_string()))?;
                    &plain[..]
                }
                None => stored,
            };
            self.decoder(e.codec)?
                .decompress_into(compressed, dst)
                .map_err(|err| corrupt(format!("cannot decode {} data: {err}", e.codec)))?;
            if verify_hash {
                let h = match self.inner.ciphers[0].as_deref() {
                    Some(c) => c.content_hash(dst),
                    None => hash::blake3(dst),
                };
                if h != e.hash {
                    return Err(corrupt(
                        "BLAKE3 hash of decoded content does not match the index".into(),
                    ));
                }
            }
            Ok(())
        };
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let (raw, plain) = &mut *s;
            if let Some(all) = backend.as_slice() {
                return decode(&all[start as usize..start as usize + len], dst, plain);
            }
            raw.clear();
            raw.resize(len, 0);
            backend.read_exact_at(start, raw)?;
            decode(raw, dst, plain)
        })
    }

    /// Decodes the non-zero, uncached blocks overlapping `[from, to)` of `stream` into the
    /// cache. Runs on the rayon pool; errors are left for the foreground read to report.
    fn prefetch(&self, stream: SnapshotStream, from: u64, to: u64) {
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

/// Iterator over the block entries of one stream; see [`File::entries`].
pub struct Entries<'a> {
    file: &'a File,
    stream: SnapshotStream,
    pages: usize,
    page_no: usize,
    page: Option<Arc<IndexPage>>,
    idx: usize,
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

/// What opening an archive's header and master index yields.
pub(crate) struct Opened {
    pub(crate) header: Header,
    pub(crate) master: MasterIndex,
    pub(crate) cipher: Option<Arc<ArchiveCipher>>,
    pub(crate) data_key: Option<DataKey>,
}

/// Reads and validates the header and master index of the archive in `backend`, unwrapping
/// the key and decrypting the master index of an encrypted archive with `password`.
/// Every structural error names the archive it comes from (a chain has several).
pub(crate) fn read_header_and_master(
    backend: &dyn StorageBackend,
    password: Option<&Password>,
    chain_key: Option<&DataKey>,
) -> Result<Opened> {
    read_structures(backend, password, chain_key).map_err(|e| match e {
        Error::CorruptStructure { structure, detail } => Error::CorruptStructure {
            structure: format!("{structure} of {}", backend.describe()),
            detail,
        },
        Error::NotAnArchive(d) => Error::NotAnArchive(format!("{}: {d}", backend.describe())),
        other => other,
    })
}

/// Reads and decodes the header of the archive in `backend` (errors name the archive).
pub(crate) fn read_header(backend: &dyn StorageBackend) -> Result<Header> {
    let len = backend.len();
    let mut hb = vec![0u8; (len.min(HEADER_SIZE as u64)) as usize];
    backend.read_exact_at(0, &mut hb)?;
    Header::decode(&hb, len)
}

fn read_structures(
    backend: &dyn StorageBackend,
    password: Option<&Password>,
    chain_key: Option<&DataKey>,
) -> Result<Opened> {
    let len = backend.len();
    let header = read_header(backend)?;
    if header.master_len > MAX_MASTER_LEN {
        return Err(Error::corrupt(
            "header",
            format!(
                "master index length {} exceeds the {MAX_MASTER_LEN}-byte limit",
                header.master_len
            ),
        ));
    }
    let (cipher, data_key) = unlock(&header, password, chain_key, backend)?;
    let mut mb = vec![0u8; header.master_len as usize];
    backend.read_exact_at(header.master_offset, &mut mb)?;
    let mut overhead = 0;
    if let Some(c) = &cipher {
        c.open_index(true, 0, header.master_offset, &mut mb)
            .map_err(|e| match chain_key {
                Some(_) => Error::InvalidArgument(format!(
                    "{} is not encrypted with the key of the chain it belongs to (or its master \
                     index is damaged): {e}",
                    backend.describe()
                )),
                None => Error::corrupt("master index", e),
            })?;
        overhead = crate::algo::encryption::TAG_LEN as u32;
    }
    let master = MasterIndex::decode(&mb, len, overhead)?;
    for stream in SnapshotStream::ALL {
        if header.is_encrypted() {
            // Sizes and streams live only in the encrypted master index.
            break;
        }
        let in_header = header.has_stream_bit(stream.header_bit());
        let size = match stream {
            SnapshotStream::Disk => header.disk_size,
            SnapshotStream::Memory => header.memory_size,
        };
        match master.stream(stream) {
            Some(rec) if in_header && rec.logical_size == size => {}
            None if !in_header && size == 0 => {}
            _ => {
                return Err(Error::corrupt(
                    "master index",
                    format!("{stream} stream does not match the header (presence or size {size})"),
                ))
            }
        }
    }
    Ok(Opened {
        header,
        master,
        cipher,
        data_key,
    })
}

/// Unwraps the data key of an encrypted archive: `(None, None)` for unencrypted ones.
#[cfg(feature = "encryption")]
fn unlock(
    header: &Header,
    password: Option<&Password>,
    chain_key: Option<&DataKey>,
    backend: &dyn StorageBackend,
) -> Result<(Option<Arc<ArchiveCipher>>, Option<DataKey>)> {
    if !header.is_encrypted() {
        return Ok((None, None));
    }
    if let Some(key) = chain_key {
        let cipher = ArchiveCipher::new(key, &header.archive_id);
        return Ok((Some(Arc::new(cipher)), Some(key.clone())));
    }
    let pw = password.ok_or_else(|| Error::PasswordRequired(backend.describe()))?;
    let key = crate::algo::encryption::unwrap_key(&header.key_wrap, pw, &header.archive_id)?;
    let cipher = ArchiveCipher::new(&key, &header.archive_id);
    Ok((Some(Arc::new(cipher)), Some(key)))
}

/// Without the `encryption` feature the header decoder already refused encrypted archives.
#[cfg(not(feature = "encryption"))]
fn unlock(
    _header: &Header,
    _password: Option<&Password>,
    _chain_key: Option<&DataKey>,
    _backend: &dyn StorageBackend,
) -> Result<(Option<Arc<ArchiveCipher>>, Option<DataKey>)> {
    Ok((None, None))
}
