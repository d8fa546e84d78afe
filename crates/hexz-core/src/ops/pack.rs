//! Packing raw disk and memory images into an archive.
//!
//! The input is streamed through a bounded pipeline: the calling thread cuts the input into
//! blocks (fixed-size or content-defined) and hands batches to one worker per core, which
//! detect zero blocks, hash (BLAKE3), compress and checksum (CRC32) them; a writer thread
//! puts the batches back in order, stores each distinct block once, and emits index pages as
//! they fill. A fixed pool of batch buffers bounds memory whatever the input size, including
//! input from a pipe. Output goes to a temporary file that is fsynced and renamed at the end.

use super::atomic::AtomicFile;
use crate::algo::compression::{compressor_for, Compressor};
use crate::algo::encryption::{ArchiveCipher, Kdf, Password};
use crate::algo::hash;
use crate::api::file::MAX_CHAIN_DEPTH;
use crate::api::{File, SnapshotStream};
use crate::error::{Error, Result};
use crate::format::header::{
    KeyWrap, ParentRef, FLAG_CDC, FLAG_ENCRYPTED, FLAG_HAS_PARENT, FORMAT_MAJOR, FORMAT_MINOR,
    HEADER_SIZE,
};
use crate::format::index::{
    IndexPage, MasterIndex, PageRef, StreamRecord, DEFAULT_ENTRIES_PER_PAGE, ENTRY_FLAG_ZERO,
    META_PARENT_PATH,
};
use crate::format::{BlockEntry, Codec, Header, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE};
use crossbeam_channel::bounded;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default fixed block size (64 KiB).
pub const DEFAULT_BLOCK_SIZE: u32 = 64 * 1024;
/// Default zstd level.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
/// Bytes of raw input per batch handed to a worker.
const BATCH_BYTES: usize = 2 << 20;
/// Memory the dedup table uses per distinct stored block (hash key, location, table slack).
pub const DEDUP_BYTES_PER_ENTRY: usize = 64;

/// Content-defined chunking parameters (FastCDC), in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CdcParams {
    /// Smallest chunk (except the last).
    pub min: u32,
    /// Target average chunk.
    pub avg: u32,
    /// Largest chunk.
    pub max: u32,
}

impl Default for CdcParams {
    /// casync's defaults: 16 KiB / 64 KiB / 256 KiB.
    fn default() -> Self {
        CdcParams {
            min: 16 * 1024,
            avg: 64 * 1024,
            max: 256 * 1024,
        }
    }
}

impl CdcParams {
    fn validate(&self) -> Result<()> {
        let ok = self.min >= 1024
            && self.min <= self.avg
            && self.avg <= self.max
            && self.min as usize <= fastcdc::v2020::MINIMUM_MAX
            && (fastcdc::v2020::AVERAGE_MIN..=fastcdc::v2020::AVERAGE_MAX)
                .contains(&(self.avg as usize))
            && self.max <= MAX_BLOCK_SIZE
            && self.min % 2 == 0
            && self.avg % 2 == 0
            && self.max % 2 == 0;
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "CDC sizes min {} avg {} max {} are invalid: need 1 KiB <= min <= avg <= max <= 16 MiB, \
                 min <= 1 MiB, avg <= 4 MiB, all even",
                self.min, self.avg, self.max
            )))
        }
    }
}

/// How to pack.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// Block codec (default LZ4). Incompressible blocks are stored raw whatever the codec.
    pub codec: Codec,
    /// Compression level (zstd 1-22; ignored by LZ4 and none).
    pub level: i32,
    /// Fixed block size in bytes (default 64 KiB); ignored when `cdc` is set.
    pub block_size: u32,
    /// Cut blocks by content (FastCDC) instead of at fixed offsets.
    pub cdc: Option<CdcParams>,
    /// Store identical blocks once (default on).
    pub dedup: bool,
    /// Most distinct blocks the dedup table remembers (bounds its memory at
    /// [`DEDUP_BYTES_PER_ENTRY`] bytes each; default 1 Mi entries = 64 MiB). Past the cap,
    /// repeats are still found within one batch (2 MiB of input) but not across batches.
    pub dedup_max_entries: usize,
    /// Worker threads (0 = one per core).
    pub threads: usize,
    /// Parent archive for a thin snapshot: blocks whose content the parent (or any of its
    /// ancestors) already holds are stored as references into it, found by hash whatever
    /// their offset.
    pub base: Option<PathBuf>,
    /// Encrypt blocks and index (AES-256-GCM) under a key wrapped with this password. A thin
    /// child of an encrypted base must be encrypted too (it shares the base's data key, and
    /// `password` must open the base).
    pub encryption: Option<EncryptOptions>,
    /// Options for a `base` given by URL (timeouts, restricted addresses, disk cache).
    pub remote: crate::store::RemoteOptions,
}

