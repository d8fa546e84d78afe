//! Walking a directory in file table order and feeding its contents to the packer.
//!
//! Table order is (parent directory, name), so the walker visits directories in bytewise
//! order of their paths with a min-heap of pending directories: a child's path is always
//! greater than its parent's, so popping the smallest pending directory yields the
//! directories in order, and each directory's sorted children are the next run of entries.
//! Memory holds the pending directory paths and one directory's listing, not the tree.

use super::pack::{DataOut, Produced, TableBuilder, TreePackOptions, Warnings};
use crate::error::{Error, Result};
use crate::format::tree::{
    EntryKind, TreeEntry, ENTRY_FLAG_HARDLINK, MAX_PATH_LEN, MAX_XATTR_AREA,
};
use crate::ops::PackOptions;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::ffi::{CString, OsStr};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// `--exclude` patterns, split by whether they match a whole path or a name.
pub(super) struct Excludes {
    by_path: globset::GlobSet,
    by_name: globset::GlobSet,
}

impl Excludes {
    pub(super) fn new(patterns: &[String]) -> Result<Self> {
        let mut by_path = globset::GlobSetBuilder::new();
        let mut by_name = globset::GlobSetBuilder::new();
        for p in patterns {
            let trimmed = p.trim_start_matches("./").trim_end_matches('/');
            let g = globset::GlobBuilder::new(trimmed.trim_start_matches('/'))
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| Error::InvalidArgument(format!("--exclude '{p}': {e}")))?;
            if trimmed.contains('/') {
                by_path.add(g);
            } else {
                by_name.add(g);
            }
        }
        let build = |b: globset::GlobSetBuilder| {
            b.build()
                .map_err(|e| Error::InvalidArgument(format!("--exclude: {e}")))
        };
        Ok(Excludes {
            by_path: build(by_path)?,
            by_name: build(by_name)?,
        })
    }

    /// Whether the entry at table path `rel` (last component `name`) is excluded.
    pub(super) fn excluded(&self, rel: &[u8], name: &[u8]) -> bool {
        (!self.by_name.is_empty() && self.by_name.is_match(OsStr::from_bytes(name)))
            || (!self.by_path.is_empty() && self.by_path.is_match(OsStr::from_bytes(rel)))
    }
}

/// Reads the extended attributes of `path` (not following a symlink). Filesystems without
/// xattr support give none.
pub(super) fn read_xattrs(path: &Path) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("path contains a NUL byte"))?;
    let mut names = vec![0u8; 1024];
    let n = loop {
        // SAFETY: `c` is a NUL-terminated path and `names` a writable buffer of the given size.
        let r = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
        if r >= 0 {
            break r as usize;
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) if names.len() < (1 << 20) => names.resize(names.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            _ => return Err(e),
        }
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let cn = CString::new(name).map_err(|_| std::io::Error::other("bad xattr name"))?;
        let mut val = vec![0u8; 256];
        loop {
            // SAFETY: NUL-terminated path and name; `val` is writable for its length.
            let r = unsafe {
                libc::lgetxattr(c.as_ptr(), cn.as_ptr(), val.as_mut_ptr().cast(), val.len())
            };
            if r >= 0 {
                val.truncate(r as usize);
                break;
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ERANGE) if val.len() < (1 << 20) => {
                    let l = val.len();
                    val.resize(l * 4, 0)
                }
                // Removed between list and get.
                Some(libc::ENODATA) => {
                    val.clear();
                    break;
                }
                _ => return Err(e),
            }
        }
        out.push((name.to_vec(), val));
    }
    Ok(out)
}

/// A table entry from `lstat` metadata (data fields zero).
pub(super) fn entry_from_meta(path: Vec<u8>, kind: EntryKind, m: &std::fs::Metadata) -> TreeEntry {
    TreeEntry {
        path,
        kind,
        flags: 0,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        mtime: m.mtime(),
        mtime_nsec: m.mtime_nsec().clamp(0, 999_999_999) as u32,
        size: 0,
        data_offset: 0,
        rdev: if matches!(kind, EntryKind::CharDevice | EntryKind::BlockDevice) {
            m.rdev()
        } else {
            0
        },
        link: Vec::new(),
        xattrs: Vec::new(),
    }
}

