//! Packing raw disk and memory images into an archive.
//!
//! The input is streamed through a bounded pipeline whose stages stand in files of their own:
//! [`chunk`] (the calling thread reads the input with large reads and cuts it into blocks,
//! fixed-size or content-defined), [`compress`] (one worker per core detects zero blocks,
//! hashes, compresses and checksums them), [`pipeline`] (the threads, channels and error
//! handling) and [`write`] (a writer thread puts the batches back in order, stores each
//! distinct block once and emits index pages as they fill). A fixed pool of batch buffers
//! bounds memory whatever the input size, including input from a pipe.
//!
//! The archive goes to a [`PackSink`]: [`pack`] uses a [`FileSink`] (temporary file written
//! by a dedicated writeback thread, fdatasync, atomic rename); [`pack_to`] takes any sink,
//! e.g. one streaming to object storage. [`base`] handles the parent of a thin snapshot.

mod base;
mod chunk;
mod compress;
mod pipeline;
mod write;

pub use write::{FileSink, PackSink};

use crate::algo::compression::compressor_for;
use crate::algo::encryption::{Kdf, Password};
use crate::algo::hash;
use crate::api::SnapshotStream;
use crate::error::{Error, Result};
use crate::format::header::{
    ParentRef, FLAG_BOUND_CRC, FLAG_CDC, FLAG_ENCRYPTED, FLAG_HAS_PARENT, FLAG_SECTIONS,
    FORMAT_MAJOR, FORMAT_MINOR, FORMAT_MINOR_1_0, HEADER_SIZE, MINOR_SECTIONS,
};
use crate::format::index::{
    encode_ancestor_paths, MasterIndex, StreamRecord, META_ANCESTOR_PATHS, META_PARENT_PATH,
};
use crate::format::section::SectionRecord;
use crate::format::{Codec, Header, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE};
use base::{open_base, setup_encryption};
use chunk::{open_source, Splitter};
use pipeline::pack_stream;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use write::Writer;

/// Default fixed block size (64 KiB).
pub const DEFAULT_BLOCK_SIZE: u32 = 64 * 1024;
/// Default zstd level.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
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
    /// Write format 1.1 with the *bound CRC* (default on): each entry's CRC32 covers the
    /// block's content hash and its stored bytes, which lets readers skip the per-read BLAKE3
    /// of the decoded block (docs/FORMAT.md, "Bound CRC"). `false` writes format 1.0, which
    /// hexz builds older than 1.1 can read, and whose every uncached read is BLAKE3-checked.
    pub bound_crc: bool,
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
            bound_crc: true,
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
    /// Zero bytes written between blocks so that none crosses a line of the 8 MiB part
    /// grid (see `docs/FORMAT.md`, "Layout").
    pub padding_bytes: u64,
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

/// Packs `input` into a new archive at `output`.
///
/// `progress` is called from the writer thread after each batch. The archive is durable
/// when this returns; on any error (or a panic in a pipeline stage) the temporary file is
/// removed and `output` is left untouched.
pub fn pack(
    input: PackInput,
    output: &Path,
    opts: &PackOptions,
    progress: Option<&(dyn Fn(&PackProgress) + Sync)>,
) -> Result<PackStats> {
    check_options(&input, opts)?;
    let mut sink = FileSink::create(output)?;
    pack_to(input, &mut sink, opts, progress)
}

/// Checks what can be checked before any output is made.
fn check_options(input: &PackInput, opts: &PackOptions) -> Result<()> {
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
    Ok(())
}

/// Packs `input` into `sink` (see [`PackSink`] for the contract) and finishes it.
///
/// On error the sink is left unfinished, and dropping it must discard the output.
pub fn pack_to(
    input: PackInput,
    sink: &mut dyn PackSink,
    opts: &PackOptions,
    progress: Option<&(dyn Fn(&PackProgress) + Sync)>,
) -> Result<PackStats> {
    pack_to_with(input, sink, opts, progress, None)
}

/// Where a section writer (format 1.2) appends its stored objects, after the streams and
/// before the master index.
pub struct SectionOut<'a, 'b> {
    w: &'a mut Writer<'b>,
}

