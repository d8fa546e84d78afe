//! Local backends: [`FileBackend`] (positional reads, no shared cursor) and [`MmapBackend`]
//! (memory-mapped, zero-copy).

use super::{ReadRequest, StorageBackend};
use crate::error::{Error, Result};
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Reads an archive with `pread(2)`: safe under concurrent use, no seek state.
#[derive(Debug)]
pub struct FileBackend {
    file: fs::File,
    len: u64,
    path: PathBuf,
}

impl FileBackend {
    /// Opens `path` for reading.
    pub fn new(path: &Path) -> Result<Self> {
        let file = fs::File::open(path)
            .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))?
            .len();
        Ok(FileBackend {
            file,
            len,
            path: path.to_path_buf(),
        })
    }
}

impl FileBackend {
    /// Opens the file at `file` but names it, and resolves related archives (a thin
    /// snapshot's parent) against, `name`: for checking a file that is not yet in place
    /// (an unnamed temporary reached through `/proc/self/fd`).
    pub fn open_as(file: &Path, name: &Path) -> Result<Self> {
        let mut b = Self::new(file)?;
        b.path = name.to_path_buf();
        Ok(b)
    }
}

impl StorageBackend for FileBackend {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.file.read_exact_at(buf, offset).map_err(|e| {
            Error::io(
                format!(
                    "reading {} bytes at offset {offset} of {}",
                    buf.len(),
                    self.path.display()
                ),
                e,
            )
        })
    }

    /// Requests that follow each other in the file are read with one `preadv(2)`, the others
    /// with one `pread(2)` each.
    fn read_batch(&self, reqs: &mut [ReadRequest<'_>]) -> Result<()> {
        let mut items: Vec<(u64, &mut [u8])> =
            reqs.iter_mut().map(|r| (r.offset, &mut *r.buf)).collect();
        items.sort_by_key(|(o, _)| *o);
        let mut i = 0;
        while i < items.len() {
            let start = items[i].0;
            let mut end = start.saturating_add(items[i].1.len() as u64);
            let mut j = i + 1;
            while j < items.len() && items[j].0 == end {
                end = end.saturating_add(items[j].1.len() as u64);
                j += 1;
            }
            if j - i == 1 {
                self.read_exact_at(start, items[i].1)?;
            } else {
                let mut run: Vec<&mut [u8]> =
                    items[i..j].iter_mut().map(|(_, b)| &mut **b).collect();
                self.preadv_exact(start, &mut run)?;
            }
            i = j;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn open_relative(&self, path: &str) -> Result<Arc<dyn StorageBackend>> {
        Ok(Arc::new(FileBackend::new(&sibling(&self.path, path))?))
    }
}

/// Most buffers one `preadv(2)` fills (Linux's `IOV_MAX` is 1024).
const MAX_IOVECS: usize = 512;

impl FileBackend {
    fn io_error(&self, offset: u64, len: usize, e: std::io::Error) -> Error {
        Error::io(
            format!(
                "reading {len} bytes at offset {offset} of {}",
                self.path.display()
            ),
            e,
        )
    }

    /// Fills `bufs`, which follow each other in the file from `offset`, with `preadv(2)`.
    fn preadv_exact(&self, offset: u64, bufs: &mut [&mut [u8]]) -> Result<()> {
        preadv_exact(&self.file, offset, bufs).map_err(|e| {
            let total: usize = bufs.iter().map(|b| b.len()).sum();
            self.io_error(offset, total, e)
        })
    }
}

/// Fills `bufs`, which follow each other in `file` from `offset`, with as few `preadv(2)`
/// calls as the kernel allows (a short read continues where it stopped; the end of the file
/// before the buffers are full is `UnexpectedEof`).
pub(crate) fn preadv_exact(
    file: &std::fs::File,
    offset: u64,
    bufs: &mut [&mut [u8]],
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut iov: Vec<libc::iovec> = bufs
        .iter_mut()
        .filter(|b| !b.is_empty())
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    let (mut first, mut done) = (0usize, 0usize);
    while first < iov.len() {
        let pos = offset + done as u64;
        let cnt = (iov.len() - first).min(MAX_IOVECS);
        // SAFETY: every iovec points into a distinct live `&mut [u8]` of `bufs`, advanced
        // only within its bounds below.
        let n = unsafe {
            libc::preadv(
                file.as_raw_fd(),
                iov[first..].as_ptr(),
                cnt as libc::c_int,
                pos as libc::off_t,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        }
        let mut n = n as usize;
        done += n;
        while n > 0 && first < iov.len() {
            let v = &mut iov[first];
            if n >= v.iov_len {
                n -= v.iov_len;
                first += 1;
            } else {
                // SAFETY: n < iov_len, so the advanced pointer stays inside the buffer.
                v.iov_base = unsafe { v.iov_base.cast::<u8>().add(n) }.cast();
                v.iov_len -= n;
                n = 0;
            }
        }
    }
    Ok(())
}

/// Resolves `rel` against the directory of `base` (absolute `rel` is returned as is).
pub fn sibling(base: &Path, rel: &str) -> PathBuf {
    let rel = Path::new(rel);
    if rel.is_absolute() {
        return rel.to_path_buf();
    }
    match base.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.join(rel),
        _ => rel.to_path_buf(),
    }
}

/// Memory-maps an archive: block reads decode straight from the page cache, no copy.
///
/// If the file shrinks while it is mapped (truncated or rewritten by another program), reads
/// of the vanished part fail with an error instead of killing the process with `SIGBUS`
/// (see `store/sigbus.rs`): the first such read reports the block's checksum failure, later
/// ones that the archive shrank while mapped.
#[derive(Debug)]
pub struct MmapBackend {
    // Declared before `map`: unregistered before the mapping goes away.
    guard: super::sigbus::Guard,
    map: memmap2::Mmap,
    path: PathBuf,
}

impl MmapBackend {
    /// Maps `path` read-only.
    pub fn new(path: &Path) -> Result<Self> {
        let file = fs::File::open(path)
            .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
        // SAFETY: the map is read-only. hexz replaces archives by renaming new files over them
        // (the mapped inode is unchanged); `sign`/`passwd --in-place` rewrite only the header,
        // which a reader has already decoded. A file shrunk by another program faults; the
        // SIGBUS guard registered below turns that into an error.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| Error::io(format!("cannot mmap {}", path.display()), e))?;
        let guard = super::sigbus::register(map.as_ptr(), map.len());
        Ok(MmapBackend {
            guard,
            map,
            path: path.to_path_buf(),
        })
    }
}

impl MmapBackend {
    fn shrank(&self) -> Error {
        Error::io(
            format!(
                "reading {}: the file shrank while mapped (truncated or rewritten by another \
                 program)",
                self.path.display()
            ),
            std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
        )
    }
}

impl StorageBackend for MmapBackend {
    fn len(&self) -> u64 {
        self.map.len() as u64
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        match end {
            Some(end) if end <= self.map.len() as u64 => {
                buf.copy_from_slice(&self.map[offset as usize..end as usize]);
                if self.guard.faulted_before(end as usize) {
                    return Err(self.shrank());
                }
                Ok(())
            }
            _ => Err(Error::io(
                format!(
                    "reading {} bytes at offset {offset} of {}",
                    buf.len(),
                    self.path.display()
                ),
                std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
            )),
        }
    }

    /// Copies each range out of the mapping (readers that can use the mapping directly go
    /// through [`as_slice`](StorageBackend::as_slice) and fetch nothing).
    fn read_batch(&self, reqs: &mut [ReadRequest<'_>]) -> Result<()> {
        for r in reqs.iter_mut() {
            self.read_exact_at(r.offset, r.buf)?;
        }
        Ok(())
    }

    fn as_slice(&self) -> Option<&[u8]> {
        // After a fault, reads take the copying path, which reports it.
        (!self.guard.faulted()).then_some(&self.map[..])
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn open_relative(&self, path: &str) -> Result<Arc<dyn StorageBackend>> {
        Ok(Arc::new(MmapBackend::new(&sibling(&self.path, path))?))
    }
}
