//! Local backends: [`FileBackend`] (positional reads, no shared cursor) and [`MmapBackend`]
//! (memory-mapped, zero-copy).

use super::StorageBackend;
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

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn open_relative(&self, path: &str) -> Result<Arc<dyn StorageBackend>> {
        Ok(Arc::new(FileBackend::new(&sibling(&self.path, path))?))
    }
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
