//! [`Reader`]: positional reads of one stream with their own read-ahead (`Archive.reader`).
//!
//! `Archive.readinto` reads exactly what it is asked, on the calling thread. A dataset that
//! reads its records in index order (a DataLoader with `num_workers=0`, or each worker's
//! share) would then decode every block on the Python thread, in turn. A `Reader` wraps one
//! hexz-core [`StreamReader`]: its reads feed a sequential detector of its own, and once
//! the reads look sequential (each starting where the previous ended, or a little past it)
//! the following blocks are fetched and decoded on the library's pools while Python works on
//! the current record. Random-order reads fetch nothing ahead. The read-ahead state belongs
//! to this reader: two datasets over one archive are detected independently.

use crate::archive::{stream_of, Archive};
use crate::buffer::{ReadBuffer, WritableBuffer};
use crate::errors::to_py;
use hexz_core::{Error, SnapshotStream, StreamReader};
use pyo3::exceptions::{PyEOFError, PyIndexError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PySlice, PyTuple};
use std::sync::Mutex;

/// A positional reader of one stream of an [`Archive`], with its own read-ahead.
///
/// Thread-safe; pickles as its archive and stream; after a fork (or unpickled in another
/// process) it opens a reader of its own from the archive there, never using the parent's.
#[pyclass(frozen, module = "hexz._hexz")]
pub struct Reader {
    archive: Py<Archive>,
    stream: SnapshotStream,
    /// The core reader and the process it belongs to, while no call is using it. Locked
    /// only with the GIL held and never across a blocking call (a call takes the reader
    /// out and puts it back), so a fork cannot leave it locked in the child.
    idle: Mutex<Option<(u32, StreamReader)>>,
    /// Batch arrays of `_read_items` kept for reuse (see [`Reader::batch_array`]), with
    /// their lengths. Locked only with the GIL held, like `idle`.
    batches: Mutex<Vec<(Py<PyAny>, usize)>>,
}

/// Smallest batch whose array is pooled: smaller ones come cheaply from the allocator's
/// free lists, larger ones are fresh memory (page faults and zeroing) every time.
const POOL_MIN: usize = 128 << 10;
/// Most bytes of batch arrays one reader keeps for reuse.
const POOL_BYTES: usize = 32 << 20;
/// Pooled arrays are allocated in multiples of this, so batches of slightly different
/// sizes can share them.
const POOL_GRAIN: usize = 256 << 10;

impl Reader {
    /// A reader of `stream` of `archive` (checked to exist).
    pub fn new(py: Python<'_>, archive: Py<Archive>, stream: &str) -> PyResult<Reader> {
        let s = stream_of(stream)?;
        let r = Reader {
            archive,
            stream: s,
            idle: Mutex::new(None),
            batches: Mutex::new(Vec::new()),
        };
        let core = r.take(py)?;
        r.put(core);
        Ok(r)
    }

    /// This process's core reader: the idle one, or a new one (first use in this process,
    /// or another thread is using the idle one right now).
    fn take(&self, py: Python<'_>) -> PyResult<StreamReader> {
        let pid = hexz_core::api::process_id();
        let a = self.archive.get();
        if a.is_closed() {
            return Err(PyValueError::new_err(format!(
                "I/O operation on closed archive {}",
                a.loc()
            )));
        }
        if let Some((p, r)) = self.lock().take() {
            if p == pid {
                return Ok(r);
            }
            // A reader inherited through fork belongs to the parent's archive: never used
            // nor dropped here.
            std::mem::forget(r);
        }
        let f = a.file(py)?;
        f.reader(self.stream)
            .map_err(|e| to_py(py, e, Some(&f.describe())))
    }

    /// Gives `r` back for the next call (dropped if another call already gave one back).
    fn put(&self, r: StreamReader) {
        let pid = hexz_core::api::process_id();
        let mut g = self.lock();
        if g.is_none() {
            *g = Some((pid, r));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(u32, StreamReader)>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on this process's core reader with the GIL released.
    fn with_reader<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut StreamReader) -> hexz_core::Result<T> + Send,
    ) -> PyResult<T> {
        let mut r = self.take(py)?;
        let res = py.detach(|| f(&mut r));
        self.put(r);
        res.map_err(|e| to_py(py, e, None))
    }

