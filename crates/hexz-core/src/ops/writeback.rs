//! Large sequential writes from a dedicated thread, with writeback started as they land.
//!
//! Why: a writer that leaves everything to the final `fsync` makes the kernel hold the whole
//! output dirty in the page cache and then waits for all of it at the end, after the CPU work
//! is done. [`WriteBack`] gathers small writes into large chunks and hands them over a short
//! bounded queue to its own thread, which writes each chunk with `pwrite`, starts its
//! writeback at once (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), and once a chunk is a few
//! chunks behind waits for it to reach the disk and drops it from the page cache
//! (`posix_fadvise(DONTNEED)`). Disk writes so overlap the caller's work, the final
//! `fdatasync` has little left to do, and the page cache does not balloon with output the
//! process will not read again. Memory is bounded by the queue: a few chunks.
//!
//! On a regular file the chunks go to the disk with direct I/O (`O_DIRECT`, through a second
//! open file description of the same file) when the file system takes it: a durable writer
//! gains nothing from the page cache, and skipping it saves the copy into the cache, the
//! kernel's writeback work and the cache pressure, which on two cores is CPU the codecs need.
//! Chunks are aligned in memory and on disk ([`DIRECT_ALIGN`]); a chunk's unaligned tail (the
//! end of the output, or before a hole of odd length) is written through the page cache, and
//! everything after an unaligned offset too. A file system that refuses direct I/O (at open
//! or at the first write) gets the page-cache path. `HEXZ_DIRECT_IO=0` turns it off.

use crate::error::{Error, Result};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::collections::VecDeque;
use std::fs;
use std::os::unix::fs::FileExt;
use std::thread::JoinHandle;

/// Bytes gathered before a chunk is handed to the writer thread.
pub const CHUNK_BYTES: usize = 4 << 20;
/// Chunks waiting in the queue for the writer thread.
const QUEUE: usize = 3;
/// Bytes written whose writeback may still be in progress before the writer waits for the
/// oldest chunk and drops it from the page cache.
const LAG_BYTES: u64 = 32 << 20;
/// Alignment of direct-I/O writes, in memory and in the file: a page, which covers the
/// logical block size of every common disk.
pub const DIRECT_ALIGN: usize = 4096;

/// A chunk being filled: a buffer whose data starts at an address aligned for direct I/O.
/// The buffer is zeroed once, when made, and keeps its length: filling it never zeroes again.
struct Chunk {
    buf: Vec<u8>,
    /// Bytes before the aligned start.
    pad: usize,
    /// Bytes of data after `pad`.
    used: usize,
}

impl Chunk {
    fn new() -> Self {
        let mut buf: Vec<u8> = Vec::with_capacity(CHUNK_BYTES + DIRECT_ALIGN);
        let pad = buf.as_ptr().align_offset(DIRECT_ALIGN).min(DIRECT_ALIGN);
        buf.resize(pad + CHUNK_BYTES, 0);
        Chunk { buf, pad, used: 0 }
    }
    fn len(&self) -> usize {
        self.used
    }
    fn is_empty(&self) -> bool {
        self.used == 0
    }
    fn room(&self) -> usize {
        CHUNK_BYTES - self.used
    }
    fn data(&self) -> &[u8] {
        &self.buf[self.pad..self.pad + self.used]
    }
    /// The next `n` unfilled bytes (`n <= room()`), to be marked filled with `filled`.
    fn spare(&mut self, n: usize) -> &mut [u8] {
        let at = self.pad + self.used;
        &mut self.buf[at..at + n]
    }
    fn filled(&mut self, n: usize) {
        self.used += n;
    }
    fn clear(&mut self) {
        self.used = 0;
    }
}

/// A writer of one file from a dedicated thread (see the module doc).
pub struct WriteBack {
    tx: Option<Sender<(u64, Chunk)>>,
    free: Receiver<Chunk>,
    cur: Chunk,
    /// File offset of `cur[0]`.
    at: u64,
    thread: Option<JoinHandle<Result<()>>>,
    name: String,
}

