//! Extracting a whole stream (or a range of it) to a file, a device, a pipe or any writer.
//!
//! The index is walked lazily and the stream decoded in chunks while the previous chunks are
//! written, in order: decoding and writing overlap, and at most a few chunks are in memory
//! whatever the stream size. Runs of zero blocks are not decoded at all: a regular file gets
//! a hole there (it stays sparse), other outputs get zeros. Two pipelines:
//! - to a pipe or another writer (and from a remote archive, to anything), `run_parts`: a
//!   planning thread cuts the stream into chunks of at most [`CHUNK_BYTES`], or for a remote
//!   archive into *parts* (the blocks stored in one 8 MiB cell of the object, one request
//!   each); several workers read and decode one each, on their own threads, right after its
//!   bytes arrive; the calling thread writes them in order. Nothing goes through the block
//!   cache.
//! - from a local archive to a file or a block device: each chunk is decoded (its blocks in
//!   parallel on the decode pool) straight into the [`WriteBack`] thread's aligned buffers,
//!   written with direct I/O where possible, with no copy in between.
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
use crate::api::{decode_on_this_thread, File, SnapshotStream};
use crate::error::{Error, Result};
use crate::store::GridCells;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// Logical bytes decoded per chunk of a local archive.
pub const CHUNK_BYTES: usize = 8 << 20;

/// Chunks of a local archive: [`CHUNK_BYTES`] of data each.
const LOCAL_CUTS: Cuts = Cuts {
    max: CHUNK_BYTES as u64,
    grid: false,
};

/// Chunks of a remote archive (parts): the blocks stored in one
/// [`REMOTE_ALIGN`](crate::store::REMOTE_ALIGN) cell, one request each, up to
/// [`PART_BYTES`] of data.
const REMOTE_CUTS: Cuts = Cuts {
    max: PART_BYTES,
    grid: true,
};

/// Most logical bytes of one part of a remote extraction: a stored cell of 8 MiB holds about
/// 20 MiB of a typical disk image; more compressible data is cut here, so that memory stays
/// bounded (less stored per request).
const PART_BYTES: u64 = 32 << 20;

