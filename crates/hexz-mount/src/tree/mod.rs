//! The file-tree view a mount shows for a tree archive (format 1.2): the archive's own
//! directories, files, symlinks, hard links, device nodes and FIFOs, read-only.
//!
//! [`TreeFs`] holds the operations as plain functions returning entries and errnos, so it is
//! tested without mounting; [`fuse`] is the thin FUSE adapter over it.
//!
//! * **Inode numbers** are derived from paths (a 64-bit BLAKE3 prefix of the path; of the
//!   link target for a hard link), so they are stable across mounts and equal for all names
//!   of a hard-linked file. The root is inode 1. A hash collision between two live paths is
//!   resolved by probing (and logged); it changes nothing else.
//! * **The inode table** maps a live inode number to its file table entry. An inode enters
//!   it on `lookup` and leaves it when the kernel `forget`s as many lookups, so it holds what
//!   the kernel holds, never the whole table. Lookups descend the paged B+tree
//!   ([`FileTree::lookup`]): a few pages, kept in the tree's page cache.
//! * **Directories** are listed once per reading ([`FileTree::read_dir`] reads only that
//!   directory's pages) and served by offset, so a 10k-entry directory is listed once
//!   however many `readdir` calls the kernel makes. The listing keeps each entry, so
//!   `readdirplus` (when the mount asks for it) hands out names with their attributes
//!   ([`TreeFs::lookup_item`]) and `ls -l` or `du` need no `lookup` per name.
//! * **Reads** go through the open handle's own [`StreamReader`] on the data stream: only
//!   the blocks a range spans are decoded, through the archive's shared block cache, and
//!   read-ahead follows each handle's own access pattern (two programs reading one file, or
//!   two files, sequentially are each read ahead; a random reader pays nothing).
//! * **Link counts**: the file table records a hard link as a link to its first name but no
//!   per-inode count, so the hard links are counted once at start-up by one pass over the
//!   table (memory proportional to the number of hard-linked files, not to the table).
//!
//! Damaged archive data gives EIO and one log line naming the path; nothing panics.

pub mod fuse;

use crate::error::Error;
use crate::fs::log;
use hexz_core::api::tree::EntryKind;
use hexz_core::api::FileTree;
use hexz_core::format::tree::TreeEntry;
use hexz_core::{SnapshotStream, StreamReader};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Inode number of the root directory.
pub const ROOT_INO: u64 = 1;

/// How many hash probes are tried for a free inode number on a collision.
const MAX_PROBES: u64 = 64;

/// Directory listings kept between `readdir` calls (readers that stop before the end leave
/// theirs behind; beyond this many, one is dropped and made again if asked for).
pub const MAX_LISTINGS: usize = 256;

/// The attributes of one node, as `stat` shows them.
#[derive(Debug, Clone)]
pub struct Stat {
    /// Inode number (equal for the names of one hard-linked file).
    pub ino: u64,
    /// Link count: the number of names of a hard-linked file, 1 otherwise (directories
    /// report 1, "unknown", as btrfs does: tools then do not derive subdirectory counts).
    pub nlink: u32,
    /// The file table entry (type, mode, owner, size, mtime, link target, xattrs).
    pub entry: Arc<TreeEntry>,
}

impl Stat {
    /// Modification time with nanoseconds (times before 1970 included).
    pub fn mtime(&self) -> SystemTime {
        entry_mtime(&self.entry)
    }

    /// The device number in the kernel's FUSE encoding (`new_encode_dev`).
    pub fn rdev_fuse(&self) -> u32 {
        let dev = self.entry.rdev;
        let (major, minor) = (libc::major(dev), libc::minor(dev));
        (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
    }
}

/// Modification time of `e`.
pub fn entry_mtime(e: &TreeEntry) -> SystemTime {
    let nsec = Duration::from_nanos(u64::from(e.mtime_nsec.min(999_999_999)));
    let t = if e.mtime >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(e.mtime as u64))
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(Duration::from_secs(e.mtime.unsigned_abs()))
    };
    t.and_then(|t| t.checked_add(nsec))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// One name in a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirItem {
    /// Inode number (as `stat` would show it).
    pub ino: u64,
    /// Entry kind.
    pub kind: EntryKind,
    /// The name (`.` and `..` included).
    pub name: Vec<u8>,
    /// The file table entry (`None` for `.` and `..`), for `readdirplus`.
    pub entry: Option<Arc<TreeEntry>>,
}

