//! Extracting a tree archive (or subtrees of it) to a directory.
//!
//! The calling thread walks the table in order and does all directory work itself: it creates
//! directories, symlinks and special files, and checks every directory on an entry's way.
//! Regular files go, in batches of files stored back to back, to a bounded set of worker
//! threads ([`files`](super::files)): each batch is read once (its blocks decoded in parallel
//! on the decode pool) and its files created and written. Memory in flight is bounded: a
//! worker holds one batch's data (at most 4 MiB) and the queue at most two batches (file
//! entries only) per worker. Hard links are made once every
//! file is written, and directory modes and times last, deepest first, so read-only
//! directories can still be filled. The first error stops the walk and the workers.
//!
//! Safety: nothing is written outside the destination. Table paths are relative without `.`
//! or `..` components (checked when a page is decoded), entries must be strictly increasing
//! (a duplicate is refused), and before an entry is created or queued every directory on its
//! way is checked with `lstat`: a symlink there — from the archive or already on disk — refuses
//! the entry with an error naming it. Only the calling thread creates directories and
//! symlinks, so a directory checked once stays one. Files are created with `O_EXCL |
//! O_NOFOLLOW`; an existing path is an error unless `force` is set.

use super::files::{cpath, exists, os_err, show, worker, Batch, Counts, Shared, SPAN};
use crate::api::tree::{normalize_path, FileTree};
use crate::error::{Error, Result};
use crate::format::tree::{split_path, EntryKind, TreeEntry};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// How to extract.
#[derive(Debug, Clone, Default)]
pub struct ExtractOptions {
    /// Replace existing files (and empty directories' metadata) instead of refusing.
    pub force: bool,
    /// Subtrees to extract (table paths as given by the user); empty means the whole tree.
    pub paths: Vec<Vec<u8>>,
    /// Restore owners: `None` when running as root, `Some(true)` always, `Some(false)` never.
    pub owners: Option<bool>,
    /// Threads creating and writing regular files (0: two per core, at least 4 and at most
    /// 16; 1: everything on the calling thread).
    pub threads: usize,
}

/// What an extract did.
#[derive(Debug, Clone, Default)]
pub struct ExtractStats {
    /// Entries created.
    pub entries: u64,
    /// Regular files (hard links included).
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// File bytes written.
    pub bytes: u64,
    /// Metadata that could not be restored (ownership, xattrs), one line each, at most 100
    /// (in the order the worker threads met them).
    pub warnings: Vec<String>,
}

/// Directory work done on the extracting thread; regular files go to the workers in batches.
struct Extractor<'s, 'a> {
    sh: &'s Shared<'a>,
    /// The workers' queue; `None` writes the batches on this thread.
    tx: Option<crossbeam_channel::Sender<Batch>>,
    /// Directories (relative) verified to be real directories inside `dest`.
    verified: HashSet<Vec<u8>>,
    /// Directory metadata to apply at the end.
    dirs: Vec<TreeEntry>,
    /// Hard links, made once every file is written.
    links: Vec<TreeEntry>,
    /// Regular files gathered for the next batch.
    batch: Batch,
    counts: Counts,
    /// Buffer for batches written on this thread.
    buf: Vec<u8>,
}

/// The walk was stopped because a worker failed (its error is reported instead).
fn stopped() -> Error {
    Error::InvalidArgument("extract stopped after an error".into())
}

