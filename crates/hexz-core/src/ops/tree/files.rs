//! Writing regular files for [`extract()`](super::extract()): files whose data lie back to back
//! in the data stream (table order: a directory's small files are stored one after the other)
//! are grouped into batches of at most [`SPAN`] bytes; a worker reads a batch's whole range
//! with one read (its blocks decoded once, in parallel on the decode pool), then creates and
//! writes its files. A file larger than [`SPAN`] is a batch of its own, streamed in chunks.
//!
//! Files are created with `O_CREAT | O_EXCL | O_NOFOLLOW` (never through a symlink, never over
//! an existing path unless `force`), in directories the extracting thread has already checked
//! with `lstat`; owner, xattrs, mode and times are then set through the open descriptor.

use crate::api::tree::FileTree;
use crate::error::{Error, Result};
use crate::format::tree::{EntryKind, TreeEntry};
use crate::format::SnapshotStream;
use std::ffi::{CString, OsStr};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Most data bytes one batch spans (and so the buffer one worker holds); a larger file is
/// streamed in chunks of this size.
pub(super) const SPAN: u64 = 4 << 20;
/// Largest hole between a batch's data and the next file's that still joins the batch (files
/// stored elsewhere, such as deduplicated ones, leave holes that are read and skipped).
const GAP: u64 = 64 << 10;
/// Most files in one batch (bounds a batch of empty files).
const MAX_FILES: usize = 1024;
/// Most warnings kept.
const MAX_WARNINGS: usize = 100;

pub(super) fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::InvalidArgument(format!("{} contains a NUL byte", p.display())))
}

pub(super) fn os_err(what: String) -> Error {
    Error::io(what, std::io::Error::last_os_error())
}

pub(super) fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// Regular files whose data lie in `start..end` of the data stream.
#[derive(Default)]
pub(super) struct Batch {
    start: u64,
    end: u64,
    pub(super) files: Vec<TreeEntry>,
}

impl Batch {
    /// Whether regular file `e` (its range checked) can join without the batch spanning more
    /// than [`SPAN`] bytes or skipping more than a small hole.
    pub(super) fn fits(&self, e: &TreeEntry) -> bool {
        if self.files.len() >= MAX_FILES {
            return false;
        }
        if e.size == 0 || self.start == self.end {
            return true;
        }
        e.data_offset >= self.start
            && e.data_offset <= self.end.saturating_add(GAP)
            && e.data_offset + e.size - self.start <= SPAN
    }

    /// Adds `e` (which [`fits`](Self::fits), or the batch is empty).
    pub(super) fn push(&mut self, e: TreeEntry) {
        if e.size > 0 {
            if self.start == self.end {
                self.start = e.data_offset;
                self.end = e.data_offset + e.size;
            } else {
                self.end = self.end.max(e.data_offset + e.size);
            }
        }
        self.files.push(e);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// Counts of what was created.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Counts {
    pub(super) entries: u64,
    pub(super) files: u64,
    pub(super) dirs: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.entries += o.entries;
        self.files += o.files;
        self.dirs += o.dirs;
    }
}

/// What the extracting thread and the file workers share.
pub(super) struct Shared<'a> {
    pub(super) tree: &'a FileTree,
    pub(super) dest: PathBuf,
    pub(super) force: bool,
    pub(super) owners: bool,
    progress: Option<&'a (dyn Fn(u64) + Sync)>,
    bytes: AtomicU64,
    failed: AtomicBool,
    error: Mutex<Option<Error>>,
    warnings: Mutex<Vec<String>>,
}

impl<'a> Shared<'a> {
    pub(super) fn new(
        tree: &'a FileTree,
        dest: &Path,
        force: bool,
        owners: bool,
        progress: Option<&'a (dyn Fn(u64) + Sync)>,
    ) -> Self {
        Shared {
            tree,
            dest: dest.to_path_buf(),
            force,
            owners,
            progress,
            bytes: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
            warnings: Mutex::new(Vec::new()),
        }
    }