/// An open regular file: its entry and its own reader of the data stream, so read-ahead is
/// tracked per handle.
struct OpenFile {
    entry: Arc<TreeEntry>,
    /// `None` for an empty file (and a tree without a data stream).
    reader: Option<Mutex<StreamReader>>,
}

struct Node {
    entry: Arc<TreeEntry>,
    /// The path that names the inode: the entry's path, or a hard link's target.
    key: Vec<u8>,
    /// Lookups the kernel holds (the root is never forgotten).
    lookups: u64,
}

/// The filesystem of one mounted tree archive.
pub struct TreeFs {
    tree: FileTree,
    inodes: Mutex<HashMap<u64, Node>>,
    /// Names per hard-linked inode, by the path of its first name.
    nlinks: HashMap<Vec<u8>, u32>,
    /// Listings being read, by directory inode (at most [`MAX_LISTINGS`]).
    dirs: Mutex<HashMap<u64, Arc<Vec<DirItem>>>>,
    /// Open file handles.
    files: Mutex<HashMap<u64, Arc<OpenFile>>>,
    next_fh: AtomicU64,
    /// Size of the data stream (0 when the tree has no file bytes).
    data_size: u64,
}

impl std::fmt::Debug for TreeFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeFs").field("tree", &self.tree).finish()
    }
}

/// The inode number a path hashes to (before collision probing). The root is 1; no path
/// gets 0 or 1.
pub fn path_ino(path: &[u8]) -> u64 {
    probe_ino(path, 0)
}

fn probe_ino(path: &[u8], probe: u64) -> u64 {
    if path.is_empty() {
        return ROOT_INO;
    }
    let mut h = blake3::Hasher::new();
    h.update(path);
    if probe > 0 {
        h.update(&probe.to_le_bytes());
    }
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_bytes()[..8]);
    // Keep clear of 0 (invalid) and 1 (the root); stay below 2^63 for tools that use
    // signed inode numbers.
    (u64::from_le_bytes(b) >> 1).max(2)
}

/// The path naming `e`'s inode: its hard link target, or its own path.
fn inode_key(e: &TreeEntry) -> &[u8] {
    if e.is_hardlink() {
        &e.link
    } else {
        &e.path
    }
}

impl TreeFs {
    /// A filesystem over `tree`. Counts the hard links in one pass over the file table; a
    /// damaged table page stops the count with a log line (link counts may then be low),
    /// the mount still works for everything readable.
    pub fn new(tree: FileTree) -> crate::Result<TreeFs> {
        let root = tree
            .lookup(b"")?
            .ok_or_else(|| hexz_core::Error::corrupt("file table", "no root entry"))?;
        let mut nlinks: HashMap<Vec<u8>, u32> = HashMap::new();
        let scan = tree.iter().and_then(|c| {
            for e in c {
                let e = e?;
                if e.is_hardlink() {
                    let n = nlinks.entry(e.link).or_insert(1);
                    *n = n.saturating_add(1);
                }
            }
            Ok(())
        });
        if let Err(e) = scan {
            log(format!("counting hard links stopped early: {e}"));
        }
        let data_size = if tree.file().has_stream(SnapshotStream::Disk) {
            tree.file().size(SnapshotStream::Disk)
        } else {
            0
        };
        let mut inodes = HashMap::new();
        inodes.insert(
            ROOT_INO,
            Node {
                entry: Arc::new(root),
                key: Vec::new(),
                lookups: 1,
            },
        );
        Ok(TreeFs {
            tree,
            inodes: Mutex::new(inodes),
            nlinks,
            dirs: Mutex::new(HashMap::new()),
            files: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            data_size,
        })
    }

    /// The file table.
    pub fn tree(&self) -> &FileTree {
        &self.tree
    }

    /// Inodes currently held (the root included).
    pub fn live_inodes(&self) -> usize {
        self.inodes.lock().map_or(0, |m| m.len())
    }

    fn nlink(&self, e: &TreeEntry) -> u32 {
        if e.kind == EntryKind::File {
            self.nlinks.get(inode_key(e)).copied().unwrap_or(1)
        } else {
            1
        }
    }

    fn stat_of(&self, ino: u64, entry: Arc<TreeEntry>) -> Stat {
        Stat {
            ino,
            nlink: self.nlink(&entry),
            entry,
        }
    }

