//! Encryption of overlay records over an encrypted archive: AES-256-GCM under a key derived
//! from the archive's data key and the overlay id, with a random 96-bit nonce per record
//! (stored in the record header), so rewriting a chunk never reuses a nonce.

use super::format::RecordKind;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::Aes256Gcm;
use zeroize::Zeroizing;

/// BLAKE3 key-derivation context of the per-archive overlay key (see docs/FORMAT.md).
pub const ARCHIVE_CONTEXT: &str = "hexz 2026 v1 overlay key";
const RECORD_CONTEXT: &str = "hexz 2026 v1 overlay record key";

/// Seals and opens the data of one overlay's records.
pub struct RecordCipher {
    aead: Aes256Gcm,
    key_check: [u8; 32],
    overlay_id: [u8; 16],
}

impl RecordCipher {
    /// The cipher of overlay `overlay_id` from the archive-derived key.
    pub fn new(archive_key: &[u8; 32], overlay_id: &[u8; 16]) -> Self {
        let mut material = Zeroizing::new([0u8; 48]);
        material[..32].copy_from_slice(archive_key);
        material[32..].copy_from_slice(overlay_id);
        let key = Zeroizing::new(blake3::derive_key(RECORD_CONTEXT, &*material));
        let key_check = *blake3::keyed_hash(&key, b"hexz overlay key check").as_bytes();
        RecordCipher {
            aead: Aes256Gcm::new_from_slice(&*key).expect("32-byte key"),
            key_check,
            overlay_id: *overlay_id,
        }
    }

    /// The header's key check value for this key.
    pub fn key_check(&self) -> [u8; 32] {
        self.key_check
    }

    fn aad(&self, kind: RecordKind, stream: u8, seq: u64, offset: u64, len: u32) -> [u8; 53] {
        let mut a = [0u8; 53];
        a[..15].copy_from_slice(b"hexz-overlay-v1");
        a[15..31].copy_from_slice(&self.overlay_id);
        a[31] = kind as u8;
        a[32] = stream;
        a[33..41].copy_from_slice(&seq.to_le_bytes());
        a[41..49].copy_from_slice(&offset.to_le_bytes());
        a[49..53].copy_from_slice(&len.to_le_bytes());
        a
    }

    /// Encrypts `buf` in place (appending the tag) under a fresh random nonce, returned.
    pub fn seal(
        &self,
        stream: u8,
        seq: u64,
        offset: u64,
        buf: &mut Vec<u8>,
    ) -> std::io::Result<[u8; 12]> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|e| std::io::Error::other(e.to_string()))?;
        let aad = self.aad(RecordKind::Data, stream, seq, offset, buf.len() as u32);
        self.aead
            .encrypt_in_place(&nonce.into(), &aad, buf)
            .map_err(|_| std::io::Error::other("encrypting an overlay record failed"))?;
        Ok(nonce)
    }

    /// Decrypts and authenticates `buf` (ciphertext and tag) in place; false when the data
    /// is not what was sealed for this position.
    pub fn open(
        &self,
        stream: u8,
        seq: u64,
        offset: u64,
        nonce: &[u8; 12],
        buf: &mut Vec<u8>,
    ) -> bool {
        let len = buf.len().saturating_sub(16) as u32;
        let aad = self.aad(RecordKind::Data, stream, seq, offset, len);
        self.aead
            .decrypt_in_place(&(*nonce).into(), &aad, buf)
            .is_ok()
    }
}
