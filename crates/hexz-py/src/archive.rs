//! [`Archive`]: an open archive as a Python object (`hexz.Archive`), and `hexz.open`.

use crate::buffer::WritableBuffer;
use crate::errors::to_py;
use crate::tree::{no_tree, not_found, not_regular, path_arg, path_str, FileStat};
use hexz_core::algo::encryption::Password;
use hexz_core::api::tree::{normalize_path, EntryKind, FileTree};
use hexz_core::format::tree::TreeEntry;
use hexz_core::{Error, File, OpenOptions, SnapshotStream};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use std::path::PathBuf;
use std::sync::Mutex;

/// Block cache of a reader opened in the process that called `hexz.open` (the core default).
pub const DEFAULT_CACHE_SIZE: usize = 256 << 20;
/// Block cache of a reader reopened in another process (a DataLoader worker), unless
/// `cache_size` was given: N workers must not each take the full default.
pub const WORKER_CACHE_SIZE: usize = 32 << 20;
/// Decode threads of a worker process (the core default is one per core).
pub const WORKER_DECODE_THREADS: usize = 1;
/// IO (background fetch) threads of a worker process (the core default is 6).
pub const WORKER_IO_THREADS: usize = 2;
/// Read-ahead window of a worker's reader (the core default is 8 MiB).
const WORKER_READ_AHEAD: u64 = 2 << 20;

/// How an archive was opened: enough to open it again in another process.
#[derive(Clone)]
struct Config {
    location: String,
    password: Option<Vec<u8>>,
    pubkey: Option<[u8; 32]>,
    cache_size: Option<usize>,
    cache_dir: Option<PathBuf>,
    allow_restricted: bool,
}

impl Config {
    fn options(&self, worker: bool) -> OpenOptions {
        let mut o = OpenOptions {
            remote: hexz_core::store::RemoteOptions::from_env(),
            ..OpenOptions::default()
        };
        o.cache_bytes = match (self.cache_size, worker) {
            (Some(n), _) => n,
            (None, false) => DEFAULT_CACHE_SIZE,
            (None, true) => WORKER_CACHE_SIZE,
        };
        if worker {
            o.read_ahead = o.read_ahead.min(WORKER_READ_AHEAD);
        }
        o.password = self.password.clone().map(Password::new);
        o.require_signer = self.pubkey;
        if let Some(d) = &self.cache_dir {
            o.remote.cache_dir = Some(d.clone());
        }
        o.remote.allow_restricted |= self.allow_restricted;
        o
    }
}

/// The reader and the process it belongs to.
struct Opened {
    pid: u32,
    file: File,
    /// The file table, once a tree method asked for it: `Some(None)` for an archive that
    /// holds streams only.
    tree: Option<Option<FileTree>>,
}

/// An open hexz archive: random-access reads of its streams, info, verification.
///
/// Thread-safe (reads from many threads run in parallel, without the GIL), a context
/// manager, and picklable: it pickles as its location and options and reopens lazily in the
/// process that unpickles it, so it can be handed to DataLoader workers (fork, spawn,
/// forkserver).
#[pyclass(frozen, module = "hexz._hexz", subclass)]
pub struct Archive {
    config: Config,
    /// The process that opened (or asked to open) the archive; others are workers.
    owner_pid: Option<u32>,
    /// Locked only with the GIL held and never across a blocking call, so a fork (which
    /// happens with the GIL held) cannot leave it locked in the child.
    state: Mutex<Option<Opened>>,
    closed: std::sync::atomic::AtomicBool,
}

pub(crate) fn stream_of(name: &str) -> PyResult<SnapshotStream> {
    match name {
        "disk" => Ok(SnapshotStream::Disk),
        "memory" => Ok(SnapshotStream::Memory),
        o => Err(PyValueError::new_err(format!(
            "unknown stream '{o}': an archive has a 'disk' and/or a 'memory' stream"
        ))),
    }
}

