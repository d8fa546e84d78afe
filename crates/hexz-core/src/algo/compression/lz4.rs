//! LZ4 block codec (lz4_flex, pure Rust). No levels: LZ4 is the fast choice.

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
        // Decodes into a vector of capacity `len`; output past it is an error, as with a slice.
        let v = lz4_flex::block::decompress(input, len).map_err(|e| Error::Decode {
            codec: Codec::Lz4,
            detail: e.to_string(),
        })?;
        if v.len() != len {
            return Err(Error::Decode {
                codec: Codec::Lz4,
                detail: format!("block decoded to {} bytes, expected {len}", v.len()),
            });
        }
        Ok(v)
    }

    fn decompress_into(&self, input: &[u8], out: &mut [u8]) -> Result<()> {
        let n = lz4_flex::block::decompress_into(input, out).map_err(|e| Error::Decode {
            codec: Codec::Lz4,
            detail: e.to_string(),
        })?;
        if n != out.len() {
            return Err(Error::Decode {
                codec: Codec::Lz4,
                detail: format!("block decoded to {n} bytes, expected {}", out.len()),
            });
        }
        Ok(())
    }
}