impl WriteBack {
    /// Starts writing `file` at offset `start`; `name` names it in errors. `sync` asks for
    /// `fdatasync` at [`finish`](WriteBack::finish) (off for special files such as pipes'
    /// peers or character devices, where it means nothing).
    pub fn new(file: &fs::File, start: u64, name: &str, sync: bool) -> Result<Self> {
        let f = file
            .try_clone()
            .map_err(|e| Error::io(format!("duplicating handle of {name}"), e))?;
        let direct = open_direct(&f);
        let (tx, rx) = bounded::<(u64, Chunk)>(QUEUE);
        let (free_tx, free) = bounded::<Chunk>(QUEUE + 2);
        let tname = name.to_string();
        let thread = std::thread::Builder::new()
            .name("hexz-writeback".into())
            .spawn(move || write_loop(f, direct, rx, free_tx, &tname, sync))
            .map_err(|e| Error::io("starting the writer thread", e))?;
        Ok(WriteBack {
            tx: Some(tx),
            free,
            cur: Chunk::new(),
            at: start,
            thread: Some(thread),
            name: name.to_string(),
        })
    }

    /// Offset the next byte will be written at.
    pub fn position(&self) -> u64 {
        self.at + self.cur.len() as u64
    }

    /// Appends `b` at the current position.
    pub fn write(&mut self, b: &[u8]) -> Result<()> {
        self.write_with(b.len() as u64, |pos, buf| {
            let pos = pos as usize;
            buf.copy_from_slice(&b[pos..pos + buf.len()]);
            Ok(())
        })
    }

    /// Appends `len` bytes that `fill` produces straight into the chunk buffers (no copy):
    /// `fill(pos, buf)` must fill all of `buf` with the bytes for offset `pos` of the data
    /// appended by this call (it is called once per chunk the data spans).
    pub fn write_with(
        &mut self,
        len: u64,
        mut fill: impl FnMut(u64, &mut [u8]) -> Result<()>,
    ) -> Result<()> {
        let mut done = 0u64;
        while done < len {
            let n = (self.cur.room() as u64).min(len - done) as usize;
            fill(done, self.cur.spare(n))?;
            self.cur.filled(n);
            done += n as u64;
            if self.cur.room() == 0 {
                self.ship()?;
            }
        }
        Ok(())
    }

    /// Moves the position `n` bytes forward without writing them: the file gets a hole there
    /// (or keeps what it had, on a device).
    pub fn skip(&mut self, n: u64) -> Result<()> {
        self.ship()?;
        self.at += n;
        Ok(())
    }

    /// Writes what is buffered, waits for the writer thread, and (if asked) makes the data
    /// durable. Returns the final position.
    pub fn finish(mut self) -> Result<u64> {
        self.ship()?;
        let end = self.at;
        self.tx = None;
        self.join()?;
        Ok(end)
    }

    fn ship(&mut self) -> Result<()> {
        if self.cur.is_empty() {
            return Ok(());
        }
        let next = self.free.try_recv().unwrap_or_else(|_| Chunk::new());
        let buf = std::mem::replace(&mut self.cur, next);
        let len = buf.len() as u64;
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send((self.at, buf)).is_ok());
        if !sent {
            // The writer thread stopped: it has the error.
            self.tx = None;
            self.join()?;
            return Err(Error::io(
                format!("writing {}", self.name),
                std::io::Error::other("the writer thread stopped"),
            ));
        }
        self.at += len;
        Ok(())
    }

    fn join(&mut self) -> Result<()> {
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| {
                Err(Error::io(
                    format!("writing {}", self.name),
                    std::io::Error::other("the writer thread panicked"),
                ))
            }),
            None => Ok(()),
        }
    }
}

impl Drop for WriteBack {
    fn drop(&mut self) {
        // Abandoned (error path): stop the thread without writing what is buffered.
        self.tx = None;
        let _ = self.join();
    }
}

