//! The disk tier of the cache: stored archive bytes of remote archives, kept on local disk
//! below decoding and shared by every process that points at the same directory.
//!
//! # What is cached
//! Fixed, aligned 1 MiB chunks of the *stored* archive (compressed and, for an encrypted
//! archive, still encrypted): a cached encrypted archive leaves no plaintext on the local
//! disk, and every block read from the cache is checked again by the decoder (CRC32 of the
//! stored bytes, BLAKE3 of the content) exactly as if it came from the network.
//!
//! # Layout of `DIR/hexz-cache-v1/`
//! - `data/<archive key>/<chunk number, 16 hex digits>`: one entry per chunk. The archive key
//!   is the BLAKE3 hash of the URL, the object's pinned identity (ETag, or Last-Modified and
//!   size) and its length, so a changed archive gets a new key and never serves stale bytes.
//!   An entry is a 56-byte header (magic `HXZCHNK2`, chunk offset u64 LE, data length u32 LE,
//!   CRC32 of key, offset and data u32 LE, 32 zero bytes) then the data. An entry that fails
//!   any check on read back is deleted and fetched again, never returned. (A CRC, not a
//!   cryptographic hash: it guards against accidental damage to local files, and every block
//!   read out of an entry is checked again by the decoder against the archive's own CRC and
//!   digests; a block failing that check has its entries dropped and fetched again
//!   ([`StorageBackend::refetch`](crate::store::StorageBackend::refetch)), so a response
//!   damaged in transit is not kept. Entries of the earlier `HXZCHNK1` kind, BLAKE3-checked,
//!   fail the magic check and are refetched; BLAKE3 cost about a third of a cached pass.)
//! - `urls/<BLAKE3 of the URL>`: the identity and length last seen for a URL (see below).
//! - `tmp/`: entries being written; each is renamed into `data/` when complete, so a reader
//!   (in any process) sees a whole entry or none.
//! - `stripes/<n>`: 256 lock files; a process fetching a chunk holds the `flock` of its stripe,
//!   so two processes (or threads) missing the same chunk download it once: the second waits,
//!   then finds the entry on disk.
//! - `lock` and `usage`: the accounting lock and the total size of all entries, updated under
//!   the lock by every process.
//!
//! # Bounds
//! Before an entry is added, entries are evicted, least recently used first (by mtime, which
//! is refreshed on every hit from disk, and for a chunk served from memory once after each
//! entry this handle adds), until the total stays within the cap and at least
//! 5% of the file system stays free. Accounting and eviction happen under one lock, so the
//! directory never exceeds its cap, even with many processes; an entry being written in
//! `tmp/` (at most one chunk per writing thread) is the only excess.
//!
//! # Opening without a request
//! Opening a remote archive normally pins its identity with a request. When the cache
//! already holds a manifest for the URL, [`CachedBackend`] is built from it without
//! contacting the server: the header, index and blocks are served from disk, and the remote
//! backend is opened only on the first chunk missing from the cache. If the server's
//! identity then differs from the cached one, that read fails with
//! [`Error::ArchiveChanged`], the stale entries are dropped, and the next open sees the new
//! version. So a second full pass over an archive that fits in the cache makes no request at
//! all, and a read never mixes two versions; the price is that a pass served entirely from
//! the cache does not notice that the server has a newer version.
//!
//! # Memory
//! Each [`CachedBackend`] keeps its last few verified chunks in memory, so a sequential pass
//! of small reads verifies each 1 MiB chunk once rather than once per block. A chunk that
//! one batch of reads covers exactly (consecutive blocks) skips memory: it is read from disk
//! with one `preadv` straight into the readers' buffers and checked there.

use crate::error::{Error, Result};
use crate::store::StorageBackend;
use rayon::prelude::*;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Size and alignment of a cached chunk.
pub const CHUNK_SIZE: u64 = 1 << 20;
/// Bytes before the data of an entry file.
pub const ENTRY_HEADER: usize = 56;
const MAGIC: &[u8; 8] = b"HXZCHNK2";
const STRIPES: u64 = 256;
/// Fraction of the file system (in percent) the cache always leaves free.
pub const MIN_FREE_PERCENT: u64 = 5;
/// Verified chunks each backend keeps in memory.
pub const MEMORY_CHUNKS: usize = 16;
/// Chunks fetched or verified together; bounds the memory one batch holds.
const GROUP: usize = 32;
/// Temporary entries older than this are debris from a crashed process.
const STALE_TMP: Duration = Duration::from_secs(3600);
const USAGE_MAGIC: u64 = 0x6865_787a_7573_6731; // "hexzusg1"

