//! The stream-as-files view a mount shows: a root directory holding one regular file per
//! stream of the archive (`disk`, `memory`), sized as the stream. Plain structs and errnos,
//! no FUSE types, so it is tested without mounting; `fuse.rs` is a thin adapter over it.
//!
//! A file-tree archive shows its own tree instead: see [`crate::tree`].

use crate::ahead::{Ahead, Served, Workers};
use crate::error::Error;
use crate::volume::Volume;
use hexz_core::{SnapshotStream, StreamReader};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Inode number of the root directory.
pub const ROOT_INO: u64 = 1;

/// Inode number of a stream's file (2 for disk, 3 for memory).
pub fn stream_ino(s: SnapshotStream) -> u64 {
    2 + s.id() as u64
}

/// The stream an inode number names, if any.
pub fn ino_stream(ino: u64) -> Option<SnapshotStream> {
    ino.checked_sub(2)
        .and_then(|id| u8::try_from(id).ok())
        .and_then(SnapshotStream::from_id)
}

/// Kind of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The root directory.
    Dir,
    /// A stream's file.
    File,
}

/// Attributes of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Directory or file.
    pub kind: Kind,
    /// Permission bits.
    pub perm: u16,
    /// Link count.
    pub nlink: u32,
    /// Modification time (the archive's creation time).
    pub mtime: SystemTime,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// An open file: its stream and its own reader, so read-ahead is tracked per handle (two
/// programs reading one file sequentially are each read ahead): the library's read-ahead
/// for small requests, and whole requests decoded ahead for runs of large ones (see
/// [`crate::ahead`]; read-only mounts).
struct Handle {
    stream: SnapshotStream,
    reader: Arc<Mutex<StreamReader>>,
    ahead: Option<Arc<Ahead>>,
}

/// The bytes a read returned: in the caller's buffer, or in a buffer decoded ahead (given
/// back for reuse when dropped).
pub enum ReadData {
    /// This many bytes at the start of the caller's buffer.
    Buf(usize),
    /// A request decoded ahead of time.
    Ahead(AheadBuf),
}

impl ReadData {
    /// The bytes read, `buf` being the buffer passed to [`ArchiveFs::read_data`].
    pub fn bytes<'a>(&'a self, buf: &'a [u8]) -> &'a [u8] {
        match self {
            ReadData::Buf(n) => &buf[..*n],
            ReadData::Ahead(a) => a.bytes(),
        }
    }
}

/// A request's bytes in a buffer decoded ahead; see [`ReadData::Ahead`].
pub struct AheadBuf {
    ahead: Arc<Ahead>,
    data: Option<Arc<Vec<u8>>>,
    range: Range<usize>,
}

impl AheadBuf {
    /// The request's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.data.as_ref().map_or(&[], |d| &d[self.range.clone()])
    }
}

impl Drop for AheadBuf {
    fn drop(&mut self) {
        if let Some(d) = self.data.take() {
            self.ahead.recycle(d);
        }
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("stream", &self.stream)
            .finish()
    }
}

/// The filesystem of one mounted archive.
#[derive(Debug)]
pub struct ArchiveFs {
    volume: Arc<Volume>,
    mtime: SystemTime,
    uid: u32,
    gid: u32,
    handles: Mutex<HashMap<u64, Handle>>,
    next_fh: AtomicU64,
    /// Threads decoding requests ahead (read-only mounts).
    workers: Option<Workers>,
    served_ahead: AtomicU64,
}

/// Logs one line on standard error (the mount's log) with a time stamp.
pub fn log(msg: impl std::fmt::Display) {
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Never panics: a closed log (stderr pipe gone) must not take the mount down.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "hexz[{}] {t}: {msg}", std::process::id());
}

