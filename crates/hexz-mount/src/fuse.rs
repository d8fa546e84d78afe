//! The FUSE front end: a thin adapter that turns kernel requests into calls on
//! [`ArchiveFs`](crate::fs::ArchiveFs) and its results into replies or errnos.
//!
//! Speed comes from: several request threads, each with its own `/dev/fuse` descriptor
//! (`clone_fd`); reads of up to 1 MiB per request; an 8 MiB kernel read-ahead window (up to
//! eight 1 MiB requests in flight, decoded on all cores, as the library's own sequential
//! readers do); the requests after that window decoded in the background and replied from
//! their own buffers ([`crate::ahead`]); and
//! `FOPEN_KEEP_CACHE` with long attribute time-outs, so the kernel's page cache survives
//! across opens (nothing changes the files behind the kernel's back: a read-only archive
//! never changes, and every write of a writable mount goes through this mount).

use crate::error::{Error, Result};
use crate::fs::{ArchiveFs, Attr, Kind};
use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, MountOption, OpenAccMode, OpenFlags, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    WriteFlags,
};
use std::cell::RefCell;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Largest read or write request asked of the kernel (1 MiB).
pub const MAX_IO: u32 = 1 << 20;
/// Kernel read-ahead window of a mount, in KiB: the library's default read-ahead
/// ([`hexz_core::OpenOptions::read_ahead`], 8 MiB), so a sequential reader through the mount
/// has as much decoding in flight as one in the process (with 1 MiB, `dd` through the mount
/// got 0.57x the in-process read).
pub const READ_AHEAD_KIB: u32 = 8 << 10;
/// How long the kernel may cache attributes and names: the files never change size.
const TTL: Duration = Duration::from_secs(3600);

/// Adapter from `fuser` callbacks to [`ArchiveFs`].
struct FuseFs {
    fs: Arc<ArchiveFs>,
}