fn write_loop(
    f: fs::File,
    mut direct: Option<fs::File>,
    rx: Receiver<(u64, Chunk)>,
    free: Sender<Chunk>,
    name: &str,
    sync: bool,
) -> Result<()> {
    let mut behind: VecDeque<(u64, u64)> = VecDeque::new();
    let mut behind_bytes = 0u64;
    for (off, mut chunk) in rx {
        let data = chunk.data();
        let mut done = 0usize;
        if let Some(d) = &direct {
            if off % DIRECT_ALIGN as u64 == 0 {
                let n = data.len() / DIRECT_ALIGN * DIRECT_ALIGN;
                match d.write_all_at(&data[..n], off) {
                    Ok(()) => done = n,
                    // The file system takes O_DIRECT at open but not this write: fall back.
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => direct = None,
                    Err(e) => return Err(Error::io(format!("writing {name} at offset {off}"), e)),
                }
            } else {
                // Everything after an unaligned offset is unaligned too.
                direct = None;
            }
        }
        if done < data.len() {
            let at = off + done as u64;
            f.write_all_at(&data[done..], at)
                .map_err(|e| Error::io(format!("writing {name} at offset {at}"), e))?;
            let len = (data.len() - done) as u64;
            start_writeback(&f, at, len);
            behind.push_back((at, len));
            behind_bytes += len;
            while behind_bytes > LAG_BYTES {
                let Some((o, l)) = behind.pop_front() else {
                    break;
                };
                wait_and_drop(&f, o, l);
                behind_bytes -= l;
            }
        }
        chunk.clear();
        let _ = free.try_send(chunk);
    }
    if sync {
        f.sync_data()
            .map_err(|e| Error::io(format!("fdatasync {name}"), e))?;
    }
    for (o, l) in behind {
        drop_cache(&f, o, l);
    }
    Ok(())
}

/// A second open file description of `f` with `O_DIRECT`, when `f` is a regular file on a
/// file system that takes it and `HEXZ_DIRECT_IO` is not `0`; `None` means the page cache.
#[cfg(target_os = "linux")]
fn open_direct(f: &fs::File) -> Option<fs::File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    if std::env::var_os("HEXZ_DIRECT_IO").is_some_and(|v| v == "0") {
        return None;
    }
    if !f.metadata().ok()?.file_type().is_file() {
        return None;
    }
    // Reopening checks the inode's permissions, not this handle's mode: only a handle that
    // may write gets a direct one.
    // SAFETY: plain fcntl on an open descriptor.
    let flags = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 || flags & libc::O_ACCMODE == libc::O_RDONLY || flags & libc::O_APPEND != 0 {
        return None;
    }
    // A new description (not a dup): the flag must not change how the caller's handle writes.
    fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC)
        .open(format!("/proc/self/fd/{}", f.as_raw_fd()))
        .ok()
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_f: &fs::File) -> Option<fs::File> {
    None
}

