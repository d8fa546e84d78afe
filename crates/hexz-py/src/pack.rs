//! `hexz.pack`: builds an archive from paths, bytes or binary file objects.

use crate::errors::{raise, to_py};
use hexz_core::algo::encryption::{Kdf, Password};
use hexz_core::format::Codec;
use hexz_core::ops::pack::{EncryptOptions, StreamStats};
use hexz_core::ops::{
    pack as core_pack, CdcParams, PackInput, PackOptions, PackProgress, PackSource,
};
use hexz_core::SnapshotStream;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;

/// A Python binary file object read from the packer's thread (re-attaching to the
/// interpreter for each call).
struct PyReader {
    obj: Py<PyAny>,
    /// The first Python exception raised by `read`, re-raised once packing stops.
    failed: std::sync::Arc<Mutex<Option<PyErr>>>,
}

impl Read for PyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        Python::attach(|py| {
            let r = self
                .obj
                .call_method1(py, "read", (buf.len(),))
                .and_then(|d| {
                    let b = d.cast_bound::<PyBytes>(py).map_err(PyErr::from)?;
                    let b = b.as_bytes();
                    if b.len() > buf.len() {
                        return Err(pyo3::exceptions::PyValueError::new_err(format!(
                            "read({}) returned {} bytes",
                            buf.len(),
                            b.len()
                        )));
                    }
                    buf[..b.len()].copy_from_slice(b);
                    Ok(b.len())
                });
            r.map_err(|e| {
                let msg = e.to_string();
                let mut f = self.failed.lock().unwrap_or_else(|p| p.into_inner());
                f.get_or_insert(e);
                std::io::Error::other(msg)
            })
        })
    }
}

/// A pack input: a path, a bytes-like object (packed from memory) or a binary file object
/// with `read(n)`.
fn source_of(
    py: Python<'_>,
    v: &Bound<'_, PyAny>,
    failed: &std::sync::Arc<Mutex<Option<PyErr>>>,
) -> PyResult<PackSource> {
    if v.hasattr("read")? {
        return Ok(PackSource::Reader(Box::new(PyReader {
            obj: v.clone().unbind(),
            failed: failed.clone(),
        })));
    }
    let bytes_like = v.cast::<PyBytes>().is_ok()
        || v.is_instance_of::<pyo3::types::PyByteArray>()
        || v.is_instance_of::<pyo3::types::PyMemoryView>();
    if bytes_like {
        let b = py.import("builtins")?.getattr("bytes")?.call1((v,))?;
        let data = b.cast::<PyBytes>()?.as_bytes().to_vec();
        let n = data.len() as u64;
        return Ok(PackSource::SizedReader(
            Box::new(std::io::Cursor::new(data)),
            n,
        ));
    }
    let p: PathBuf = v.extract()?;
    Ok(PackSource::Path(p))
}

fn stats_dict<'py>(
    py: Python<'py>,
    s: &Option<StreamStats>,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    let Some(s) = s else { return Ok(None) };
    let d = PyDict::new(py);
    d.set_item("input_bytes", s.input_bytes)?;
    d.set_item("blocks", s.blocks)?;
    d.set_item("zero_blocks", s.zero_blocks)?;
    d.set_item("dedup_blocks", s.dedup_blocks)?;
    d.set_item("parent_blocks", s.parent_blocks)?;
    d.set_item("stored_bytes", s.stored_bytes)?;
    Ok(Some(d))
}

/// Packs `disk` and/or `memory` into a new archive at `output` (written to a temporary
/// file and renamed, so `output` is complete or untouched). Returns what `hexz pack --json`
/// reports.
#[pyfunction]
#[pyo3(signature = (output, *, disk=None, memory=None, compression="lz4", level=None,
                    block_size=None, cdc=false, base=None, encrypt=false, password=None,
                    progress=None))]