/// A cache directory, shared by all backends (and processes) that use it.
#[derive(Debug)]
pub struct DiskCache {
    root: PathBuf,
    cap: u64,
    /// Entries this handle has added; a chunk served from memory refreshes its entry's
    /// recency on disk once per change of this count (see `CachedBackend::chunks`).
    writes: std::sync::atomic::AtomicU64,
}

/// Opens the backend of a URL (without the disk tier); used to open it lazily.
pub type Opener = Arc<dyn Fn(&str) -> Result<Arc<dyn StorageBackend>> + Send + Sync>;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn io_err(what: impl std::fmt::Display, p: &Path, e: std::io::Error) -> Error {
    Error::io(format!("disk cache: {what} {}", p.display()), e)
}

/// An exclusive `flock` on a file, released on drop.
struct FileLock(fs::File);

impl FileLock {
    fn acquire(path: &Path) -> Result<FileLock> {
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io_err("cannot open lock file", path, e))?;
        loop {
            // SAFETY: flock on a file descriptor we own; no memory is passed.
            let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
            if r == 0 {
                return Ok(FileLock(f));
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(io_err("cannot lock", path, e));
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // SAFETY: as above; closing the file would release the lock anyway.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// `(available, total)` bytes of the file system holding `p`.
fn fs_space(p: &Path) -> Option<(u64, u64)> {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the zeroed struct we pass; `c` is a valid NUL-terminated path.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    let f = s.f_frsize as u64;
    Some((s.f_bavail as u64 * f, s.f_blocks as u64 * f))
}

impl DiskCache {
    /// Opens (creating it if needed) the cache in `dir`, holding at most `cap` bytes of
    /// entries.
    pub fn open(dir: &Path, cap: u64) -> Result<Arc<DiskCache>> {
        let root = dir.join("hexz-cache-v1");
        for sub in ["data", "urls", "tmp", "stripes"] {
            let d = root.join(sub);
            fs::create_dir_all(&d).map_err(|e| io_err("cannot create directory", &d, e))?;
        }
        Ok(Arc::new(DiskCache {
            root,
            cap,
            writes: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    /// The cap in bytes.
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// The directory holding the cache's files.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn archive_key(url: &str, identity: &str, len: u64) -> String {
        let mut h = blake3::Hasher::new();
        h.update(b"hexz disk cache v1\0");
        h.update(url.as_bytes());
        h.update(b"\0");
        h.update(identity.as_bytes());
        h.update(b"\0");
        h.update(&len.to_le_bytes());
        hex(&h.finalize().as_bytes()[..16])
    }

    fn manifest_path(&self, url: &str) -> PathBuf {
        let h = blake3::hash(url.as_bytes());
        self.root.join("urls").join(hex(&h.as_bytes()[..16]))
    }

    fn entry_path(&self, key: &str, idx: u64) -> PathBuf {
        self.root.join("data").join(key).join(format!("{idx:016x}"))
    }

    fn stripe_path(&self, key: &str, idx: u64) -> (u64, PathBuf) {
        let mut h = blake3::Hasher::new();
        h.update(key.as_bytes());
        h.update(&idx.to_le_bytes());
        let b = h.finalize();
        let n = u64::from_le_bytes(b.as_bytes()[..8].try_into().unwrap_or_default()) % STRIPES;
        (n, self.root.join("stripes").join(format!("{n:02x}")))
    }

    /// Reads the manifest of `url`: `(length, identity)` last pinned.
    fn read_manifest(&self, url: &str) -> Option<(u64, String)> {
        let text = fs::read_to_string(self.manifest_path(url)).ok()?;
        let mut lines = text.lines();
        if lines.next()? != "hexz cache manifest 1" || lines.next()? != url {
            return None;
        }
        let len = lines.next()?.parse().ok()?;
        let identity = lines.next()?.to_string();
        (!identity.is_empty()).then_some((len, identity))
    }

    fn write_manifest(&self, url: &str, len: u64, identity: &str) {
        if url.contains('\n') || identity.contains('\n') {
            return;
        }
        let text = format!("hexz cache manifest 1\n{url}\n{len}\n{identity}\n");
        let _ = self.write_atomic(&self.manifest_path(url), text.as_bytes());
    }

    fn forget(&self, url: &str, key: &str) {
        let _ = fs::remove_file(self.manifest_path(url));
        let _ = self.drop_archive(key);
    }

    /// Writes `data` to a temporary file and renames it to `dest`.
    fn write_atomic(&self, dest: &Path, data: &[u8]) -> Result<()> {
        let tmp = self.temp_path()?;
        let r = (|| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            f.write_all(data)?;
            fs::rename(&tmp, dest)
        })();
        r.map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err("cannot write", dest, e)
        })
    }

    fn temp_path(&self) -> Result<PathBuf> {
        let rnd = crate::algo::hash::random_bytes::<8>()?;
        Ok(self
            .root
            .join("tmp")
            .join(format!("{}-{}.tmp", std::process::id(), hex(&rnd))))
    }

    /// The CRC32 of an entry: of its archive key, chunk offset and data (`parts`, in order).
    fn entry_crc(key: &str, offset: u64, parts: &[&[u8]]) -> [u8; 4] {
        let mut h = crc32fast::Hasher::new();
        h.update(key.as_bytes());
        h.update(&offset.to_le_bytes());
        for p in parts {
            h.update(p);
        }
        h.finalize().to_le_bytes()
    }

    /// Whether `head` is the header of entry `idx` holding `len` bytes (the CRC aside).
    fn head_ok(head: &[u8; ENTRY_HEADER], idx: u64, len: usize) -> bool {
        &head[..8] == MAGIC
            && head[8..16] == (idx * CHUNK_SIZE).to_le_bytes()
            && head[16..20] == (len as u32).to_le_bytes()
    }

    /// As [`read_entry`](Self::read_entry), straight into `parts`, which tile the entry's
    /// `len` bytes in order (a caller's buffers: no intermediate buffer, no copy). `false`
    /// when the entry is missing, or damaged (then deleted); the parts may then hold
    /// anything.
    fn read_entry_into(&self, key: &str, idx: u64, len: usize, parts: &mut [&mut [u8]]) -> bool {
        let path = self.entry_path(key, idx);
        let Ok(f) = fs::File::open(&path) else {
            return false;
        };
        let mut head = [0u8; ENTRY_HEADER];
        let ok = f.read_exact_at(&mut head, 0).is_ok()
            && Self::head_ok(&head, idx, len)
            && f.metadata()
                .is_ok_and(|m| m.len() == (ENTRY_HEADER + len) as u64)
            && crate::store::local::preadv_exact(&f, ENTRY_HEADER as u64, parts).is_ok()
            && head[20..24] == Self::entry_crc(key, idx * CHUNK_SIZE, &as_shared(parts));
        if !ok {
            drop(f);
            let _ = self.remove_entry(&path);
            return false;
        }
        // SAFETY: futimens on our own descriptor; a null `times` means "now".
        unsafe { libc::futimens(f.as_raw_fd(), std::ptr::null()) };
        true
    }

    /// Reads and checks entry `idx` of archive `key`, expected to hold `len` bytes. A damaged
    /// entry is deleted (and its bytes taken off the usage) and reported as a miss.
    fn read_entry(&self, key: &str, idx: u64, len: usize) -> Option<Vec<u8>> {
        let path = self.entry_path(key, idx);
        let mut f = fs::File::open(&path).ok()?;
        let mut head = [0u8; ENTRY_HEADER];
        // Read into spare capacity: `File` fills it without zeroing it first (1 MiB each).
        let mut buf = Vec::with_capacity(len + 1);
        let ok = f.read_exact(&mut head).is_ok()
            && Self::head_ok(&head, idx, len)
            && (&mut f).take(len as u64 + 1).read_to_end(&mut buf).is_ok()
            && buf.len() == len
            && head[20..24] == Self::entry_crc(key, idx * CHUNK_SIZE, &[&buf]);
        if !ok {
            drop(f);
            let _ = self.remove_entry(&path);
            return None;
        }
        // Refresh the mtime: eviction removes the least recently used entries first.
        // SAFETY: futimens on our own descriptor; a null `times` means "now".
        unsafe { libc::futimens(f.as_raw_fd(), std::ptr::null()) };
        Some(buf)
    }

    /// Marks entry `idx` of `key` as just used, so eviction keeps it over older ones.
    fn touch_entry(&self, key: &str, idx: u64) {
        if let Ok(f) = fs::File::open(self.entry_path(key, idx)) {
            let _ = f.set_modified(SystemTime::now());
        }
    }

    /// Deletes one entry file and takes its size off the usage.
    fn remove_entry(&self, path: &Path) -> Result<()> {
        let _g = FileLock::acquire(&self.root.join("lock"))?;
        if let Ok(m) = fs::metadata(path) {
            if fs::remove_file(path).is_ok() {
                let u = self.read_usage().unwrap_or(m.len());
                self.write_usage(u.saturating_sub(m.len()));
            }
        }
        Ok(())
    }

    /// Deletes every entry of archive `key`.
    fn drop_archive(&self, key: &str) -> Result<()> {
        let _g = FileLock::acquire(&self.root.join("lock"))?;
        let dir = self.root.join("data").join(key);
        let mut freed = 0;
        if let Ok(rd) = fs::read_dir(&dir) {
            for e in rd.flatten() {
                let n = e.metadata().map_or(0, |m| m.len());
                if fs::remove_file(e.path()).is_ok() {
                    freed += n;
                }
            }
        }
        let _ = fs::remove_dir(&dir);
        match self.read_usage() {
            Some(u) => self.write_usage(u.saturating_sub(freed)),
            None => self.write_usage(self.scan().iter().map(|e| e.1).sum()),
        }
        Ok(())
    }

    fn read_usage(&self) -> Option<u64> {
        let b = fs::read(self.root.join("usage")).ok()?;
        if b.len() != 16 {
            return None;
        }
        let u = u64::from_le_bytes(b[..8].try_into().ok()?);
        let check = u64::from_le_bytes(b[8..].try_into().ok()?);
        (check == u ^ USAGE_MAGIC).then_some(u)
    }

    fn write_usage(&self, u: u64) {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&u.to_le_bytes());
        b[8..].copy_from_slice(&(u ^ USAGE_MAGIC).to_le_bytes());
        let _ = self.write_atomic(&self.root.join("usage"), &b);
    }

    /// Every entry file: `(path, size, mtime)`. Also removes stale temporary files.
    fn scan(&self) -> Vec<(PathBuf, u64, SystemTime)> {
        let mut out = Vec::new();
        if let Ok(rd) = fs::read_dir(self.root.join("data")) {
            for d in rd.flatten() {
                let Ok(files) = fs::read_dir(d.path()) else {
                    continue;
                };
                for f in files.flatten() {
                    if let Ok(m) = f.metadata() {
                        if m.is_file() {
                            let t = m.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                            out.push((f.path(), m.len(), t));
                        }
                    }
                }
            }
        }
        if let Ok(rd) = fs::read_dir(self.root.join("tmp")) {
            let now = SystemTime::now();
            for f in rd.flatten() {
                let old = f
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > STALE_TMP);
                if old {
                    let _ = fs::remove_file(f.path());
                }
            }
        }
        out
    }

    /// Bytes of all entries, counted on disk (not from the usage file).
    pub fn scanned_usage(&self) -> u64 {
        self.scan().iter().map(|e| e.1).sum()
    }

    /// Whether adding `extra` bytes keeps the file system at least 5% free.
    fn space_ok(&self, extra: u64) -> bool {
        match fs_space(&self.root) {
            Some((avail, total)) => avail.saturating_sub(extra) >= total / 100 * MIN_FREE_PERCENT,
            None => true,
        }
    }

    /// Moves a complete temporary entry of `size` bytes to `dest`, first evicting least
    /// recently used entries as needed. Returns whether it was added.
    fn commit_entry(&self, tmp: &Path, dest: &Path, size: u64) -> Result<bool> {
        let _g = FileLock::acquire(&self.root.join("lock"))?;
        if dest.exists() {
            return Ok(false);
        }
        if size > self.cap {
            return Ok(false);
        }
        let mut usage = match self.read_usage() {
            Some(u) => u,
            None => self.scanned_usage(),
        };
        if usage + size > self.cap || !self.space_ok(size) {
            // Rescan (the usage file may have drifted after a crash), then evict the least
            // recently used entries until the new one fits.
            let mut all = self.scan();
            usage = all.iter().map(|e| e.1).sum();
            all.sort_by_key(|e| e.2);
            let mut it = all.into_iter();
            while usage + size > self.cap || !self.space_ok(size) {
                let Some((p, n, _)) = it.next() else { break };
                if fs::remove_file(&p).is_ok() {
                    usage = usage.saturating_sub(n);
                    if let Some(d) = p.parent() {
                        let _ = fs::remove_dir(d); // only succeeds once empty
                    }
                }
            }
            if usage + size > self.cap || !self.space_ok(size) {
                self.write_usage(usage);
                return Ok(false);
            }
        }
        if let Some(d) = dest.parent() {
            fs::create_dir_all(d).map_err(|e| io_err("cannot create directory", d, e))?;
        }
        fs::rename(tmp, dest).map_err(|e| io_err("cannot add entry", dest, e))?;
        self.write_usage(usage + size);
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(true)
    }

    /// Stores chunk `idx` of archive `key`. Failures only mean the chunk is not cached.
    fn write_entry(&self, key: &str, idx: u64, data: &[u8]) {
        let Ok(tmp) = self.temp_path() else { return };
        let mut head = [0u8; ENTRY_HEADER];
        head[..8].copy_from_slice(MAGIC);
        head[8..16].copy_from_slice(&(idx * CHUNK_SIZE).to_le_bytes());
        head[16..20].copy_from_slice(&(data.len() as u32).to_le_bytes());
        head[20..24].copy_from_slice(&Self::entry_crc(key, idx * CHUNK_SIZE, &[data]));
        let written = (|| -> std::io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            f.write_all(&head)?;
            f.write_all(data)
        })();
        let size = (ENTRY_HEADER + data.len()) as u64;
        let added = written.is_ok()
            && self
                .commit_entry(&tmp, &self.entry_path(key, idx), size)
                .unwrap_or(false);
        if !added {
            let _ = fs::remove_file(&tmp);
        }
    }
}