/// Password and key-derivation settings for an encrypted archive.
#[derive(Debug, Clone)]
pub struct EncryptOptions {
    /// The password.
    pub password: Password,
    /// How the password becomes a key (default PBKDF2-HMAC-SHA256, 600,000 iterations).
    pub kdf: Kdf,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            codec: Codec::Lz4,
            level: DEFAULT_ZSTD_LEVEL,
            block_size: DEFAULT_BLOCK_SIZE,
            cdc: None,
            dedup: true,
            dedup_max_entries: 1 << 20,
            threads: 0,
            base: None,
            encryption: None,
            remote: crate::store::RemoteOptions::default(),
        }
    }
}

/// Where a stream's bytes come from.
pub enum PackSource {
    /// A file (or block device) path; its size is known up front for progress.
    Path(PathBuf),
    /// Any reader, e.g. standard input; size unknown.
    Reader(Box<dyn Read + Send>),
    /// A reader whose total size is known (for progress), e.g. another archive's stream.
    SizedReader(Box<dyn Read + Send>, u64),
}

/// The streams to pack; at least one must be given.
#[derive(Default)]
pub struct PackInput {
    /// Source of the disk stream.
    pub disk: Option<PackSource>,
    /// Source of the memory stream.
    pub memory: Option<PackSource>,
}

/// Progress report passed to the pack callback after each batch is written.
#[derive(Debug, Clone, Copy)]
pub struct PackProgress {
    /// Stream being packed.
    pub stream: SnapshotStream,
    /// Input bytes of this stream consumed so far.
    pub done: u64,
    /// Total input bytes of this stream, when known.
    pub total: Option<u64>,
}

/// Per-stream results of a pack.
#[derive(Debug, Clone, Default)]
pub struct StreamStats {
    /// Input (logical) bytes.
    pub input_bytes: u64,
    /// Blocks in the stream.
    pub blocks: u64,
    /// All-zero blocks (stored as holes).
    pub zero_blocks: u64,
    /// Blocks that repeat an earlier block and were stored as references.
    pub dedup_blocks: u64,
    /// Blocks found in the parent chain (thin snapshot) and stored as references to it.
    pub parent_blocks: u64,
    /// Bytes of block data written for this stream.
    pub stored_bytes: u64,
}

/// What a pack did.
#[derive(Debug, Clone)]
pub struct PackStats {
    /// Disk stream results, if packed.
    pub disk: Option<StreamStats>,
    /// Memory stream results, if packed.
    pub memory: Option<StreamStats>,
    /// Size of the finished archive.
    pub archive_bytes: u64,
    /// Wall-clock time.
    pub elapsed: Duration,
}

/// A block after the worker stage.
#[derive(Clone, Copy)]
struct Cooked {
    len: u32,
    zero: bool,
    codec: Codec,
    crc: u32,
    hash: [u8; 32],
    /// Range in `Batch::out`.
    out_start: usize,
    out_len: usize,
}

/// A unit of pipeline work: consecutive blocks of one stream.
#[derive(Default)]
struct Batch {
    seq: u64,
    raw: Vec<u8>,
    lens: Vec<u32>,
    out: Vec<u8>,
    cooked: Vec<Cooked>,
}

impl Batch {
    fn clear(&mut self) {
        self.raw.clear();
        self.lens.clear();
        self.out.clear();
        self.cooked.clear();
    }
}

#[derive(Clone, Copy)]
struct StoredLoc {
    offset: u64,
    len: u32,
    crc: u32,
    codec: Codec,
    /// 0 for this archive, n for the n-th ancestor.
    source: u16,
}

/// Output state shared by the streams of one archive.
struct Writer {
    w: std::io::BufWriter<Box<dyn Write + Send>>,
    pos: u64,
    dedup: HashMap<[u8; 32], StoredLoc>,
    /// Blocks held by the parent chain, by content hash.
    parent: HashMap<[u8; 32], StoredLoc>,
    dedup_on: bool,
    dedup_max: usize,
    /// Seals blocks and index of an encrypted archive.
    cipher: Option<Arc<ArchiveCipher>>,
}