impl ArchiveFs {
    /// A filesystem over `volume`, owned by `uid`/`gid`.
    pub fn new(volume: Arc<Volume>, uid: u32, gid: u32) -> ArchiveFs {
        let mtime = SystemTime::UNIX_EPOCH
            + std::time::Duration::from_secs(volume.file().header().created_unix);
        // A writable volume's bytes change under a chunk decoded ahead: no read-ahead there.
        let workers = (!volume.is_writable()).then(|| Workers::start(&volume));
        ArchiveFs {
            volume,
            mtime,
            uid,
            gid,
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            workers,
            served_ahead: AtomicU64::new(0),
        }
    }

    /// The volume behind the files.
    pub fn volume(&self) -> &Arc<Volume> {
        &self.volume
    }

    fn file_attr(&self, s: SnapshotStream) -> Attr {
        Attr {
            ino: stream_ino(s),
            size: self.volume.size(s),
            kind: Kind::File,
            perm: if self.volume.is_writable() {
                0o644
            } else {
                0o444
            },
            nlink: 1,
            mtime: self.mtime,
            uid: self.uid,
            gid: self.gid,
        }
    }

    /// Attributes of inode `ino`.
    pub fn getattr(&self, ino: u64) -> Result<Attr, i32> {
        if ino == ROOT_INO {
            return Ok(Attr {
                ino,
                size: 0,
                kind: Kind::Dir,
                perm: 0o555,
                nlink: 2,
                mtime: self.mtime,
                uid: self.uid,
                gid: self.gid,
            });
        }
        match ino_stream(ino) {
            Some(s) if self.volume.file().has_stream(s) => Ok(self.file_attr(s)),
            _ => Err(libc::ENOENT),
        }
    }

    /// Looks `name` up in directory `parent`.
    pub fn lookup(&self, parent: u64, name: &str) -> Result<Attr, i32> {
        if parent != ROOT_INO {
            return Err(libc::ENOTDIR);
        }
        self.volume
            .streams()
            .into_iter()
            .find(|s| s.name() == name)
            .map(|s| self.file_attr(s))
            .ok_or(libc::ENOENT)
    }

    /// Entries of directory `ino`: `.`, `..` and one file per stream.
    pub fn readdir(&self, ino: u64) -> Result<Vec<(u64, Kind, String)>, i32> {
        if ino != ROOT_INO {
            return Err(libc::ENOTDIR);
        }
        let mut v = vec![
            (ROOT_INO, Kind::Dir, ".".to_string()),
            (ROOT_INO, Kind::Dir, "..".to_string()),
        ];
        for s in self.volume.streams() {
            v.push((stream_ino(s), Kind::File, s.name().to_string()));
        }
        Ok(v)
    }

    /// Opens inode `ino` (for writing when `write`); returns a new handle.
    pub fn open(&self, ino: u64, write: bool) -> Result<u64, i32> {
        if ino == ROOT_INO {
            return Err(libc::EISDIR);
        }
        let stream = match ino_stream(ino) {
            Some(s) if self.volume.file().has_stream(s) => s,
            _ => return Err(libc::ENOENT),
        };
        if write && !self.volume.is_writable() {
            return Err(libc::EROFS);
        }
        let reader = self.volume.reader(stream).map_err(|e| e.errno())?;
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().map_err(|_| libc::EIO)?.insert(
            fh,
            Handle {
                stream,
                reader: Arc::new(Mutex::new(reader)),
                ahead: self
                    .workers
                    .is_some()
                    .then(|| Ahead::new(stream, self.volume.size(stream))),
            },
        );
        Ok(fh)
    }

    /// Closes handle `fh`.
    pub fn release(&self, fh: u64) {
        if let Ok(mut h) = self.handles.lock() {
            h.remove(&fh);
        }
    }

    fn stream_of(&self, ino: u64) -> Result<SnapshotStream, i32> {
        match ino_stream(ino) {
            Some(s) if self.volume.file().has_stream(s) => Ok(s),
            _ if ino == ROOT_INO => Err(libc::EISDIR),
            _ => Err(libc::ENOENT),
        }
    }

