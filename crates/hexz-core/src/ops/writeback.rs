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

/// A writer of one file from a dedicated thread (see the module doc).
pub struct WriteBack {
    tx: Option<Sender<(u64, Vec<u8>)>>,
    free: Receiver<Vec<u8>>,
    cur: Vec<u8>,
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
        let (tx, rx) = bounded::<(u64, Vec<u8>)>(QUEUE);
        let (free_tx, free) = bounded::<Vec<u8>>(QUEUE + 2);
        let tname = name.to_string();
        let thread = std::thread::Builder::new()
            .name("hexz-writeback".into())
            .spawn(move || write_loop(f, rx, free_tx, &tname, sync))
            .map_err(|e| Error::io("starting the writer thread", e))?;
        Ok(WriteBack {
            tx: Some(tx),
            free,
            cur: Vec::with_capacity(CHUNK_BYTES),
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
    pub fn write(&mut self, mut b: &[u8]) -> Result<()> {
        while !b.is_empty() {
            let room = CHUNK_BYTES - self.cur.len();
            let n = room.min(b.len());
            self.cur.extend_from_slice(&b[..n]);
            b = &b[n..];
            if self.cur.len() == CHUNK_BYTES {
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
        let next = self
            .free
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK_BYTES));
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
    rx: Receiver<(u64, Vec<u8>)>,
    free: Sender<Vec<u8>>,
    name: &str,
    sync: bool,
) -> Result<()> {
    let mut behind: VecDeque<(u64, u64)> = VecDeque::new();
    let mut behind_bytes = 0u64;
    for (off, mut buf) in rx {
        f.write_all_at(&buf, off)
            .map_err(|e| Error::io(format!("writing {name} at offset {off}"), e))?;
        let len = buf.len() as u64;
        start_writeback(&f, off, len);
        behind.push_back((off, len));
        behind_bytes += len;
        while behind_bytes > LAG_BYTES {
            let Some((o, l)) = behind.pop_front() else {
                break;
            };
            wait_and_drop(&f, o, l);
            behind_bytes -= l;
        }
        buf.clear();
        let _ = free.try_send(buf);
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