    fn node_entry(&self, ino: u64) -> Result<Arc<TreeEntry>, i32> {
        let m = self.inodes.lock().map_err(|_| libc::EIO)?;
        m.get(&ino).map(|n| n.entry.clone()).ok_or(libc::ENOENT)
    }

    /// A core error while handling `path`: logged when it is the archive's fault (damaged
    /// or unreadable data), turned into an errno.
    fn fail(&self, what: &str, path: &[u8], e: impl Into<Error>) -> i32 {
        let e = e.into();
        let errno = e.errno();
        log(format!(
            "{what} of '{}' failed: {e}",
            String::from_utf8_lossy(path)
        ));
        if errno == libc::EINVAL {
            // Only damaged table data can make the library reject a path the kernel sent.
            libc::EIO
        } else {
            errno
        }
    }

    /// Records one kernel lookup of `entry` and returns its attributes.
    fn remember(&self, entry: Arc<TreeEntry>) -> Result<Stat, i32> {
        let key = inode_key(&entry).to_vec();
        let mut m = self.inodes.lock().map_err(|_| libc::EIO)?;
        for probe in 0..MAX_PROBES {
            let ino = probe_ino(&key, probe);
            match m.get_mut(&ino) {
                Some(n) if n.key == key => {
                    n.lookups += 1;
                    let e = n.entry.clone();
                    drop(m);
                    return Ok(self.stat_of(ino, e));
                }
                Some(n) => {
                    log(format!(
                        "inode number {ino} of '{}' collides with '{}': probing",
                        String::from_utf8_lossy(&key),
                        String::from_utf8_lossy(&n.key)
                    ));
                }
                None => {
                    m.insert(
                        ino,
                        Node {
                            entry: entry.clone(),
                            key,
                            lookups: 1,
                        },
                    );
                    drop(m);
                    return Ok(self.stat_of(ino, entry));
                }
            }
        }
        Err(libc::EIO)
    }

    /// Looks `name` up in directory `parent`; on success the kernel holds one more lookup
    /// of the returned inode (released by [`TreeFs::forget`]).
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Stat, i32> {
        let dir = self.node_entry(parent)?;
        if dir.kind != EntryKind::Dir {
            return Err(libc::ENOTDIR);
        }
        let path = match name {
            b"" | b"." => dir.path.clone(),
            b".." => hexz_core::format::tree::split_path(&dir.path).0.to_vec(),
            _ if name.contains(&b'/') || name.contains(&0) => return Err(libc::EINVAL),
            _ if dir.path.is_empty() => name.to_vec(),
            _ => [dir.path.as_slice(), b"/", name].concat(),
        };
        match self.tree.lookup(&path) {
            Ok(Some(e)) => self.remember(Arc::new(e)),
            Ok(None) => Err(libc::ENOENT),
            Err(e) => Err(self.fail("lookup", &path, e)),
        }
    }

    /// Records one kernel lookup of listed `item`, as a `readdirplus` reply makes the kernel
    /// hold it (released by [`TreeFs::forget`]), and returns its attributes; `None` for `.`
    /// and `..`, which the kernel neither counts nor caches from a listing.
    pub fn lookup_item(&self, item: &DirItem) -> Result<Option<Stat>, i32> {
        match &item.entry {
            Some(e) => self.remember(e.clone()).map(Some),
            None => Ok(None),
        }
    }

    /// Drops `n` kernel lookups of `ino`; the inode leaves the table at zero.
    pub fn forget(&self, ino: u64, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        if let Ok(mut m) = self.inodes.lock() {
            if let Some(node) = m.get_mut(&ino) {
                node.lookups = node.lookups.saturating_sub(n);
                if node.lookups == 0 {
                    m.remove(&ino);
                }
            }
        }
    }

    /// Attributes of inode `ino`.
    pub fn getattr(&self, ino: u64) -> Result<Stat, i32> {
        let e = self.node_entry(ino)?;
        Ok(self.stat_of(ino, e))
    }

    /// The target of symlink `ino`.
    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>, i32> {
        let e = self.node_entry(ino)?;
        if e.kind != EntryKind::Symlink {
            return Err(libc::EINVAL);
        }
        Ok(e.link.clone())
    }

