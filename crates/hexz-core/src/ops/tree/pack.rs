//! The tree packer's shared parts: options and stats, the data-stream writer the producers
//! feed, the file table builder, and the glue around [`pack_to_with`].

use crate::algo::compression::{compressor_for, Compressor};
use crate::error::{Error, Result};
use crate::format::section::{SectionRecord, SECTION_FILE_TABLE, SECTION_FLAG_REQUIRED};
use crate::format::tree::{
    child_encoded_len, encode_interior, encode_leaf, key_cmp, ChildRef, EntryKind, TreeEntry,
    TreeHeader, TreePageRef, TARGET_PAGE_SIZE,
};
use crate::format::Codec;
use crate::ops::pack::{pack_to_with, FileSink, PackSink, SectionOut};
use crate::ops::{PackInput, PackOptions, PackProgress, PackSource, PackStats};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// Tree-specific packing options (the stream options are [`PackOptions`]).
#[derive(Debug, Clone)]
pub struct TreePackOptions {
    /// Glob patterns of paths to leave out. A pattern with a `/` is matched against the path
    /// relative to the tree root, one without against each entry's name; an excluded
    /// directory is left out with everything below it.
    pub exclude: Vec<String>,
    /// Fail (instead of warning) when a file changes or vanishes while it is packed.
    pub strict: bool,
    /// Most distinct files the whole-file dedup table remembers (default
    /// [`MAX_DEDUP_FILES`]); files after that are stored without the check (their blocks may
    /// still be deduplicated). Bounds the packer's memory.
    pub max_dedup_files: usize,
}

impl Default for TreePackOptions {
    fn default() -> Self {
        TreePackOptions {
            exclude: Vec::new(),
            strict: false,
            max_dedup_files: MAX_DEDUP_FILES,
        }
    }
}

/// What a tree pack did.
#[derive(Debug, Clone)]
pub struct TreePackStats {
    /// The stream packer's results (the disk stream holds the file contents).
    pub pack: PackStats,
    /// Entry counts and total file bytes, as recorded in the file table header.
    pub table: TreeHeader,
    /// Hard links stored as links (their content once).
    pub hardlinks: u64,
    /// Files whose content repeated an earlier file and was stored once.
    pub dedup_files: u64,
    /// Stored size of the file table (pages and header).
    pub table_bytes: u64,
    /// Warnings (changed or vanished files), at most [`MAX_WARNINGS`] of them.
    pub warnings: Vec<String>,
    /// Number of warnings, including those not kept.
    pub warning_count: u64,
}

/// Warnings kept in [`TreePackStats::warnings`].
pub const MAX_WARNINGS: usize = 1000;
/// Bytes per chunk sent from the producer to the packer.
const CHUNK: usize = 1 << 20;
/// The producer's error when the packer has gone (it failed first: its error is the one
/// to report).
const PACKER_STOPPED: &str = "the packer stopped reading";
/// Default small-file dedup table cap ([`TreePackOptions::max_dedup_files`]): 33 bytes per
/// bucket, and kept under 7/8 of 2^20 buckets so the table never doubles to 2^21 (that last
/// doubling briefly held 100 MB when packing a million files); about 35 MB at most. Later
/// small files are stored without the check.
pub const MAX_DEDUP_FILES: usize = 900_000;

/// Feeds file contents into the data stream and hands out their offsets.
pub(super) struct DataOut {
    tx: Sender<std::io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    pub(super) pos: u64,
    /// Fixed block size: files of at least this size start on a block boundary.
    align: Option<u64>,
    /// Files smaller than this are read whole and deduplicated by content.
    pub(super) small: u64,
    dedup: HashMap<[u8; 16], (u64, u64)>,
    /// Large files already stored, by size: (BLAKE3 of the content, data offset).
    large: HashMap<u64, Vec<([u8; 32], u64)>>,
    /// Entries in `large` (all sizes).
    large_count: usize,
    /// Most entries `dedup` and `large` may hold together.
    dedup_cap: usize,
    pub(super) dedup_files: u64,
}