/// Chunks (parts) read and decoded at once, each on a thread of its own: for a remote
/// archive, the requests in flight that keep a link busy; for any, the decoding spread over
/// the cores.
const PARTS_IN_FLIGHT: usize = 3;

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
    /// Decoded bytes of `[offset, offset + len)`: the first `len` bytes of the buffer (which
    /// keeps its length when reused, so that it is not zeroed again).
    Data(Vec<u8>, usize),
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
    if file.is_remote() {
        // Decoded by the part workers; copied into the writer's aligned chunks here.
        stats.bytes = run_parts(
            file,
            stream,
            (0, size),
            REMOTE_CUTS,
            &mut |o| match o {
                Out::Data(b) => wb.write(b),
                Out::Zero(n) => {
                    stats.zero_bytes += n;
                    if holes {
                        wb.skip(n)
                    } else {
                        write_zeros(n, |z| wb.write(z))
                    }
                }
            },
            progress,
        )?;
        return Ok(stats);
    }
    // A reader of its own: chunks cut short by the writer's buffers are small reads, which
    // it reads ahead.
    let mut reader = file.reader(stream).ok();
    let mut done = 0u64;
    plan(file, stream, 0, size, LOCAL_CUTS, |off, len, zero| {
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

/// How [`plan`] cuts data into chunks.
#[derive(Clone, Copy)]
struct Cuts {
    /// Most logical bytes in one chunk.
    max: u64,
    /// For a remote archive: also cut where a block's stored bytes lie in a later cell of
    /// the [`REMOTE_ALIGN`](crate::store::REMOTE_ALIGN) grid than the chunk's earlier
    /// blocks of its archive ([`GridCells`]), so that each chunk is fetched with one request
    /// covering one part of the uploaded object.
    grid: bool,
}

/// Splits `[start, end)` into runs of zero blocks and chunks of data (see [`Cuts`]), in
/// order, calling `emit(offset, len, zero)` for each.
fn plan(
    file: &File,
    stream: SnapshotStream,
    start: u64,
    end: u64,
    cuts: Cuts,
    mut emit: impl FnMut(u64, u64, bool) -> Result<bool>,
) -> Result<()> {
    // The current run: (offset, len, zero).
    let mut run: Option<(u64, u64, bool)> = None;
    let mut cells = GridCells::default();
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
        let new_cell = !zero && cuts.grid && cells.advances(e.source, e.stored_offset);
        match &mut run {
            Some((_, l, z)) if *z == zero && (zero || (*l + len <= cuts.max && !new_cell)) => {
                *l += len;
            }
            _ => {
                if !zero {
                    cells.restart(e.source, e.stored_offset);
                }
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

/// The pipeline to a writer ([`run_parts`]), zeros included: chunks of [`CHUNK_BYTES`] for a
/// local archive, parts of the grid ([`REMOTE_CUTS`]) for a remote one.
fn run(
    file: &File,
    stream: SnapshotStream,
    start: u64,
    end: u64,
    w: &mut dyn Write,
    progress: Option<&dyn Fn(u64)>,
) -> Result<ExtractStats> {
    let cuts = if file.is_remote() {
        REMOTE_CUTS
    } else {
        LOCAL_CUTS
    };
    let mut stats = ExtractStats::default();
    stats.bytes = run_parts(
        file,
        stream,
        (start, end),
        cuts,
        &mut |o| match o {
            Out::Data(b) => write_out(w, b),
            Out::Zero(n) => {
                stats.zero_bytes += n;
                write_zeros(n, |z| write_out(w, z))
            }
        },
        progress,
    )?;
    Ok(stats)
}

/// A part's result, handed from the worker that read it to the writer.
type PartResult = Result<Piece>;

/// A piece of the stream as [`run_parts`] hands it on, in order.
enum Out<'a> {
    /// Decoded bytes.
    Data(&'a [u8]),
    /// This many zero bytes.
    Zero(u64),
}

/// The parallel pipeline: a planning thread cuts `[start, end)` into parts ([`plan`] with
/// `cuts`: for a remote archive one request each, see [`REMOTE_CUTS`]);
/// [`PARTS_IN_FLIGHT`] workers each read a part and decode it on their own thread straight
/// into its buffer, while its stored bytes are still in the CPU's caches (a remote part is
/// streamed, each block decoded as its bytes arrive: see `api/streamed.rs`); the calling
/// thread hands the parts to `out` in order. Nothing is kept in the block cache
/// ([`File::read_once_into`]): the process holds only the parts in flight, whatever the
/// archive's size. Returns the bytes handed on (`end - start`).
///
/// Compared with one decoding thread handing each chunk to the decode pool (and, for a
/// remote archive, a reader whose read-ahead kept stored bytes in the cache for tens of MiB
/// before they were decoded), the workers keep both cores busy with fewer hand-offs: see
/// docs/BENCHMARKS.md (issue 8) for what that saved.
fn run_parts(
    file: &File,
    stream: SnapshotStream,
    (start, end): (u64, u64),
    cuts: Cuts,
    out: &mut dyn FnMut(Out<'_>) -> Result<()>,
    progress: Option<&dyn Fn(u64)>,
) -> Result<u64> {
    // Work for the workers: a part and where its result goes.
    let (work_tx, work_rx) = bounded::<(u64, u64, Sender<PartResult>)>(0);
    // The results, in stream order: the writer waits on each in turn. Bounded, so that the
    // planner stops when the writer falls behind: at most this many parts decoded or being
    // decoded, and one being written. (One more queued took 25 MB more memory for no speed.)
    let (order_tx, order_rx) = bounded::<Receiver<PartResult>>(PARTS_IN_FLIGHT);
    // Written parts' buffers, for the workers to reuse (they keep their length). Room for
    // every buffer that can be alive at once (one per worker, per queued part, and the one
    // being written), so that none is freed and then allocated, zeroed and faulted in again.
    // Those seven buffers' first faults remain; huge pages ([`part_buffer`]) took a full read
    // of the 2 GiB bench archive over HTTP (remote parts of about 20 MiB) from about 36,000
    // page faults to about 8,000.
    let (free_tx, free_rx) = bounded::<Vec<u8>>(2 * PARTS_IN_FLIGHT + 1);
    let most = usize::try_from(cuts.max).unwrap_or(usize::MAX);
    std::thread::scope(|s| -> Result<u64> {
        for _ in 0..PARTS_IN_FLIGHT {
            let (work_rx, free_rx) = (work_rx.clone(), free_rx.clone());
            s.spawn(move || {
                for (off, len, done) in work_rx.iter() {
                    let len = len as usize;
                    // A fresh buffer has room for the longest part: it never moves.
                    let mut buf = free_rx
                        .try_recv()
                        .unwrap_or_else(|_| part_buffer(most.max(len)));
                    if buf.len() < len {
                        buf.resize(len, 0);
                    }
                    let read = catch_unwind(AssertUnwindSafe(|| {
                        decode_on_this_thread(|| file.read_once_into(stream, off, &mut buf[..len]))
                    }));
                    let part = match read {
                        Ok(Ok(n)) if n == len => Ok(Piece::Data(buf, len)),
                        Ok(Ok(n)) => Err(short_stream(stream, off + n as u64)),
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(panicked(stream)),
                    };
                    // The writer may have stopped; the part is then dropped.
                    let _ = done.send(part);
                }
            });
        }
        drop(work_rx);
        s.spawn(move || {
            let planned = catch_unwind(AssertUnwindSafe(|| {
                plan(file, stream, start, end, cuts, |off, len, zero| {
                    let (tx, rx) = bounded(1);
                    // A closed queue means the writer stopped: stop planning.
                    if order_tx.send(rx).is_err() {
                        return Ok(false);
                    }
                    if zero {
                        let _ = tx.send(Ok(Piece::Zero(len)));
                        return Ok(true);
                    }
                    Ok(work_tx.send((off, len, tx)).is_ok())
                })
            }));
            let err = match planned {
                Ok(Ok(())) => return,
                Ok(Err(e)) => e,
                Err(_) => panicked(stream),
            };
            let (tx, rx) = bounded(1);
            let _ = tx.send(Err(err));
            let _ = order_tx.send(rx);
        });
        let mut done = start;
        let mut result = Ok(());
        for part in order_rx.iter() {
            // A worker that dropped its sender without an answer panicked outside the guard.
            let step = match part.recv().unwrap_or_else(|_| Err(panicked(stream))) {
                Ok(Piece::Data(buf, n)) => {
                    let r = out(Out::Data(&buf[..n]));
                    done += n as u64;
                    let _ = free_tx.try_send(buf);
                    r
                }
                Ok(Piece::Zero(n)) => {
                    done += n;
                    out(Out::Zero(n))
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
        // Stops the planner (its next send fails), and with it the workers.
        drop(order_rx);
        result?;
        if done != end {
            return Err(blocks_end(stream, done, end));
        }
        Ok(done - start)
    })
}

fn panicked(stream: SnapshotStream) -> Error {
    Error::io(
        format!("extracting {stream} stream"),
        std::io::Error::other("a decoding thread panicked"),
    )
}

/// An empty buffer with room for `cap` bytes, for a part. On Linux a large one is backed by
/// transparent huge pages where the system allows them on request (`madvise` mode, the usual
/// default): its first fill then takes a few 2 MiB faults instead of thousands of 4 KiB ones,
/// and decoding into it misses the TLB less.
fn part_buffer(cap: usize) -> Vec<u8> {
    let v = Vec::with_capacity(cap);
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let p = v.as_ptr() as usize;
        let (a, b) = (p.next_multiple_of(HUGE), (p + cap) / HUGE * HUGE);
        if b > a {
            // SAFETY: [a, b) lies inside the allocation just made; the advice changes how
            // its pages are backed, never their contents.
            unsafe {
                libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_HUGEPAGE);
            }
        }
    }
    v
}