fn kind_of(t: std::fs::FileType) -> Option<EntryKind> {
    Some(if t.is_file() {
        EntryKind::File
    } else if t.is_dir() {
        EntryKind::Dir
    } else if t.is_symlink() {
        EntryKind::Symlink
    } else if t.is_char_device() {
        EntryKind::CharDevice
    } else if t.is_block_device() {
        EntryKind::BlockDevice
    } else if t.is_fifo() {
        EntryKind::Fifo
    } else if t.is_socket() {
        EntryKind::Socket
    } else {
        return None;
    })
}

fn shown(p: &Path) -> String {
    p.display().to_string()
}

/// Entries of one directory handled together (see [`Walker::run_of_entries`]): bounds the
/// memory a huge directory takes to this many entries.
const RUN_ENTRIES: usize = 4096;

/// A name's extension (after its last `.`, unless that is the first byte), or empty.
fn extension(name: &[u8]) -> &[u8] {
    match name.iter().rposition(|&c| c == b'.') {
        Some(i) if i > 0 => &name[i + 1..],
        _ => b"",
    }
}

/// BLAKE3 of the next `size` bytes of `f`, or `None` when it holds another number of bytes.
fn hash_whole(
    f: &mut std::fs::File,
    size: u64,
    buf: &mut [u8],
) -> std::io::Result<Option<[u8; 32]>> {
    let mut hasher = blake3::Hasher::new();
    let mut got = 0u64;
    while got < size {
        let want = (size - got).min(buf.len() as u64) as usize;
        let n = f.read(&mut buf[..want])?;
        if n == 0 {
            return Ok(None);
        }
        hasher.update(&buf[..n]);
        got += n as u64;
    }
    if f.read(&mut buf[..1])? != 0 {
        return Ok(None);
    }
    Ok(Some(*hasher.finalize().as_bytes()))
}

/// Walks one directory tree into the data stream and the file table.
pub(super) struct Walker {
    root: PathBuf,
    excludes: Excludes,
    warnings: Warnings,
    table: TableBuilder,
}

impl Walker {
    pub(super) fn new(
        root: &Path,
        output: Option<&Path>,
        opts: &PackOptions,
        tree: &TreePackOptions,
    ) -> Result<Walker> {
        let meta = std::fs::metadata(root)
            .map_err(|e| Error::io(format!("cannot read {}", root.display()), e))?;
        if !meta.is_dir() {
            return Err(Error::InvalidArgument(format!(
                "{} is not a directory",
                root.display()
            )));
        }
        let canon_root = std::fs::canonicalize(root)
            .map_err(|e| Error::io(format!("resolving {}", root.display()), e))?;
        if let Some(output) = output {
            let out_dir = match output.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if let Ok(d) = std::fs::canonicalize(&out_dir) {
                if d.starts_with(&canon_root) {
                    return Err(Error::InvalidArgument(format!(
                        "the output {} is inside the directory being packed ({}); write it \
                         elsewhere",
                        output.display(),
                        root.display()
                    )));
                }
            }
        }
        Ok(Walker {
            root: root.to_path_buf(),
            excludes: Excludes::new(&tree.exclude)?,
            warnings: Warnings {
                strict: tree.strict,
                list: Vec::new(),
                count: 0,
            },
            table: TableBuilder::new(opts.codec, opts.level)?,
        })
    }