    /// The absolute path of table path `rel`.
    pub(super) fn abs(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.dest.clone()
        } else {
            self.dest.join(OsStr::from_bytes(rel))
        }
    }

    pub(super) fn warn(&self, msg: String) {
        if let Ok(mut w) = self.warnings.lock() {
            if w.len() < MAX_WARNINGS {
                w.push(msg);
            }
        }
    }

    /// Records the first error; everyone stops at the next batch or entry.
    pub(super) fn fail(&self, e: Error) {
        if let Ok(mut slot) = self.error.lock() {
            slot.get_or_insert(e);
        }
        self.failed.store(true, Ordering::Release);
    }

    pub(super) fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// The first error a worker (or the extracting thread) recorded.
    pub(super) fn take_error(&self) -> Option<Error> {
        self.error.lock().ok().and_then(|mut e| e.take())
    }

    pub(super) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub(super) fn take_warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }

    fn wrote(&self, n: usize) {
        let total = self.bytes.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if let Some(cb) = self.progress {
            cb(total);
        }
    }

    /// Creates and writes every file of `b`; `buf` is the worker's reusable buffer.
    pub(super) fn write_batch(&self, b: &Batch, buf: &mut Vec<u8>, c: &mut Counts) -> Result<()> {
        let span = b.end - b.start;
        if span > SPAN {
            // A single large file: streamed.
            for e in &b.files {
                self.write_file(e, None, c)?;
            }
            return Ok(());
        }
        let span = span as usize;
        buf.resize(span, 0);
        if span > 0 {
            let got =
                self.tree
                    .file()
                    .read_at_into(SnapshotStream::Disk, b.start, &mut buf[..span])?;
            if got != span {
                return Err(Error::corrupt(
                    "data stream",
                    format!("{got} bytes at offset {} instead of {span}", b.start),
                ));
            }
        }
        for e in &b.files {
            let data = if e.size == 0 {
                &[][..]
            } else {
                let at = (e.data_offset - b.start) as usize;
                &buf[at..at + e.size as usize]
            };
            self.write_file(e, Some(data), c)?;
        }
        Ok(())
    }

    /// Creates regular file `e` with `data` (or, for `None`, its content read in chunks),
    /// then sets its metadata.
    pub(super) fn write_file(
        &self,
        e: &TreeEntry,
        data: Option<&[u8]>,
        c: &mut Counts,
    ) -> Result<()> {
        let p = self.abs(&e.path);
        let mut f = self.create(&p)?;
        let werr = |err| Error::io(format!("writing {}", p.display()), err);
        match data {
            Some(d) => {
                f.write_all(d).map_err(werr)?;
                self.wrote(d.len());
            }
            None => {
                let mut buf = vec![0u8; e.size.min(SPAN) as usize];
                let mut off = 0u64;
                while off < e.size {
                    let n = self.tree.read_file_into(e, off, &mut buf)?;
                    if n == 0 {
                        break;
                    }
                    f.write_all(&buf[..n]).map_err(werr)?;
                    off += n as u64;
                    self.wrote(n);
                }
            }
        }
        c.files += 1;
        c.entries += 1;
        self.file_metadata(e, &p, &f)
    }

    /// Opens a new file at `p` (`O_EXCL | O_NOFOLLOW`); what is there already is an error,
    /// or with `force` removed first.
    fn create(&self, p: &Path) -> Result<std::fs::File> {
        let open = || {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(0o600)
                .open(p)
        };
        match open() {
            Ok(f) => return Ok(f),
            Err(err) if err.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(Error::io(format!("creating {}", p.display()), err))
            }
            Err(_) if !self.force => return Err(exists(p)),
            Err(_) => {}
        }
        let r = match std::fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
            Ok(_) => std::fs::remove_file(p),
            Err(err) => Err(err),
        };
        r.map_err(|err| Error::io(format!("replacing {}", p.display()), err))?;
        open().map_err(|err| Error::io(format!("creating {}", p.display()), err))
    }

    /// Owner, xattrs, mode and times of a regular file, through its descriptor.
    fn file_metadata(&self, e: &TreeEntry, p: &Path, f: &std::fs::File) -> Result<()> {
        let fd = f.as_raw_fd();
        if self.owners {
            // SAFETY: `fd` is an open descriptor.
            if unsafe { libc::fchown(fd, e.uid, e.gid) } != 0 {
                self.warn(format!(
                    "{}: cannot set owner: {}",
                    p.display(),
                    std::io::Error::last_os_error()
                ));
            }
        }
        for (n, v) in &e.xattrs {
            let Ok(cn) = CString::new(n.clone()) else {
                continue;
            };
            // SAFETY: open descriptor, NUL-terminated name; `v` is readable for its length.
            let r = unsafe { libc::fsetxattr(fd, cn.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
            if r != 0 {
                self.warn(format!(
                    "{}: cannot set xattr {}: {}",
                    p.display(),
                    show(n),
                    std::io::Error::last_os_error()
                ));
            }
        }
        // SAFETY: open descriptor.
        if unsafe { libc::fchmod(fd, e.mode as libc::mode_t) } != 0 {
            return Err(os_err(format!("setting mode of {}", p.display())));
        }
        let ts = libc::timespec {
            tv_sec: e.mtime as libc::time_t,
            tv_nsec: e.mtime_nsec as _,
        };
        // SAFETY: open descriptor, two valid timespecs.
        if unsafe { libc::futimens(fd, [ts, ts].as_ptr()) } != 0 {
            return Err(os_err(format!("setting times of {}", p.display())));
        }
        Ok(())
    }

    /// Owner, xattrs, mode and times of a directory, symlink or special file, by path
    /// (never following a symlink).
    pub(super) fn path_metadata(&self, e: &TreeEntry, p: &Path, c: &CString) -> Result<()> {
        if self.owners {
            // SAFETY: NUL-terminated path.
            if unsafe { libc::lchown(c.as_ptr(), e.uid, e.gid) } != 0 {
                self.warn(format!(
                    "{}: cannot set owner: {}",
                    p.display(),
                    std::io::Error::last_os_error()
                ));
            }
        }
        for (n, v) in &e.xattrs {
            let Ok(cn) = CString::new(n.clone()) else {
                continue;
            };
            // SAFETY: NUL-terminated path and name; `v` is readable for its length.
            let r =
                unsafe { libc::lsetxattr(c.as_ptr(), cn.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
            if r != 0 {
                self.warn(format!(
                    "{}: cannot set xattr {}: {}",
                    p.display(),
                    show(n),
                    std::io::Error::last_os_error()
                ));
            }
        }
        if e.kind != EntryKind::Symlink {
            // SAFETY: NUL-terminated path.
            if unsafe { libc::chmod(c.as_ptr(), e.mode as libc::mode_t) } != 0 {
                return Err(os_err(format!("setting mode of {}", p.display())));
            }
        }
        let ts = libc::timespec {
            tv_sec: e.mtime as libc::time_t,
            tv_nsec: e.mtime_nsec as _,
        };
        let times = [ts, ts];
        // SAFETY: NUL-terminated path, two valid timespecs.
        let r = unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                c.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if r != 0 {
            return Err(os_err(format!("setting times of {}", p.display())));
        }
        Ok(())
    }
}

pub(super) fn exists(p: &Path) -> Error {
    Error::InvalidArgument(format!(
        "{} already exists (use --force to overwrite)",
        p.display()
    ))
}

/// A worker: writes the batches it receives until the channel closes; after a failure (its
/// own or anyone's) it only drains the channel.
pub(super) fn worker(sh: &Shared<'_>, rx: crossbeam_channel::Receiver<Batch>) -> Counts {
    let mut buf = Vec::new();
    let mut c = Counts::default();
    for b in rx {
        if sh.failed() {
            continue;
        }
        if let Err(e) = sh.write_batch(&b, &mut buf, &mut c) {
            sh.fail(e);
        }
    }
    c
}
