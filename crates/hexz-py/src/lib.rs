//! `hexz._hexz`: the Rust half of the `hexz` Python package.
//!
//! Thin by design: every operation is a call into hexz-core with the GIL released around
//! the blocking part, plus the conversions (options, buffers, errors) Python needs. The
//! pure-Python package on top (`python/hexz/`) adds the file object, the exception classes
//! and the PyTorch datasets.
//!
//! File-tree archives (`hexz pack DIR`) are read through hexz-core's `FileTree`: the
//! `Archive` methods `namelist`, `infolist`, `stat`, `read_file` and `open_file` live in
//! `archive.rs`, the `FileStat` class and path conversions in `tree.rs`.
//!
//! # Processes
//! An [`Archive`] remembers how it was opened (location and options) and the id of the
//! process that opened its reader. Used from any other process — a DataLoader worker made by
//! fork, or an unpickled copy in a spawn/forkserver worker — it opens a fresh reader there
//! and never touches the parent's (whose caches, pools and connections belong to the
//! parent). Readers opened that way get a small cache unless one was asked for explicitly.

mod archive;
mod buffer;
mod errors;
mod pack;
mod reader;
mod tree;

use pyo3::prelude::*;

/// The compiled module (`hexz._hexz`); import `hexz` instead.
#[pymodule]
fn _hexz(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<archive::Archive>()?;
    m.add_class::<tree::FileStat>()?;
    m.add_class::<reader::Reader>()?;
    m.add_function(wrap_pyfunction!(archive::open, m)?)?;
    m.add_function(wrap_pyfunction!(archive::_unpickle, m)?)?;
    m.add_function(wrap_pyfunction!(reader::_unpickle_reader, m)?)?;
    m.add_function(wrap_pyfunction!(pack::pack, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("DEFAULT_CACHE_SIZE", archive::DEFAULT_CACHE_SIZE)?;
    m.add("WORKER_CACHE_SIZE", archive::WORKER_CACHE_SIZE)?;
    Ok(())
}