impl Writer {
    fn write(&mut self, b: &[u8]) -> Result<u64> {
        let at = self.pos;
        self.w
            .write_all(b)
            .map_err(|e| Error::io("writing archive", e))?;
        self.pos += b.len() as u64;
        Ok(at)
    }
}

/// Per-stream index building.
struct StreamBuild {
    stream: SnapshotStream,
    page: Vec<BlockEntry>,
    pages: Vec<PageRef>,
    next_logical: u64,
    blocks_before_page: u64,
    stats: StreamStats,
}

impl StreamBuild {
    fn flush_page(&mut self, w: &mut Writer) -> Result<()> {
        if self.page.is_empty() {
            return Ok(());
        }
        let page = IndexPage {
            stream: self.stream,
            entries: std::mem::take(&mut self.page),
        };
        let mut bytes = page.encode();
        let hash = hash::blake3(&bytes);
        if let Some(c) = &w.cipher {
            c.seal_index(false, self.stream.id(), w.pos, &mut bytes)?;
        }
        let offset = w.write(&bytes)?;
        self.pages.push(PageRef {
            first_logical: page.entries[0].logical_offset,
            offset,
            len: bytes.len() as u32,
            entry_count: page.entries.len() as u32,
            first_block: self.blocks_before_page,
            hash,
        });
        self.blocks_before_page += page.entries.len() as u64;
        Ok(())
    }

    fn push(&mut self, w: &mut Writer, e: BlockEntry) -> Result<()> {
        self.next_logical += e.logical_len as u64;
        self.page.push(e);
        if self.page.len() >= DEFAULT_ENTRIES_PER_PAGE {
            self.flush_page(w)?;
        }
        Ok(())
    }
}