    fn abs(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(OsStr::from_bytes(rel))
        }
    }

    fn xattrs(&mut self, e: &mut TreeEntry, abs: &Path) -> Result<()> {
        match read_xattrs(abs) {
            Ok(x) => {
                let area: usize = x.iter().map(|(n, v)| 8 + n.len() + v.len()).sum();
                if area > MAX_XATTR_AREA || x.iter().any(|(n, _)| n.len() > u16::MAX as usize) {
                    self.warnings.warn(format!(
                        "{}: extended attributes larger than 1 MiB were not stored",
                        shown(abs)
                    ))?;
                } else {
                    e.xattrs = x;
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => self.warnings.warn(format!(
                "{}: cannot read extended attributes: {err}",
                shown(abs)
            ))?,
        }
        Ok(())
    }

    pub(super) fn run(mut self, data: &mut DataOut) -> Result<Produced> {
        let root_meta = std::fs::symlink_metadata(&self.root)
            .map_err(|e| Error::io(format!("cannot read {}", self.root.display()), e))?;
        let mut root = entry_from_meta(Vec::new(), EntryKind::Dir, &root_meta);
        let abs = self.root.clone();
        self.xattrs(&mut root, &abs)?;
        self.table.push(&root)?;
        let mut pending: BinaryHeap<Reverse<Vec<u8>>> = BinaryHeap::new();
        pending.push(Reverse(Vec::new()));
        let mut links: HashMap<(u64, u64), (Vec<u8>, u64, u64)> = HashMap::new();
        let mut buf = vec![0u8; 1 << 20];
        while let Some(Reverse(dir)) = pending.pop() {
            let abs_dir = self.abs(&dir);
            let rd = match std::fs::read_dir(&abs_dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.warnings
                        .warn(format!("{}: vanished while packing", shown(&abs_dir)))?;
                    continue;
                }
                Err(e) => return Err(Error::io(format!("cannot list {}", shown(&abs_dir)), e)),
            };
            let mut names = Vec::new();
            for d in rd {
                let d = d.map_err(|e| Error::io(format!("cannot list {}", shown(&abs_dir)), e))?;
                names.push(d.file_name().as_bytes().to_vec());
            }
            names.sort_unstable();
            for run in names.chunks(RUN_ENTRIES) {
                self.run_of_entries(&dir, run, data, &mut pending, &mut links, &mut buf)?;
            }
        }
        Ok(Produced {
            table: self.table,
            dedup_files: 0,
            warnings: self.warnings.list,
            warning_count: self.warnings.count,
        })
    }

    /// Stores one run of a directory's entries (`names`, sorted): entries go into the table
    /// in name order, but the contents of single-link files go into the data stream in
    /// (extension, name) order, so files of one kind share blocks: a block that mixes, say,
    /// JPEG bytes with text compresses the text worse (one literal table per zstd block).
    /// Files with more links keep name order: the first in table order holds the data.
    fn run_of_entries(
        &mut self,
        dir: &[u8],
        names: &[Vec<u8>],
        data: &mut DataOut,
        pending: &mut BinaryHeap<Reverse<Vec<u8>>>,
        links: &mut HashMap<(u64, u64), (Vec<u8>, u64, u64)>,
        buf: &mut [u8],
    ) -> Result<()> {
        // (entry, metadata of a single-link file whose data is still to be written)
        let mut run: Vec<(TreeEntry, Option<std::fs::Metadata>)> = Vec::with_capacity(names.len());
        for name in names {
            let mut rel = dir.to_vec();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(name);
            if self.excludes.excluded(&rel, name) {
                continue;
            }
            let abs = self.abs(&rel);
            if rel.len() > MAX_PATH_LEN {
                return Err(Error::InvalidArgument(format!(
                    "{}: path longer than {MAX_PATH_LEN} bytes",
                    shown(&abs)
                )));
            }
            let meta = match std::fs::symlink_metadata(&abs) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.warnings
                        .warn(format!("{}: vanished while packing", shown(&abs)))?;
                    continue;
                }
                Err(e) => return Err(Error::io(format!("cannot stat {}", shown(&abs)), e)),
            };
            let Some(kind) = kind_of(meta.file_type()) else {
                self.warnings
                    .warn(format!("{}: unknown file type, not stored", shown(&abs)))?;
                continue;
            };
            let mut e = entry_from_meta(rel.clone(), kind, &meta);
            match kind {
                EntryKind::Dir => pending.push(Reverse(rel.clone())),
                EntryKind::Symlink => {
                    let t = match std::fs::read_link(&abs) {
                        Ok(t) => t,
                        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                            self.warnings
                                .warn(format!("{}: vanished while packing", shown(&abs)))?;
                            continue;
                        }
                        Err(err) => {
                            return Err(Error::io(format!("cannot read {}", shown(&abs)), err))
                        }
                    };
                    e.link = t.as_os_str().as_bytes().to_vec();
                    if e.link.is_empty() || e.link.len() > MAX_PATH_LEN {
                        return Err(Error::InvalidArgument(format!(
                            "{}: symlink target of {} bytes is not storable",
                            shown(&abs),
                            e.link.len()
                        )));
                    }
                    e.size = e.link.len() as u64;
                }
                EntryKind::File if meta.nlink() <= 1 => {
                    run.push((e, Some(meta)));
                    continue;
                }
                EntryKind::File => {
                    let key = (meta.dev(), meta.ino());
                    if let Some((target, off, size)) = links.get(&key) {
                        e.flags = ENTRY_FLAG_HARDLINK;
                        e.link = target.clone();
                        e.data_offset = *off;
                        e.size = *size;
                    } else {
                        let Some((off, size)) = self.file_data(&abs, &meta, data, buf)? else {
                            continue;
                        };
                        e.data_offset = off;
                        e.size = size;
                        links.insert(key, (rel.clone(), off, size));
                    }
                }
                _ => {}
            }
            run.push((e, None));
        }
        let mut order: Vec<usize> = (0..run.len()).filter(|&i| run[i].1.is_some()).collect();
        order.sort_by(|&a, &b| {
            let (na, nb) = (run[a].0.name(), run[b].0.name());
            extension(na).cmp(extension(nb)).then_with(|| na.cmp(nb))
        });
        let mut vanished = vec![false; run.len()];
        for i in order {
            let abs = self.abs(&run[i].0.path);
            let meta = run[i].1.take().expect("a deferred file");
            match self.file_data(&abs, &meta, data, buf)? {
                Some((off, size)) => (run[i].0.data_offset, run[i].0.size) = (off, size),
                None => vanished[i] = true,
            }
        }
        for (i, (mut e, _)) in run.into_iter().enumerate() {
            if vanished[i] {
                continue;
            }
            let abs = self.abs(&e.path);
            self.xattrs(&mut e, &abs)?;
            self.table.push(&e)?;
        }
        Ok(())
    }

    /// Sends one regular file's bytes; returns (data offset, bytes stored), or `None` when it
    /// vanished. A size or mtime change while reading is a warning (error with `strict`).
    fn file_data(
        &mut self,
        abs: &Path,
        meta: &std::fs::Metadata,
        data: &mut DataOut,
        buf: &mut [u8],
    ) -> Result<Option<(u64, u64)>> {
        let mut f = match std::fs::File::open(abs) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.warnings
                    .warn(format!("{}: vanished while packing", shown(abs)))?;
                return Ok(None);
            }
            Err(e) => return Err(Error::io(format!("cannot open {}", shown(abs)), e)),
        };
        let size = meta.len();
        let rd = |e| Error::io(format!("reading {}", shown(abs)), e);
        let mut changed = false;
        let (off, got) = if size < data.small {
            let mut bytes = Vec::with_capacity(size as usize);
            (&mut f)
                .take(size + 1)
                .read_to_end(&mut bytes)
                .map_err(rd)?;
            if bytes.len() as u64 != size {
                changed = true;
                bytes.truncate(size as usize);
            }
            (data.small_file(&bytes)?, bytes.len() as u64)
        } else {
            // A large file as long as an earlier one may repeat it: hash it first and point
            // at the earlier copy when it does (a second read, for size collisions only).
            let mut repeat = None;
            if data.large_size_seen(size) {
                if let Some(h) = hash_whole(&mut f, size, buf).map_err(rd)? {
                    repeat = data.large_lookup(size, &h);
                }
                if repeat.is_none() {
                    f.seek(SeekFrom::Start(0)).map_err(rd)?;
                }
            }
            match repeat {
                Some(off) => (off, size),
                None => {
                    let off = data.begin_large()?;
                    let mut hasher = blake3::Hasher::new();
                    let mut got = 0u64;
                    while got < size {
                        let want = (size - got).min(buf.len() as u64) as usize;
                        let n = f.read(&mut buf[..want]).map_err(rd)?;
                        if n == 0 {
                            changed = true;
                            break;
                        }
                        data.append(&buf[..n])?;
                        hasher.update(&buf[..n]);
                        got += n as u64;
                    }
                    if !changed && f.read(&mut buf[..1]).map_err(rd)? != 0 {
                        changed = true;
                    }
                    if !changed {
                        data.remember_large(size, *hasher.finalize().as_bytes(), off);
                    }
                    (off, got)
                }
            }
        };
        if let Ok(now) = f.metadata() {
            if now.len() != size
                || now.mtime() != meta.mtime()
                || now.mtime_nsec() != meta.mtime_nsec()
            {
                changed = true;
            }
        }
        if changed {
            self.warnings
                .warn(format!("{}: changed while packing", shown(abs)))?;
        }
        Ok(Some((if got == 0 { 0 } else { off }, got)))
    }
}
