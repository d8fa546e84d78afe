//! The FUSE adapter of [`TreeFs`]: each callback calls one `TreeFs` method and turns its
//! result into a reply or an errno. The mount is read-only (`ro`): the kernel refuses
//! writes, creates, renames and removals with EROFS before they reach us, and an open for
//! writing or a `setattr` that gets here is refused with EROFS too.
//!
//! Attributes, names and file pages are cached by the kernel for an hour
//! (`FOPEN_KEEP_CACHE`, long time-outs): an archive never changes under a mount. Listings
//! are plain `readdir` replies by default, or with [`MountOptions::readdirplus`]
//! `readdirplus` replies (names with attributes, so `ls -l` or `du` cost no `lookup` per
//! name, at the price of an inode per name listed). Directories are opened without a
//! request (`opendir` answers ENOSYS once, and the kernel then opens and releases
//! directories on its own, caching their listings), so a directory costs its listing only.
//! Files are opened the same way (`open` answers ENOSYS once; the kernel then opens them
//! without a request, keeps their cached pages, and sends no `release`), and `flush` answers
//! ENOSYS once too, so reading a small file costs a `lookup` and a `read`. Reads then carry
//! no handle and go without the library's per-handle read-ahead; the kernel's own 8 MiB
//! read-ahead window, decoded in parallel, is what sequential reads of large files get.

use super::{Stat, TreeFs};
use crate::error::Result;
use crate::fuse::{mount_filesystem, MountOptions, Mounted, MAX_IO};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};
use hexz_core::api::tree::EntryKind;
use std::cell::RefCell;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long the kernel may cache attributes and names: the archive never changes.
const TTL: Duration = Duration::from_secs(3600);

thread_local! {
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

struct TreeFuse {
    fs: Arc<TreeFs>,
    /// Ask the kernel for `readdirplus` ([`MountOptions::readdirplus`]).
    readdirplus: bool,
}

fn kind(k: EntryKind) -> FileType {
    match k {
        EntryKind::File => FileType::RegularFile,
        EntryKind::Dir => FileType::Directory,
        EntryKind::Symlink => FileType::Symlink,
        EntryKind::CharDevice => FileType::CharDevice,
        EntryKind::BlockDevice => FileType::BlockDevice,
        EntryKind::Fifo => FileType::NamedPipe,
        EntryKind::Socket => FileType::Socket,
    }
}

fn to_fuse(s: &Stat) -> FileAttr {
    let t = s.mtime();
    let e = &s.entry;
    FileAttr {
        ino: INodeNo(s.ino),
        size: e.size,
        blocks: e.size.div_ceil(512),
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind: kind(e.kind),
        perm: (e.mode & 0o7777) as u16,
        nlink: s.nlink,
        uid: e.uid,
        gid: e.gid,
        rdev: s.rdev_fuse(),
        blksize: 4096,
        flags: 0,
    }
}

/// Attributes for the `.` and `..` items of a `readdirplus` reply: the kernel ignores them
/// (it neither caches nor counts these names), only the inode number reaches `getdents`.
fn dot_attr(ino: u64) -> FileAttr {
    let t = std::time::SystemTime::UNIX_EPOCH;
    FileAttr {
        ino: INodeNo(ino),
        size: 0,
        blocks: 0,
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind: FileType::Directory,
        perm: 0o555,
        nlink: 1,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn errno(e: i32) -> Errno {
    Errno::from_i32(e)
}

/// Replies to an xattr request of `size` bytes with `data` (its size when `size` is 0).
fn reply_xattr(data: &[u8], size: u32, reply: ReplyXattr) {
    if size == 0 {
        reply.size(data.len() as u32)
    } else if data.len() > size as usize {
        reply.error(Errno::ERANGE)
    } else {
        reply.data(data)
    }
}

impl Filesystem for TreeFuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_readahead(MAX_IO);
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        let plus = if self.readdirplus {
            InitFlags::FUSE_DO_READDIRPLUS
        } else {
            InitFlags::empty()
        };
        for cap in [InitFlags::FUSE_MAX_PAGES, InitFlags::FUSE_ASYNC_DIO, plus] {
            let _ = config.add_capabilities(cap);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.fs.lookup(parent.0, name.as_bytes()) {
            Ok(s) => reply.entry(&TTL, &to_fuse(&s), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.fs.getattr(ino.0) {
            Ok(s) => reply.attr(&TTL, &to_fuse(&s)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS)
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.fs.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        // Zero-message open: from now on the kernel opens files without a request and
        // sends no `release` either, keeping their pages cached (it opens them with
        // FOPEN_KEEP_CACHE); reads come with handle 0 and are served by inode. Reading
        // 1,000 small files costs a lookup and a read each instead of four requests.
        reply.error(Errno::ENOSYS)
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.fs.release(fh.0);
        reply.ok()
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let size = size.min(MAX_IO * 4) as usize;
        READ_BUF.with(|b| {
            let mut buf = b.borrow_mut();
            if buf.len() < size {
                buf.resize(size, 0);
            }
            match self.fs.read(ino.0, fh.0, offset, &mut buf[..size]) {
                Ok(n) => reply.data(&buf[..n]),
                Err(e) => reply.error(errno(e)),
            }
        })
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // Zero-message opendir: from now on the kernel opens and releases directories
        // itself (the listing is kept by inode, see `TreeFs::listing`).
        reply.error(Errno::ENOSYS)
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let (items, start) = match self.fs.listing_from(ino.0, offset) {
            Ok(l) => l,
            Err(e) => return reply.error(errno(e)),
        };
        for (i, it) in items.iter().enumerate().skip(start) {
            let name = OsStr::from_bytes(&it.name);
            if reply.add(INodeNo(it.ino), (i + 1) as u64, kind(it.kind), name) {
                break;
            }
        }
        reply.ok()
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let (items, start) = match self.fs.listing_from(ino.0, offset) {
            Ok(l) => l,
            Err(e) => return reply.error(errno(e)),
        };
        for (i, it) in items.iter().enumerate().skip(start) {
            let name = OsStr::from_bytes(&it.name);
            // Every name but `.` and `..` counts as a lookup the kernel holds until it
            // forgets it; a name that no longer fits in the reply is not held.
            let (attr, held) = match self.fs.lookup_item(it) {
                Ok(Some(s)) => (to_fuse(&s), true),
                Ok(None) => (dot_attr(it.ino), false),
                Err(e) if i == start => return reply.error(errno(e)),
                Err(_) => break,
            };
            if reply.add(attr.ino, (i + 1) as u64, name, &TTL, &attr, Generation(0)) {
                if held {
                    self.fs.forget(attr.ino.0, 1);
                }
                break;
            }
        }
        reply.ok()
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.fs.getxattr(ino.0, name.as_bytes()) {
            Ok(v) => reply_xattr(&v, size, reply),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.fs.listxattr(ino.0) {
            Ok(v) => reply_xattr(&v, size, reply),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS)
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS)
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let (blocks, files) = self.fs.usage();
        reply.statfs(blocks, 0, 0, files, 0, 4096, 255, 4096);
    }
}

/// Mounts `fs` read-only on `mountpoint` (checked like a streams mount) and serves it from
/// background threads; returns once the mount is usable.
pub fn mount_tree(fs: Arc<TreeFs>, mountpoint: &Path, opts: &MountOptions) -> Result<Mounted> {
    let readdirplus = opts.readdirplus;
    mount_filesystem(TreeFuse { fs, readdirplus }, mountpoint, opts, false)
}
