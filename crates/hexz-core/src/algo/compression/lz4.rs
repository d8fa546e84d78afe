//! LZ4 block codec: lz4_flex (pure Rust) compresses, liblz4 (lz4-sys) decodes; both speak
//! the standard LZ4 block format. No levels: LZ4 is the fast choice.

use super::Compressor;
use crate::error::{Error, Result};
use crate::format::Codec;

/// LZ4 block-format compressor/decompressor.
#[derive(Debug, Default, Clone, Copy)]
pub struct Lz4Compressor;

impl Lz4Compressor {
    /// Creates the LZ4 codec.
    pub fn new() -> Self {
        Lz4Compressor
    }
}

impl Compressor for Lz4Compressor {
    fn codec(&self) -> Codec {
        Codec::Lz4
    }

    fn compress(&self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        // A fresh vector from lz4_flex rather than `compress_into` a reused one: the slice API
        // needs the whole worst-case output zeroed first, for every block, which cost pack
        // more instructions (callgrind, scripts/bench-instr.sh) than an allocation per block.
        *out = lz4_flex::block::compress(input);
        Ok(())
    }

    fn max_compressed_len(&self, len: usize) -> usize {
        lz4_flex::block::get_maximum_output_size(len)
    }

    fn compress_to(&self, input: &[u8], out: &mut [u8]) -> Result<usize> {
        lz4_flex::block::compress_into(input, out).map_err(|e| {
            Error::InvalidArgument(format!("lz4 compression of {} bytes: {e}", input.len()))
        })
    }

    fn decompress_vec(&self, input: &[u8], len: usize) -> Result<Vec<u8>> {
        let mut v = Vec::with_capacity(len);
        let n = decode(input, v.spare_capacity_mut())?;
        check_len(n, len)?;
        // SAFETY: `decode` initialised exactly the first `n` bytes of the spare capacity, and
        // `n == len <= capacity`.
        unsafe { v.set_len(n) };
        Ok(v)
    }

    fn decompress_into(&self, input: &[u8], out: &mut [u8]) -> Result<()> {
        let len = out.len();
        // SAFETY: `[u8]` and `[MaybeUninit<u8>]` have the same layout, and the decoder only
        // writes initialised bytes into it.
        let out = unsafe { &mut *(out as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) };
        check_len(decode(input, out)?, len)
    }
}

/// Decodes one LZ4 block into `out` with liblz4's `LZ4_decompress_safe`, which never reads
/// past `input` nor writes past `out`, whatever the input (it is built and fuzzed for
/// untrusted data), and decodes about twice as fast here as the pure-Rust decoder. Returns
/// the decoded length; the bytes `out[..n]` are initialised.
fn decode(input: &[u8], out: &mut [std::mem::MaybeUninit<u8>]) -> Result<usize> {
    let too_big = |what: &str, n: usize| Error::Decode {
        codec: Codec::Lz4,
        detail: format!("{what} of {n} bytes is larger than an LZ4 block can be"),
    };
    let src_len = i32::try_from(input.len()).map_err(|_| too_big("input", input.len()))?;
    let cap = i32::try_from(out.len()).map_err(|_| too_big("output", out.len()))?;
    // SAFETY: the pointers and lengths describe live buffers (`input` readable, `out`
    // writable); LZ4_decompress_safe stays inside both and returns a negative value on
    // malformed input.
    let n = unsafe {
        lz4_sys::LZ4_decompress_safe(input.as_ptr().cast(), out.as_mut_ptr().cast(), src_len, cap)
    };
    usize::try_from(n).map_err(|_| Error::Decode {
        codec: Codec::Lz4,
        detail: format!(
            "malformed block (error at input byte {} of {})",
            n.unsigned_abs().saturating_sub(1),
            input.len()
        ),
    })
}

fn check_len(n: usize, len: usize) -> Result<()> {
    if n != len {
        return Err(Error::Decode {
            codec: Codec::Lz4,
            detail: format!("block decoded to {n} bytes, expected {len}"),
        });
    }
    Ok(())
}