thread_local! {
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn to_fuse(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.mtime,
        crtime: a.mtime,
        kind: match a.kind {
            Kind::Dir => FileType::Directory,
            Kind::File => FileType::RegularFile,
        },
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn errno(e: i32) -> Errno {
    Errno::from_i32(e)
}

impl Filesystem for FuseFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_readahead(MAX_IO);
        let _ = config.set_max_write(MAX_IO);
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        for cap in [InitFlags::FUSE_MAX_PAGES, InitFlags::FUSE_ASYNC_DIO] {
            let _ = config.add_capabilities(cap);
        }
        Ok(())
    }

    fn destroy(&mut self) {
        if let Err(e) = self.fs.volume().sync() {
            crate::fs::log(format!("final sync of the overlay failed: {e}"));
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(name) = name.to_str() else {
            return reply.error(Errno::ENOENT);
        };
        match self.fs.lookup(parent.0, name) {
            Ok(a) => reply.entry(&TTL, &to_fuse(&a), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.fs.getattr(ino.0) {
            Ok(a) => reply.attr(&TTL, &to_fuse(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
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
        match self.fs.getattr(ino.0) {
            // A stream's size is fixed: truncation is refused, other changes are ignored.
            Ok(a) if size.is_some_and(|s| s != a.size) => reply.error(Errno::EPERM),
            Ok(a) => reply.attr(&TTL, &to_fuse(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write = flags.acc_mode() != OpenAccMode::O_RDONLY;
        match self.fs.open(ino.0, write) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(errno(e)),
        }
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
            match self.fs.read_data(ino.0, fh.0, offset, &mut buf[..size]) {
                Ok(d) => reply.data(d.bytes(&buf)),
                Err(e) => reply.error(errno(e)),
            }
        })
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.fs.write(ino.0, offset, data) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
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
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _ds: bool, reply: ReplyEmpty) {
        match self.fs.fsync() {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let zeroing = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE;
        let r = if mode & zeroing != 0 {
            self.fs.zero(ino.0, offset, length)
        } else if mode == 0 || mode == libc::FALLOC_FL_KEEP_SIZE {
            // Space is always "allocated"; only growing the file is impossible.
            match self.fs.getattr(ino.0) {
                Ok(a) if offset.saturating_add(length) <= a.size || mode != 0 => Ok(()),
                Ok(_) => Err(libc::EFBIG),
                Err(e) => Err(e),
            }
        } else {
            Err(libc::EOPNOTSUPP)
        };
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.getattr(ino.0) {
            Ok(a) if a.kind == Kind::Dir => {
                reply.opened(FileHandle(0), FopenFlags::FOPEN_CACHE_DIR)
            }
            Ok(_) => reply.error(Errno::ENOTDIR),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.fs.readdir(ino.0) {
            Ok(entries) => {
                for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
                    let kind = match kind {
                        Kind::Dir => FileType::Directory,
                        Kind::File => FileType::RegularFile,
                    };
                    if reply.add(INodeNo(*ino), (i + 1) as u64, kind, name) {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let total: u64 = self
            .fs
            .volume()
            .streams()
            .iter()
            .map(|s| self.fs.volume().size(*s))
            .sum();
        reply.statfs(total.div_ceil(4096), 0, 0, 3, 0, 4096, 255, 4096);
    }
}

/// How to mount.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Request threads (default: 4).
    pub threads: usize,
    /// Let other users access the mount (`allow_other`).
    pub allow_other: bool,
    /// Name shown as the mount's source in /proc/mounts.
    pub fsname: String,
    /// Tree mounts: list directories with `readdirplus` (names with attributes). It saves
    /// a `lookup` per name for `ls -l`, `du` and the like, but makes the kernel set up an
    /// inode for every name listed, which walks that never `stat` (`ls -R`, `find`) pay
    /// for: on the benchmark tree `find` took 0.41 s with it and 0.23 s without (default
    /// off).
    pub readdirplus: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            threads: 4,
            allow_other: false,
            fsname: "hexz".into(),
            readdirplus: false,
        }
    }
}

/// A live mount: dropping it (or [`Mounted::unmount`]) unmounts.
pub struct Mounted {
    session: Option<fuser::BackgroundSession>,
    mountpoint: PathBuf,
}

/// Checks that `mp` can be mounted on: an existing, empty directory that is not already a
/// mount point, and that /dev/fuse exists. Errors are one line naming the problem.
pub fn check_mountpoint(mp: &Path) -> Result<PathBuf> {
    let shown = mp.display();
    let md = std::fs::metadata(mp).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::InvalidArgument(format!("mount point {shown} does not exist"))
        } else {
            Error::io(format!("mount point {shown}"), e)
        }
    })?;
    if !md.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "mount point {shown} is not a directory"
        )));
    }
    let canon =
        std::fs::canonicalize(mp).map_err(|e| Error::io(format!("mount point {shown}"), e))?;
    if is_mountpoint(&canon) {
        return Err(Error::InvalidArgument(format!(
            "mount point {shown} is busy: something is already mounted there"
        )));
    }
    let mut rd = std::fs::read_dir(mp).map_err(|e| Error::io(format!("mount point {shown}"), e))?;
    if rd.next().is_some() {
        return Err(Error::InvalidArgument(format!(
            "mount point {shown} is not empty"
        )));
    }
    if !Path::new("/dev/fuse").exists() {
        return Err(Error::InvalidArgument(
            "no /dev/fuse: load the fuse kernel module (modprobe fuse) or give the container the device"
                .into(),
        ));
    }
    Ok(canon)
}

/// Whether `path` (canonical) is a mount point, from /proc/self/mountinfo.
pub fn is_mountpoint(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .is_some_and(|m| unescape_mountinfo(m) == want)
    })
}

