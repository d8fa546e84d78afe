//! Extracting a whole stream (or a range of it) to a file, a device, a pipe or any writer.
//!
//! The index is walked lazily and the stream decoded in chunks of at most [`CHUNK_BYTES`]
//! (the blocks of a chunk in parallel) while the previous chunks are written, in order:
//! decoding and writing overlap, and at most a few chunks are in memory whatever the stream
//! size. To a file or a block device, chunks are decoded straight into the [`WriteBack`]
//! thread's aligned buffers (written with direct I/O where possible); to a pipe or another
//! writer, a decoding thread hands chunks to the calling thread, which writes them. Runs of
//! zero blocks are not decoded at all: a regular file gets a hole there (it stays sparse),
//! other outputs get zeros.
//!
//! Where the output goes:
//! - a new or existing regular file: written to a temporary file beside it through a
//!   [`WriteBack`] thread (writeback overlapped, page cache dropped behind), made durable and
//!   renamed over the target, so the target is never half-written;
//! - an existing block device: written in place (a temporary file in `/dev` renamed over the
//!   device node would be wrong), zero runs written as zeros, fdatasync at the end;
//! - an existing character device or FIFO (`/dev/null`, a pipe): written in place, in order.
//!
//! Reading the archive through positional reads rather than a memory map keeps the process's
//! resident memory to the chunks in flight (mapped archive pages would count, all of them).

use super::atomic::AtomicFile;
use super::writeback::WriteBack;
use crate::api::{File, SnapshotStream};
use crate::error::{Error, Result};
use crossbeam_channel::bounded;
use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// Logical bytes decoded per chunk (the blocks of a chunk are decoded in parallel).
pub const CHUNK_BYTES: usize = 8 << 20;
/// Decoded chunks waiting for the writer.
const QUEUE: usize = 2;

/// What an extraction wrote.
#[derive(Debug, Clone, Default)]
pub struct ExtractStats {
    /// Logical bytes of the stream written (holes included).
    pub bytes: u64,
    /// Bytes left as holes (regular file output) or written as zeros without decoding.
    pub zero_bytes: u64,
    /// True when the output was written in place (device, FIFO) rather than renamed into place.
    pub in_place: bool,
}

/// One piece of the stream, in order.
enum Piece {
    /// Decoded bytes of `[offset, offset + buf.len())`.
    Data(Vec<u8>),
    /// `len` zero bytes.
    Zero(u64),
}

/// Extracts `stream` of `file` to `path` (see the module doc for how each kind of output is
/// handled). `progress` gets the bytes done so far after each chunk.
pub fn extract_to_path(
    file: &File,
    stream: SnapshotStream,
    path: &Path,
    progress: Option<&dyn Fn(u64)>,
) -> Result<ExtractStats> {
    let size = file.size(stream);
    if !file.has_stream(stream) {
        return Err(Error::NoSuchStream(stream));
    }
    let kind = std::fs::metadata(path).ok().map(|m| m.file_type());
    match kind {
        Some(t) if t.is_block_device() => {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
            let name = path.display().to_string();
            let mut wb = WriteBack::new(&f, 0, &name, true)?;
            let mut stats = run_to_writeback(file, stream, size, &mut wb, false, progress)?;
            wb.finish()?;
            stats.in_place = true;
            Ok(stats)
        }
        Some(t) if t.is_char_device() || t.is_fifo() || t.is_socket() => {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            let mut stats = extract_range_to_writer(file, stream, 0, size, &mut w, progress)?;
            w.flush()
                .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
            stats.in_place = true;
            Ok(stats)
        }
        Some(t) if t.is_dir() => Err(Error::InvalidArgument(format!(
            "{} is a directory; give a file path",
            path.display()
        ))),
        _ => {
            let mut atomic = AtomicFile::create(path)?;
            let name = atomic.temp_path().display().to_string();
            let mut wb = WriteBack::new(atomic.file(), 0, &name, true)?;
            let stats = run_to_writeback(file, stream, size, &mut wb, true, progress)?;
            wb.finish()?;
            // A trailing hole: the length comes from set_len, not from a write.
            atomic
                .file()
                .set_len(size)
                .map_err(|e| Error::io(format!("setting length of {name}"), e))?;
            atomic.commit()?;
            Ok(stats)
        }
    }
}

