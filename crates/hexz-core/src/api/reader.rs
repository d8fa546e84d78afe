//! [`StreamReader`]: `std::io::Read + Seek` over one stream of a [`File`].

use super::{File, SnapshotStream};
use std::io::{self, Read, Seek, SeekFrom};

/// A cursor over one stream, for code that wants `Read + Seek` (copying, parsing, hashing).
///
/// It owns a clone of the `File` (which shares caches with the original) and keeps its own
/// position, so several readers can walk the same archive independently.
pub struct StreamReader {
    file: File,
    stream: SnapshotStream,
    pos: u64,
    size: u64,
}

impl StreamReader {
    pub(crate) fn new(file: File, stream: SnapshotStream) -> Self {
        let size = file.size(stream);
        StreamReader {
            file,
            stream,
            pos: 0,
            size,
        }
    }

    /// Current position in the stream.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Logical size of the stream.
    pub fn len(&self) -> u64 {
        self.size
    }

    /// Whether the stream is empty.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self
            .file
            .read_at_into(self.stream, self.pos, buf)
            .map_err(io::Error::other)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for StreamReader {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match target {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek to a negative or overflowing position",
            )),
        }
    }
}