/// Cuts a source into blocks.
enum Splitter {
    Fixed(u32),
    Cdc {
        p: CdcParams,
        buf: Vec<u8>,
        start: usize,
        eof: bool,
    },
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl Splitter {
    /// Fills `b` with up to about [`BATCH_BYTES`] of blocks; leaves it empty at end of input.
    fn fill(&mut self, r: &mut dyn Read, b: &mut Batch) -> std::io::Result<()> {
        match self {
            Splitter::Fixed(bs) => {
                let bs = *bs as usize;
                let want = (BATCH_BYTES / bs).max(1) * bs;
                b.raw.resize(want, 0);
                let n = read_full(r, &mut b.raw)?;
                b.raw.truncate(n);
                let mut left = n;
                while left > 0 {
                    let l = left.min(bs);
                    b.lens.push(l as u32);
                    left -= l;
                }
            }
            Splitter::Cdc { p, buf, start, eof } => {
                let max = p.max as usize;
                while b.raw.len() < BATCH_BYTES {
                    let avail = buf.len() - *start;
                    if !*eof && avail < max {
                        buf.drain(..*start);
                        *start = 0;
                        let have = buf.len();
                        let grow = (4 * max).max(BATCH_BYTES);
                        buf.resize(have + grow, 0);
                        let n = read_full(r, &mut buf[have..])?;
                        buf.truncate(have + n);
                        if n < grow {
                            *eof = true;
                        }
                        continue;
                    }
                    if avail == 0 {
                        break;
                    }
                    let data = &buf[*start..];
                    let len =
                        fastcdc::v2020::FastCDC::new(data, p.min as usize, p.avg as usize, max)
                            .next()
                            .map_or(data.len(), |c| c.length)
                            .min(data.len());
                    b.raw.extend_from_slice(&data[..len]);
                    b.lens.push(len as u32);
                    *start += len;
                }
            }
        }
        Ok(())
    }
}

/// Compresses, hashes and checksums every block of a batch (worker stage).
fn cook(
    b: &mut Batch,
    c: &dyn Compressor,
    scratch: &mut Vec<u8>,
    cipher: Option<&ArchiveCipher>,
) -> Result<()> {
    let mut at = 0usize;
    for i in 0..b.lens.len() {
        let len = b.lens[i] as usize;
        let data = &b.raw[at..at + len];
        at += len;
        if hash::is_all_zero(data) {
            b.cooked.push(Cooked {
                len: len as u32,
                zero: true,
                codec: Codec::None,
                crc: 0,
                hash: [0; 32],
                out_start: b.out.len(),
                out_len: 0,
            });
            continue;
        }
        let h = match cipher {
            Some(k) => k.content_hash(data),
            None => hash::blake3(data),
        };
        let (codec, stored): (Codec, &[u8]) = if c.codec() == Codec::None {
            (Codec::None, data)
        } else {
            c.compress(data, scratch)?;
            if scratch.len() < data.len() {
                (c.codec(), &scratch[..])
            } else {
                (Codec::None, data)
            }
        };
        let out_start = b.out.len();
        b.out.extend_from_slice(stored);
        b.cooked.push(Cooked {
            len: len as u32,
            zero: false,
            codec,
            // Encrypted blocks get their CRC over the ciphertext, once sealed by the writer.
            crc: if cipher.is_some() {
                0
            } else {
                hash::crc32(stored)
            },
            hash: h,
            out_start,
            out_len: stored.len(),
        });
    }
    Ok(())
}

fn open_source(src: PackSource) -> Result<(Box<dyn Read + Send>, Option<u64>, String)> {
    match src {
        PackSource::Path(p) => {
            let f = std::fs::File::open(&p)
                .map_err(|e| Error::io(format!("cannot open input {}", p.display()), e))?;
            let meta = f
                .metadata()
                .map_err(|e| Error::io(format!("cannot stat {}", p.display()), e))?;
            let size = if meta.is_file() {
                Some(meta.len())
            } else {
                None
            };
            Ok((Box::new(f), size, p.display().to_string()))
        }
        PackSource::Reader(r) => Ok((r, None, "standard input".into())),
        PackSource::SizedReader(r, n) => Ok((r, Some(n), "input stream".into())),
    }
}

/// Packs `input` into a new archive at `output`.
///
/// `progress` is called from the writer thread after each batch. On any error the
/// temporary file is removed and `output` is left untouched.
pub fn pack(
    input: PackInput,
    output: &Path,
    opts: &PackOptions,
    progress: Option<&(dyn Fn(&PackProgress) + Sync)>,
) -> Result<PackStats> {
    let mut atomic = AtomicFile::create(output)?;
    let file = atomic
        .file()
        .try_clone()
        .map_err(|e| Error::io("duplicating output handle", e))?;
    let (stats, header) = pack_into(input, Box::new(file), Some(output), opts, progress)?;
    atomic
        .file()
        .seek(SeekFrom::Start(0))
        .and_then(|_| atomic.file().write_all(&header))
        .map_err(|e| Error::io("writing header", e))?;
    atomic.commit()?;
    Ok(stats)
}

/// Packs into any sequential sink: the archive's bytes from offset [`HEADER_SIZE`] on are
/// written to `out` in order, after [`HEADER_SIZE`] zero bytes; the header, known only at
/// the end, is returned for the caller to put at offset 0 (see "Streaming upload" in
/// docs/FORMAT.md). `output` is the local path the archive will have, if any: a base is
/// recorded relative to it, and may not be it.
pub fn pack_into(
    input: PackInput,
    out: Box<dyn Write + Send>,
    output: Option<&Path>,
    opts: &PackOptions,
    progress: Option<&(dyn Fn(&PackProgress) + Sync)>,
) -> Result<(PackStats, Vec<u8>)> {
    let started = Instant::now();
    if input.disk.is_none() && input.memory.is_none() {
        return Err(Error::InvalidArgument(
            "nothing to pack: give a disk and/or a memory input".into(),
        ));
    }
    if let Some(c) = &opts.cdc {
        c.validate()?;
    } else if opts.block_size < MIN_BLOCK_SIZE || opts.block_size > MAX_BLOCK_SIZE {
        return Err(Error::InvalidArgument(format!(
            "block size {} is out of range ({MIN_BLOCK_SIZE}..={MAX_BLOCK_SIZE} bytes)",
            opts.block_size
        )));
    }
    let compressor = compressor_for(opts.codec, opts.level)?;
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        opts.threads
    };

    let password = opts.encryption.as_ref().map(|e| e.password.clone());
    let base = match &opts.base {
        Some(p) => Some(open_base(
            p,
            output,
            opts.dedup_max_entries,
            password.clone(),
            &opts.remote,
        )?),
        None => None,
    };
    if let Some(b) = &base {
        if b.file.header().is_encrypted() != opts.encryption.is_some() {
            return Err(Error::InvalidArgument(
                "a thin child is encrypted exactly when its base is (use --encrypt with an \
                 encrypted base, and only then)"
                    .into(),
            ));
        }
    }
    let archive_id = hash::random_bytes::<16>()?;
    let (cipher, key_wrap) =
        setup_encryption(opts.encryption.as_ref(), base.as_ref(), &archive_id)?;
    let mut w = Writer {
        w: std::io::BufWriter::with_capacity(1 << 20, out),
        pos: 0,
        dedup: HashMap::new(),
        parent: HashMap::new(),
        dedup_on: opts.dedup,
        dedup_max: opts.dedup_max_entries,
        cipher: cipher.clone(),
    };
    w.write(&[0u8; HEADER_SIZE])?;
    if let Some(b) = &base {
        w.parent = b.table.clone();
    }