impl SectionOut<'_, '_> {
    /// Appends one object, sealed when the archive is encrypted; returns its offset and
    /// stored length.
    pub fn write_object(&mut self, plain: &[u8]) -> Result<(u64, u64)> {
        let mut bytes = plain.to_vec();
        if let Some(c) = &self.w.cipher {
            c.seal_section(self.w.pos, &mut bytes)?;
        }
        let at = self.w.write(&bytes)?;
        Ok((at, bytes.len() as u64))
    }
}

/// Called once the streams are written: writes its objects and returns their section
/// records for the master index.
pub type SectionWriter<'a> =
    &'a mut dyn FnMut(&mut SectionOut<'_, '_>) -> Result<Vec<SectionRecord>>;

/// [`pack`], plus sections written by `sections` (the tree packer's file table).
pub fn pack_with_sections(
    input: PackInput,
    output: &Path,
    opts: &PackOptions,
    progress: Option<&(dyn Fn(&PackProgress) + Sync)>,
    sections: Option<SectionWriter<'_>>,
) -> Result<PackStats> {
    check_options(&input, opts)?;
    let mut sink = FileSink::create(output)?;
    pack_to_with(input, &mut sink, opts, progress, sections)
}

/// [`pack_to`], plus sections written by `sections`: a tree archive into any sink (a local
/// file or a streaming upload).
pub fn pack_to_with(
    input: PackInput,
    sink: &mut dyn PackSink,
    opts: &PackOptions,
    progress: Option<&(dyn Fn(&PackProgress) + Sync)>,
    sections: Option<SectionWriter<'_>>,
) -> Result<PackStats> {
    let started = Instant::now();
    check_options(&input, opts)?;
    let output = sink.local_path().map(Path::to_path_buf);
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
            output.as_deref(),
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
        sink,
        pos: 0,
        dedup: HashMap::new(),
        parent: HashMap::new(),
        dedup_on: opts.dedup,
        dedup_max: opts.dedup_max_entries,
        cipher: cipher.clone(),
        bound_crc: opts.bound_crc,
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

    let mut metadata = Vec::new();
    if let Some(b) = &base {
        metadata.push((META_PARENT_PATH, b.recorded_path.clone().into_bytes()));
        // With two or more ancestors, record the whole chain's paths so that a remote
        // reader fetches the ancestors in parallel (only a hint: each is still checked).
        let mut chain = vec![b.recorded_path.clone()];
        chain.extend(b.file.recorded_parent_paths());
        if chain.len() > 1 {
            if let Some(rec) = encode_ancestor_paths(&chain) {
                metadata.push((META_ANCESTOR_PATHS, rec));
            }
        }
    }
    let section_records = match sections {
        Some(f) => f(&mut SectionOut { w: &mut w })?,
        None => Vec::new(),
    };
    let (mut master, _digest) =
        MasterIndex::encode_with_sections(&records, &metadata, &section_records);
    if let Some(c) = &cipher {
        c.seal_index(true, 0, w.pos, &mut master)?;
    }
    let master_offset = w.write(&master)?;
    let encrypted = cipher.is_some();
    let streams = records.iter().fold(0u8, |m, r| m | r.stream.header_bit());
    let header = Header {
        major: FORMAT_MAJOR,
        minor: if !section_records.is_empty() {
            MINOR_SECTIONS
        } else if opts.bound_crc {
            FORMAT_MINOR
        } else {
            FORMAT_MINOR_1_0
        },
        flags: if opts.cdc.is_some() { FLAG_CDC } else { 0 }
            | if opts.bound_crc { FLAG_BOUND_CRC } else { 0 }
            | if section_records.is_empty() {
                0
            } else {
                FLAG_SECTIONS
            }
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
    w.sink.write_header(&header.encode())?;
    w.sink.finish()?;
    let [disk, memory] = stats;
    Ok(PackStats {
        disk,
        memory,
        archive_bytes,
        elapsed: started.elapsed(),
    })
}
