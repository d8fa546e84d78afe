//! Compressing: the worker stage, which detects zero blocks, hashes (BLAKE3, or the keyed
//! content hash of an encrypted archive), compresses and checksums (CRC32, bound to the
//! content hash in format 1.1) every block of a batch.

use super::chunk::Batch;
use crate::algo::compression::Compressor;
use crate::algo::encryption::ArchiveCipher;
use crate::algo::hash;
use crate::error::Result;
use crate::format::Codec;

/// A block after the worker stage.
#[derive(Clone, Copy)]
pub(super) struct Cooked {
    pub(super) len: u32,
    pub(super) zero: bool,
    pub(super) codec: Codec,
    pub(super) crc: u32,
    pub(super) hash: [u8; 32],
    /// Range in `Batch::out` (within `out_used`).
    pub(super) out_start: usize,
    pub(super) out_len: usize,
}

/// Compresses, hashes and checksums every block of a batch (worker stage). `bound` selects
/// the bound CRC of format 1.1 (content hash ‖ stored bytes) over the plain one.
pub(super) fn cook(
    b: &mut Batch,
    c: &dyn Compressor,
    cipher: Option<&ArchiveCipher>,
    bound: bool,
) -> Result<()> {
    let mut at = 0usize;
    for i in 0..b.lens.len() {
        let len = b.lens[i] as usize;
        let data = &b.raw[at..at + len];
        at += len;
        let out_start = b.out_used;
        if hash::is_all_zero(data) {
            b.cooked.push(Cooked {
                len: len as u32,
                zero: true,
                codec: Codec::None,
                crc: 0,
                hash: [0; 32],
                out_start,
                out_len: 0,
            });
            continue;
        }
        let h = match cipher {
            Some(k) => k.content_hash(data),
            None => hash::blake3(data),
        };
        // Room for the worst case; the vector only grows (and zeroes) past its longest use.
        let room = c.max_compressed_len(len).max(len);
        if b.out.len() < out_start + room {
            b.out.resize(out_start + room, 0);
        }
        let dst = &mut b.out[out_start..out_start + room];
        let mut codec = c.codec();
        let mut n = if codec == Codec::None {
            len
        } else {
            c.compress_to(data, dst)?
        };
        if codec == Codec::None || n >= len {
            // Incompressible: stored as it is.
            codec = Codec::None;
            n = len;
            dst[..len].copy_from_slice(data);
        }
        let stored = &dst[..n];
        b.cooked.push(Cooked {
            len: len as u32,
            zero: false,
            codec,
            // Encrypted blocks get their CRC over the ciphertext, once sealed by the writer.
            crc: if cipher.is_some() {
                0
            } else {
                hash::entry_crc32(bound, &h, stored)
            },
            hash: h,
            out_start,
            out_len: n,
        });
        b.out_used = out_start + n;
    }
    Ok(())
}