    /// A uint8 array of at least `total` bytes for a batch of `_read_items`. A batch of
    /// 64 samples is megabytes: a fresh `numpy.empty` of that size is new memory every
    /// time (the allocator maps and unmaps it), and faulting in and zeroing its pages cost
    /// about a seventh of a batch read of cached data. So arrays of large batches are kept
    /// and reused once nothing else references them (refcount 1: every item, the views of
    /// it, is gone; an item still alive, or anything made from it, keeps the array out of
    /// use).
    fn batch_array<'py>(&self, py: Python<'py>, total: usize) -> PyResult<Bound<'py, PyAny>> {
        let np = py.import(intern!(py, "numpy"))?;
        let empty = |n: usize| {
            np.getattr(intern!(py, "empty"))?
                .call1((n, intern!(py, "uint8")))
        };
        if !(POOL_MIN..=POOL_BYTES / 2).contains(&total) {
            return empty(total);
        }
        // SAFETY: the GIL is held (`py`) and the pointer is a live object the pool owns.
        let free = |a: &(Py<PyAny>, usize)| unsafe { pyo3::ffi::Py_REFCNT(a.0.as_ptr()) } == 1;
        if let Ok(pool) = self.batches.lock() {
            let fits = |a: &&(Py<PyAny>, usize)| a.1 >= total && a.1 / 2 <= total && free(a);
            if let Some(a) = pool.iter().find(fits) {
                return Ok(a.0.bind(py).clone());
            }
        }
        let cap = total.div_ceil(POOL_GRAIN) * POOL_GRAIN;
        let arr = empty(cap)?;
        if let Ok(mut pool) = self.batches.lock() {
            // Arrays in use stay (they cannot be reused yet, and dropping ours costs
            // nothing); free ones make room for the new one, smallest first.
            pool.sort_by_key(|a| (!free(a), a.1));
            while !pool.is_empty() && pool.iter().map(|a| a.1).sum::<usize>() + cap > POOL_BYTES {
                match pool.first() {
                    Some(a) if free(a) => drop(pool.remove(0)),
                    _ => break,
                }
            }
            if pool.iter().map(|a| a.1).sum::<usize>() + cap <= POOL_BYTES {
                pool.push((arr.clone().unbind(), cap));
            }
        }
        Ok(arr)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let idle = self.idle.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some((p, r)) = idle.take() {
            if p != hexz_core::api::process_id() {
                std::mem::forget(r);
            }
        }
    }
}

