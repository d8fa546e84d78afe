//! File-tree archives from Python: [`FileStat`] (what `Archive.stat` returns) and the
//! conversions between table paths (bytes) and Python paths (str).
//!
//! Paths in the file table are bytes. In Python they are `str`, decoded as UTF-8 with the
//! `surrogateescape` error handler, which is what `os.fsdecode` does on Linux: a name that is
//! not valid UTF-8 round-trips through `os.fsencode`, and arguments may be `str`, `bytes` or
//! `os.PathLike`. Paths are relative to the tree's root, components joined by `/`, no
//! leading `/` (one given in an argument is ignored, as are `.` components; `..` is refused).

use crate::errors::raise;
use hexz_core::api::tree::EntryKind;
use hexz_core::format::tree::TreeEntry;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

/// A table path as a Python `str` (UTF-8, `surrogateescape` for invalid bytes).
pub fn path_str<'py>(py: Python<'py>, p: &[u8]) -> PyResult<Bound<'py, PyString>> {
    match std::str::from_utf8(p) {
        Ok(s) => Ok(PyString::new(py, s)),
        Err(_) => Ok(PyBytes::new(py, p)
            .call_method1("decode", ("utf-8", "surrogateescape"))?
            .cast_into::<PyString>()?),
    }
}

/// A path argument (`str`, `bytes` or `os.PathLike`) as bytes, like `os.fsencode`.
pub fn path_arg(v: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(s) = v.cast::<PyString>() {
        // Fails (and falls through to os.fsencode) for lone surrogates only.
        if let Ok(s) = s.to_cow() {
            return Ok(s.as_bytes().to_vec());
        }
    } else if let Ok(b) = v.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    let b = v.py().import("os")?.call_method1("fsencode", (v,))?;
    Ok(b.cast_into::<PyBytes>()?.as_bytes().to_vec())
}

/// `PathNotFound` (a `FileNotFoundError`) for `path` in the archive at `location`, with
/// `errno` set. (Not `filename`: with it set, `str(e)` would become `[Errno 2] None: path`
/// instead of the message.)
pub fn not_found(py: Python<'_>, location: &str, path: &[u8]) -> PyErr {
    let shown = String::from_utf8_lossy(path);
    let err = raise(
        py,
        "PathNotFound",
        format!("no such file or directory in {location}: '{shown}'"),
    );
    let _ = err.value(py).setattr("errno", 2); // ENOENT
    err
}

/// `IsADirectory` / `NotARegularFile` for an entry that `read_file`/`open_file` cannot read.
pub fn not_regular(py: Python<'_>, location: &str, e: &TreeEntry) -> PyErr {
    let shown = String::from_utf8_lossy(&e.path);
    let (class, errno) = match e.kind {
        EntryKind::Dir => ("IsADirectory", 21), // EISDIR
        _ => ("NotARegularFile", 22),           // EINVAL
    };
    let err = raise(
        py,
        class,
        format!(
            "'{shown}' in {location} is a {}, not a regular file",
            e.kind.name()
        ),
    );
    let _ = err.value(py).setattr("errno", errno);
    err
}

/// `NoFileTree` (a `LookupError`): the archive holds byte streams only; `what` names the
/// call (`Archive.stat`).
pub fn no_tree(py: Python<'_>, location: &str, what: &str) -> PyErr {
    raise(
        py,
        "NoFileTree",
        format!(
            "{what}: {location} holds byte streams only, not a file tree \
             (read it with read/readinto/stream; `hexz pack DIR` makes tree archives)"
        ),
    )
}

/// What the file table says about one entry: `Archive.stat(path)` and `Archive.infolist()`.
///
/// The fields follow `os.lstat` (symlinks are not followed): `mode` is the full `st_mode`
/// (type and permission bits), `size` the byte length of a regular file or the length of a
/// symlink's target (0 for the others), `mtime_ns` the exact modification time. The `st_*`
/// aliases let code written for `os.stat_result` take one.
#[pyclass(frozen, module = "hexz._hexz", name = "FileStat")]
pub struct FileStat {
    path: Py<PyString>,
    kind: EntryKind,
    mode: u32,
    size: u64,
    uid: u32,
    gid: u32,
    mtime_ns: i128,
    rdev: u64,
    data_offset: u64,
    link: Option<Py<PyString>>,
    hardlink: bool,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl FileStat {
    pub fn new(py: Python<'_>, e: TreeEntry) -> PyResult<FileStat> {
        let link = if e.kind == EntryKind::Symlink || e.is_hardlink() {
            Some(path_str(py, &e.link)?.unbind())
        } else {
            None
        };
        Ok(FileStat {
            path: path_str(py, &e.path)?.unbind(),
            kind: e.kind,
            mode: e.st_mode(),
            size: e.size,
            uid: e.uid,
            gid: e.gid,
            mtime_ns: i128::from(e.mtime) * 1_000_000_000 + i128::from(e.mtime_nsec),
            rdev: e.rdev,
            data_offset: e.data_offset,
            hardlink: e.is_hardlink(),
            link,
            xattrs: e.xattrs,
        })
    }
}

#[pymethods]
impl FileStat {
    /// Path relative to the tree's root (`""` for the root itself).
    #[getter]
    fn path(&self, py: Python<'_>) -> Py<PyString> {
        self.path.clone_ref(py)
    }