    /// Reads up to `buf.len()` bytes of inode `ino` at `offset` through handle `fh`; a
    /// failure is logged (naming the block) and becomes an errno.
    pub fn read(&self, ino: u64, fh: u64, offset: u64, buf: &mut [u8]) -> Result<usize, i32> {
        match self.read_data(ino, fh, offset, buf)? {
            ReadData::Buf(n) => Ok(n),
            ReadData::Ahead(a) => {
                let b = a.bytes();
                buf[..b.len()].copy_from_slice(b);
                Ok(b.len())
            }
        }
    }

    /// Like [`read`](Self::read), but a request decoded ahead is returned in its own buffer
    /// rather than copied into `buf` (the FUSE adapter replies from it).
    pub fn read_data(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<ReadData, i32> {
        let handle = self.handles.lock().ok().and_then(|h| {
            h.get(&fh)
                .map(|h| (h.stream, h.reader.clone(), h.ahead.clone()))
        });
        if let (Some((_, _, Some(ahead))), Some(workers)) = (&handle, &self.workers) {
            workers.submit(ahead.on_request(offset, buf.len() as u64));
            if let Some(s) = ahead.serve(offset, buf) {
                self.served_ahead.fetch_add(1, Ordering::Relaxed);
                return Ok(match s {
                    Served::Copied(n) => ReadData::Buf(n),
                    Served::Chunk(data, range) => ReadData::Ahead(AheadBuf {
                        ahead: ahead.clone(),
                        data: Some(data),
                        range,
                    }),
                });
            }
        }
        let handle = handle.map(|(s, r, _)| (s, r));
        match handle {
            // Concurrent reads of one handle: the first uses the handle's reader, the
            // others read without read-ahead rather than wait.
            Some((stream, reader)) => match reader.try_lock() {
                Ok(mut rd) => self.volume.read_with(&mut rd, stream, offset, buf),
                Err(_) => self.volume.read_at(stream, offset, buf),
            }
            .map(ReadData::Buf)
            .map_err(|e| self.fail("read", stream, offset, buf.len(), e)),
            None => {
                let stream = self.stream_of(ino)?;
                self.volume
                    .read_at(stream, offset, buf)
                    .map(ReadData::Buf)
                    .map_err(|e| self.fail("read", stream, offset, buf.len(), e))
            }
        }
    }

    /// Requests served from what was decoded ahead so far (see [`crate::ahead`]).
    pub fn served_ahead(&self) -> u64 {
        self.served_ahead.load(Ordering::Relaxed)
    }

    /// Whether some handle still has requests decoding in the background.
    pub fn reading_ahead(&self) -> bool {
        self.handles
            .lock()
            .map(|h| {
                h.values()
                    .any(|h| h.ahead.as_ref().is_some_and(|a| a.busy()))
            })
            .unwrap_or(false)
    }

    /// Writes `data` at `offset` of inode `ino`.
    pub fn write(&self, ino: u64, offset: u64, data: &[u8]) -> Result<usize, i32> {
        let stream = self.stream_of(ino)?;
        self.volume
            .write_at(stream, offset, data)
            .map(|()| data.len())
            .map_err(|e| self.fail("write", stream, offset, data.len(), e))
    }

    /// Makes `len` bytes at `offset` read as zeros (punch hole / zero range).
    pub fn zero(&self, ino: u64, offset: u64, len: u64) -> Result<(), i32> {
        let stream = self.stream_of(ino)?;
        self.volume
            .zero(stream, offset, len)
            .map_err(|e| self.fail("zero", stream, offset, len as usize, e))
    }

    /// Makes writes durable.
    pub fn fsync(&self) -> Result<(), i32> {
        self.volume.sync().map_err(|e| {
            log(format!("fsync failed: {e}"));
            e.errno()
        })
    }

    fn fail(&self, what: &str, s: SnapshotStream, off: u64, len: usize, e: Error) -> i32 {
        let errno = e.errno();
        // Past-the-end writes and read-only refusals are the caller's doing: no log line.
        if !matches!(e, Error::OutOfRange { .. } | Error::ReadOnly) {
            log(format!(
                "{what} of {len} bytes at offset {off} of {s} failed: {e}"
            ));
        }
        errno
    }
}