#[pymethods]
impl Reader {
    /// The stream this reader reads (`"disk"` or `"memory"`).
    #[getter]
    fn stream(&self) -> &'static str {
        self.stream.name()
    }

    /// The archive this reader reads.
    #[getter]
    fn archive(&self, py: Python<'_>) -> Py<Archive> {
        self.archive.clone_ref(py)
    }

    /// Logical size of the stream in bytes.
    fn size(&self, py: Python<'_>) -> PyResult<u64> {
        let r = self.take(py)?;
        let n = r.len();
        self.put(r);
        Ok(n)
    }

    /// Fills `buffer` (any writable contiguous buffer) with the bytes at `offset`, without
    /// an intermediate copy; returns the number of bytes written (`len(buffer)` in bytes
    /// unless the stream ends first). Feeds this reader's read-ahead.
    fn readinto(&self, py: Python<'_>, buffer: &Bound<'_, PyAny>, offset: u64) -> PyResult<usize> {
        let mut wb = WritableBuffer::get(buffer)?;
        let buf = wb.as_mut_slice();
        self.with_reader(py, |r| r.read_at(offset, buf))
    }

    /// A uint8 array of at least `total` bytes to read a batch into (slice it to `total`):
    /// for a batch of 128 KiB or more, an earlier batch's array once nothing references it
    /// any more, else a new one (see [`Reader::batch_array`]). What the datasets'
    /// `__getitems__` read into.
    fn _batch_array<'py>(&self, py: Python<'py>, total: usize) -> PyResult<Bound<'py, PyAny>> {
        self.batch_array(py, total)
    }

    /// Fills `buffer` with the ranges `ranges` names, one after another: `ranges` holds
    /// (offset, length) pairs as little-endian 64-bit integers (`numpy` `"<i8"` of shape
    /// `(k, 2)`, as bytes). Ranges that follow each other in the stream are read as one
    /// (one plan, one batched fetch, blocks decoded in parallel), and the whole batch costs
    /// one release of the GIL. Returns the bytes written (their total unless the stream ends
    /// first). What the datasets' `__getitems__` use for a DataLoader batch.
    fn _readinto_ranges(
        &self,
        py: Python<'_>,
        buffer: &Bound<'_, PyAny>,
        ranges: &[u8],
    ) -> PyResult<usize> {
        let pairs = parse_ranges(ranges)?;
        let total = pairs
            .iter()
            .try_fold(0u64, |t, &(_, len)| t.checked_add(len))
            .unwrap_or(u64::MAX);
        let mut wb = WritableBuffer::get(buffer)?;
        let buf = wb.as_mut_slice();
        if total > buf.len() as u64 {
            return Err(PyValueError::new_err(format!(
                "the ranges hold {total} bytes, the buffer {}",
                buf.len()
            )));
        }
        self.with_reader(py, |r| read_pairs(r, &pairs, buf))
    }

    /// The items `indices` of `index` as numpy uint8 arrays, read in one call: `index` is a
    /// C-contiguous `(n, 2)` array of native 64-bit (offset, length) pairs (what
    /// `IndexDataset` holds), `indices` item numbers (negative ones count from the end).
    /// One array holds the whole batch (an earlier batch's, once all of its items are gone,
    /// see [`Reader::batch_array`]) and is filled as
    /// [`_readinto_ranges`](Self::_readinto_ranges) does (one release of the GIL); each item
    /// is a view of it. Raises `IndexError` for an index out of range and `EOFError` if the
    /// stream ends before the batch does. What `IndexDataset.__getitems__` uses: the lookup,
    /// the allocation and the views cost no Python-level work per item.
    fn _read_items<'py>(
        &self,
        py: Python<'py>,
        index: &Bound<'py, PyAny>,
        indices: Vec<i64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let pairs = {
            let ib = ReadBuffer::get(index)?;
            lookup(ib.as_slice(), &indices)?
        };
        let total = pairs
            .iter()
            .try_fold(0u64, |t, &(_, len)| t.checked_add(len))
            .and_then(|t| isize::try_from(t).ok())
            .ok_or_else(|| PyValueError::new_err("the batch is too large"))?;
        let arr = self.batch_array(py, total as usize)?;
        let got = {
            let mut wb = WritableBuffer::get(&arr)?;
            let buf = &mut wb.as_mut_slice()[..total as usize];
            self.with_reader(py, |r| read_pairs(r, &pairs, buf))?
        };
        if got as isize != total {
            return Err(PyEOFError::new_err(format!(
                "{}:{}: read {got} of the {total} bytes of a batch of {} items",
                self.archive.get().loc(),
                self.stream.name(),
                pairs.len()
            )));
        }
        let list = PyList::empty(py);
        let mut start = 0isize;
        for &(_, len) in &pairs {
            // Fits: every length is at most the total, an isize.
            let end = start + len as isize;
            list.append(arr.get_item(PySlice::new(py, start, end, 1))?)?;
            start = end;
        }
        Ok(list)
    }

    /// `length` bytes at `offset` (fewer only past the end of the stream; empty at or past
    /// it). Feeds this reader's read-ahead.
    fn read<'py>(
        &self,
        py: Python<'py>,
        offset: u64,
        length: u64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let r = self.take(py)?;
        let n = r.len().saturating_sub(offset).min(length);
        self.put(r);
        let n = usize::try_from(n)
            .map_err(|_| PyValueError::new_err(format!("read of {n} bytes is too large")))?;
        PyBytes::new_with(py, n, |buf| {
            let got = self.with_reader(py, |r| r.read_at(offset, buf))?;
            if got != n {
                return Err(to_py(
                    py,
                    Error::corrupt(
                        "stream",
                        format!("read {got} of {n} bytes at offset {offset}"),
                    ),
                    None,
                ));
            }
            Ok(())
        })
    }

    /// Pickles as the archive and the stream.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let r = slf.get();
        let f = py.import("hexz._hexz")?.getattr("_unpickle_reader")?;
        let args = (r.archive.clone_ref(py), r.stream.name()).into_pyobject(py)?;
        PyTuple::new(py, [f, args.into_any()])
    }

    fn __repr__(&self) -> String {
        format!(
            "<hexz.Reader {:?}:{}>",
            self.archive.get().loc(),
            self.stream.name()
        )
    }
}

