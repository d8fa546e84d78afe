//! Extracting a tree archive (or subtrees of it) to a directory.
//!
//! Safety: nothing is written outside the destination. Table paths are relative without `.`
//! or `..` components (checked when a page is decoded), entries must be strictly increasing
//! (a duplicate is refused), and before an entry is created every directory on its way is
//! checked with `lstat`: a symlink there — from the archive or already on disk — refuses the
//! entry with an error naming it. Files are created with `O_EXCL | O_NOFOLLOW`; an existing
//! path is an error unless `force` is set. Directory modes and times are applied last, deepest
//! first, so read-only directories can still be filled.

use crate::api::tree::{normalize_path, FileTree};
use crate::error::{Error, Result};
use crate::format::tree::{split_path, EntryKind, TreeEntry};
use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// How to extract.
#[derive(Debug, Clone, Default)]
pub struct ExtractOptions {
    /// Replace existing files (and empty directories' metadata) instead of refusing.
    pub force: bool,
    /// Subtrees to extract (table paths as given by the user); empty means the whole tree.
    pub paths: Vec<Vec<u8>>,
    /// Restore owners: `None` when running as root, `Some(true)` always, `Some(false)` never.
    pub owners: Option<bool>,
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
    /// Metadata that could not be restored (ownership, xattrs), one line each, at most 100.
    pub warnings: Vec<String>,
}

fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::InvalidArgument(format!("{} contains a NUL byte", p.display())))
}

fn os_err(what: String) -> Error {
    Error::io(what, std::io::Error::last_os_error())
}

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

struct Extractor<'a> {
    tree: &'a FileTree,
    dest: PathBuf,
    force: bool,
    owners: bool,
    /// Directories (relative) verified to be real directories inside `dest`.
    verified: HashSet<Vec<u8>>,
    /// Directory metadata to apply at the end.
    dirs: Vec<TreeEntry>,
    /// Paths written in this run (duplicates across overlapping requests are skipped).
    stats: ExtractStats,
    progress: Option<&'a (dyn Fn(u64) + Sync)>,
}

impl Extractor<'_> {
    fn abs(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.dest.clone()
        } else {
            self.dest.join(OsStr::from_bytes(rel))
        }
    }

    fn warn(&mut self, msg: String) {
        if self.stats.warnings.len() < 100 {
            self.stats.warnings.push(msg);
        }
    }

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
            let p = self.abs(prefix);
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(Error::InvalidArgument(format!(
                        "refusing entry '{}': it would be written through the symlink '{}'",
                        show(rel),
                        show(prefix)
                    )))
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(Error::InvalidArgument(format!(
                        "refusing entry '{}': '{}' is not a directory",
                        show(rel),
                        show(prefix)
                    )))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
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
            Ok(_) if !self.force => Err(Error::InvalidArgument(format!(
                "{} already exists (use --force to overwrite)",
                p.display()
            ))),
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

    fn entry(&mut self, e: TreeEntry) -> Result<()> {
        if e.path.is_empty() {
            std::fs::create_dir_all(&self.dest)
                .map_err(|err| Error::io(format!("creating {}", self.dest.display()), err))?;
            self.dirs.push(e);
            return Ok(());
        }
        self.ensure_parent(&e.path)?;
        let p = self.abs(&e.path);
        let fresh = self.make_room(&e, &p)?;
        let c = cpath(&p)?;
        match e.kind {
            EntryKind::Dir => {
                if fresh {
                    std::fs::create_dir(&p)
                        .map_err(|err| Error::io(format!("creating {}", p.display()), err))?;
                }
                self.verified.insert(e.path.clone());
                self.stats.dirs += 1;
                self.stats.entries += 1;
                self.dirs.push(e);
                return Ok(());
            }
            EntryKind::File if e.is_hardlink() => {
                self.ensure_parent(&e.link)?;
                let target = self.abs(&e.link);
                let linked = matches!(std::fs::symlink_metadata(&target), Ok(m) if m.is_file())
                    && std::fs::hard_link(&target, &p).is_ok();
                if !linked {
                    // The target is not part of this extraction: write the content itself.
                    self.write_file(&e, &p)?;
                } else {
                    self.stats.files += 1;
                    self.stats.entries += 1;
                    return Ok(());
                }
            }
            EntryKind::File => self.write_file(&e, &p)?,
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
        if e.kind == EntryKind::File {
            self.stats.files += 1;
        }
        self.stats.entries += 1;
        self.metadata(&e, &p, &c)
    }

    fn write_file(&mut self, e: &TreeEntry, p: &Path) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(p)
            .map_err(|err| Error::io(format!("creating {}", p.display()), err))?;
        let mut off = 0u64;
        while off < e.size {
            let n = (e.size - off).min(4 << 20) as usize;
            let b = self.tree.read_file(e, off, n)?;
            if b.is_empty() {
                break;
            }
            f.write_all(&b)
                .map_err(|err| Error::io(format!("writing {}", p.display()), err))?;
            off += b.len() as u64;
            self.stats.bytes += b.len() as u64;
            if let Some(cb) = self.progress {
                cb(self.stats.bytes);
            }
        }
        Ok(())
    }

    /// Owner, xattrs, mode and times of a non-directory entry (or a directory, at the end).
    fn metadata(&mut self, e: &TreeEntry, p: &Path, c: &CString) -> Result<()> {
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

/// Extracts `tree` (or the subtrees in `opts.paths`) into `dest`, which is created if needed.
/// `progress` gets the file bytes written so far.
pub fn extract(
    tree: &FileTree,
    dest: &Path,
    opts: &ExtractOptions,
    progress: Option<&(dyn Fn(u64) + Sync)>,
) -> Result<ExtractStats> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut x = Extractor {
        tree,
        dest: dest.to_path_buf(),
        force: opts.force,
        owners: opts.owners.unwrap_or(root),
        verified: HashSet::new(),
        dirs: Vec::new(),
        stats: ExtractStats::default(),
        progress,
    };
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
    for p in &wanted {
        tree.walk(p, &mut |e| x.entry(e))?;
    }
    // Directories last, deepest first, so their times are not disturbed by their contents.
    let dirs = std::mem::take(&mut x.dirs);
    for d in dirs.iter().rev() {
        let p = x.abs(&d.path);
        let c = cpath(&p)?;
        x.metadata(d, &p, &c)?;
    }
    Ok(x.stats)
}