/// Writes `stream` of `file` to `w` in order, zeros included (e.g. standard output).
pub fn extract_to_writer(
    file: &File,
    stream: SnapshotStream,
    w: &mut dyn Write,
    progress: Option<&dyn Fn(u64)>,
) -> Result<ExtractStats> {
    let size = file.size(stream);
    extract_range_to_writer(file, stream, 0, size, w, progress)
}

/// Writes bytes `[start, end)` of `stream` to `w` in order (clamped to the stream's size).
pub fn extract_range_to_writer(
    file: &File,
    stream: SnapshotStream,
    start: u64,
    end: u64,
    w: &mut dyn Write,
    progress: Option<&dyn Fn(u64)>,
) -> Result<ExtractStats> {
    if !file.has_stream(stream) {
        return Err(Error::NoSuchStream(stream));
    }
    let size = file.size(stream);
    let end = end.min(size);
    let start = start.min(end);
    run(file, stream, start, end, w, progress)
}

/// Extracts the whole stream into `wb` on the calling thread: each data chunk is decoded
/// (its blocks in parallel on the decode pool) straight into the writer's aligned chunk
/// buffers, while the writer thread writes the previous chunks; zero runs become holes
/// (`holes`) or written zeros.
fn run_to_writeback(
    file: &File,
    stream: SnapshotStream,
    size: u64,
    wb: &mut WriteBack,
    holes: bool,
    progress: Option<&dyn Fn(u64)>,
) -> Result<ExtractStats> {
    let mut stats = ExtractStats::default();
    // A reader of its own, so a remote archive is read ahead (large requests, several in
    // flight) while this thread decodes.
    let mut reader = file.reader(stream).ok();
    let mut done = 0u64;
    plan(file, stream, 0, size, |off, len, zero| {
        if zero {
            stats.zero_bytes += len;
            if holes {
                wb.skip(len)?;
            } else {
                write_zeros(len, |z| wb.write(z))?;
            }
        } else {
            wb.write_with(len, |pos, buf| {
                let at = off + pos;
                let n = match reader.as_mut() {
                    Some(r) => r.read_at(at, buf),
                    None => file.read_at_into(stream, at, buf),
                }?;
                if n == buf.len() {
                    Ok(())
                } else {
                    Err(short_stream(stream, at + n as u64))
                }
            })?;
        }
        done += len;
        if let Some(p) = progress {
            p(done);
        }
        Ok(true)
    })?;
    if done != size {
        return Err(blocks_end(stream, done, size));
    }
    stats.bytes = done;
    Ok(stats)
}

fn short_stream(stream: SnapshotStream, at: u64) -> Error {
    Error::corrupt(
        "index",
        format!("{stream} stream ends at {at} before its recorded size"),
    )
}

fn blocks_end(stream: SnapshotStream, done: u64, end: u64) -> Error {
    Error::corrupt(
        "index",
        format!("{stream} stream's blocks end at {done}, expected {end}"),
    )
}

fn write_out(w: &mut dyn Write, b: &[u8]) -> Result<()> {
    w.write_all(b).map_err(|e| Error::io("writing output", e))
}

fn write_zeros(mut n: u64, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        f(&ZEROS[..k])?;
        n -= k as u64;
    }
    Ok(())
}