    let mut records = Vec::new();
    let mut stats: [Option<StreamStats>; 2] = [None, None];
    let mut sizes = [0u64; 2];
    for (stream, src) in [
        (SnapshotStream::Disk, input.disk),
        (SnapshotStream::Memory, input.memory),
    ] {
        let Some(src) = src else { continue };
        let (mut reader, total, name) = open_source(src)?;
        let splitter = match opts.cdc {
            Some(p) => Splitter::Cdc {
                p,
                buf: Vec::new(),
                start: 0,
                eof: false,
            },
            None => Splitter::Fixed(opts.block_size),
        };
        let sb = pack_stream(
            stream,
            reader.as_mut(),
            &name,
            total,
            splitter,
            compressor.as_ref(),
            cipher.as_deref(),
            threads,
            &mut w,
            progress,
        )?;
        sizes[stream.id() as usize] = sb.next_logical;
        records.push(StreamRecord {
            stream,
            logical_size: sb.next_logical,
            block_count: sb.stats.blocks,
            zero_blocks: sb.stats.zero_blocks,
            stored_bytes: sb.stats.stored_bytes,
            pages: sb.pages,
        });
        stats[stream.id() as usize] = Some(sb.stats);
    }

    let metadata = match &base {
        Some(b) => vec![(META_PARENT_PATH, b.recorded_path.clone().into_bytes())],
        None => Vec::new(),
    };
    let (mut master, _digest) = MasterIndex::encode(&records, &metadata);
    if let Some(c) = &cipher {
        c.seal_index(true, 0, w.pos, &mut master)?;
    }
    let master_offset = w.write(&master)?;
    let encrypted = cipher.is_some();
    let streams = records.iter().fold(0u8, |m, r| m | r.stream.header_bit());
    let header = Header {
        major: FORMAT_MAJOR,
        minor: FORMAT_MINOR,
        flags: if opts.cdc.is_some() { FLAG_CDC } else { 0 }
            | if base.is_some() { FLAG_HAS_PARENT } else { 0 }
            | if encrypted { FLAG_ENCRYPTED } else { 0 },
        codec: opts.codec,
        level: if opts.codec == Codec::Zstd {
            opts.level as i8
        } else {
            0
        },
        block_size: opts.cdc.map_or(opts.block_size, |c| c.avg),
        cdc_min: opts.cdc.map_or(0, |c| c.min),
        cdc_max: opts.cdc.map_or(0, |c| c.max),
        // An encrypted archive keeps its sizes only in the encrypted master index.
        disk_size: if encrypted { 0 } else { sizes[0] },
        memory_size: if encrypted { 0 } else { sizes[1] },
        streams: if encrypted { 0 } else { streams },
        master_offset,
        master_len: master.len() as u32,
        archive_id,
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        parent: base
            .as_ref()
            .map_or_else(ParentRef::default, |b| b.parent_ref),
        key_wrap,
        signature: [0; 64],
        signer: [0; 32],
    };
    let archive_bytes = w.pos;
    let mut f =
        w.w.into_inner()
            .map_err(|e| Error::io("flushing archive", e.into_error()))?;
    f.flush().map_err(|e| Error::io("flushing archive", e))?;
    drop(f);
    let [disk, memory] = stats;
    Ok((
        PackStats {
            disk,
            memory,
            archive_bytes,
            elapsed: started.elapsed(),
        },
        header.encode().to_vec(),
    ))
}

