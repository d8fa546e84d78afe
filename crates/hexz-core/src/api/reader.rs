//! [`StreamReader`]: `std::io::Read + Seek` over one stream of a [`File`], with its own
//! read-ahead.

use super::{File, SnapshotStream};
use crate::cache::ReadAhead;
use crate::error::Result;
use std::io::{self, Read, Seek, SeekFrom};

/// A cursor over one stream, for code that wants `Read + Seek` (copying, parsing, hashing).
///
/// It owns a clone of the `File` (which shares caches with the original), keeps its own
/// position and its own sequential-read detector: a reader that reads on from where it
/// stopped gets the following bytes fetched and decoded in the background, with a window that
/// grows while the run lasts (larger, and split into several requests in flight, for remote
/// archives). Several readers of one archive are read ahead independently, interleaved or
/// not. A mount's file handle uses [`read_at`](Self::read_at) to get the same per-handle
/// read-ahead for positional reads.
pub struct StreamReader {
    file: File,
    stream: SnapshotStream,
    pos: u64,
    size: u64,
    ahead: ReadAhead,
}

impl StreamReader {
    pub(crate) fn new(file: File, stream: SnapshotStream) -> Self {
        let size = file.size(stream);
        let ahead = file.new_read_ahead();
        StreamReader {
            file,
            stream,
            pos: 0,
            size,
            ahead,
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

    /// The archive this reader reads.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Fills `buf` with the bytes at `offset` (without moving the position) and returns how
    /// many were read (fewer only at the end of the stream). Feeds this reader's read-ahead:
    /// the background fetch of what follows starts before this read is served.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let n = self.size.saturating_sub(offset).min(buf.len() as u64);
        if let Some((from, to)) = self.ahead.on_read(offset, n) {
            self.file.spawn_read_ahead(self.stream, from, to);
        }
        self.file.read_at_into(self.stream, offset, buf)
    }
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.read_at(self.pos, buf).map_err(io::Error::other)?;
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