/// Starts writeback of a range without waiting (best effort: not every file supports it).
#[cfg(target_os = "linux")]
fn start_writeback(f: &fs::File, off: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on an open descriptor; errors are ignored on purpose.
    unsafe {
        libc::sync_file_range(
            f.as_raw_fd(),
            off as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// Waits for a range's writeback to finish, then drops its pages from the cache.
#[cfg(target_os = "linux")]
fn wait_and_drop(f: &fs::File, off: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on an open descriptor; errors are ignored on purpose.
    unsafe {
        libc::sync_file_range(
            f.as_raw_fd(),
            off as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER,
        );
    }
    drop_cache(f, off, len);
}

/// Tells the kernel the range will not be read again (clean pages are dropped).
#[cfg(target_os = "linux")]
pub(crate) fn drop_cache(f: &fs::File, off: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on an open descriptor; errors are ignored on purpose.
    unsafe {
        libc::posix_fadvise(
            f.as_raw_fd(),
            off as libc::off_t,
            len as libc::off_t,
            libc::POSIX_FADV_DONTNEED,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_f: &fs::File, _off: u64, _len: u64) {}

#[cfg(not(target_os = "linux"))]
fn wait_and_drop(_f: &fs::File, _off: u64, _len: u64) {}

#[cfg(not(target_os = "linux"))]
pub(crate) fn drop_cache(_f: &fs::File, _off: u64, _len: u64) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_chunks_in_order_with_holes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out");
        let f = fs::File::create(&p).unwrap();
        let mut w = WriteBack::new(&f, 10, "out", true).unwrap();
        let a: Vec<u8> = (0..CHUNK_BYTES + 123).map(|i| (i % 251) as u8).collect();
        w.write(&a).unwrap();
        w.skip(1000).unwrap();
        w.write(b"tail").unwrap();
        let end = w.finish().unwrap();
        assert_eq!(end, 10 + a.len() as u64 + 1000 + 4);
        let got = fs::read(&p).unwrap();
        assert_eq!(got.len() as u64, end);
        assert_eq!(&got[..10], &[0u8; 10]);
        assert_eq!(&got[10..10 + a.len()], &a[..]);
        assert!(got[10 + a.len()..10 + a.len() + 1000]
            .iter()
            .all(|&b| b == 0));
        assert_eq!(&got[got.len() - 4..], b"tail");
    }

    #[test]
    fn aligned_output_with_odd_holes_and_tail_is_exact() {
        // Offset 0: direct I/O where the file system takes it, until the odd-length hole
        // makes the offsets unaligned; the bytes must be the same either way.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out");
        let f = fs::File::create(&p).unwrap();
        let mut w = WriteBack::new(&f, 0, "out", true).unwrap();
        let a: Vec<u8> = (0..2 * CHUNK_BYTES + 4096 * 3 + 17)
            .map(|i| (i % 253) as u8)
            .collect();
        w.write(&a[..CHUNK_BYTES + 8192]).unwrap();
        w.skip(65536).unwrap();
        w.write(&a[CHUNK_BYTES + 8192..]).unwrap();
        w.skip(7).unwrap();
        w.write(b"after an odd hole").unwrap();
        let end = w.finish().unwrap();
        let got = fs::read(&p).unwrap();
        assert_eq!(got.len() as u64, end);
        let mut want = a[..CHUNK_BYTES + 8192].to_vec();
        want.extend_from_slice(&[0u8; 65536]);
        want.extend_from_slice(&a[CHUNK_BYTES + 8192..]);
        want.extend_from_slice(&[0u8; 7]);
        want.extend_from_slice(b"after an odd hole");
        assert_eq!(got.len(), want.len());
        assert!(got == want, "output differs from what was written");
    }

    #[test]
    fn direct_io_is_used_on_a_disk_file() {
        // Asserted where the file system is known to take O_DIRECT (tmpfs may not).
        let dir = tempfile::tempdir().unwrap();
        let f = fs::File::create(dir.path().join("d")).unwrap();
        let fs_type = std::process::Command::new("stat")
            .args(["-f", "-c", "%T"])
            .arg(dir.path())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        if matches!(fs_type.as_str(), "ext2/ext3" | "xfs" | "btrfs") {
            assert!(open_direct(&f).is_some(), "no O_DIRECT on {fs_type}");
        }
        // Never on something that is not a regular file.
        let null = fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .unwrap();
        assert!(open_direct(&null).is_none());
    }

    #[test]
    fn write_error_is_reported() {
        // A read-only handle: the thread's first pwrite fails and the error comes back.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ro");
        fs::write(&p, b"x").unwrap();
        let f = fs::File::open(&p).unwrap();
        let mut w = WriteBack::new(&f, 0, "ro", true).unwrap();
        let big = vec![1u8; CHUNK_BYTES * (QUEUE + 3)];
        let r = w.write(&big).and_then(|_| w.finish());
        let e = r.unwrap_err().to_string();
        assert!(e.contains("writing ro at offset 0"), "{e}");
    }
}