#[allow(clippy::too_many_arguments)]
fn pack_stream(
    stream: SnapshotStream,
    reader: &mut dyn Read,
    name: &str,
    total: Option<u64>,
    mut splitter: Splitter,
    compressor: &dyn Compressor,
    cipher: Option<&ArchiveCipher>,
    threads: usize,
    w: &mut Writer,
    progress: Option<&(dyn Fn(&PackProgress) + Sync)>,
) -> Result<StreamBuild> {
    // Enough batches in flight to keep every worker busy while the reader and writer work;
    // few enough to bound memory (each batch holds its raw and compressed bytes).
    let slots = 2 * threads + 2;
    let (work_tx, work_rx) = bounded::<Batch>(slots);
    let (done_tx, done_rx) = bounded::<Result<Batch>>(slots);
    let (pool_tx, pool_rx) = bounded::<Batch>(slots);
    for _ in 0..slots {
        pool_tx.send(Batch::default()).expect("pool has room");
    }
    let mut sb = StreamBuild {
        stream,
        page: Vec::with_capacity(DEFAULT_ENTRIES_PER_PAGE),
        pages: Vec::new(),
        next_logical: 0,
        blocks_before_page: 0,
        stats: StreamStats::default(),
    };
    std::thread::scope(|s| -> Result<()> {
        for _ in 0..threads {
            let work_rx = work_rx.clone();
            let done_tx = done_tx.clone();
            s.spawn(move || {
                let mut scratch = Vec::new();
                for mut b in work_rx {
                    let r = cook(&mut b, compressor, &mut scratch, cipher).map(|_| b);
                    if done_tx.send(r).is_err() {
                        break;
                    }
                }
            });
        }
        drop(work_rx);
        drop(done_tx);
        let sb = &mut sb;
        let writer = s.spawn(move || -> Result<()> {
            let mut pending: BTreeMap<u64, Batch> = BTreeMap::new();
            let mut next = 0u64;
            for r in done_rx {
                let b = r?;
                pending.insert(b.seq, b);
                while let Some(b) = pending.remove(&next) {
                    write_batch(w, sb, &b)?;
                    next += 1;
                    if let Some(cb) = progress {
                        cb(&PackProgress {
                            stream,
                            done: sb.next_logical,
                            total,
                        });
                    }
                    let _ = pool_tx.send(b);
                }
            }
            sb.flush_page(w)
        });
        let mut read_result = Ok(());
        for (seq, mut b) in pool_rx.iter().enumerate() {
            b.clear();
            if let Err(e) = splitter.fill(reader, &mut b) {
                read_result = Err(Error::io(format!("reading {name}"), e));
                break;
            }
            if b.lens.is_empty() {
                break;
            }
            b.seq = seq as u64;
            if work_tx.send(b).is_err() {
                break;
            }
        }
        drop(work_tx);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(Error::InvalidArgument("pack writer thread panicked".into())));
        read_result.and(written)
    })?;
    Ok(sb)
}

/// Where a block's stored bytes are, as decided by the writer.
enum Place {
    /// All zeros: nothing stored.
    Zero,
    /// Already stored (earlier in this archive, or in the parent chain).
    At(StoredLoc),
    /// Stored by this batch: index into the batch's new blocks.
    New(usize),
}

/// A block this batch stores for the first time.
struct Fresh {
    cooked: usize,
    offset: u64,
    len: usize,
    crc: u32,
}

