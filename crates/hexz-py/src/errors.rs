//! One place that turns a hexz-core [`Error`] into a Python exception.
//!
//! The exception classes are plain Python classes defined in `hexz/_errors.py` (several of
//! them also derive from a builtin such as `FileNotFoundError` or `ValueError`, which a
//! Rust-defined exception type cannot); they are looked up once and cached. The class is
//! chosen from [`ErrorKind`], the message is the core's one-line message, the same text the
//! CLI prints after `hexz: error:`.

use hexz_core::{Error, ErrorKind};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// The exception class `name` of `hexz._errors`.
pub fn class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyType>> {
    let m = ERRORS.get_or_try_init(py, || py.import("hexz._errors").map(|m| m.unbind()))?;
    Ok(m.bind(py).getattr(name)?.cast_into::<PyType>()?)
}

/// Builds an exception of class `name` carrying `msg`.
pub fn raise(py: Python<'_>, name: &str, msg: String) -> PyErr {
    match class(py, name) {
        Ok(cls) => PyErr::from_type(cls, (msg,)),
        Err(e) => e,
    }
}

/// Which `hexz` exception class stands for `e`.
pub fn class_name(e: &Error) -> &'static str {
    if e.is_not_found() {
        return "ArchiveNotFound";
    }
    match (e.kind(), e) {
        (_, Error::PasswordRequired(_)) => "PasswordRequired",
        (_, Error::ArchiveChanged { .. }) => "ArchiveChanged",
        (ErrorKind::Io, _) => "ArchiveIOError",
        (ErrorKind::Unsupported, _) => "UnsupportedArchive",
        (ErrorKind::Corrupt, _) => "CorruptArchive",
        (ErrorKind::InvalidArgument, _) => "InvalidArgument",
        (ErrorKind::Password, _) => "WrongPassword",
        (ErrorKind::Signature, _) => "SignatureError",
        (ErrorKind::Remote, _) => "RemoteError",
        (ErrorKind::NoSuchStream, _) => "NoSuchStream",
    }
}

/// Converts `e` into its Python exception; `context` (e.g. "opening a.hxz") prefixes the
/// message the way the CLI does. The exception gets a `transient` attribute
/// ([`Error::is_transient`]) so retry loops need not parse messages.
pub fn to_py(py: Python<'_>, e: Error, context: Option<&str>) -> PyErr {
    let msg = match context {
        Some(c) => format!("{c}: {e}"),
        None => e.to_string(),
    };
    let err = raise(py, class_name(&e), msg.replace('\n', " "));
    let _ = err.value(py).setattr("transient", e.is_transient());
    err
}
