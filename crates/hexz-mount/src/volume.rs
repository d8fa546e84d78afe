//! [`Volume`]: an archive's streams as block devices, with an optional writable overlay.
//! The FUSE mount and the NBD server are two front ends over one `Volume`.

use crate::error::{Error, Result};
use crate::overlay::Overlay;
use hexz_core::{File, SnapshotStream};

/// The streams of one archive, read-only or writable through an [`Overlay`].
///
/// `Volume` is `Send + Sync`: every request of every FUSE thread or NBD connection goes
/// through one `Volume`, so the archive's block cache is shared by all of them.
#[derive(Debug)]
pub struct Volume {
    file: File,
    overlay: Option<Overlay>,
}

impl Volume {
    /// A read-only volume over `file`.
    pub fn new(file: File) -> Volume {
        Volume {
            file,
            overlay: None,
        }
    }

    /// A writable volume: writes go into `overlay`, reads see the overlay over `file`.
    pub fn with_overlay(file: File, overlay: Overlay) -> Volume {
        Volume {
            file,
            overlay: Some(overlay),
        }
    }

    /// The archive.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The overlay, when writable.
    pub fn overlay(&self) -> Option<&Overlay> {
        self.overlay.as_ref()
    }

    /// Whether writes are accepted.
    pub fn is_writable(&self) -> bool {
        self.overlay.is_some()
    }

    /// The streams the archive holds, disk first.
    pub fn streams(&self) -> Vec<SnapshotStream> {
        self.file.streams()
    }

    /// Size of `stream` in bytes.
    pub fn size(&self, stream: SnapshotStream) -> u64 {
        self.file.size(stream)
    }

    /// Reads bytes of `stream` at `offset` into `buf`; returns how many (fewer only at the
    /// end of the stream). Overlay chunks replace the archive's bytes.
    pub fn read_at(&self, stream: SnapshotStream, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let n = self.file.read_at_into(stream, offset, buf)?;
        if let Some(ov) = &self.overlay {
            ov.patch(stream, offset, &mut buf[..n])?;
        }
        Ok(n)
    }

    /// Reads exactly `buf.len()` bytes of the archive itself (under the overlay).
    fn read_base(&self, stream: SnapshotStream, offset: u64, buf: &mut [u8]) -> Result<()> {
        let n = self.file.read_at_into(stream, offset, buf)?;
        if n != buf.len() {
            return Err(Error::OutOfRange {
                what: "read",
                offset,
                len: buf.len() as u64,
                size: self.size(stream),
            });
        }
        Ok(())
    }

    /// Writes `data` at `offset` of `stream` into the overlay.
    pub fn write_at(&self, stream: SnapshotStream, offset: u64, data: &[u8]) -> Result<()> {
        let ov = self.overlay.as_ref().ok_or(Error::ReadOnly)?;
        ov.write(stream, offset, Some(data), data.len() as u64, &|s, o, b| {
            self.read_base(s, o, b)
        })
    }

    /// Makes `len` bytes at `offset` read as zeros (trim, write-zeroes).
    pub fn zero(&self, stream: SnapshotStream, offset: u64, len: u64) -> Result<()> {
        let ov = self.overlay.as_ref().ok_or(Error::ReadOnly)?;
        ov.write(stream, offset, None, len, &|s, o, b| {
            self.read_base(s, o, b)
        })
    }

    /// Makes every write so far durable (no-op when read-only).
    pub fn sync(&self) -> Result<()> {
        match &self.overlay {
            Some(ov) => ov.sync(),
            None => Ok(()),
        }
    }
}
