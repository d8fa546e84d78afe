//! Opening an archive: the header and master index, the codec, signature checks, and the
//! chain of a thin snapshot (each ancestor opened and checked against what the child expects).

use super::file::{hex, File, Held, Inner, OpenOptions, MAX_CHAIN_DEPTH};
use super::flight::Flights;
use super::unlock::unlock;
use super::SnapshotStream;
use crate::algo::compression::Compressor;
use crate::algo::encryption::{ArchiveCipher, DataKey, Password};
use crate::cache::bufpool::BufPool;
use crate::cache::fork::ForkFresh;
use crate::cache::ShardedLru;
use crate::error::{Error, Result};
use crate::format::header::{FLAG_HAS_PARENT, HEADER_SIZE};
use crate::format::index::{
    decode_ancestor_paths, IndexPage, MasterIndex, MAX_MASTER_LEN, META_ANCESTOR_PATHS,
    META_PARENT_PATH,
};
use crate::format::{BlockEntry, Codec, Header};
use crate::store::local::FileBackend;
use crate::store::{ReadRequest, StorageBackend};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

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
        Self::open_chain(
            backend,
            compressor,
            options,
            &mut ChainOpen::default(),
            None,
        )
    }

    /// Opens an ancestor: `open_chain` one level deeper. Every [`ANCESTORS_PER_THREAD`]
    /// levels the recursion continues on a fresh thread with its own stack, so a chain of
    /// the maximum depth opens from any caller's stack (a 255-deep chain overflowed a 1 MiB
    /// stack in debug builds); shallow chains never start a thread.
    fn open_ancestor(
        backend: Arc<dyn StorageBackend>,
        options: OpenOptions,
        seen: &mut ChainOpen,
        chain_key: Option<&DataKey>,
    ) -> Result<File> {
        if seen.ids.len() % ANCESTORS_PER_THREAD != 0 {
            return Self::open_chain(backend, None, options, seen, chain_key);
        }
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("hexz-open-chain".into())
                .stack_size(4 << 20)
                .spawn_scoped(s, || {
                    Self::open_chain(backend, None, options, seen, chain_key)
                })
                .map_err(|e| Error::io("starting a thread to open a deep parent chain", e))?
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    pub(super) fn open_chain(
        backend: Arc<dyn StorageBackend>,
        compressor: Option<Box<dyn Compressor>>,
        mut options: OpenOptions,
        seen: &mut ChainOpen,
        chain_key: Option<&DataKey>,
    ) -> Result<File> {
        let pre = seen.next.take();
        let opened = read_prefetched(backend.as_ref(), options.password.as_ref(), chain_key, pre)?;
        let (header, master) = (opened.header, opened.master);
        if let Some(pk) = &options.require_signer {
            crate::algo::signing::check_archive_signature(
                &header,
                &master,
                pk,
                &backend.describe(),
            )?;
            options.verify_hashes = true;
            options.verify_full = true;
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
        if seen.ids.contains(&header.archive_id) {
            return Err(Error::corrupt(
                "parent chain",
                format!(
                    "archive id {} appears twice in the chain ending at {}: the chain loops",
                    hex(&header.archive_id),
                    backend.describe()
                ),
            ));
        }
        seen.ids.push(header.archive_id);
        let supplied = options.parent.take();
        let parent = if header.flags & FLAG_HAS_PARENT != 0 {
            if seen.ids.len() == 1 && supplied.is_none() && backend.is_remote() {
                seen.prefetch_ancestors(&backend, &master);
            }
            if seen.ids.len() > MAX_CHAIN_DEPTH {
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
        let mut bound_crc = vec![header.has_bound_crc()];
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
            bound_crc.extend(p.inner.bound_crc.iter().copied());
        }
        // Shard the caches only as far as each shard still holds several of the largest
        // values, so that small budgets still cache.
        let max_block = header.block_size.max(header.cdc_max) as usize + 64;
        let shards_for = |budget: usize, item: usize| (budget / (4 * item)).clamp(1, 16);
        let page_item =
            crate::format::index::MAX_ENTRIES_PER_PAGE * std::mem::size_of::<BlockEntry>();
        let (tail_offset, tail) = (opened.tail_offset, opened.tail);
        let file = File {
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
                    Held::weight,
                ),
                pages: ShardedLru::new(
                    options.index_cache_bytes,
                    shards_for(options.index_cache_bytes, page_item),
                    |p: &Arc<IndexPage>| p.entries.len() * std::mem::size_of::<BlockEntry>() + 64,
                ),
                block_flights: Flights::new(),
                page_flights: Flights::new(),
                read_ahead: options.read_ahead,
                pending: ForkFresh::new((Mutex::new(0), Condvar::new())),
                bufs: ForkFresh::new(BufPool::new(super::file::BUF_POOL_BYTES)),
                verify_hashes: options.verify_hashes,
                verify_full: options.verify_full,
                bound_crc,
            }),
        };
        if options.index_cache_bytes > 0 {
            file.prime_pages(tail_offset, &tail);
        }
        Ok(file)
    }

    /// Opens (or takes) the parent of a thin snapshot and checks it is the archive the child
    /// was made against: same archive id and same index digest.
    fn open_parent(
        child: &Arc<dyn StorageBackend>,
        header: &Header,
        master: &MasterIndex,
        supplied: Option<File>,
        options: &OpenOptions,
        seen: &mut ChainOpen,
        chain_key: Option<&DataKey>,
    ) -> Result<File> {
        let want_id = hex(&header.parent.archive_id);
        let parent = match supplied {
            Some(p) => {
                for id in p.chain_ids() {
                    if seen.ids.contains(&id) {
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
                // A missing or unreadable parent stays an I/O error (so callers can tell
                // "not found" apart); anything else is an argument problem.
                let what = format!(
                    "cannot open parent archive '{path}' of {} (expected archive id {want_id})",
                    child.describe()
                );
                let pb = match seen.take_prefetched(path, &header.parent.archive_id) {
                    Some(pb) => pb,
                    None => child.open_relative(path).map_err(|e| match e {
                        Error::Io { context, err } => Error::Io {
                            context: format!("{what}: {context}"),
                            err,
                        },
                        e => Error::InvalidArgument(format!("{what}: {e}")),
                    })?,
                };
                let popts = OpenOptions {
                    cache_bytes: 0,
                    index_cache_bytes: 1 << 20,
                    read_ahead: 0,
                    verify_hashes: options.verify_hashes,
                    verify_full: options.verify_full,
                    mmap: options.mmap,
                    parent: None,
                    password: options.password.clone(),
                    require_signer: None,
                    remote: options.remote.clone(),
                };
                // An encrypted chain shares one data key: the child's key opens its
                // ancestors, whatever password each of them is wrapped with.
                Self::open_ancestor(pb, popts, seen, chain_key).map_err(|e| match e {
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
}

/// What opening an archive's header and master index yields.
pub(crate) struct Opened {
    pub(crate) header: Header,
    pub(crate) master: MasterIndex,
    pub(crate) cipher: Option<Arc<ArchiveCipher>>,
    pub(crate) data_key: Option<DataKey>,
    /// Archive offset of `tail`.
    pub(crate) tail_offset: u64,
    /// The last bytes of the archive, read with the header (index pages in them need no
    /// fetch of their own).
    pub(crate) tail: Vec<u8>,
}

/// An archive's header bytes, the offset of its tail, and the tail.
type HeadTail = (Vec<u8>, u64, Vec<u8>);

/// Bytes read from the end of a local archive together with the header: the master index
/// and, usually, the last index page come with it.
pub const OPEN_TAIL_LOCAL: u64 = 64 << 10;

/// Bytes read from the end of a remote archive together with the header: a round trip costs
/// more than these bytes, and they hold the master index and the last few index pages.
pub const OPEN_TAIL_REMOTE: u64 = 512 << 10;

/// The header bytes and the tail of the archive in `backend`, in one backend call (the whole
/// archive when it is small). Returns `(header bytes, tail offset, tail)`.
fn read_head_and_tail(backend: &dyn StorageBackend) -> Result<HeadTail> {
    let len = backend.len();
    let tail_len = if backend.is_remote() {
        OPEN_TAIL_REMOTE
    } else {
        OPEN_TAIL_LOCAL
    };
    let head_len = len.min(HEADER_SIZE as u64) as usize;
    if len <= HEADER_SIZE as u64 + tail_len {
        let mut all = vec![0u8; len as usize];
        backend.read_batch(&mut [ReadRequest {
            offset: 0,
            buf: &mut all,
        }])?;
        return Ok((all[..head_len].to_vec(), 0, all));
    }
    let mut head = vec![0u8; head_len];
    let mut tail = vec![0u8; tail_len as usize];
    backend.read_batch(&mut [
        ReadRequest {
            offset: 0,
            buf: &mut head,
        },
        ReadRequest {
            offset: len - tail_len,
            buf: &mut tail,
        },
    ])?;
    Ok((head, len - tail_len, tail))
}

/// Reads and validates the header and master index of the archive in `backend`, unwrapping
/// the key and decrypting the master index of an encrypted archive with `password`,
/// starting from the header and tail bytes when they were fetched already (`pre`, as
/// [`read_head_and_tail`] returns them). Every structural error names the archive it comes
/// from (a chain has several).
fn read_prefetched(
    backend: &dyn StorageBackend,
    password: Option<&Password>,
    chain_key: Option<&DataKey>,
    pre: Option<HeadTail>,
) -> Result<Opened> {
    read_structures(backend, password, chain_key, pre).map_err(|e| match e {
        Error::CorruptStructure { structure, detail } => Error::CorruptStructure {
            structure: format!("{structure} of {}", backend.describe()),
            detail,
        },
        Error::NotAnArchive(d) => Error::NotAnArchive(format!("{}: {d}", backend.describe())),
        other => other,
    })
}

/// Reads and decodes the header of the archive in `backend` (errors name the archive).
#[cfg_attr(not(feature = "encryption"), allow(dead_code))]
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
    pre: Option<HeadTail>,
) -> Result<Opened> {
    let len = backend.len();
    let (head, tail_offset, tail) = match pre {
        Some(p) => p,
        None => read_head_and_tail(backend)?,
    };
    let header = Header::decode(&head, len)?;
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
    let (m_start, m_len) = (header.master_offset, header.master_len as u64);
    let mut mb = match m_start.checked_sub(tail_offset) {
        Some(s) if s + m_len <= tail.len() as u64 => {
            tail[s as usize..(s + m_len) as usize].to_vec()
        }
        _ => {
            // A master index larger than the tail: one more call.
            let mut mb = vec![0u8; m_len as usize];
            backend.read_exact_at(m_start, &mut mb)?;
            mb
        }
    };
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
    if !master.sections.is_empty() && header.flags & crate::format::header::FLAG_SECTIONS == 0 {
        // FORMAT.md: the section count is 0 unless the header sets SECTIONS (which is what
        // makes readers of 1.0 refuse the archive instead of misreading it).
        return Err(Error::corrupt(
            "master index",
            format!(
                "{} section records but the header lacks flag SECTIONS",
                master.sections.len()
            ),
        ));
    }
    Ok(Opened {
        header,
        master,
        cipher,
        data_key,
        tail_offset,
        tail,
    })
}

/// Chain levels opened on one thread's stack before the recursion moves to a new thread.
const ANCESTORS_PER_THREAD: usize = 16;

/// A prefetched ancestor: its backend, and its header and tail bytes.
type Fetched = (Arc<dyn StorageBackend>, HeadTail);

/// Ancestor fetches in flight at once when a remote chain is opened.
const PREFETCH_THREADS: usize = 8;

/// State of one chain being opened: the archive ids seen so far (to refuse loops), and the
/// ancestors fetched ahead of time from the child's ancestor-path hint.
#[derive(Default)]
pub(super) struct ChainOpen {
    ids: Vec<[u8; 16]>,
    /// Per ancestor (parent first): the recorded path it was fetched for, its backend and
    /// its header and tail bytes; `None` where the fetch failed (it is retried the usual
    /// way, which reports the error).
    prefetched: std::collections::VecDeque<Option<(String, Fetched)>>,
    /// Header and tail bytes for the archive about to be opened.
    next: Option<HeadTail>,
}

impl ChainOpen {
    /// Fetches the header and tail of every ancestor named by the child's
    /// [`META_ANCESTOR_PATHS`] record, all at once, so that a remote chain of depth d costs
    /// about one round trip instead of d. Each path in the record is relative to the
    /// previous archive; it is resolved here relative to the child.
    fn prefetch_ancestors(&mut self, child: &Arc<dyn StorageBackend>, master: &MasterIndex) {
        let Some(paths) = master
            .meta(META_ANCESTOR_PATHS)
            .and_then(|r| decode_ancestor_paths(r, MAX_CHAIN_DEPTH))
        else {
            return;
        };
        let mut composed: Vec<String> = Vec::with_capacity(paths.len());
        for p in &paths {
            let c = match composed.last() {
                Some(prev) if !p.starts_with('/') => match prev.rfind('/') {
                    Some(i) => format!("{}/{p}", &prev[..i]),
                    None => p.clone(),
                },
                _ => p.clone(),
            };
            composed.push(c);
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let slots: Vec<Mutex<Option<Fetched>>> = paths.iter().map(|_| Mutex::new(None)).collect();
        std::thread::scope(|s| {
            for _ in 0..PREFETCH_THREADS.min(paths.len()) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(rel) = composed.get(i) else { break };
                    let got = child.open_relative(rel).and_then(|b| {
                        let ht = read_head_and_tail(b.as_ref())?;
                        Ok((b, ht))
                    });
                    *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = got.ok();
                });
            }
        });
        self.prefetched = paths
            .into_iter()
            .zip(slots)
            .map(|(p, slot)| {
                let got = slot.into_inner().unwrap_or_else(|p| p.into_inner());
                got.map(|f| (p, f))
            })
            .collect();
    }

    /// The prefetched backend of the next ancestor, if it was fetched for `path` (the path
    /// its child records) and its header carries the archive id the child expects; its
    /// bytes are kept for the open that follows. Anything else drops the remaining
    /// prefetches: the chain is then opened one archive at a time, as without the hint.
    fn take_prefetched(
        &mut self,
        path: &str,
        want_id: &[u8; 16],
    ) -> Option<Arc<dyn StorageBackend>> {
        let (p, (backend, ht)) = self.prefetched.pop_front()??;
        let id_ok = Header::decode(&ht.0, backend.len()).is_ok_and(|h| h.archive_id == *want_id);
        if p != path || !id_ok {
            self.prefetched.clear();
            return None;
        }
        self.next = Some(ht);
        Some(backend)
    }
}
