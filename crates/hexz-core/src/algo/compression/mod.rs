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

    /// Most bytes [`compress_to`](Compressor::compress_to) writes for `len` input bytes.
    /// Codecs state their own bound; the default is generous for ones that do not.
    fn max_compressed_len(&self, len: usize) -> usize {
        2 * len + 64
    }

    /// Compresses `input` into the start of `out`, which holds at least
    /// [`max_compressed_len`](Compressor::max_compressed_len) bytes, and returns the
    /// compressed length. The packer compresses straight into its reused batch buffer this
    /// way: no allocation and no copy per block.
    fn compress_to(&self, input: &[u8], out: &mut [u8]) -> Result<usize> {
        let mut v = Vec::new();
        self.compress(input, &mut v)?;
        let room = out.len();
        let dst = out.get_mut(..v.len()).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{} compressed {} bytes to {}, more than the {}-byte buffer",
                self.codec(),
                input.len(),
                v.len(),
                room
            ))
        })?;
        dst.copy_from_slice(&v);
        Ok(v.len())
    }

    /// Decompresses `input` into `out`, which must be exactly the uncompressed size.
    /// Returns an error (never panics) on malformed input or a size mismatch.
    fn decompress_into(&self, input: &[u8], out: &mut [u8]) -> Result<()>;

    /// Decompresses `input`, exactly `len` bytes uncompressed, into a new vector. Codecs that
    /// can write into uninitialised capacity override it: zeroing a block first cost a
    /// quarter of an uncached random read's instructions. Errors as
    /// [`decompress_into`](Compressor::decompress_into).
    fn decompress_vec(&self, input: &[u8], len: usize) -> Result<Vec<u8>> {
        let mut v = vec![0u8; len];
        self.decompress_into(input, &mut v)?;
        Ok(v)
    }
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
    fn max_compressed_len(&self, len: usize) -> usize {
        len
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
    fn decompress_vec(&self, input: &[u8], len: usize) -> Result<Vec<u8>> {
        if input.len() != len {
            return Err(Error::Decode {
                codec: Codec::None,
                detail: format!("stored block is {} bytes, expected {len}", input.len()),
            });
        }
        Ok(input.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every codec: `decompress_vec` gives the block back exactly, and refuses a wrong
    /// expected length and damaged input, as `decompress_into` does.
    #[test]
    fn decompress_vec_matches_decompress_into() {
        let mut data = Vec::new();
        for i in 0..20_000u32 {
            data.extend_from_slice(format!("line {} of {}\n", i % 97, i % 13).as_bytes());
        }
        let mut codecs = vec![Codec::None, Codec::Lz4];
        if cfg!(feature = "compression-zstd") {
            codecs.push(Codec::Zstd);
        }
        for codec in codecs {
            let c = compressor_for(codec, 3).unwrap();
            let mut enc = Vec::new();
            c.compress(&data, &mut enc).unwrap();
            assert_eq!(
                c.decompress_vec(&enc, data.len()).unwrap(),
                data,
                "{codec:?}"
            );
            let mut into = vec![0u8; data.len()];
            c.decompress_into(&enc, &mut into).unwrap();
            assert_eq!(into, data);
            for wrong in [data.len() - 1, data.len() + 1, 0] {
                assert!(
                    c.decompress_vec(&enc, wrong).is_err(),
                    "{codec:?} len {wrong}"
                );
            }
            if codec != Codec::None {
                let mut bad = enc.clone();
                bad.truncate(enc.len() / 2);
                assert!(
                    c.decompress_vec(&bad, data.len()).is_err(),
                    "{codec:?} truncated"
                );
            }
        }
    }

    /// Every codec: `compress_to` into a buffer of `max_compressed_len` bytes (here with
    /// leftovers of an earlier block in it) gives what `compress` gives, also for random
    /// bytes, the worst case.
    #[test]
    fn compress_to_matches_compress() {
        let text: Vec<u8> = (0..65536u32)
            .map(|i| b"abcabd\n"[(i % 7) as usize])
            .collect();
        let mut x = 0x2545F4914F6CDD1Du64;
        let noise: Vec<u8> = (0..65536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut codecs = vec![Codec::None, Codec::Lz4];
        if cfg!(feature = "compression-zstd") {
            codecs.push(Codec::Zstd);
        }
        for codec in codecs {
            let c = compressor_for(codec, 3).unwrap();
            for data in [&text, &noise] {
                let mut want = Vec::new();
                c.compress(data, &mut want).unwrap();
                let mut buf = vec![0xAAu8; c.max_compressed_len(data.len())];
                let n = c.compress_to(data, &mut buf).unwrap();
                assert_eq!(&buf[..n], &want[..], "{codec:?}");
                assert_eq!(c.decompress_vec(&buf[..n], data.len()).unwrap(), *data);
            }
            // Too small a buffer is an error, never a panic or a short block.
            let mut tiny = [0u8; 8];
            assert!(c.compress_to(&noise, &mut tiny).is_err(), "{codec:?}");
        }
    }
}