impl DataOut {
    fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let b = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .send(Ok(b))
            .map_err(|_| Error::InvalidArgument(PACKER_STOPPED.into()))
    }

    /// Appends a whole small file (deduplicated); returns its data offset.
    pub(super) fn small_file(&mut self, data: &[u8]) -> Result<u64> {
        if data.is_empty() {
            return Ok(0);
        }
        let key: [u8; 16] = blake3::hash(data).as_bytes()[..16]
            .try_into()
            .expect("16 bytes");
        if let Some(&(off, len)) = self.dedup.get(&key) {
            if len == data.len() as u64 {
                self.dedup_files += 1;
                return Ok(off);
            }
        }
        let at = self.pos;
        self.append(data)?;
        if self.dedup.len() + self.large_count < self.dedup_cap {
            self.dedup.insert(key, (at, data.len() as u64));
        }
        Ok(at)
    }

    /// Whether an earlier large file had exactly `size` bytes: only then can a large file
    /// repeat one, and only then is it worth hashing before it is stored.
    pub(super) fn large_size_seen(&self, size: u64) -> bool {
        self.large.contains_key(&size)
    }

    /// The data offset of an earlier large file of `size` bytes with content hash `hash`.
    /// Block dedup alone would share all its blocks but the last, which also holds the
    /// files after it; pointing at the earlier copy stores none of it again.
    pub(super) fn large_lookup(&mut self, size: u64, hash: &[u8; 32]) -> Option<u64> {
        let off = self
            .large
            .get(&size)?
            .iter()
            .find(|(h, _)| h == hash)
            .map(|&(_, off)| off)?;
        self.dedup_files += 1;
        Some(off)
    }

    /// Remembers a large file stored whole at `off` (up to the dedup cap).
    pub(super) fn remember_large(&mut self, size: u64, hash: [u8; 32], off: u64) {
        if self.dedup.len() + self.large_count < self.dedup_cap {
            self.large.entry(size).or_default().push((hash, off));
            self.large_count += 1;
        }
    }

    /// Starts a large file: pads to the next block boundary (fixed blocks); returns its offset.
    pub(super) fn begin_large(&mut self) -> Result<u64> {
        if let Some(a) = self.align {
            let pad = (a - self.pos % a) % a;
            if pad > 0 {
                self.append(&vec![0u8; pad as usize])?;
            }
        }
        Ok(self.pos)
    }

    /// Appends bytes of the current file.
    pub(super) fn append(&mut self, data: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(data);
        self.pos += data.len() as u64;
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }
}

