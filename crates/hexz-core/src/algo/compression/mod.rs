//! Block codecs behind one [`Compressor`] trait: LZ4 (always built) and Zstandard
//! (feature `compression-zstd`, on by default). Blocks are compressed independently so any
//! block can be decoded without the others.

pub mod lz4;
#[cfg(feature = "compression-zstd")]
pub mod zstd;

use crate::error::{Error, Result};
use crate::format::Codec;

/// A block codec. Implementations are stateless from the caller's view and shareable across
/// threads; per-thread scratch state (hash tables, zstd contexts) is kept internally.
pub trait Compressor: Send + Sync {
    /// Which codec this is (recorded in the header and block entries).
    fn codec(&self) -> Codec;

    /// The compression level used when compressing (0 where the codec has no levels).
    fn level(&self) -> i32 {
        0
    }

    /// Compresses `input`, replacing the contents of `out`.
    fn compress(&self, input: &[u8], out: &mut Vec<u8>) -> Result<()>;

    /// Decompresses `input` into `out`, which must be exactly the uncompressed size.
    /// Returns an error (never panics) on malformed input or a size mismatch.
    fn decompress_into(&self, input: &[u8], out: &mut [u8]) -> Result<()>;
}

/// Builds the compressor for `codec` at `level` (ignored by LZ4 and none).
pub fn compressor_for(codec: Codec, level: i32) -> Result<Box<dyn Compressor>> {
    match codec {
        Codec::None => Ok(Box::new(NoCompression)),
        Codec::Lz4 => Ok(Box::new(lz4::Lz4Compressor::new())),
        #[cfg(feature = "compression-zstd")]
        Codec::Zstd => Ok(Box::new(zstd::ZstdCompressor::new(level)?)),
        #[cfg(not(feature = "compression-zstd"))]
        Codec::Zstd => {
            let _ = level;
            Err(Error::Unsupported(
                "zstd compression (this build lacks the compression-zstd feature)".into(),
            ))
        }
    }
}

/// The identity codec: blocks stored as they are.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCompression;

impl Compressor for NoCompression {
    fn codec(&self) -> Codec {
        Codec::None
    }
    fn compress(&self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        out.clear();
        out.extend_from_slice(input);
        Ok(())
    }
    fn decompress_into(&self, input: &[u8], out: &mut [u8]) -> Result<()> {
        if input.len() != out.len() {
            return Err(Error::Decode {
                codec: Codec::None,
                detail: format!(
                    "stored block is {} bytes, expected {}",
                    input.len(),
                    out.len()
                ),
            });
        }
        out.copy_from_slice(input);
        Ok(())
    }
}