/// The parts as shared slices (for checksumming).
fn as_shared<'a>(parts: &'a [&mut [u8]]) -> Vec<&'a [u8]> {
    parts.iter().map(|p| &**p).collect()
}

mod backend;
pub use backend::{open_cached, CachedBackend};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_changes_with_identity_and_length() {
        let a = DiskCache::archive_key("http://h/a", "\"e1\"", 10);
        assert_ne!(a, DiskCache::archive_key("http://h/a", "\"e2\"", 10));
        assert_ne!(a, DiskCache::archive_key("http://h/a", "\"e1\"", 11));
        assert_ne!(a, DiskCache::archive_key("http://h/b", "\"e1\"", 10));
    }

    #[test]
    fn entries_read_into_parts_match_and_damaged_ones_are_dropped() {
        let t = tempfile::tempdir().unwrap();
        let c = DiskCache::open(t.path(), 1 << 30).unwrap();
        let data: Vec<u8> = (0..CHUNK_SIZE as usize)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        c.write_entry("k", 3, &data);
        // Parts of uneven sizes that tile the entry.
        let read = |c: &DiskCache| {
            let mut out = vec![0u8; data.len()];
            let (a, rest) = out.split_at_mut(1000);
            let (b, d) = rest.split_at_mut(65536);
            let ok = c.read_entry_into("k", 3, data.len(), &mut [a, b, d]);
            (ok, out)
        };
        let (ok, out) = read(&c);
        assert!(ok);
        assert!(out == data);
        // The wrong length for the entry, or the wrong chunk number: a miss, nothing read.
        let mut small = vec![0u8; 10];
        assert!(!c.read_entry_into("k", 4, 10, &mut [&mut small]));
        // A flipped data byte fails the CRC: a miss, and the entry is gone.
        let path = c.entry_path("k", 3);
        let mut b = std::fs::read(&path).unwrap();
        b[ENTRY_HEADER + 70_000] ^= 1;
        std::fs::write(&path, &b).unwrap();
        assert!(!read(&c).0);
        assert!(!path.exists(), "damaged entry deleted");
        // A truncated entry too.
        c.write_entry("k", 3, &data);
        let b = std::fs::read(&path).unwrap();
        std::fs::write(&path, &b[..b.len() - 1]).unwrap();
        assert!(!read(&c).0);
        assert!(!path.exists());
    }
}