fn unescape_mountinfo(s: &str) -> String {
    // Octal escapes \040 (space), \011, \012, \134.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mounts `fs` on `mountpoint` (checked with [`check_mountpoint`]) and serves it from
/// background threads. Returns once the kernel has completed the FUSE handshake, i.e.
/// once the mount is usable.
pub fn mount(fs: Arc<ArchiveFs>, mountpoint: &Path, opts: &MountOptions) -> Result<Mounted> {
    let writable = fs.volume().is_writable();
    mount_filesystem(FuseFs { fs }, mountpoint, opts, writable)
}

/// Mounts any of this crate's FUSE adapters (streams or file tree) on `mountpoint` with
/// the shared options (threads, 1 MiB requests, read-ahead, `ro` unless `writable`).
pub(crate) fn mount_filesystem<F: Filesystem + Send + Sync + 'static>(
    fs: F,
    mountpoint: &Path,
    opts: &MountOptions,
    writable: bool,
) -> Result<Mounted> {
    let canon = check_mountpoint(mountpoint)?;
    let mut mount_options = vec![
        MountOption::FSName(opts.fsname.clone()),
        MountOption::Subtype("hexz".into()),
        MountOption::NoAtime,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::DefaultPermissions,
        if writable {
            MountOption::RW
        } else {
            MountOption::RO
        },
    ];
    mount_options.push(MountOption::CUSTOM(format!("max_read={MAX_IO}")));
    let mut config = Config::default();
    config.mount_options = mount_options;
    config.n_threads = Some(opts.threads.max(1));
    config.clone_fd = true;
    if opts.allow_other {
        config.acl = fuser::SessionACL::All;
    }
    let session = fuser::Session::new(fs, &canon, &config).map_err(|e| {
        let shown = mountpoint.display();
        match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => Error::InvalidArgument(format!(
                "no permission to mount on {shown} (mounting needs root, or fusermount3 and a \
                 mount point you own): {e}"
            )),
            _ => Error::io(format!("mounting on {shown}"), e),
        }
    })?;
    let session = session
        .spawn()
        .map_err(|e| Error::io("starting the FUSE request threads", e))?;
    set_bdi_read_ahead(&canon, READ_AHEAD_KIB);
    Ok(Mounted {
        session: Some(session),
        mountpoint: canon,
    })
}

/// Raises the kernel read-ahead of the mount's backing device (best effort: needs root).
/// FUSE starts every mount at 128 KiB whatever the filesystem asks for.
fn set_bdi_read_ahead(mp: &Path, kib: u32) {
    use std::os::unix::fs::MetadataExt;
    if let Ok(md) = std::fs::metadata(mp) {
        let dev = md.dev();
        let (major, minor) = (libc::major(dev), libc::minor(dev));
        let p = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
        let _ = std::fs::write(p, kib.to_string());
    }
}

impl Mounted {
    /// The (canonical) mount point.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Whether the request threads have ended (the mount was unmounted from outside, e.g.
    /// by `hexz unmount` or `fusermount3 -u`).
    pub fn is_finished(&self) -> bool {
        self.session.as_ref().is_none_or(|s| s.guard.is_finished())
    }

    /// Unmounts (lazily when busy) and waits for the request threads to end; the
    /// filesystem's final sync runs before this returns.
    pub fn unmount(mut self) -> Result<()> {
        self.unmount_inner()
    }

    fn unmount_inner(&mut self) -> Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        if !session.guard.is_finished() {
            unmount_path(&self.mountpoint, true)?;
        }
        session
            .join()
            .map_err(|e| Error::io("FUSE request threads", e))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = self.unmount_inner();
    }
}

/// Unmounts `mp`: umount(2) as root, else `fusermount3 -u`. With `lazy_if_busy` a busy
/// mount is detached (it goes away when its last user closes it); otherwise busy is an
/// error.
pub fn unmount_path(mp: &Path, lazy_if_busy: bool) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(mp.as_os_str().as_bytes())
        .map_err(|_| Error::InvalidArgument(format!("{} contains a NUL byte", mp.display())))?;
    // SAFETY: c is a valid NUL-terminated path.
    let rc = unsafe { libc::umount2(c.as_ptr(), 0) };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EBUSY) if lazy_if_busy => {
            // SAFETY: as above.
            let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            if rc == 0 {
                Ok(())
            } else {
                Err(Error::io(
                    format!("unmounting {}", mp.display()),
                    std::io::Error::last_os_error(),
                ))
            }
        }
        Some(libc::EBUSY) => Err(Error::InvalidArgument(format!(
            "{} is busy (files are open or a process has it as working directory)",
            mp.display()
        ))),
        Some(libc::EINVAL) => Err(Error::InvalidArgument(format!(
            "{} is not mounted",
            mp.display()
        ))),
        Some(libc::EPERM) => {
            let out = std::process::Command::new("fusermount3")
                .arg("-u")
                .arg(mp)
                .output()
                .map_err(|e2| {
                    Error::io(
                        format!("unmounting {} (umount: {e}; fusermount3)", mp.display()),
                        e2,
                    )
                })?;
            if out.status.success() {
                Ok(())
            } else {
                Err(Error::InvalidArgument(format!(
                    "unmounting {}: {}",
                    mp.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )))
            }
        }
        _ => Err(Error::io(format!("unmounting {}", mp.display()), e)),
    }
}