/// Text or bytes (passwords).
fn secret_bytes(v: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(s) = v.extract::<String>() {
        return Ok(s.into_bytes());
    }
    if let Ok(b) = v.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    Err(pyo3::exceptions::PyTypeError::new_err(
        "password must be str or bytes",
    ))
}

/// A public key: 32 raw bytes, or the path of a `NAME.pub` file made by `hexz keygen`.
fn pubkey_of(py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<[u8; 32]> {
    if let Ok(b) = v.cast::<PyBytes>() {
        return b.as_bytes().try_into().map_err(|_| {
            PyValueError::new_err(format!(
                "pubkey as bytes must be the 32-byte Ed25519 public key, not {} bytes",
                b.as_bytes().len()
            ))
        });
    }
    let path: PathBuf = v.extract()?;
    let text = std::fs::read_to_string(&path).map_err(|e| {
        to_py(
            py,
            Error::io(format!("reading public key {}", path.display()), e),
            None,
        )
    })?;
    hexz_core::algo::signing::parse_public_key(&text)
        .map_err(|e| to_py(py, e, Some(&format!("in {}", path.display()))))
}

/// A path or URL as a string.
fn location_of(v: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(s) = v.extract::<String>() {
        return Ok(s);
    }
    let p: PathBuf = v.extract()?;
    p.to_str()
        .map(str::to_string)
        .ok_or_else(|| PyValueError::new_err(format!("path {} is not valid UTF-8", p.display())))
}

impl Archive {
    /// The reader of this process, opening it if this process has none yet.
    pub(crate) fn file(&self, py: Python<'_>) -> PyResult<File> {
        let pid = hexz_core::api::process_id();
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(PyValueError::new_err(format!(
                "I/O operation on closed archive {}",
                self.config.location
            )));
        }
        if let Some(o) = self.lock().as_ref() {
            if o.pid == pid {
                return Ok(o.file.clone());
            }
        }
        let worker = self.owner_pid != Some(pid);
        if worker {
            // A DataLoader worker: N of them share the machine, so each decodes on one
            // thread of its own and keeps two IO threads, instead of a pool per core.
            hexz_core::api::set_process_threads(WORKER_DECODE_THREADS, WORKER_IO_THREADS);
        }
        let opts = self.config.options(worker);
        let loc = self.config.location.clone();
        let file = py
            .detach(|| File::open_location(&loc, opts))
            .map_err(|e| to_py(py, e, Some(&format!("opening {loc}"))))?;
        let mut g = self.lock();
        match g.as_ref() {
            Some(o) if o.pid == pid => Ok(o.file.clone()),
            _ => {
                // A reader inherited through fork is never used nor dropped here: its
                // pools and connections belong to the parent (dropping could wait for
                // threads that do not exist in this process).
                if let Some(old) = g.take() {
                    std::mem::forget(old);
                }
                *g = Some(Opened {
                    pid,
                    file: file.clone(),
                    tree: None,
                });
                Ok(file)
            }
        }
    }

    /// Whether `close()` was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Where the archive lives, as given to `hexz.open`.
    pub(crate) fn loc(&self) -> &str {
        &self.config.location
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Opened>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stream_file(&self, py: Python<'_>, stream: &str) -> PyResult<(File, SnapshotStream)> {
        let s = stream_of(stream)?;
        let f = self.file(py)?;
        if !f.has_stream(s) {
            return Err(to_py(py, Error::NoSuchStream(s), Some(&f.describe())));
        }
        Ok((f, s))
    }

    /// The file table of this process's reader (opened once per reader); `NoFileTree` for a
    /// streams-only archive. `what` names the method in that error.
    fn tree(&self, py: Python<'_>, what: &str) -> PyResult<FileTree> {
        let f = self.file(py)?;
        let pid = hexz_core::api::process_id();
        let cached = match self.lock().as_ref() {
            Some(o) if o.pid == pid => o.tree.clone(),
            _ => None,
        };
        let t = match cached {
            Some(t) => t,
            None => {
                let t = py.detach(|| FileTree::open(&f)).map_err(|e| {
                    to_py(
                        py,
                        e,
                        Some(&format!("reading the file table of {}", f.describe())),
                    )
                })?;
                if let Some(o) = self.lock().as_mut() {
                    if o.pid == pid {
                        o.tree = Some(t.clone());
                    }
                }
                t
            }
        };
        t.ok_or_else(|| no_tree(py, &self.config.location, what))
    }

    /// The entry at `path` (GIL released for the lookup); `PathNotFound` when missing.
    fn entry(&self, py: Python<'_>, t: &FileTree, path: &[u8]) -> PyResult<TreeEntry> {
        py.detach(|| t.lookup(path))
            .map_err(|e| to_py(py, e, None))?
            .ok_or_else(|| not_found(py, &self.config.location, path))
    }

    /// The regular file at `path`; `IsADirectory`/`NotARegularFile` for other entries.
    fn regular_file(
        &self,
        py: Python<'_>,
        path: &Bound<'_, PyAny>,
        what: &str,
    ) -> PyResult<(FileTree, TreeEntry)> {
        let t = self.tree(py, what)?;
        let e = self.entry(py, &t, &path_arg(path)?)?;
        if e.kind != EntryKind::File {
            return Err(not_regular(py, &self.config.location, &e));
        }
        Ok((t, e))
    }

    fn new_unopened(config: Config, owner_pid: Option<u32>) -> Archive {
        Archive {
            config,
            owner_pid,
            state: Mutex::new(None),
            closed: Default::default(),
        }
    }
}

#[pymethods]
impl Archive {
    /// Opens an archive; see `hexz.open`.
    #[new]
    #[pyo3(signature = (path_or_url, *, password=None, pubkey=None, cache_size=None,
                        cache_dir=None, allow_restricted=false))]
    fn py_new(
        py: Python<'_>,
        path_or_url: &Bound<'_, PyAny>,
        password: Option<&Bound<'_, PyAny>>,
        pubkey: Option<&Bound<'_, PyAny>>,
        cache_size: Option<usize>,
        cache_dir: Option<PathBuf>,
        allow_restricted: bool,
    ) -> PyResult<Archive> {
        let config = Config {
            location: location_of(path_or_url)?,
            password: password.map(secret_bytes).transpose()?,
            pubkey: pubkey.map(|k| pubkey_of(py, k)).transpose()?,
            cache_size,
            cache_dir,
            allow_restricted,
        };
        let a = Archive::new_unopened(config, Some(hexz_core::api::process_id()));
        a.file(py)?;
        Ok(a)
    }

    /// Where the archive lives, as given to `hexz.open` (path or URL).
    #[getter]
    fn location(&self) -> &str {
        &self.config.location
    }

    /// Names of the streams the archive holds (`"disk"`, `"memory"`).
    #[getter]
    fn streams(&self, py: Python<'_>) -> PyResult<Vec<&'static str>> {
        Ok(self.file(py)?.streams().iter().map(|s| s.name()).collect())
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Logical size in bytes of `stream` ("disk" or "memory").
    #[pyo3(signature = (stream="disk"))]
    fn size(&self, py: Python<'_>, stream: &str) -> PyResult<u64> {
        let (f, s) = self.stream_file(py, stream)?;
        Ok(f.size(s))
    }

    /// Reads `length` bytes of `stream` at `offset` (fewer only past the end of the stream;
    /// empty at or past it). The bytes are decoded straight into the returned object.
    #[pyo3(signature = (offset, length, stream="disk"))]
    fn read<'py>(
        &self,
        py: Python<'py>,
        offset: u64,
        length: u64,
        stream: &str,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let (f, s) = self.stream_file(py, stream)?;
        let n = f.size(s).saturating_sub(offset).min(length);
        let n = usize::try_from(n)
            .map_err(|_| PyValueError::new_err(format!("read of {n} bytes is too large")))?;
        PyBytes::new_with(py, n, |buf| {
            py.detach(|| f.read_at_into(s, offset, buf))
                .map_err(|e| to_py(py, e, None))?;
            Ok(())
        })
    }

    /// Fills `buffer` (any writable contiguous buffer: bytearray, memoryview, numpy array)
    /// with the bytes of `stream` at `offset`, without an intermediate copy. Returns the
    /// number of bytes written: `len(buffer)` in bytes unless the stream ends first.
    #[pyo3(signature = (buffer, offset, stream="disk"))]
    fn readinto(
        &self,
        py: Python<'_>,
        buffer: &Bound<'_, PyAny>,
        offset: u64,
        stream: &str,
    ) -> PyResult<usize> {
        let (f, s) = self.stream_file(py, stream)?;
        let mut wb = WritableBuffer::get(buffer)?;
        py.detach(|| f.read_at_into(s, offset, wb.as_mut_slice()))
            .map_err(|e| to_py(py, e, None))
    }

    /// A seekable binary file object (`io.RawIOBase`) over stream `name`.
    #[pyo3(signature = (name="disk"))]
    fn stream<'py>(slf: &Bound<'py, Self>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        slf.get().stream_file(py, name)?;
        py.import("hexz._stream")?
            .getattr("ArchiveStream")?
            .call1((slf, name))
    }

    /// A positional reader of `stream` with its own read-ahead (`hexz.Reader`): reads in
    /// index order (each starting where the previous ended, or a little past it) get the
    /// following blocks fetched and decoded in the background. Datasets read through one.
    #[pyo3(signature = (stream="disk"))]
    fn reader(slf: &Bound<'_, Self>, stream: &str) -> PyResult<crate::reader::Reader> {
        crate::reader::Reader::new(slf.py(), slf.clone().unbind(), stream)
    }

    /// What `hexz info --json` reports, as a dict.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let f = self.file(py)?;
        let loc = self.config.location.clone();
        let v = py
            .detach(|| hexz_core::ops::inspect::info_json(&f, &loc))
            .map_err(|e| to_py(py, e, None))?;
        py.import("json")?.call_method1("loads", (v.to_string(),))
    }

    /// Checks every index page and block (CRC32 and BLAKE3), ancestors included; raises
    /// `CorruptArchive` naming the first bad block. Returns counts of what was checked.
    fn verify<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let f = self.file(py)?;
        let r = py
            .detach(|| hexz_core::ops::verify(&f, None))
            .map_err(|e| to_py(py, e, Some(&format!("verifying {}", f.describe()))))?;
        let d = pyo3::types::PyDict::new(py);
        d.set_item("pages", r.pages)?;
        d.set_item("blocks", r.blocks)?;
        d.set_item("bytes", r.bytes)?;
        d.set_item("archives", r.archives)?;
        Ok(d)
    }

    /// Every path of a file-tree archive except the root, sorted (by UTF-8 bytes: Python's
    /// order for valid UTF-8 names); directories end with `/`, as in `zipfile`.
    fn namelist<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let t = self.tree(py, "Archive.namelist")?;
        let mut names = py
            .detach(|| {
                let mut v = Vec::new();
                t.walk(b"", &mut |e| {
                    if !e.path.is_empty() {
                        let mut p = e.path;
                        if e.kind == EntryKind::Dir {
                            p.push(b'/');
                        }
                        v.push(p);
                    }
                    Ok(())
                })?;
                Ok::<_, Error>(v)
            })
            .map_err(|e| to_py(py, e, None))?;
        names.sort_unstable();
        let out = PyList::empty(py);
        for n in &names {
            out.append(path_str(py, n)?)?;
        }
        Ok(out)
    }

    /// A `FileStat` for every entry except the root, in `namelist()` order.
    fn infolist(&self, py: Python<'_>) -> PyResult<Vec<FileStat>> {
        let t = self.tree(py, "Archive.infolist")?;
        let mut entries = py
            .detach(|| {
                let mut v = Vec::new();
                t.walk(b"", &mut |e| {
                    if !e.path.is_empty() {
                        v.push(e);
                    }
                    Ok(())
                })?;
                Ok::<_, Error>(v)
            })
            .map_err(|e| to_py(py, e, None))?;
        let key = |e: &TreeEntry| {
            let mut k = e.path.clone();
            if e.kind == EntryKind::Dir {
                k.push(b'/');
            }
            k
        };
        entries.sort_by_cached_key(key);
        entries.into_iter().map(|e| FileStat::new(py, e)).collect()
    }

    /// What the file table says about `path` (not following symlinks, like `os.lstat`);
    /// `PathNotFound` (a `FileNotFoundError`) when there is no such entry.
    fn stat(&self, py: Python<'_>, path: &Bound<'_, PyAny>) -> PyResult<FileStat> {
        let t = self.tree(py, "Archive.stat")?;
        let e = self.entry(py, &t, &path_arg(path)?)?;
        FileStat::new(py, e)
    }

    /// The bytes of regular file `path` (from byte `offset`, at most `length` bytes),
    /// decoded straight into the returned object with the GIL released.
    #[pyo3(signature = (path, *, offset=0, length=None))]
    fn read_file<'py>(
        &self,
        py: Python<'py>,
        path: &Bound<'py, PyAny>,
        offset: u64,
        length: Option<u64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let (t, e) = self.regular_file(py, path, "Archive.read_file")?;
        let n = e
            .size
            .saturating_sub(offset)
            .min(length.unwrap_or(u64::MAX));
        let n = usize::try_from(n)
            .map_err(|_| PyValueError::new_err(format!("read of {n} bytes is too large")))?;
        PyBytes::new_with(py, n, |buf| {
            let got = py
                .detach(|| t.read_file_into(&e, offset, buf))
                .map_err(|e| to_py(py, e, None))?;
            debug_assert_eq!(got, n);
            Ok(())
        })
    }

    /// A seekable, read-only binary file object over regular file `path`: an
    /// `io.BufferedReader` over a `hexz.ArchiveFile` (`.raw`), for PIL, numpy, tarfile...
    #[pyo3(signature = (path, *, buffering=-1))]
    fn open_file<'py>(
        slf: &Bound<'py, Self>,
        path: &Bound<'py, PyAny>,
        buffering: i64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let (t, e) = slf.get().regular_file(py, path, "Archive.open_file")?;
        let (start, size) = t.data_range(&e).map_err(|e| to_py(py, e, None))?;
        py.import("hexz._stream")?.getattr("_open_file")?.call1((
            slf,
            path_str(py, &e.path)?,
            start,
            size,
            buffering,
        ))
    }

    /// The regular files whose path starts with `prefix` and ends with `suffix`, sorted:
    /// `(paths, offsets, sizes)`, the last two as little-endian u64 arrays in bytes (for
    /// `numpy.frombuffer`). Walks only the deepest directory `prefix` names. Each range is
    /// checked against the `"disk"` stream. For `hexz.torch.FileDataset`.
    #[pyo3(signature = (prefix=None, suffix=None))]
    fn _file_index<'py>(
        &self,
        py: Python<'py>,
        prefix: Option<&Bound<'py, PyAny>>,
        suffix: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
        let t = self.tree(py, "hexz.torch.FileDataset")?;
        let mut prefix = prefix.map(path_arg).transpose()?.unwrap_or_default();
        while prefix.first() == Some(&b'/') {
            prefix.remove(0);
        }
        let suffix = suffix.map(path_arg).transpose()?.unwrap_or_default();
        let top = match prefix.iter().rposition(|&c| c == b'/') {
            Some(i) => normalize_path(&prefix[..i]).map_err(|e| to_py(py, e, None))?,
            None => Vec::new(),
        };
        let mut files = py
            .detach(|| {
                let mut v = Vec::new();
                match t.lookup(&top)? {
                    Some(e) if e.kind == EntryKind::Dir => {}
                    _ => return Ok(v),
                }
                t.walk(&top, &mut |e| {
                    if e.kind == EntryKind::File
                        && e.path.starts_with(&prefix)
                        && e.path.ends_with(&suffix)
                    {
                        let (off, size) = t.data_range(&e)?;
                        v.push((e.path, off, size));
                    }
                    Ok(())
                })?;
                Ok::<_, Error>(v)
            })
            .map_err(|e| to_py(py, e, None))?;
        files.sort_unstable();
        let names = PyList::empty(py);
        let mut offs = Vec::with_capacity(files.len() * 8);
        let mut sizes = Vec::with_capacity(files.len() * 8);
        for (p, o, n) in &files {
            names.append(path_str(py, p)?)?;
            offs.extend_from_slice(&o.to_le_bytes());
            sizes.extend_from_slice(&n.to_le_bytes());
        }
        Ok((names, PyBytes::new(py, &offs), PyBytes::new(py, &sizes)))
    }

    /// Drops this process's reader (its caches); later reads raise `ValueError`.
    fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        let mut g = self.lock();
        if let Some(o) = g.take() {
            if o.pid != hexz_core::api::process_id() {
                std::mem::forget(o);
            }
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, PyTuple>) -> bool {
        self.close();
        false
    }

    /// Pickles as the location and options; the copy opens its own reader when first used.
    /// A password given to `hexz.open` is part of the pickle.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let c = &slf.get().config;
        let f = py.import("hexz._hexz")?.getattr("_unpickle")?;
        let args = (
            c.location.clone(),
            c.password.as_deref().map(|p| PyBytes::new(py, p)),
            c.pubkey.map(|k| PyBytes::new(py, &k)),
            c.cache_size,
            c.cache_dir.clone(),
            c.allow_restricted,
        );
        PyTuple::new(py, [f, args.into_pyobject(py)?.into_any()])
    }

    fn __repr__(&self) -> String {
        format!("<hexz.Archive {:?}>", self.config.location)
    }
}