    /// Opens file `ino` and returns a handle for [`TreeFs::read`] with its own read-ahead
    /// (closed by [`TreeFs::release`]); writing is refused with EROFS.
    pub fn open(&self, ino: u64, write: bool) -> Result<u64, i32> {
        let e = self.node_entry(ino)?;
        if write {
            return Err(libc::EROFS);
        }
        let reader = match e.kind {
            EntryKind::Dir => return Err(libc::EISDIR),
            EntryKind::File if e.size > 0 && self.data_size > 0 => {
                let r = self
                    .tree
                    .file()
                    .reader(SnapshotStream::Disk)
                    .map_err(|err| self.fail("open", &e.path, err))?;
                Some(Mutex::new(r))
            }
            _ => None,
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.files
            .lock()
            .map_err(|_| libc::EIO)?
            .insert(fh, Arc::new(OpenFile { entry: e, reader }));
        Ok(fh)
    }

    /// Closes file handle `fh`.
    pub fn release(&self, fh: u64) {
        if let Ok(mut f) = self.files.lock() {
            f.remove(&fh);
        }
    }

    /// Open file handles (for tests: every `open` is matched by a `release`).
    pub fn open_files(&self) -> usize {
        self.files.lock().map_or(0, |f| f.len())
    }

    /// Reads up to `buf.len()` bytes of regular file `ino` from `offset` through handle
    /// `fh` (the kernel's handle of an open of `ino`; without one, `ino`'s entry is read
    /// without read-ahead); returns how many
    /// (fewer only at the end of the file). Decodes only the blocks the range spans.
    pub fn read(&self, ino: u64, fh: u64, offset: u64, buf: &mut [u8]) -> Result<usize, i32> {
        let open = self.files.lock().map_err(|_| libc::EIO)?.get(&fh).cloned();
        let e = match &open {
            Some(f) => f.entry.clone(),
            None => self.node_entry(ino)?,
        };
        match e.kind {
            EntryKind::File => {}
            EntryKind::Dir => return Err(libc::EISDIR),
            _ => return Err(libc::EINVAL),
        }
        let end = e.data_offset.checked_add(e.size);
        if end.is_none_or(|end| e.size > 0 && end > self.data_size) {
            log(format!(
                "read of '{}' failed: its data (offset {}, length {}) lies outside the \
                 {}-byte data stream",
                String::from_utf8_lossy(&e.path),
                e.data_offset,
                e.size,
                self.data_size
            ));
            return Err(libc::EIO);
        }
        if offset >= e.size || buf.is_empty() {
            return Ok(0);
        }
        let n = (e.size - offset).min(buf.len() as u64) as usize;
        let at = e.data_offset + offset;
        // Concurrent reads of one handle: the first uses the handle's reader, the others
        // read without read-ahead rather than wait.
        let reader = open.as_ref().and_then(|f| f.reader.as_ref());
        let got = match reader.map(|r| r.try_lock()) {
            Some(Ok(mut r)) => r.read_at(at, &mut buf[..n]),
            _ => self
                .tree
                .file()
                .read_at_into(SnapshotStream::Disk, at, &mut buf[..n]),
        }
        .map_err(|err| self.fail("read", &e.path, err))?;
        if got != n {
            log(format!(
                "read of '{}' failed: {got} of {n} bytes at offset {offset}",
                String::from_utf8_lossy(&e.path)
            ));
            return Err(libc::EIO);
        }
        Ok(n)
    }

    /// The listing of directory `ino` (`.`, `..`, then its entries in name order; item `i`
    /// has offset `i + 1`). It is made once and kept until [`TreeFs::listing_done`], so a
    /// large directory is listed once however many `readdir` calls the kernel makes. The
    /// mount has no directory handles (the kernel opens directories without asking us), so
    /// listings are kept by inode: the archive never changes, so one listing serves every
    /// reader of a directory, and a listing dropped early is merely made again.
    pub fn listing(&self, ino: u64) -> Result<Arc<Vec<DirItem>>, i32> {
        if let Some(l) = self.dirs.lock().map_err(|_| libc::EIO)?.get(&ino) {
            return Ok(l.clone());
        }
        let dir = self.node_entry(ino)?;
        if dir.kind != EntryKind::Dir {
            return Err(libc::ENOTDIR);
        }
        let entries = self
            .tree
            .read_dir(&dir.path)
            .map_err(|e| self.fail("listing", &dir.path, e))?;
        let parent = hexz_core::format::tree::split_path(&dir.path).0;
        let mut items = Vec::with_capacity(entries.len() + 2);
        items.push(DirItem {
            ino,
            kind: EntryKind::Dir,
            name: b".".to_vec(),
            entry: None,
        });
        items.push(DirItem {
            ino: path_ino(parent),
            kind: EntryKind::Dir,
            name: b"..".to_vec(),
            entry: None,
        });
        for e in entries {
            items.push(DirItem {
                ino: path_ino(inode_key(&e)),
                kind: e.kind,
                name: e.name().to_vec(),
                entry: Some(Arc::new(e)),
            });
        }
        let items = Arc::new(items);
        let mut dirs = self.dirs.lock().map_err(|_| libc::EIO)?;
        if dirs.len() >= MAX_LISTINGS {
            // Listings whose readers stopped before the end: drop one to stay bounded.
            if let Some(&k) = dirs.keys().next() {
                dirs.remove(&k);
            }
        }
        dirs.insert(ino, items.clone());
        Ok(items)
    }

    /// The listing of `ino` and the index of the first item at directory offset `offset`
    /// (what one `readdir` reply starts from). A call past the end is the one that tells the
    /// kernel the listing is over: it drops the kept listing.
    pub fn listing_from(&self, ino: u64, offset: u64) -> Result<(Arc<Vec<DirItem>>, usize), i32> {
        let items = self.listing(ino)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        if start >= items.len() {
            self.listing_done(ino);
        }
        Ok((items, start))
    }

    /// Drops the kept listing of directory `ino` (a reader has reached its end).
    pub fn listing_done(&self, ino: u64) {
        if let Ok(mut d) = self.dirs.lock() {
            d.remove(&ino);
        }
    }

    /// Listings currently kept (for tests: bounded, and dropped once read to the end).
    pub fn kept_listings(&self) -> usize {
        self.dirs.lock().map_or(0, |d| d.len())
    }

    /// The value of extended attribute `name` of `ino` (ENODATA when it has none such).
    pub fn getxattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>, i32> {
        let e = self.node_entry(ino)?;
        e.xattrs
            .iter()
            .find(|(n, _)| n.as_slice() == name)
            .map(|(_, v)| v.clone())
            .ok_or(libc::ENODATA)
    }

    /// The names of `ino`'s extended attributes, each followed by a NUL byte.
    pub fn listxattr(&self, ino: u64) -> Result<Vec<u8>, i32> {
        let e = self.node_entry(ino)?;
        let mut out = Vec::new();
        for (n, _) in &e.xattrs {
            out.extend_from_slice(n);
            out.push(0);
        }
        Ok(out)
    }

    /// (blocks of 4 KiB, entries) for `statfs`.
    pub fn usage(&self) -> (u64, u64) {
        let h = self.tree.header();
        (h.file_bytes.div_ceil(4096), h.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inode_numbers_are_stable_and_avoid_reserved_values() {
        assert_eq!(path_ino(b""), ROOT_INO);
        let a = path_ino(b"a/b");
        assert_eq!(a, path_ino(b"a/b"));
        assert_ne!(a, path_ino(b"a/c"));
        for p in [&b"x"[..], b"y", b"a/b/c"] {
            let i = path_ino(p);
            assert!((2..1 << 63).contains(&i), "{i}");
            assert_ne!(probe_ino(p, 1), i);
        }
    }

    #[test]
    fn mtime_keeps_nanoseconds_and_negative_seconds() {
        let mut e = TreeEntry::dir(b"d".to_vec());
        e.mtime = 5;
        e.mtime_nsec = 7;
        assert_eq!(
            entry_mtime(&e),
            SystemTime::UNIX_EPOCH + Duration::new(5, 7)
        );
        e.mtime = -2;
        e.mtime_nsec = 500_000_000;
        assert_eq!(
            entry_mtime(&e),
            SystemTime::UNIX_EPOCH - Duration::from_millis(1500)
        );
    }

    #[test]
    fn rdev_is_encoded_for_fuse() {
        let mut e = TreeEntry::dir(b"d".to_vec());
        e.rdev = libc::makedev(8, 0x123);
        let s = Stat {
            ino: 2,
            nlink: 1,
            entry: Arc::new(e),
        };
        // new_encode_dev(8, 0x123) = 0x23 | 8 << 8 | 0x100 << 12
        assert_eq!(s.rdev_fuse(), 0x23 | (8 << 8) | (0x100 << 12));
    }
}
