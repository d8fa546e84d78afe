//! Checking and decoding one stored block: CRC32 of the stored bytes, decryption, the codec,
//! and the BLAKE3 of the decoded bytes.

use super::file::File;
use super::SnapshotStream;
use crate::algo::compression::{lz4::Lz4Compressor, Compressor, NoCompression};
use crate::algo::hash;
use crate::error::{Error, Result};
use crate::format::header::HEADER_SIZE;
use crate::format::{BlockEntry, Codec};
use std::cell::RefCell;

thread_local! {
    /// Per-thread buffers for stored bytes and decrypted bytes of the block being decoded.
    static SCRATCH: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

impl File {
    fn decoder(&self, codec: Codec) -> Result<&dyn Compressor> {
        static NONE: NoCompression = NoCompression;
        static LZ4: Lz4Compressor = Lz4Compressor;
        if codec == self.inner.compressor.codec() {
            return Ok(self.inner.compressor.as_ref());
        }
        match codec {
            Codec::None => Ok(&NONE),
            Codec::Lz4 => Ok(&LZ4),
            #[cfg(feature = "compression-zstd")]
            Codec::Zstd => Ok(&self.inner.zstd),
            #[cfg(not(feature = "compression-zstd"))]
            Codec::Zstd => Err(Error::Unsupported(
                "zstd-compressed blocks (this build lacks the compression-zstd feature)".into(),
            )),
        }
    }

    /// Reads, checks and decodes one non-zero block into `dst` (exactly its logical length).
    pub(super) fn decode_block(
        &self,
        stream: SnapshotStream,
        block_no: u64,
        e: &BlockEntry,
        dst: &mut [u8],
        verify_hash: bool,
    ) -> Result<()> {
        let corrupt = |detail: String| Error::CorruptBlock {
            stream,
            block: block_no,
            offset: e.logical_offset,
            detail,
        };
        let backend = self
            .inner
            .archives
            .get(e.source as usize)
            .ok_or_else(|| corrupt(format!("refers to missing ancestor {}", e.source)))?
            .as_ref();
        let start = e.stored_offset;
        let len = e.stored_len as usize;
        if start < HEADER_SIZE as u64
            || start
                .checked_add(len as u64)
                .is_none_or(|end| end > backend.len())
        {
            return Err(corrupt(format!(
                "stored bytes at archive offset {start} (length {len}) lie outside the {}-byte \
                 archive",
                backend.len()
            )));
        }
        let cipher = self.inner.ciphers[e.source as usize].as_deref();
        let decode = |stored: &[u8], dst: &mut [u8], plain: &mut Vec<u8>| -> Result<()> {
            let crc = hash::crc32(stored);
            if crc != e.crc32 {
                return Err(corrupt(format!(
                    "CRC32 mismatch in stored bytes at archive offset {start} (expected {:08x}, \
                     computed {crc:08x})",
                    e.crc32
                )));
            }
            let compressed = match cipher {
                Some(c) => {
                    c.open_block_into(start, e.logical_len, e.codec, stored, plain)
                        .map_err(|err| corrupt(err.to_string()))?;
                    &plain[..]
                }
                None => stored,
            };
            self.decoder(e.codec)?
                .decompress_into(compressed, dst)
                .map_err(|err| corrupt(format!("cannot decode {} data: {err}", e.codec)))?;
            if verify_hash {
                let h = match self.inner.ciphers[0].as_deref() {
                    Some(c) => c.content_hash(dst),
                    None => hash::blake3(dst),
                };
                if h != e.hash {
                    return Err(corrupt(
                        "BLAKE3 hash of decoded content does not match the index".into(),
                    ));
                }
            }
            Ok(())
        };
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let (raw, plain) = &mut *s;
            if let Some(all) = backend.as_slice() {
                return decode(&all[start as usize..start as usize + len], dst, plain);
            }
            raw.clear();
            raw.resize(len, 0);
            backend.read_exact_at(start, raw)?;
            decode(raw, dst, plain)
        })
    }
}