/// Rebuilds a pickled [`Archive`] without opening it (it opens on first use).
#[pyfunction]
#[pyo3(signature = (location, password, pubkey, cache_size, cache_dir, allow_restricted))]
pub fn _unpickle(
    location: String,
    password: Option<&Bound<'_, PyBytes>>,
    pubkey: Option<&Bound<'_, PyBytes>>,
    cache_size: Option<usize>,
    cache_dir: Option<PathBuf>,
    allow_restricted: bool,
) -> PyResult<Archive> {
    let pubkey = match pubkey {
        Some(k) => Some(
            <[u8; 32]>::try_from(k.as_bytes())
                .map_err(|_| PyValueError::new_err("pickled public key is not 32 bytes"))?,
        ),
        None => None,
    };
    Ok(Archive::new_unopened(
        Config {
            location,
            password: password.map(|p| p.as_bytes().to_vec()),
            pubkey,
            cache_size,
            cache_dir,
            allow_restricted,
        },
        None,
    ))
}

/// Opens the archive at `path_or_url` (a path, or an http(s):// or s3:// URL).
#[pyfunction]
#[pyo3(signature = (path_or_url, *, password=None, pubkey=None, cache_size=None,
                    cache_dir=None, allow_restricted=false))]
pub fn open(
    py: Python<'_>,
    path_or_url: &Bound<'_, PyAny>,
    password: Option<&Bound<'_, PyAny>>,
    pubkey: Option<&Bound<'_, PyAny>>,
    cache_size: Option<usize>,
    cache_dir: Option<PathBuf>,
    allow_restricted: bool,
) -> PyResult<Archive> {
    Archive::py_new(
        py,
        path_or_url,
        password,
        pubkey,
        cache_size,
        cache_dir,
        allow_restricted,
    )
}