/// Writes one batch: decides for each block whether it is a hole, a reference (parent chain
/// or dedup) or new; gives new blocks consecutive offsets; seals them in parallel when
/// encrypting (the nonce is the offset, so sealing waits for the offsets); writes them in
/// order; and only then appends the index entries (which may flush an index page).
fn write_batch(w: &mut Writer, sb: &mut StreamBuild, b: &Batch) -> Result<()> {
    let tag = if w.cipher.is_some() {
        crate::algo::encryption::TAG_LEN
    } else {
        0
    };
    let mut places = Vec::with_capacity(b.cooked.len());
    let mut fresh: Vec<Fresh> = Vec::new();
    let mut batch_new: HashMap<[u8; 32], usize> = HashMap::new();
    let mut pos = w.pos;
    for (i, c) in b.cooked.iter().enumerate() {
        sb.stats.blocks += 1;
        sb.stats.input_bytes += c.len as u64;
        if c.zero {
            sb.stats.zero_blocks += 1;
            places.push(Place::Zero);
            continue;
        }
        if let Some(loc) = w.parent.get(&c.hash) {
            sb.stats.parent_blocks += 1;
            places.push(Place::At(*loc));
            continue;
        }
        if w.dedup_on {
            if let Some(loc) = w.dedup.get(&c.hash) {
                sb.stats.dedup_blocks += 1;
                places.push(Place::At(*loc));
                continue;
            }
            if let Some(&j) = batch_new.get(&c.hash) {
                sb.stats.dedup_blocks += 1;
                places.push(Place::New(j));
                continue;
            }
            batch_new.insert(c.hash, fresh.len());
        }
        let len = c.out_len + tag;
        places.push(Place::New(fresh.len()));
        fresh.push(Fresh {
            cooked: i,
            offset: pos,
            len,
            crc: c.crc,
        });
        pos += len as u64;
    }
    let stored = |c: &Cooked| &b.out[c.out_start..c.out_start + c.out_len];
    let sealed: Vec<Vec<u8>> = match &w.cipher {
        Some(k) => {
            use rayon::prelude::*;
            fresh
                .par_iter_mut()
                .map(|f| {
                    let c = &b.cooked[f.cooked];
                    let mut buf = stored(c).to_vec();
                    k.seal_block(f.offset, c.len, c.codec, &mut buf)?;
                    f.crc = hash::crc32(&buf);
                    Ok(buf)
                })
                .collect::<Result<_>>()?
        }
        None => Vec::new(),
    };
    for (j, f) in fresh.iter().enumerate() {
        let c = &b.cooked[f.cooked];
        let bytes = sealed.get(j).map_or_else(|| stored(c), |v| &v[..]);
        let at = w.write(bytes)?;
        debug_assert_eq!(at, f.offset);
        sb.stats.stored_bytes += f.len as u64;
        if w.dedup_on && w.dedup.len() < w.dedup_max {
            w.dedup.insert(c.hash, fresh_loc(f, c));
        }
    }
    for (c, place) in b.cooked.iter().zip(places) {
        let logical_offset = sb.next_logical;
        let e = match place {
            Place::Zero => BlockEntry {
                logical_offset,
                logical_len: c.len,
                stored_len: 0,
                stored_offset: 0,
                crc32: 0,
                codec: Codec::None,
                flags: ENTRY_FLAG_ZERO,
                source: 0,
                hash: [0; 32],
            },
            Place::At(loc) => entry_at(logical_offset, c, loc),
            Place::New(j) => entry_at(
                logical_offset,
                c,
                fresh_loc(&fresh[j], &b.cooked[fresh[j].cooked]),
            ),
        };
        sb.push(w, e)?;
    }
    Ok(())
}

fn fresh_loc(f: &Fresh, c: &Cooked) -> StoredLoc {
    StoredLoc {
        offset: f.offset,
        len: f.len as u32,
        crc: f.crc,
        codec: c.codec,
        source: 0,
    }
}

fn entry_at(logical_offset: u64, c: &Cooked, loc: StoredLoc) -> BlockEntry {
    BlockEntry {
        logical_offset,
        logical_len: c.len,
        stored_len: loc.len,
        stored_offset: loc.offset,
        crc32: loc.crc,
        codec: loc.codec,
        flags: 0,
        source: loc.source,
        hash: c.hash,
    }
}

/// The parent of a thin snapshot being packed.
struct Base {
    file: File,
    parent_ref: ParentRef,
    recorded_path: String,
    table: HashMap<[u8; 32], StoredLoc>,
}

/// Opens the base archive (checking its own chain), indexes its blocks by content hash, and
/// works out the path to record: relative to the output's directory when possible. A base
/// given by URL is recorded by its file name: the child is meant to sit beside it (`hexz
/// push` puts it there; `hexz pull --with-parents` brings the base next to the child).
fn open_base(
    path: &Path,
    output: Option<&Path>,
    max_entries: usize,
    password: Option<Password>,
    remote: &crate::store::RemoteOptions,
) -> Result<Base> {
    let url = path
        .to_str()
        .filter(|s| crate::store::Location::parse(s).is_ok_and(|l| l.is_remote()));
    let open_opts = crate::api::OpenOptions {
        password,
        remote: remote.clone(),
        ..Default::default()
    };
    let file = match url {
        Some(u) => File::open_location(u, open_opts)?,
        None => File::open_with(path, open_opts)?,
    };
    if file.chain_len() > MAX_CHAIN_DEPTH {
        return Err(Error::InvalidArgument(format!(
            "{} already has {} ancestors; the limit is {MAX_CHAIN_DEPTH} (flatten it first)",
            path.display(),
            file.chain_len() - 1
        )));
    }
    // A local output must not replace the base or any of its ancestors.
    if let Some(output) = output {
        let target = canonical_target(output)?;
        let mut cur = Some(&file);
        while let Some(f) = cur {
            if std::fs::canonicalize(f.describe()).is_ok_and(|p| p == target) {
                return Err(Error::InvalidArgument(format!(
                    "the output {} is the base archive or one of its ancestors ({}); write \
                     the child to a new file",
                    output.display(),
                    f.describe()
                )));
            }
            cur = f.parent();
        }
    }
    // Index every block the chain holds, nearest archive first: content the base no longer
    // uses but an ancestor still stores is found too.
    let mut table = HashMap::new();
    let mut cur = Some((&file, 1u16));
    'chain: while let Some((f, depth)) = cur {
        for stream in f.streams() {
            for e in f.entries(stream) {
                let e = e?;
                if e.is_zero() {
                    continue;
                }
                if table.len() >= max_entries {
                    break 'chain;
                }
                table.entry(e.hash).or_insert(StoredLoc {
                    offset: e.stored_offset,
                    len: e.stored_len,
                    crc: e.crc32,
                    codec: e.codec,
                    source: e.source + depth,
                });
            }
        }
        cur = f.parent().map(|p| (p, depth + 1));
    }
    Ok(Base {
        file: file.clone(),
        parent_ref: ParentRef {
            archive_id: file.header().archive_id,
            index_digest: file.master().digest,
        },
        recorded_path: match (url, output) {
            (Some(u), _) => remote_file_name(u)?,
            (None, Some(output)) => relative_path(path, output)?,
            // A remote output: the base is expected beside it, under its file name.
            (None, None) => remote_file_name(&path.to_string_lossy())?,
        },
        table,
    })
}

