//! Zstandard codec (libzstd through the `zstd` crate), levels 1-22.
//!
//! Compression and decompression contexts are cached per thread: creating a context per block
//! would cost more than compressing a small block.

use super::Compressor;
use crate::error::{Error, Result};
use crate::format::Codec;
use std::cell::RefCell;

/// Zstandard compressor/decompressor at a fixed level.
#[derive(Debug, Clone, Copy)]
pub struct ZstdCompressor {
    level: i32,
}

thread_local! {
    static CCTX: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static DCTX: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

impl ZstdCompressor {
    /// Creates a Zstandard codec; `level` must be within 1..=22.
    pub fn new(level: i32) -> Result<Self> {
        if !(1..=22).contains(&level) {
            return Err(Error::InvalidArgument(format!(
                "zstd level {level} is out of range (1-22)"
            )));
        }
        Ok(ZstdCompressor { level })
    }
}

impl Default for ZstdCompressor {
    fn default() -> Self {
        ZstdCompressor { level: 3 }
    }
}

fn zerr(what: &str, e: std::io::Error) -> Error {
    Error::InvalidArgument(format!("zstd {what}: {e}"))
}

impl ZstdCompressor {
    /// Runs `f` with this thread's compression context at this level (made on first use).
    fn with_cctx<T>(
        &self,
        f: impl FnOnce(&mut zstd::bulk::Compressor<'static>) -> Result<T>,
    ) -> Result<T> {
        CCTX.with(|c| {
            let mut c = c.borrow_mut();
            if c.as_ref().is_none_or(|(l, _)| *l != self.level) {
                let cc = zstd::bulk::Compressor::new(self.level).map_err(|e| zerr("init", e))?;
                *c = Some((self.level, cc));
            }
            let (_, cc) = c.as_mut().expect("initialised above");
            f(cc)
        })
    }
}

impl Compressor for ZstdCompressor {
    fn codec(&self) -> Codec {
        Codec::Zstd
    }

    fn level(&self) -> i32 {
        self.level
    }

    fn compress(&self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.with_cctx(|cc| {
            out.clear();
            out.reserve(zstd::zstd_safe::compress_bound(input.len()));
            cc.compress_to_buffer(input, out)
                .map_err(|e| zerr("compression failed", e))?;
            Ok(())
        })
    }

    fn max_compressed_len(&self, len: usize) -> usize {
        zstd::zstd_safe::compress_bound(len)
    }

    fn compress_to(&self, input: &[u8], out: &mut [u8]) -> Result<usize> {
        self.with_cctx(|cc| {
            cc.compress_to_buffer(input, out)
                .map_err(|e| zerr("compression failed", e))
        })
    }

    fn decompress_into(&self, input: &[u8], out: &mut [u8]) -> Result<()> {
        let len = out.len();
        decode(input, out, len)
    }

    fn decompress_vec(&self, input: &[u8], len: usize) -> Result<Vec<u8>> {
        // zstd writes into the vector's spare capacity, at most `len` bytes: nothing to zero.
        let mut v = Vec::with_capacity(len);
        decode(input, &mut v, len)?;
        Ok(v)
    }
}

/// Decodes `input` into `out` with this thread's context; it must decode to exactly `len`.
fn decode<C: zstd::zstd_safe::WriteBuf + ?Sized>(
    input: &[u8],
    out: &mut C,
    len: usize,
) -> Result<()> {
    DCTX.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new().map_err(|e| zerr("init", e))?);
        }
        let dc = d.as_mut().expect("initialised above");
        let n = dc
            .decompress_to_buffer(input, out)
            .map_err(|e| Error::Decode {
                codec: Codec::Zstd,
                detail: e.to_string(),
            })?;
        if n != len {
            return Err(Error::Decode {
                codec: Codec::Zstd,
                detail: format!("block decoded to {n} bytes, expected {len}"),
            });
        }
        Ok(())
    })
}