/// Splits `[start, end)` into runs of zero blocks and chunks of at most [`CHUNK_BYTES`] of
/// data, in order, calling `emit(offset, len, zero)` for each.
fn plan(
    file: &File,
    stream: SnapshotStream,
    start: u64,
    end: u64,
    mut emit: impl FnMut(u64, u64, bool) -> Result<bool>,
) -> Result<()> {
    // The current run: (offset, len, zero).
    let mut run: Option<(u64, u64, bool)> = None;
    for e in file.entries(stream) {
        let e = e?;
        let (lo, hi) = (e.logical_offset.max(start), e.logical_end().min(end));
        if e.logical_end() <= start {
            continue;
        }
        if lo >= end {
            break;
        }
        let zero = e.is_zero();
        let len = hi - lo;
        match &mut run {
            Some((_, l, z)) if *z == zero && (zero || *l + len <= CHUNK_BYTES as u64) => {
                *l += len;
            }
            _ => {
                if let Some((o, l, z)) = run.take() {
                    if !emit(o, l, z)? {
                        return Ok(());
                    }
                }
                run = Some((lo, len, zero));
            }
        }
    }
    if let Some((o, l, z)) = run {
        emit(o, l, z)?;
    }
    Ok(())
}

/// The pipeline to a writer: a decoding thread, the calling thread writing, zeros included.
fn run(
    file: &File,
    stream: SnapshotStream,
    start: u64,
    end: u64,
    w: &mut dyn Write,
    progress: Option<&dyn Fn(u64)>,
) -> Result<ExtractStats> {
    let (tx, rx) = bounded::<Result<Piece>>(QUEUE);
    let (free_tx, free_rx) = bounded::<Vec<u8>>(QUEUE + 2);
    let mut stats = ExtractStats::default();
    std::thread::scope(|s| -> Result<()> {
        let decoder = s.spawn(move || {
            // Through a reader of its own, so a remote archive is read ahead (large requests,
            // several in flight) while this thread decodes.
            let mut reader = file.reader(stream).ok();
            let r = catch_unwind(AssertUnwindSafe(|| {
                plan(file, stream, start, end, |off, len, zero| {
                    let piece = if zero {
                        Ok(Piece::Zero(len))
                    } else {
                        let mut buf = free_rx.try_recv().unwrap_or_default();
                        buf.resize(len as usize, 0);
                        match reader.as_mut() {
                            Some(r) => r.read_at(off, &mut buf),
                            None => file.read_at_into(stream, off, &mut buf),
                        }
                        .and_then(|n| {
                            if n == buf.len() {
                                Ok(Piece::Data(buf))
                            } else {
                                Err(short_stream(stream, off + n as u64))
                            }
                        })
                    };
                    let failed = piece.is_err();
                    // A closed channel means the writer stopped: stop decoding.
                    Ok(tx.send(piece).is_ok() && !failed)
                })
            }));
            let err = match r {
                Ok(Ok(())) => return,
                Ok(Err(e)) => e,
                Err(_) => Error::io(
                    format!("extracting {stream} stream"),
                    std::io::Error::other("the decoding thread panicked"),
                ),
            };
            let _ = tx.send(Err(err));
        });
        let mut done = start;
        let mut result = Ok(());
        for piece in rx.iter() {
            let step = match piece {
                Ok(Piece::Data(buf)) => {
                    let r = write_out(w, &buf);
                    done += buf.len() as u64;
                    let _ = free_tx.try_send(buf);
                    r
                }
                Ok(Piece::Zero(n)) => {
                    stats.zero_bytes += n;
                    done += n;
                    write_zeros(n, |z| write_out(w, z))
                }
                Err(e) => Err(e),
            };
            if let Err(e) = step {
                result = Err(e);
                break;
            }
            if let Some(p) = progress {
                p(done - start);
            }
        }
        drop(rx);
        if decoder.join().is_err() && result.is_ok() {
            result = Err(Error::io(
                format!("extracting {stream} stream"),
                std::io::Error::other("the decoding thread panicked"),
            ));
        }
        if result.is_ok() && done != end {
            result = Err(blocks_end(stream, done, end));
        }
        stats.bytes = done - start;
        result
    })?;
    Ok(stats)
}
