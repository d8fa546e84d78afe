//! Checking and decoding one stored block.
//!
//! [`File::decode_stored`] is the one function that turns a block's stored bytes (as
//! fetched, compressed and perhaps encrypted) into its content, checking on the way: the
//! entry's CRC32 (bound to the content hash when the archive storing the block has format
//! 1.1's bound CRC), the AEAD tag when encrypted, the exact decoded length, and the BLAKE3 of
//! the content when the bound CRC does not already check it or full verification is asked. Whatever fetched the bytes (a batched read, a
//! read-ahead, a disk cache) calls it, so a new way of checking goes here and nowhere else.

use super::file::File;
use super::SnapshotStream;
use crate::algo::compression::{lz4::Lz4Compressor, Compressor, NoCompression};
use crate::algo::encryption::ArchiveCipher;
use crate::algo::hash;
use crate::error::{Error, Result};
use crate::format::header::HEADER_SIZE;
use crate::format::{BlockEntry, Codec};
use crate::store::StorageBackend;
use std::cell::RefCell;

thread_local! {
    /// Per-thread buffers: stored bytes of a block read on its own, and decrypted bytes.
    static SCRATCH: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// How much of a block's integrity to check when decoding it. The entry's CRC32 (bound or
/// plain, as the block's archive says) and the AEAD tag are always checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verify {
    /// The CRC32 (and the AEAD tag) only.
    Stored,
    /// That the content is the one the index names: the bound CRC does it for blocks of a
    /// format 1.1 archive; blocks of a 1.0 archive get the BLAKE3 of the decoded content.
    Content,
    /// The BLAKE3 of the decoded content, bound CRC or not (verification, signed reads).
    Full,
}

impl File {
    /// The error for block `block_no` of `stream` described by `e`.
    pub(super) fn corrupt_block(
        stream: SnapshotStream,
        block_no: u64,
        e: &BlockEntry,
        detail: String,
    ) -> Error {
        Error::CorruptBlock {
            stream,
            block: block_no,
            offset: e.logical_offset,
            detail,
        }
    }

    /// The backend holding the stored bytes of `e`, after checking they lie inside it.
    pub(super) fn stored_source(
        &self,
        stream: SnapshotStream,
        block_no: u64,
        e: &BlockEntry,
    ) -> Result<&dyn StorageBackend> {
        let corrupt = |d: String| Self::corrupt_block(stream, block_no, e, d);
        let backend = self
            .inner
            .archives
            .get(e.source as usize)
            .ok_or_else(|| corrupt(format!("refers to missing ancestor {}", e.source)))?
            .as_ref();
        let start = e.stored_offset;
        let len = e.stored_len as u64;
        if start < HEADER_SIZE as u64
            || start.checked_add(len).is_none_or(|end| end > backend.len())
        {
            return Err(corrupt(format!(
                "stored bytes at archive offset {start} (length {len}) lie outside the {}-byte \
                 archive",
                backend.len()
            )));
        }
        Ok(backend)
    }

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

    /// Checks and decodes the stored bytes of one non-zero block into `dst` (exactly its
    /// logical length). This is the seam every decoded block passes through.
    pub(super) fn decode_stored(
        &self,
        stream: SnapshotStream,
        block_no: u64,
        e: &BlockEntry,
        stored: &[u8],
        dst: &mut [u8],
        verify: Verify,
    ) -> Result<()> {
        self.decompress_checked(stream, block_no, e, stored, |c, compressed| {
            c.decompress_into(compressed, dst)
        })?;
        self.check_content(stream, block_no, e, dst, self.bound(e), verify)
    }

    /// As [`decode_stored`](Self::decode_stored), into a new vector that is not zeroed first
    /// (blocks decoded for the cache).
    pub(super) fn decode_stored_vec(
        &self,
        stream: SnapshotStream,
        block_no: u64,
        e: &BlockEntry,
        stored: &[u8],
        verify: Verify,
    ) -> Result<Vec<u8>> {
        let v = self.decompress_checked(stream, block_no, e, stored, |c, compressed| {
            c.decompress_vec(compressed, e.logical_len as usize)
        })?;
        self.check_content(stream, block_no, e, &v, self.bound(e), verify)?;
        Ok(v)
    }

