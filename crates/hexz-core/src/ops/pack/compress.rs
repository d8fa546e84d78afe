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
    /// Range in `Batch::out`.
    pub(super) out_start: usize,
    pub(super) out_len: usize,
}

/// Compresses, hashes and checksums every block of a batch (worker stage). `bound` selects
/// the bound CRC of format 1.1 (content hash ‖ stored bytes) over the plain one.
pub(super) fn cook(
    b: &mut Batch,
    c: &dyn Compressor,
    scratch: &mut Vec<u8>,
    cipher: Option<&ArchiveCipher>,
    bound: bool,
) -> Result<()> {
    let mut at = 0usize;
    for i in 0..b.lens.len() {
        let len = b.lens[i] as usize;
        let data = &b.raw[at..at + len];
        at += len;
        if hash::is_all_zero(data) {
            b.cooked.push(Cooked {
                len: len as u32,
                zero: true,
                codec: Codec::None,
                crc: 0,
                hash: [0; 32],
                out_start: b.out.len(),
                out_len: 0,
            });
            continue;
        }
        let h = match cipher {
            Some(k) => k.content_hash(data),
            None => hash::blake3(data),
        };
        let (codec, stored): (Codec, &[u8]) = if c.codec() == Codec::None {
            (Codec::None, data)
        } else {
            c.compress(data, scratch)?;
            if scratch.len() < data.len() {
                (c.codec(), &scratch[..])
            } else {
                (Codec::None, data)
            }
        };
        let out_start = b.out.len();
        b.out.extend_from_slice(stored);
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
            out_len: stored.len(),
        });
    }
    Ok(())
}