impl Extractor<'_, '_> {
    /// Makes sure every directory above `rel` is a real directory in `dest` (creating missing
    /// ones), refusing symlinks and other files on the way.
    fn ensure_parent(&mut self, rel: &[u8]) -> Result<()> {
        let parent = split_path(rel).0;
        if parent.is_empty() || self.verified.contains(parent) {
            return Ok(());
        }
        let mut upto = 0;
        for c in parent.split(|&b| b == b'/') {
            upto += c.len();
            let prefix = &parent[..upto];
            upto += 1;
            if self.verified.contains(prefix) {
                continue;
            }
            let p = self.sh.abs(prefix);
            let not_dir = || {
                Error::InvalidArgument(format!(
                    "refusing entry '{}': '{}' is not a directory",
                    show(rel),
                    show(prefix)
                ))
            };
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(Error::InvalidArgument(format!(
                        "refusing entry '{}': it would be written through the symlink '{}'",
                        show(rel),
                        show(prefix)
                    )))
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(not_dir()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // A file of the archive may be queued there but not written yet.
                    if matches!(self.sh.tree.lookup(prefix)?, Some(t) if t.kind != EntryKind::Dir) {
                        return Err(not_dir());
                    }
                    std::fs::create_dir(&p)
                        .map_err(|e| Error::io(format!("creating {}", p.display()), e))?;
                }
                Err(e) => return Err(Error::io(format!("checking {}", p.display()), e)),
            }
            self.verified.insert(prefix.to_vec());
        }
        Ok(())
    }

    /// Clears the way for a new entry at `p`: an error if something is there, unless `force`.
    fn make_room(&mut self, e: &TreeEntry, p: &Path) -> Result<bool> {
        match std::fs::symlink_metadata(p) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(true),
            Err(err) => Err(Error::io(format!("checking {}", p.display()), err)),
            Ok(m) if m.is_dir() && e.kind == EntryKind::Dir => Ok(false),
            Ok(_) if !self.sh.force => Err(exists(p)),
            Ok(m) => {
                let r = if m.is_dir() {
                    std::fs::remove_dir_all(p)
                } else {
                    std::fs::remove_file(p)
                };
                r.map_err(|err| Error::io(format!("replacing {}", p.display()), err))?;
                Ok(true)
            }
        }
    }

    /// Hands the gathered batch to a worker (or writes it here).
    fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let b = std::mem::take(&mut self.batch);
        match &self.tx {
            Some(tx) => tx.send(b).map_err(|_| stopped()),
            None => self.sh.write_batch(&b, &mut self.buf, &mut self.counts),
        }
    }

    /// Queues regular file `e` (not a hard link) for a worker.
    fn queue(&mut self, e: TreeEntry) -> Result<()> {
        self.sh.tree.data_range(&e)?;
        if !self.batch.fits(&e) || e.size > SPAN {
            self.flush()?;
        }
        let large = e.size > SPAN;
        self.batch.push(e);
        if large {
            self.flush()?;
        }
        Ok(())
    }

    fn entry(&mut self, e: TreeEntry) -> Result<()> {
        if self.sh.failed() {
            return Err(stopped());
        }
        if e.path.is_empty() {
            std::fs::create_dir_all(&self.sh.dest)
                .map_err(|err| Error::io(format!("creating {}", self.sh.dest.display()), err))?;
            self.dirs.push(e);
            return Ok(());
        }
        self.ensure_parent(&e.path)?;
        match e.kind {
            EntryKind::File if e.is_hardlink() => {
                self.links.push(e);
                return Ok(());
            }
            EntryKind::File => return self.queue(e),
            _ => {}
        }
        let p = self.sh.abs(&e.path);
        let fresh = self.make_room(&e, &p)?;
        let c = cpath(&p)?;
        match e.kind {
            EntryKind::Dir => {
                if fresh {
                    std::fs::create_dir(&p)
                        .map_err(|err| Error::io(format!("creating {}", p.display()), err))?;
                }
                self.verified.insert(e.path.clone());
                self.counts.dirs += 1;
                self.counts.entries += 1;
                self.dirs.push(e);
                return Ok(());
            }
            EntryKind::File => unreachable!("regular files are queued above"),
            EntryKind::Symlink => {
                std::os::unix::fs::symlink(OsStr::from_bytes(&e.link), &p)
                    .map_err(|err| Error::io(format!("creating symlink {}", p.display()), err))?;
            }
            EntryKind::CharDevice
            | EntryKind::BlockDevice
            | EntryKind::Fifo
            | EntryKind::Socket => {
                // SAFETY: `c` is a NUL-terminated path.
                let r = unsafe {
                    libc::mknod(
                        c.as_ptr(),
                        (e.kind.mode_bits() | e.mode) as libc::mode_t,
                        e.rdev,
                    )
                };
                if r != 0 {
                    return Err(os_err(format!(
                        "creating {} {}",
                        e.kind.name(),
                        p.display()
                    )));
                }
            }
        }
        self.counts.entries += 1;
        self.sh.path_metadata(&e, &p, &c)
    }

    /// A hard link, once every file is written: a link to its target when that was
    /// extracted (or is a file already there), else a copy of the content.
    fn link(&mut self, e: &TreeEntry) -> Result<()> {
        self.ensure_parent(&e.link)?;
        let p = self.sh.abs(&e.path);
        let target = self.sh.abs(&e.link);
        if matches!(std::fs::symlink_metadata(&target), Ok(m) if m.is_file()) {
            let fresh = self.make_room(e, &p)?;
            if fresh && std::fs::hard_link(&target, &p).is_ok() {
                self.counts.files += 1;
                self.counts.entries += 1;
                return Ok(());
            }
        }
        // The target is not part of this extraction: write the content itself.
        self.sh.write_file(e, None, &mut self.counts)
    }
}