    /// `"file"`, `"dir"`, `"symlink"`, `"chardev"`, `"blockdev"`, `"fifo"` or `"socket"`.
    #[getter]
    fn r#type(&self) -> &'static str {
        self.kind.name()
    }

    /// `st_mode`: file type bits and permission bits (`stat.S_IMODE` for the latter).
    #[getter]
    fn mode(&self) -> u32 {
        self.mode
    }

    /// Regular file: its length; symlink: the length of its target; otherwise 0.
    #[getter]
    fn size(&self) -> u64 {
        self.size
    }

    /// Owner user id.
    #[getter]
    fn uid(&self) -> u32 {
        self.uid
    }

    /// Owner group id.
    #[getter]
    fn gid(&self) -> u32 {
        self.gid
    }

    /// Modification time in seconds since the epoch (a float; `mtime_ns` is exact).
    #[getter]
    fn mtime(&self) -> f64 {
        self.mtime_ns as f64 / 1e9
    }

    /// Modification time in integer nanoseconds since the epoch.
    #[getter]
    fn mtime_ns(&self) -> i128 {
        self.mtime_ns
    }

    /// Device number of a device node (0 otherwise).
    #[getter]
    fn rdev(&self) -> u64 {
        self.rdev
    }

    /// Target of a symlink (as stored, not resolved); `None` for other entries.
    #[getter]
    fn link_target(&self, py: Python<'_>) -> Option<Py<PyString>> {
        if self.hardlink {
            return None;
        }
        self.link.as_ref().map(|l| l.clone_ref(py))
    }

    /// For a hard link: the path of the entry it shares its inode and contents with (which
    /// comes first in the tree); `None` otherwise. Both entries are regular files.
    #[getter]
    fn hardlink_to(&self, py: Python<'_>) -> Option<Py<PyString>> {
        if !self.hardlink {
            return None;
        }
        self.link.as_ref().map(|l| l.clone_ref(py))
    }

    /// Extended attributes: name (str, as `os.listxattr` gives) to value (bytes).
    #[getter]
    fn xattrs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (n, v) in &self.xattrs {
            d.set_item(path_str(py, n)?, PyBytes::new(py, v))?;
        }
        Ok(d)
    }

    /// Regular file: where its bytes start in the archive's `"disk"` stream, which holds the
    /// tree's file contents back to back (0 for empty files and other entries).
    #[getter]
    fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Whether this is a regular file (hard links included).
    fn is_file(&self) -> bool {
        self.kind == EntryKind::File
    }

    /// Whether this is a directory.
    fn is_dir(&self) -> bool {
        self.kind == EntryKind::Dir
    }

    /// Whether this is a symbolic link.
    fn is_symlink(&self) -> bool {
        self.kind == EntryKind::Symlink
    }

    /// Alias of `mode`.
    #[getter]
    fn st_mode(&self) -> u32 {
        self.mode
    }

    /// Alias of `size`.
    #[getter]
    fn st_size(&self) -> u64 {
        self.size
    }

    /// Alias of `uid`.
    #[getter]
    fn st_uid(&self) -> u32 {
        self.uid
    }

    /// Alias of `gid`.
    #[getter]
    fn st_gid(&self) -> u32 {
        self.gid
    }

    /// Alias of `mtime`.
    #[getter]
    fn st_mtime(&self) -> f64 {
        self.mtime()
    }

    /// Alias of `mtime_ns`.
    #[getter]
    fn st_mtime_ns(&self) -> i128 {
        self.mtime_ns
    }

    /// Alias of `rdev`.
    #[getter]
    fn st_rdev(&self) -> u64 {
        self.rdev
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "<hexz.FileStat {} type={} mode={:#o} size={}>",
            self.path
                .bind(py)
                .repr()
                .map_or_else(|_| "?".into(), |r| r.to_string()),
            self.kind.name(),
            self.mode,
            self.size
        )
    }
}