#[allow(clippy::too_many_arguments)]
pub fn pack<'py>(
    py: Python<'py>,
    output: PathBuf,
    disk: Option<&Bound<'py, PyAny>>,
    memory: Option<&Bound<'py, PyAny>>,
    compression: &str,
    level: Option<i32>,
    block_size: Option<u32>,
    cdc: bool,
    base: Option<PathBuf>,
    encrypt: bool,
    password: Option<&Bound<'py, PyAny>>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let invalid = |m: String| raise(py, "InvalidArgument", format!("invalid argument: {m}"));
    if disk.is_none() && memory.is_none() {
        return Err(invalid(
            "nothing to pack: give disk= and/or memory=".to_string(),
        ));
    }
    let codec: Codec = compression.parse().map_err(invalid)?;
    if level.is_some() && codec != Codec::Zstd {
        return Err(invalid(
            "level applies to zstd only (LZ4 has a single fast level)".to_string(),
        ));
    }
    if cdc && block_size.is_some() {
        return Err(invalid(
            "block_size is for fixed-size blocks; cdc=True uses 16K/64K/256K chunks".to_string(),
        ));
    }
    let password = password
        .map(|p| -> PyResult<Password> {
            if let Ok(s) = p.extract::<String>() {
                return Ok(Password::new(s.into_bytes()));
            }
            Ok(Password::new(p.cast::<PyBytes>()?.as_bytes().to_vec()))
        })
        .transpose()?;
    if encrypt && password.is_none() {
        return Err(invalid("encrypt=True needs password=".to_string()));
    }
    let opts = PackOptions {
        codec,
        level: level.unwrap_or(hexz_core::ops::pack::DEFAULT_ZSTD_LEVEL),
        block_size: block_size.unwrap_or(hexz_core::ops::pack::DEFAULT_BLOCK_SIZE),
        cdc: cdc.then(CdcParams::default),
        base,
        encryption: if encrypt {
            password.map(|password| EncryptOptions {
                password,
                kdf: Kdf::default(),
            })
        } else {
            None
        },
        ..PackOptions::default()
    };
    let failed = std::sync::Arc::new(Mutex::new(None));
    let input = PackInput {
        disk: disk.map(|d| source_of(py, d, &failed)).transpose()?,
        memory: memory.map(|m| source_of(py, m, &failed)).transpose()?,
    };
    // Totals over both streams: (done, total) per stream, reported summed.
    let seen: Mutex<[(u64, Option<u64>); 2]> = Mutex::new([(0, Some(0)); 2]);
    let on_progress = |p: &PackProgress| {
        let Some(cb) = &progress else { return };
        let (done, total) = {
            let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
            let i = usize::from(p.stream == SnapshotStream::Memory);
            s[i] = (p.done, p.total);
            let done: u64 = s.iter().map(|x| x.0).sum();
            let total = s.iter().try_fold(0u64, |a, x| x.1.map(|t| a + t));
            (done, total)
        };
        Python::attach(|py| {
            if let Err(e) = cb.call1(py, (done, total)) {
                let mut f = failed.lock().unwrap_or_else(|p| p.into_inner());
                f.get_or_insert(e);
            }
        });
    };
    let out = output.clone();
    let r = py.detach(|| core_pack(input, &out, &opts, Some(&on_progress)));
    if let Some(e) = failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
        // The archive was written (or not) without that input or callback behaving; a
        // half-fed or unobserved pack is not one to keep.
        if r.is_ok() {
            let _ = std::fs::remove_file(&output);
        }
        return Err(e);
    }
    let stats = r.map_err(|e| to_py(py, e, Some(&format!("packing {}", output.display()))))?;
    let logical: u64 = [&stats.disk, &stats.memory]
        .iter()
        .filter_map(|s| s.as_ref())
        .map(|s| s.input_bytes)
        .sum();
    let d = PyDict::new(py);
    d.set_item("output", output)?;
    d.set_item("archive_bytes", stats.archive_bytes)?;
    d.set_item("logical_bytes", logical)?;
    d.set_item("seconds", stats.elapsed.as_secs_f64())?;
    d.set_item("disk", stats_dict(py, &stats.disk)?)?;
    d.set_item("memory", stats_dict(py, &stats.memory)?)?;
    Ok(d)
}