/// Extracts `tree` (or the subtrees in `opts.paths`) into `dest`, which is created if needed.
/// `progress` gets the file bytes written so far (called from the worker threads).
pub fn extract(
    tree: &FileTree,
    dest: &Path,
    opts: &ExtractOptions,
    progress: Option<&(dyn Fn(u64) + Sync)>,
) -> Result<ExtractStats> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let sh = Shared::new(
        tree,
        dest,
        opts.force,
        opts.owners.unwrap_or(root),
        progress,
    );
    std::fs::create_dir_all(dest)
        .map_err(|e| Error::io(format!("creating {}", dest.display()), e))?;
    let mut wanted: Vec<Vec<u8>> = opts
        .paths
        .iter()
        .map(|p| normalize_path(p))
        .collect::<Result<_>>()?;
    wanted.sort();
    wanted.dedup();
    // Drop requests inside other requests (they would be extracted twice).
    let all = wanted.clone();
    wanted.retain(|p| {
        !all.iter().any(|q| {
            q != p && (q.is_empty() || (p.starts_with(q) && p.get(q.len()) == Some(&b'/')))
        })
    });
    if wanted.is_empty() {
        wanted.push(Vec::new());
    }
    for p in &wanted {
        if tree.lookup(p)?.is_none() {
            return Err(Error::InvalidArgument(format!(
                "no such file or directory in the archive: '{}'",
                show(p)
            )));
        }
    }
    let threads = match opts.threads {
        // Twice the cores: a worker often waits (page faults, the directory lock, writeback).
        0 => std::thread::available_parallelism().map_or(4, |n| (n.get() * 2).clamp(4, 16)),
        n => n,
    };
    let mut x = Extractor {
        sh: &sh,
        tx: None,
        verified: HashSet::new(),
        dirs: Vec::new(),
        links: Vec::new(),
        batch: Batch::default(),
        counts: Counts::default(),
        buf: Vec::new(),
    };
    let walked = std::thread::scope(|s| {
        let mut workers = Vec::new();
        if threads > 1 {
            let (tx, rx) = crossbeam_channel::bounded(threads * 2);
            for i in 0..threads {
                let rx = rx.clone();
                let sh = &sh;
                let w = std::thread::Builder::new()
                    .name(format!("hexz-extract-{i}"))
                    .spawn_scoped(s, move || worker(sh, rx));
                // Fewer workers (or none: this thread writes) when threads cannot be made.
                if let Ok(w) = w {
                    workers.push(w);
                }
            }
            if !workers.is_empty() {
                x.tx = Some(tx);
            }
        }
        let mut r = Ok(());
        for p in &wanted {
            r = tree.walk(p, &mut |e| x.entry(e));
            if r.is_err() {
                break;
            }
        }
        if r.is_ok() {
            r = x.flush();
        }
        x.tx = None;
        for w in workers {
            match w.join() {
                Ok(c) => x.counts += c,
                Err(_) => sh.fail(Error::InvalidArgument(
                    "an extract worker thread panicked".into(),
                )),
            }
        }
        r
    });
    // A worker's error first: the walk may have stopped because of it.
    if let Some(e) = sh.take_error() {
        return Err(e);
    }
    walked?;
    // Hard links after their targets are written.
    for l in std::mem::take(&mut x.links) {
        x.link(&l)?;
    }
    // Directories last, deepest first, so their times are not disturbed by their contents.
    let dirs = std::mem::take(&mut x.dirs);
    for d in dirs.iter().rev() {
        let p = sh.abs(&d.path);
        let c = cpath(&p)?;
        sh.path_metadata(d, &p, &c)?;
    }
    Ok(ExtractStats {
        entries: x.counts.entries,
        files: x.counts.files,
        dirs: x.counts.dirs,
        bytes: sh.bytes(),
        warnings: sh.take_warnings(),
    })
}