/// Fills `buf` with the `pairs` (offset, length) of `r`'s stream one after another, ranges
/// that follow each other in the stream read as one; returns the bytes written (fewer only
/// where the stream ends). The pairs' total is at most `buf.len()`.
fn read_pairs(
    r: &mut StreamReader,
    pairs: &[(u64, u64)],
    buf: &mut [u8],
) -> hexz_core::Result<usize> {
    let mut pos = 0usize;
    let mut i = 0;
    while i < pairs.len() {
        let (off, mut len) = pairs[i];
        let mut j = i + 1;
        while j < pairs.len() && off.checked_add(len) == Some(pairs[j].0) {
            len += pairs[j].1;
            j += 1;
        }
        // `len` fits: the ranges' total is at most the buffer's length.
        let len = len as usize;
        let got = r.read_at(off, &mut buf[pos..pos + len])?;
        pos += got;
        if got < len {
            break; // the stream ends here
        }
        i = j;
    }
    Ok(pos)
}

/// The (offset, length) pairs `index` (native 64-bit integers, two per item) holds for the
/// items `indices` (negative ones counted from the end).
fn lookup(index: &[u8], indices: &[i64]) -> PyResult<Vec<(u64, u64)>> {
    if index.len() % 16 != 0 {
        return Err(PyValueError::new_err(format!(
            "index must hold (offset, length) pairs of 8-byte integers, not {} bytes",
            index.len()
        )));
    }
    let n = (index.len() / 16) as i64;
    indices
        .iter()
        .map(|&i| {
            let k = if i < 0 { i + n } else { i };
            if !(0..n).contains(&k) {
                return Err(PyIndexError::new_err(format!(
                    "item {i} out of range ({n} items)"
                )));
            }
            let at = k as usize * 16;
            let field = |p: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&index[p..p + 8]);
                i64::from_ne_bytes(b)
            };
            let (o, l) = (field(at), field(at + 8));
            match (u64::try_from(o), u64::try_from(l)) {
                (Ok(o), Ok(l)) => Ok((o, l)),
                _ => Err(PyValueError::new_err(format!(
                    "index entry {k} has a negative offset or length: ({o}, {l})"
                ))),
            }
        })
        .collect()
}

/// (offset, length) pairs from little-endian `i64`s; a negative value is an error.
fn parse_ranges(raw: &[u8]) -> PyResult<Vec<(u64, u64)>> {
    if raw.len() % 16 != 0 {
        return Err(PyValueError::new_err(format!(
            "ranges must be (offset, length) pairs of 8-byte integers, not {} bytes",
            raw.len()
        )));
    }
    raw.chunks_exact(16)
        .enumerate()
        .map(|(k, c)| {
            let mut a = [0u8; 8];
            let mut b = [0u8; 8];
            a.copy_from_slice(&c[..8]);
            b.copy_from_slice(&c[8..]);
            let (o, l) = (i64::from_le_bytes(a), i64::from_le_bytes(b));
            match (u64::try_from(o), u64::try_from(l)) {
                (Ok(o), Ok(l)) => Ok((o, l)),
                _ => Err(PyValueError::new_err(format!(
                    "range {k} has a negative offset or length: ({o}, {l})"
                ))),
            }
        })
        .collect()
}

/// Rebuilds a pickled [`Reader`] (its archive opens on first use).
#[pyfunction]
pub fn _unpickle_reader(archive: Py<Archive>, stream: &str) -> PyResult<Reader> {
    Ok(Reader {
        archive,
        stream: stream_of(stream)?,
        idle: Mutex::new(None),
        batches: Mutex::new(Vec::new()),
    })
}