/// The last path segment of a URL (without query) or path, as the parent path a child
/// records.
fn remote_file_name(url: &str) -> Result<String> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    match path.rsplit('/').next() {
        Some(n) if !n.is_empty() && n != ".." && n != "." => Ok(n.to_string()),
        _ => Err(Error::InvalidArgument(format!(
            "{url}: the base URL names no file"
        ))),
    }
}

/// The canonical path `output` will have (its directory resolved; the file need not exist).
fn canonical_target(output: &Path) -> Result<PathBuf> {
    let dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = output.file_name().ok_or_else(|| {
        Error::InvalidArgument(format!("{} is not a file path", output.display()))
    })?;
    Ok(std::fs::canonicalize(&dir)
        .map_err(|e| Error::io(format!("resolving {}", dir.display()), e))?
        .join(name))
}

/// The path of `target` as seen from the directory that will hold `from_file`.
fn relative_path(target: &Path, from_file: &Path) -> Result<String> {
    let abs_target = std::fs::canonicalize(target)
        .map_err(|e| Error::io(format!("resolving {}", target.display()), e))?;
    let dir = match from_file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let abs_dir = std::fs::canonicalize(&dir)
        .map_err(|e| Error::io(format!("resolving {}", dir.display()), e))?;
    let t: Vec<_> = abs_target.components().collect();
    let d: Vec<_> = abs_dir.components().collect();
    let common = t.iter().zip(&d).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in common..d.len() {
        rel.push("..");
    }
    for c in &t[common..] {
        rel.push(c.as_os_str());
    }
    rel.into_os_string().into_string().map_err(|p| {
        Error::InvalidArgument(format!(
            "parent path {} is not valid UTF-8",
            p.to_string_lossy()
        ))
    })
}

/// Creates the cipher and key wrap of a new encrypted archive: a fresh data key, or the
/// base's for a thin child (so content hashes, and therefore dedup, match along the chain).
#[cfg(feature = "encryption")]
fn setup_encryption(
    enc: Option<&EncryptOptions>,
    base: Option<&Base>,
    archive_id: &[u8; 16],
) -> Result<(Option<Arc<ArchiveCipher>>, KeyWrap)> {
    use crate::algo::encryption::{wrap_key, DataKey};
    let Some(enc) = enc else {
        return Ok((None, KeyWrap::default()));
    };
    let key = match base.and_then(|b| b.file.data_key().cloned()) {
        Some(k) => k,
        None => DataKey::generate()?,
    };
    let kw = wrap_key(&key, &enc.password, enc.kdf, archive_id)?;
    Ok((Some(Arc::new(ArchiveCipher::new(&key, archive_id))), kw))
}

/// Without the `encryption` feature, asking for encryption is an error.
#[cfg(not(feature = "encryption"))]
fn setup_encryption(
    enc: Option<&EncryptOptions>,
    _base: Option<&Base>,
    _archive_id: &[u8; 16],
) -> Result<(Option<Arc<ArchiveCipher>>, KeyWrap)> {
    match enc {
        Some(_) => Err(Error::Unsupported(
            "encryption (this build lacks the encryption feature)".into(),
        )),
        None => Ok((None, KeyWrap::default())),
    }
}
