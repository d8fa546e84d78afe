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
/// As with any mapping, truncating the file while it is mapped makes later reads fault; use
/// [`FileBackend`] for archives that other processes may rewrite in place.
#[derive(Debug)]
pub struct MmapBackend {
    map: memmap2::Mmap,
    path: PathBuf,
}

impl MmapBackend {
    /// Maps `path` read-only.
    pub fn new(path: &Path) -> Result<Self> {
        let file = fs::File::open(path)
            .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
        // SAFETY: the map is read-only; hexz never writes an archive in place (writes go to a
        // temporary file that is renamed), so the mapped bytes do not change under us.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| Error::io(format!("cannot mmap {}", path.display()), e))?;
        Ok(MmapBackend {
            map,
            path: path.to_path_buf(),
        })
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
        Some(&self.map)
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn open_relative(&self, path: &str) -> Result<Arc<dyn StorageBackend>> {
        Ok(Arc::new(MmapBackend::new(&sibling(&self.path, path))?))
    }
}
