//! Storage backends: where archive bytes come from. Local file and mmap live in [`local`];
//! remote backends (HTTP range requests, S3) implement the same [`StorageBackend`] trait.

pub mod local;

use crate::error::Result;
use std::sync::Arc;

/// Random-access, read-only byte source holding one archive.
///
/// Implementations must be `Send + Sync`: one backend serves many concurrent readers.
pub trait StorageBackend: Send + Sync {
    /// Total length of the archive in bytes.
    fn len(&self) -> u64;

    /// Whether the archive is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` with the bytes at `offset`. Reading past the end is an error.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// The whole archive as one slice, when the backend has it mapped (zero-copy reads).
    fn as_slice(&self) -> Option<&[u8]> {
        None
    }

    /// A short human description for error messages (a path or a URL).
    fn describe(&self) -> String;

    /// Opens another archive named relative to this one (a thin snapshot's parent path).
    /// Relative paths resolve against the directory holding this archive; absolute paths
    /// are used as they are. Backends that cannot locate siblings return an error.
    fn open_relative(&self, path: &str) -> Result<Arc<dyn StorageBackend>> {
        Err(crate::error::Error::Unsupported(format!(
            "{} cannot open the related archive '{path}' by itself; supply it explicitly",
            self.describe()
        )))
    }
}
