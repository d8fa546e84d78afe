//! Writable access to any object that exports the buffer protocol (bytearray, memoryview,
//! numpy array, mmap), so `readinto` decodes straight into the caller's memory.
//!
//! PyO3's `PyBuffer` is only available with the limited API from Python 3.11, and this
//! module is built for the stable ABI of 3.9. `PyObject_GetBuffer` and `PyBuffer_Release`
//! themselves are exported by every CPython 3 (they joined the *limited* API in 3.11 with
//! the `Py_buffer` layout that has not changed since 3.3), so they are declared here.

use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;
use std::ffi::{c_char, c_int, c_void};

/// CPython's `Py_buffer` (Include/pybuffer.h, identical from 3.3 on).
#[repr(C)]
struct RawBuffer {
    buf: *mut c_void,
    obj: *mut ffi::PyObject,
    len: ffi::Py_ssize_t,
    itemsize: ffi::Py_ssize_t,
    readonly: c_int,
    ndim: c_int,
    format: *mut c_char,
    shape: *mut ffi::Py_ssize_t,
    strides: *mut ffi::Py_ssize_t,
    suboffsets: *mut ffi::Py_ssize_t,
    internal: *mut c_void,
}

/// `PyBUF_WRITABLE | PyBUF_ND`: a writable buffer in one C-contiguous piece (exporters that
/// cannot give one raise `BufferError`).
const PYBUF_CONTIG: c_int = 0x0001 | 0x0008;

extern "C" {
    fn PyObject_GetBuffer(obj: *mut ffi::PyObject, view: *mut RawBuffer, flags: c_int) -> c_int;
    fn PyBuffer_Release(view: *mut RawBuffer);
}

/// A writable, contiguous buffer borrowed from a Python object; released on drop (with the
/// GIL held, as CPython requires).
pub struct WritableBuffer {
    view: Box<RawBuffer>,
}

/// `PyBUF_ND`: a buffer in one C-contiguous piece, read-only or not.
const PYBUF_ND: c_int = 0x0008;

/// Exports `obj`'s buffer with `flags`; raises `BufferError`/`TypeError` when it has none.
fn export(obj: &Bound<'_, PyAny>, flags: c_int) -> PyResult<Box<RawBuffer>> {
    let mut view = Box::new(RawBuffer {
        buf: std::ptr::null_mut(),
        obj: std::ptr::null_mut(),
        len: 0,
        itemsize: 0,
        readonly: 0,
        ndim: 0,
        format: std::ptr::null_mut(),
        shape: std::ptr::null_mut(),
        strides: std::ptr::null_mut(),
        suboffsets: std::ptr::null_mut(),
        internal: std::ptr::null_mut(),
    });
    // SAFETY: the GIL is held (we have a Bound), `view` is a valid Py_buffer to fill.
    let rc = unsafe { PyObject_GetBuffer(obj.as_ptr(), &mut *view, flags) };
    if rc != 0 {
        return Err(PyErr::fetch(obj.py()));
    }
    Ok(view)
}

/// The bytes of an exported buffer (empty when it has none).
fn bytes_of(view: &RawBuffer) -> &[u8] {
    if view.len <= 0 || view.buf.is_null() {
        return &[];
    }
    // SAFETY: the exporter guarantees `len` readable bytes at `buf` until release.
    unsafe { std::slice::from_raw_parts(view.buf.cast::<u8>(), view.len as usize) }
}

/// Releases an exported buffer, with the GIL held as CPython requires.
fn release(view: &mut RawBuffer) {
    Python::attach(|_py| {
        // SAFETY: `view` was filled by a successful PyObject_GetBuffer and is released once.
        unsafe { PyBuffer_Release(view) }
    });
}

/// A contiguous buffer borrowed from a Python object for reading (numpy arrays, bytes,
/// read-only or not); released on drop.
pub struct ReadBuffer {
    view: Box<RawBuffer>,
}

impl ReadBuffer {
    /// Borrows `obj`'s memory for reading; raises `BufferError`/`TypeError` when `obj` has
    /// no contiguous buffer.
    pub fn get(obj: &Bound<'_, PyAny>) -> PyResult<ReadBuffer> {
        Ok(ReadBuffer {
            view: export(obj, PYBUF_ND)?,
        })
    }

    /// The buffer's bytes, valid while `self` lives.
    pub fn as_slice(&self) -> &[u8] {
        bytes_of(&self.view)
    }
}

impl Drop for ReadBuffer {
    fn drop(&mut self) {
        release(&mut self.view);
    }
}

impl WritableBuffer {
    /// Borrows `obj`'s memory for writing; raises `BufferError`/`TypeError` when `obj` has
    /// no writable contiguous buffer.
    pub fn get(obj: &Bound<'_, PyAny>) -> PyResult<WritableBuffer> {
        let b = WritableBuffer {
            view: export(obj, PYBUF_CONTIG)?,
        };
        if b.view.readonly != 0 || (b.view.buf.is_null() && b.view.len != 0) || b.view.len < 0 {
            return Err(PyBufferError::new_err("the buffer is read-only"));
        }
        Ok(b)
    }

    /// The buffer's bytes. The caller keeps `self` alive (and so the export) for as long as
    /// the slice is used; Python code must not resize the object meanwhile, which exporters
    /// forbid while a buffer is exported.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        if self.view.len == 0 {
            return &mut [];
        }
        // SAFETY: the exporter guarantees `len` writable bytes at `buf` until release.
        unsafe {
            std::slice::from_raw_parts_mut(self.view.buf.cast::<u8>(), self.view.len as usize)
        }
    }
}

// SAFETY: the memory stays exported (and therefore valid and unmoved) until `drop`, which
// re-attaches to the interpreter; using it from a thread without the GIL is what readinto
// does and what the buffer protocol allows.
unsafe impl Send for WritableBuffer {}

impl Drop for WritableBuffer {
    fn drop(&mut self) {
        release(&mut self.view);
    }
}