    /// Checks the stored bytes of `e` ([`check_stored`](Self::check_stored)), decrypts them
    /// when the archive is encrypted, and hands the compressed bytes to `decode` with the
    /// block's codec; decoding errors name the block.
    fn decompress_checked<T>(
        &self,
        stream: SnapshotStream,
        block_no: u64,
        e: &BlockEntry,
        stored: &[u8],
        decode: impl FnOnce(&dyn Compressor, &[u8]) -> Result<T>,
    ) -> Result<T> {
        let corrupt = |d: String| Self::corrupt_block(stream, block_no, e, d);
        self.check_stored(stream, block_no, e, stored)?;
        let cipher = self.cipher_of(e);
        let decoder = self.decoder(e.codec)?;
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let plain = &mut s.1;
            let compressed = match cipher {
                Some(c) => {
                    c.open_block_into(e.stored_offset, e.logical_len, e.codec, stored, plain)
                        .map_err(|err| corrupt(err.to_string()))?;
                    &plain[..]
                }
                None => stored,
            };
            decode(decoder, compressed).map_err(|err| corrupt(err.to_string()))
        })
    }

    /// The cipher of the archive holding `e` (`None`: not encrypted).
    fn cipher_of(&self, e: &BlockEntry) -> Option<&ArchiveCipher> {
        self.inner
            .ciphers
            .get(e.source as usize)
            .and_then(|c| c.as_deref())
    }

    /// Whether the archive holding `e` writes the bound CRC (format 1.1).
    fn bound(&self, e: &BlockEntry) -> bool {
        self.inner.bound_crc.get(e.source as usize) == Some(&true)
    }

    /// Whether the stored bytes of `e` are its content as they are: stored uncompressed
    /// (incompressible data) and not encrypted. Such a block needs no decoding, only its
    /// checks ([`check_plain`](Self::check_plain)), so the fetched buffer can be kept as is.
    pub(super) fn stored_is_content(&self, e: &BlockEntry) -> bool {
        e.codec == Codec::None && e.stored_len == e.logical_len && self.cipher_of(e).is_none()
    }

    /// Checks a block whose stored bytes are its content ([`stored_is_content`]) exactly
    /// as [`decode_stored`](Self::decode_stored) would, without copying them.
    pub(super) fn check_plain(
        &self,
        stream: SnapshotStream,
        block_no: u64,
        e: &BlockEntry,
        stored: &[u8],
        verify: Verify,
    ) -> Result<()> {
        debug_assert!(self.stored_is_content(e));
        self.check_stored(stream, block_no, e, stored)?;
        self.check_content(stream, block_no, e, stored, self.bound(e), verify)
    }

    /// Checks the length and CRC32 (bound or plain, see [`bound`](Self::bound)) of a
    /// block's stored bytes.
    fn check_stored(
        &self,
        stream: SnapshotStream,
        block_no: u64,
        e: &BlockEntry,
        stored: &[u8],
    ) -> Result<()> {
        let corrupt = |d: String| Self::corrupt_block(stream, block_no, e, d);
        let start = e.stored_offset;
        if stored.len() != e.stored_len as usize {
            return Err(corrupt(format!(
                "got {} stored bytes at archive offset {start}, expected {}",
                stored.len(),
                e.stored_len
            )));
        }
        let bound = self.bound(e);
        let crc = hash::entry_crc32(bound, &e.hash, stored);
        if crc != e.crc32 {
            return Err(corrupt(if bound {
                format!(
                    "bound CRC32 mismatch (content hash + stored bytes) at archive offset \
                     {start} (expected {:08x}, computed {crc:08x}): the stored bytes are damaged \
                     or are not the block the index names",
                    e.crc32
                )
            } else {
                format!(
                    "CRC32 mismatch in stored bytes at archive offset {start} (expected {:08x}, \
                     computed {crc:08x})",
                    e.crc32
                )
            }));
        }
        Ok(())
    }

    /// Whether checking block `e` at level `verify` computes the BLAKE3 of its content (as
    /// [`check_content`](Self::check_content) decides), not only its CRC32.
    pub(super) fn hashes_content(&self, e: &BlockEntry, verify: Verify) -> bool {
        verify == Verify::Full || (verify == Verify::Content && !self.bound(e))
    }

    /// BLAKE3-checks decoded `content` when `verify` asks for it (always for `Full`; for
    /// `Content` unless the bound CRC already checked it).
    fn check_content(
        &self,
        stream: SnapshotStream,
        block_no: u64,
        e: &BlockEntry,
        content: &[u8],
        bound: bool,
        verify: Verify,
    ) -> Result<()> {
        if verify == Verify::Full || (verify == Verify::Content && !bound) {
            let h = match self.inner.ciphers[0].as_deref() {
                Some(c) => c.content_hash(content),
                None => hash::blake3(content),
            };
            if h != e.hash {
                return Err(Self::corrupt_block(
                    stream,
                    block_no,
                    e,
                    "BLAKE3 hash of decoded content does not match the index".into(),
                ));
            }
        }
        Ok(())
    }

    /// The verification level reads use.
    pub(super) fn read_verify(&self) -> Verify {
        if !self.inner.verify_hashes {
            Verify::Stored
        } else if self.inner.verify_full {
            Verify::Full
        } else {
            Verify::Content
        }
    }

    /// Reads (one backend call, or none when mapped), checks and decodes one non-zero block
    /// into `dst`, bypassing cache and batching: verification and fallbacks use it.
    pub(super) fn decode_block(
        &self,
        stream: SnapshotStream,
        block_no: u64,
        e: &BlockEntry,
        dst: &mut [u8],
        verify: Verify,
    ) -> Result<()> {
        let backend = self.stored_source(stream, block_no, e)?;
        let (start, len) = (e.stored_offset as usize, e.stored_len as usize);
        if let Some(all) = backend.as_slice() {
            return self.decode_stored(stream, block_no, e, &all[start..start + len], dst, verify);
        }
        // Take the buffer out of the thread-local: decode_stored uses the other half.
        let mut raw = SCRATCH.with(|s| std::mem::take(&mut s.borrow_mut().0));
        raw.clear();
        raw.resize(len, 0);
        let r = backend
            .read_exact_at(e.stored_offset, &mut raw)
            .and_then(|()| self.decode_stored(stream, block_no, e, &raw, dst, verify));
        SCRATCH.with(|s| s.borrow_mut().0 = raw);
        match r {
            Err(err) if self.may_refetch(e, &err) => {
                self.decode_refetched(stream, block_no, e, dst, verify)
            }
            r => r,
        }
    }

    /// Whether fetching the stored bytes of `e` again may cure `err`: a failed check of a
    /// block of a remote archive, whose bytes may have been damaged in transit or in the disk
    /// cache rather than at the origin.
    pub(super) fn may_refetch(&self, e: &BlockEntry, err: &Error) -> bool {
        matches!(err, Error::CorruptBlock { .. })
            && self
                .inner
                .archives
                .get(e.source as usize)
                .is_some_and(|b| b.is_remote())
    }

    /// The stored bytes of `e` fetched again from its archive's origin, past every cache
    /// ([`StorageBackend::refetch`](crate::store::StorageBackend::refetch)); only for a block
    /// [`may_refetch`](Self::may_refetch) accepted.
    pub(super) fn refetch_stored(&self, e: &BlockEntry) -> Result<Vec<u8>> {
        let mut raw = self.inner.bufs().take(e.stored_len as usize);
        self.inner.archives[e.source as usize].refetch(e.stored_offset, &mut raw)?;
        Ok(raw)
    }

    /// Fetches the stored bytes of `e` again ([`refetch_stored`](Self::refetch_stored)) and
    /// decodes them into `dst`: the second and last try for a block whose first copy failed
    /// its check. An error now means the archive itself holds damaged bytes.
    pub(super) fn decode_refetched(
        &self,
        stream: SnapshotStream,
        block_no: u64,
        e: &BlockEntry,
        dst: &mut [u8],
        verify: Verify,
    ) -> Result<()> {
        let raw = self.refetch_stored(e)?;
        let r = self.decode_stored(stream, block_no, e, &raw, dst, verify);
        self.inner.bufs().give(raw);
        r
    }
}