/// Reads what the producer sends; an error it sends ends the stream with that error.
struct ChannelReader {
    rx: Receiver<std::io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    at: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(b)) => {
                    self.cur = b;
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len() - self.at);
        out[..n].copy_from_slice(&self.cur[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// One leaf page, compressed, waiting for the streams to be written.
struct PendingLeaf {
    first_path: Vec<u8>,
    plain_len: u32,
    codec: Codec,
    hash: [u8; 32],
    stored: Vec<u8>,
}

/// Builds the file table from entries given in table order. Leaf pages are compressed as
/// they fill and kept (compressed) until the streams are written: memory is the table's
/// compressed size plus one page.
pub(super) struct TableBuilder {
    compressor: Box<dyn Compressor>,
    buf: Vec<u8>,
    count: usize,
    first: Option<Vec<u8>>,
    last: Option<Vec<u8>>,
    leaves: Vec<PendingLeaf>,
    pub(super) header: TreeHeader,
    pub(super) hardlinks: u64,
    scratch: Vec<u8>,
    /// Skip the order check (only for [`pack_entries`], which writes what it is given).
    unchecked: bool,
}

impl TableBuilder {
    pub(super) fn new(codec: Codec, level: i32) -> Result<Self> {
        Ok(TableBuilder {
            compressor: compressor_for(codec, level)?,
            buf: Vec::with_capacity(TARGET_PAGE_SIZE + 4096),
            count: 0,
            first: None,
            last: None,
            leaves: Vec::new(),
            header: TreeHeader {
                data_stream: 0,
                depth: 1,
                entries: 0,
                files: 0,
                dirs: 0,
                symlinks: 0,
                specials: 0,
                file_bytes: 0,
                root: TreePageRef {
                    offset: 0,
                    stored_len: 0,
                    plain_len: 0,
                    codec: Codec::None,
                    hash: [0; 32],
                },
            },
            hardlinks: 0,
            scratch: Vec::new(),
            unchecked: false,
        })
    }

    /// Adds the next entry; entries must come in strictly increasing table order.
    pub(super) fn push(&mut self, e: &TreeEntry) -> Result<()> {
        if let Some(last) = self.last.as_ref().filter(|_| !self.unchecked) {
            if key_cmp(last, &e.path) != std::cmp::Ordering::Less {
                return Err(Error::InvalidArgument(format!(
                    "duplicate or unordered path '{}' in the input",
                    String::from_utf8_lossy(&e.path)
                )));
            }
        }
        if self.count > 0 && self.buf.len() + e.encoded_len() > TARGET_PAGE_SIZE {
            self.flush_leaf()?;
        }
        if self.first.is_none() {
            self.first = Some(e.path.clone());
        }
        e.encode_into(&mut self.buf);
        self.count += 1;
        self.last = Some(e.path.clone());
        let h = &mut self.header;
        h.entries += 1;
        match e.kind {
            EntryKind::File => {
                h.files += 1;
                if e.is_hardlink() {
                    self.hardlinks += 1;
                } else {
                    h.file_bytes += e.size;
                }
            }
            EntryKind::Dir => h.dirs += 1,
            EntryKind::Symlink => h.symlinks += 1,
            _ => h.specials += 1,
        }
        Ok(())
    }

    fn compress(&mut self, plain: &[u8]) -> Result<(Codec, Vec<u8>)> {
        if self.compressor.codec() != Codec::None {
            self.compressor.compress(plain, &mut self.scratch)?;
            if self.scratch.len() < plain.len() {
                return Ok((self.compressor.codec(), self.scratch.clone()));
            }
        }
        Ok((Codec::None, plain.to_vec()))
    }

    fn flush_leaf(&mut self) -> Result<()> {
        if self.count == 0 {
            return Ok(());
        }
        let plain = encode_leaf(self.count, &self.buf);
        let (codec, stored) = self.compress(&plain)?;
        self.leaves.push(PendingLeaf {
            first_path: self.first.take().unwrap_or_default(),
            plain_len: plain.len() as u32,
            codec,
            hash: *blake3::hash(&plain).as_bytes(),
            stored,
        });
        self.buf.clear();
        self.count = 0;
        Ok(())
    }

    /// Writes the pages (leaves, then each interior level) and the header; returns the
    /// section record, the header and the stored bytes written.
    pub(super) fn finish(
        mut self,
        out: &mut SectionOut<'_, '_>,
    ) -> Result<(SectionRecord, TreeHeader, u64)> {
        self.flush_leaf()?;
        let mut written = 0u64;
        let mut level_refs = Vec::with_capacity(self.leaves.len());
        for leaf in std::mem::take(&mut self.leaves) {
            let (offset, len) = out.write_object(&leaf.stored)?;
            written += len;
            level_refs.push(ChildRef {
                first_path: leaf.first_path,
                page: TreePageRef {
                    offset,
                    stored_len: len as u32,
                    plain_len: leaf.plain_len,
                    codec: leaf.codec,
                    hash: leaf.hash,
                },
            });
        }
        let mut level = 0u8;
        while level_refs.len() > 1 {
            level += 1;
            let mut next = Vec::new();
            let mut group: Vec<ChildRef> = Vec::new();
            let mut size = 0usize;
            let total = level_refs.len();
            for (i, c) in level_refs.into_iter().enumerate() {
                size += child_encoded_len(&c);
                group.push(c);
                // At least two children per page, so every level shrinks.
                if (size >= TARGET_PAGE_SIZE && group.len() >= 2) || i + 1 == total {
                    let plain = encode_interior(level, &group);
                    let (codec, stored) = self.compress(&plain)?;
                    let (offset, len) = out.write_object(&stored)?;
                    written += len;
                    next.push(ChildRef {
                        first_path: std::mem::take(&mut group[0].first_path),
                        page: TreePageRef {
                            offset,
                            stored_len: len as u32,
                            plain_len: plain.len() as u32,
                            codec,
                            hash: *blake3::hash(&plain).as_bytes(),
                        },
                    });
                    group.clear();
                    size = 0;
                }
            }
            level_refs = next;
        }
        let root = level_refs
            .pop()
            .ok_or_else(|| Error::InvalidArgument("empty file table".into()))?;
        self.header.root = root.page;
        self.header.depth = level + 1;
        let plain = self.header.encode();
        let (offset, len) = out.write_object(&plain)?;
        written += len;
        Ok((
            SectionRecord {
                ty: SECTION_FILE_TABLE,
                flags: SECTION_FLAG_REQUIRED,
                offset,
                len,
                hash: *blake3::hash(&plain).as_bytes(),
            },
            self.header,
            written,
        ))
    }
}

/// What a producer hands back when it has sent all file contents.
pub(super) struct Produced {
    pub(super) table: TableBuilder,
    pub(super) dedup_files: u64,
    pub(super) warnings: Vec<String>,
    pub(super) warning_count: u64,
}

/// Collects warnings (or turns them into errors with `strict`).
pub(super) struct Warnings {
    pub(super) strict: bool,
    pub(super) list: Vec<String>,
    pub(super) count: u64,
}

impl Warnings {
    pub(super) fn warn(&mut self, msg: String) -> Result<()> {
        if self.strict {
            return Err(Error::InvalidArgument(format!("{msg} (--strict)")));
        }
        self.count += 1;
        if self.list.len() < MAX_WARNINGS {
            self.list.push(msg);
        }
        Ok(())
    }
}

/// Runs `produce` on its own thread, feeding the disk stream of a new archive written to
/// `sink`, then writes the file table it built.
fn run_pack(
    sink: &mut dyn PackSink,
    opts: &PackOptions,
    dedup_cap: usize,
    progress: Option<&(dyn Fn(&PackProgress) + Sync)>,
    produce: impl FnOnce(&mut DataOut) -> Result<Produced> + Send,
) -> Result<TreePackStats> {
    let (tx, rx) = bounded::<std::io::Result<Vec<u8>>>(4);
    let align = match opts.cdc {
        Some(_) => None,
        None => Some(opts.block_size as u64),
    };
    let small = opts.cdc.map_or(opts.block_size, |c| c.avg) as u64;
    std::thread::scope(|s| {
        let producer = s.spawn(move || {
            let mut data = DataOut {
                tx: tx.clone(),
                buf: Vec::with_capacity(CHUNK),
                pos: 0,
                align,
                small,
                dedup: HashMap::new(),
                large: HashMap::new(),
                large_count: 0,
                dedup_cap,
                dedup_files: 0,
            };
            let r = produce(&mut data).and_then(|mut p| {
                data.flush()?;
                p.dedup_files = data.dedup_files;
                Ok(p)
            });
            if let Err(e) = &r {
                // Ends the stream with the error so the packer stops too.
                let _ = tx.send(Err(std::io::Error::other(e.to_string())));
            }
            r
        });
        let reader = ChannelReader {
            rx,
            cur: Vec::new(),
            at: 0,
        };
        let mut producer = Some(producer);
        let mut done: Option<(Produced, u64, TreeHeader, u64)> = None;
        let mut write_table = |out: &mut SectionOut<'_, '_>| -> Result<Vec<SectionRecord>> {
            let mut p = producer
                .take()
                .ok_or_else(|| Error::InvalidArgument("file table written twice".into()))?
                .join()
                .map_err(|_| Error::InvalidArgument("tree walker thread panicked".into()))??;
            let table = std::mem::replace(&mut p.table, TableBuilder::new(Codec::None, 0)?);
            let hardlinks = table.hardlinks;
            let (rec, header, bytes) = table.finish(out)?;
            done = Some((p, hardlinks, header, bytes));
            Ok(vec![rec])
        };
        let input = PackInput {
            disk: Some(PackSource::Reader(Box::new(reader))),
            memory: None,
        };
        let packed = pack_to_with(input, sink, opts, progress, Some(&mut write_table));
        let packed = match packed {
            Ok(p) => p,
            Err(e) => {
                // Prefer the producer's own error (the packer only saw its message), unless
                // the producer merely noticed that the packer had stopped.
                if let Some(h) = producer.take() {
                    match h.join() {
                        Ok(Err(Error::InvalidArgument(m))) if m == PACKER_STOPPED => {}
                        Ok(Err(pe)) => return Err(pe),
                        _ => {}
                    }
                }
                return Err(e);
            }
        };
        let (p, hardlinks, table, table_bytes) =
            done.ok_or_else(|| Error::InvalidArgument("the file table was not written".into()))?;
        Ok(TreePackStats {
            pack: packed,
            table,
            hardlinks,
            dedup_files: p.dedup_files,
            table_bytes,
            warnings: p.warnings,
            warning_count: p.warning_count,
        })
    })
}

/// Packs the directory `root` into a new tree archive at `output` (see the module docs).
pub fn pack_tree(
    root: &Path,
    output: &Path,
    opts: &PackOptions,
    tree: &TreePackOptions,
    progress: Option<&(dyn Fn(&PackProgress) + Sync)>,
) -> Result<TreePackStats> {
    pack_tree_to(root, &mut FileSink::create(output)?, opts, tree, progress)
}

/// [`pack_tree`] into any sink: a local file, or a streaming upload
/// ([`crate::ops::transfer::upload_packed`]).
pub fn pack_tree_to(
    root: &Path,
    sink: &mut dyn PackSink,
    opts: &PackOptions,
    tree: &TreePackOptions,
    progress: Option<&(dyn Fn(&PackProgress) + Sync)>,
) -> Result<TreePackStats> {
    let output = sink.local_path().map(Path::to_path_buf);
    let walker = super::walk::Walker::new(root, output.as_deref(), opts, tree)?;
    run_pack(sink, opts, tree.max_dedup_files, progress, move |data| {
        walker.run(data)
    })
}

/// Packs a tar stream into a new tree archive at `output`, without unpacking it to disk.
/// Entries are kept in memory until the end of the stream (a tar is not sorted).
pub fn pack_tar(
    input: Box<dyn Read + Send>,
    output: &Path,
    opts: &PackOptions,
    tree: &TreePackOptions,
    progress: Option<&(dyn Fn(&PackProgress) + Sync)>,
) -> Result<TreePackStats> {
    pack_tar_to(input, &mut FileSink::create(output)?, opts, tree, progress)
}

/// [`pack_tar`] into any sink: a local file, or a streaming upload
/// ([`crate::ops::transfer::upload_packed`]).
pub fn pack_tar_to(
    input: Box<dyn Read + Send>,
    sink: &mut dyn PackSink,
    opts: &PackOptions,
    tree: &TreePackOptions,
    progress: Option<&(dyn Fn(&PackProgress) + Sync)>,
) -> Result<TreePackStats> {
    let table = TableBuilder::new(opts.codec, opts.level)?;
    let excludes = super::walk::Excludes::new(&tree.exclude)?;
    run_pack(sink, opts, tree.max_dedup_files, progress, move |data| {
        super::tar::produce(input, data, table, &excludes)
    })
}

/// Writes a copy of `tree`'s file table through `out` and returns its section record: for
/// [`crate::ops::flatten()`], whose output keeps the disk stream's bytes where they were, so
/// every entry's data offset stays valid. Pages are rebuilt (their offsets change) and read
/// through the checked lookup path, so a damaged table fails the copy instead of being copied.
pub(crate) fn copy_table(
    tree: &crate::api::FileTree,
    out: &mut SectionOut<'_, '_>,
    codec: Codec,
    level: i32,
) -> Result<SectionRecord> {
    let mut table = TableBuilder::new(codec, level)?;
    for e in tree.iter()? {
        table.push(&e?)?;
    }
    Ok(table.finish(out)?.0)
}

/// Writes a tree archive holding exactly `entries` (in the order given, not checked or
/// sorted) over a data stream holding `data`: for tools and tests that build archives
/// entry by entry, including deliberately invalid ones to test readers. Entries' data
/// offsets are taken as given.
pub fn pack_entries(
    entries: Vec<TreeEntry>,
    data: Vec<u8>,
    output: &Path,
    opts: &PackOptions,
) -> Result<TreePackStats> {
    let mut table = TableBuilder::new(opts.codec, opts.level)?;
    table.unchecked = true;
    let sink = &mut FileSink::create(output)?;
    run_pack(sink, opts, MAX_DEDUP_FILES, None, move |out| {
        out.append(&data)?;
        for e in &entries {
            table.push(e)?;
        }
        Ok(Produced {
            table,
            dedup_files: 0,
            warnings: Vec::new(),
            warning_count: 0,
        })
    })
}
