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
        let max = lz4_flex::block::get_maximum_output_size(input.len());
        out.clear();
        out.resize(max, 0);
        let n = lz4_flex::block::compress_into(input, out)
            .map_err(|e| Error::InvalidArgument(format!("lz4 compression failed: {e}")))?;
        out.truncate(n);
        Ok(())
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
