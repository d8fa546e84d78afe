//! Encryption of archives: password-derived key wrapping and AES-256-GCM for blocks, index
//! pages and the master index (feature `encryption`).
//!
//! Key hierarchy (docs/FORMAT.md, "Encryption"):
//! - a random 32-byte **data key** per archive (a thin child shares its parent's, so content
//!   hashes and therefore dedup work along the chain);
//! - the data key is stored **wrapped** with AES-256-GCM under a key derived from the password
//!   (PBKDF2-HMAC-SHA256 or Argon2id, random salt), so changing the password rewrites only the
//!   header;
//! - per-archive AES-256-GCM keys for blocks and for the index, and one keyed-BLAKE3 content
//!   hash key, all derived from the data key with BLAKE3's key derivation.
//!
//! Nonces are `domain || stored offset || 0 0 0`: each stored object (block, index page,
//! master index) is written exactly once at a distinct offset under a per-archive key, so a
//! nonce never repeats under one key.

use crate::error::{Error, Result};
use zeroize::Zeroizing;

/// A password, wiped from memory when dropped; `Debug` never shows it.
#[derive(Clone)]
pub struct Password(Zeroizing<Vec<u8>>);

impl Password {
    /// Wraps password bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Password(Zeroizing::new(bytes.into()))
    }

    /// The password bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Key-derivation function for turning a password into a key-encryption key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kdf {
    /// PBKDF2-HMAC-SHA256 with the given iteration count (at least 600,000).
    Pbkdf2 {
        /// Iterations.
        iterations: u32,
    },
    /// Argon2id (memory-hard): memory in KiB, iterations, lanes.
    Argon2id {
        /// Memory cost in KiB.
        m_kib: u32,
        /// Time cost (passes).
        t: u32,
        /// Parallelism (lanes).
        p: u32,
    },
}

/// Default PBKDF2 iteration count (OWASP 2023 recommendation for PBKDF2-HMAC-SHA256).
pub const DEFAULT_PBKDF2_ITERATIONS: u32 = 600_000;
/// Most PBKDF2 iterations a reader accepts from a header or key file (about 17 times the
/// default: a few seconds), so a hostile header cannot make opening hang.
pub const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;
/// Most Argon2id memory (KiB) a reader accepts: 1 GiB, so a hostile header cannot make
/// opening allocate without bound.
pub const MAX_ARGON2_KIB: u32 = 1024 * 1024;
/// Most Argon2id passes a reader accepts.
pub const MAX_ARGON2_PASSES: u32 = 16;
/// Most Argon2id lanes a reader accepts.
pub const MAX_ARGON2_LANES: u32 = 16;
/// Most Argon2id work (memory in KiB × passes) a reader accepts: 4 GiB-passes, e.g. 1 GiB
/// with 4 passes or 256 MiB with 16.
pub const MAX_ARGON2_WORK_KIB: u64 = 4 * 1024 * 1024;
/// Smallest PBKDF2 iteration count accepted when writing.
pub const MIN_PBKDF2_ITERATIONS: u32 = 600_000;

impl Default for Kdf {
    fn default() -> Self {
        Kdf::Pbkdf2 {
            iterations: DEFAULT_PBKDF2_ITERATIONS,
        }
    }
}

impl Kdf {
    /// Argon2id with 64 MiB, 3 passes, 1 lane (RFC 9106's second recommended setting).
    pub fn argon2id_default() -> Self {
        Kdf::Argon2id {
            m_kib: 64 * 1024,
            t: 3,
            p: 1,
        }
    }

    /// Header encoding: (kdf id, param1, param2, param3).
    pub fn to_params(self) -> (u8, u32, u32, u32) {
        match self {
            Kdf::Pbkdf2 { iterations } => (1, iterations, 0, 0),
            Kdf::Argon2id { m_kib, t, p } => (2, m_kib, t, p),
        }
    }

    /// Decodes header parameters, refusing values a hostile header could use to make opening
    /// hang or exhaust memory: at most [`MAX_PBKDF2_ITERATIONS`] PBKDF2 iterations; Argon2id
    /// at most [`MAX_ARGON2_KIB`] of memory, [`MAX_ARGON2_PASSES`] passes,
    /// [`MAX_ARGON2_LANES`] lanes and [`MAX_ARGON2_WORK_KIB`] memory × passes.
    pub fn from_params(id: u8, p1: u32, p2: u32, p3: u32) -> Result<Self> {
        let bad = |what: String| Error::corrupt("header key-derivation parameters", what);
        match id {
            1 if (1..=MAX_PBKDF2_ITERATIONS).contains(&p1) => Ok(Kdf::Pbkdf2 { iterations: p1 }),
            1 => Err(bad(format!(
                "PBKDF2 iteration count {p1} out of range (1..={MAX_PBKDF2_ITERATIONS})"
            ))),
            2 if (1..=MAX_ARGON2_LANES).contains(&p3)
                && (8 * p3..=MAX_ARGON2_KIB).contains(&p1)
                && (1..=MAX_ARGON2_PASSES).contains(&p2)
                && p1 as u64 * p2 as u64 <= MAX_ARGON2_WORK_KIB =>
            {
                Ok(Kdf::Argon2id {
                    m_kib: p1,
                    t: p2,
                    p: p3,
                })
            }
            2 => Err(bad(format!(
                "Argon2id parameters m={p1} KiB t={p2} p={p3} out of range (memory 8 KiB per \
                 lane..={MAX_ARGON2_KIB} KiB, passes 1..={MAX_ARGON2_PASSES}, lanes \
                 1..={MAX_ARGON2_LANES}, memory x passes <= {MAX_ARGON2_WORK_KIB} KiB)"
            ))),
            other => Err(bad(format!("unknown key-derivation function id {other}"))),
        }
    }

    /// Human name.
    pub fn name(self) -> String {
        match self {
            Kdf::Pbkdf2 { iterations } => format!("PBKDF2-HMAC-SHA256, {iterations} iterations"),
            Kdf::Argon2id { m_kib, t, p } => {
                format!("Argon2id, {} MiB, t={t}, p={p}", m_kib / 1024)
            }
        }
    }
}

/// Bytes an AES-GCM seal adds (the tag).
pub const TAG_LEN: usize = 16;

#[cfg(feature = "encryption")]
pub use imp::*;

#[cfg(feature = "encryption")]
mod imp {
    use super::*;
    use crate::format::header::KeyWrap;
    use crate::format::Codec;

    /// Nonce domains: one byte in front of the offset keeps the three kinds of object apart.
    const DOMAIN_BLOCK: u8 = 1;
    const DOMAIN_PAGE: u8 = 2;
    const DOMAIN_MASTER: u8 = 3;
    const DOMAIN_SECTION: u8 = 4;
    use aes_gcm::aead::{AeadInOut, KeyInit};
    use aes_gcm::Aes256Gcm;

    /// The archive data key.
    #[derive(Clone)]
    pub struct DataKey(pub(crate) Zeroizing<[u8; 32]>);

    impl DataKey {
        /// A fresh random data key.
        pub fn generate() -> Result<Self> {
            Ok(DataKey(Zeroizing::new(crate::algo::hash::random_bytes::<
                32,
            >()?)))
        }

        /// A key for `context` bound to one archive (BLAKE3 key derivation over the data key
        /// and `archive_id`), for data kept outside the archive, such as a writable overlay.
        pub fn derive(&self, context: &str, archive_id: &[u8; 16]) -> Zeroizing<[u8; 32]> {
            let mut material = Zeroizing::new([0u8; 48]);
            material[..32].copy_from_slice(&*self.0);
            material[32..].copy_from_slice(archive_id);
            Zeroizing::new(blake3::derive_key(context, &*material))
        }
    }

    fn kek(password: &Password, kdf: Kdf, salt: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>> {
        let mut out = Zeroizing::new([0u8; 32]);
        match kdf {
            Kdf::Pbkdf2 { iterations } => pbkdf2::pbkdf2_hmac::<sha2::Sha256>(
                password.as_bytes(),
                salt,
                iterations,
                &mut *out,
            ),
            Kdf::Argon2id { m_kib, t, p } => {
                let params = argon2::Params::new(m_kib, t, p, Some(32))
                    .map_err(|e| Error::InvalidArgument(format!("Argon2id parameters: {e}")))?;
                argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                    .hash_password_into(password.as_bytes(), salt, &mut *out)
                    .map_err(|e| Error::InvalidArgument(format!("Argon2id: {e}")))?;
            }
        }
        Ok(out)
    }

    fn wrap_aad(archive_id: &[u8; 16], kw: &KeyWrap) -> Vec<u8> {
        let mut aad = b"hexz-keywrap-v1".to_vec();
        aad.extend_from_slice(archive_id);
        aad.push(kw.kdf);
        aad.extend_from_slice(&kw.param1.to_le_bytes());
        aad.extend_from_slice(&kw.param2.to_le_bytes());
        aad.extend_from_slice(&kw.param3.to_le_bytes());
        aad.extend_from_slice(&kw.salt);
        aad
    }

    fn nonce(domain: u8, offset: u64) -> aes_gcm::Nonce<aes_gcm::aead::consts::U12> {
        let mut n = [0u8; 12];
        n[0] = domain;
        n[1..9].copy_from_slice(&offset.to_le_bytes());
        n.into()
    }

    /// Wraps `key` under a key derived from `password` with `kdf` and a fresh salt and nonce.
    pub fn wrap_key(
        key: &DataKey,
        password: &Password,
        kdf: Kdf,
        archive_id: &[u8; 16],
    ) -> Result<KeyWrap> {
        if let Kdf::Pbkdf2 { iterations } = kdf {
            if iterations < MIN_PBKDF2_ITERATIONS {
                return Err(Error::InvalidArgument(format!(
                    "PBKDF2 needs at least {MIN_PBKDF2_ITERATIONS} iterations (got {iterations})"
                )));
            }
        }
        let (id, p1, p2, p3) = kdf.to_params();
        // Never write a header that readers would refuse.
        Kdf::from_params(id, p1, p2, p3)
            .map_err(|e| Error::InvalidArgument(format!("key derivation: {e}")))?;
        let mut kw = KeyWrap {
            kdf: id,
            param1: p1,
            param2: p2,
            param3: p3,
            salt: crate::algo::hash::random_bytes::<32>()?,
            wrap_nonce: crate::algo::hash::random_bytes::<12>()?,
            wrapped_key: [0; 48],
        };
        let kek = kek(password, kdf, &kw.salt)?;
        let cipher = Aes256Gcm::new_from_slice(&*kek)
            .map_err(|_| Error::InvalidArgument("key length".into()))?;
        let mut buf = key.0.to_vec();
        cipher
            .encrypt_in_place(&kw.wrap_nonce.into(), &wrap_aad(archive_id, &kw), &mut buf)
            .map_err(|_| Error::InvalidArgument("wrapping the data key failed".into()))?;
        kw.wrapped_key.copy_from_slice(&buf);
        Ok(kw)
    }

    /// Recovers the data key from the header with `password`. A wrong password (or damaged
    /// key material) is [`Error::WrongPassword`].
    pub fn unwrap_key(kw: &KeyWrap, password: &Password, archive_id: &[u8; 16]) -> Result<DataKey> {
        let kdf = Kdf::from_params(kw.kdf, kw.param1, kw.param2, kw.param3)?;
        let kek = kek(password, kdf, &kw.salt)?;
        let cipher = Aes256Gcm::new_from_slice(&*kek)
            .map_err(|_| Error::InvalidArgument("key length".into()))?;
        let mut buf = Zeroizing::new(kw.wrapped_key.to_vec());
        cipher
            .decrypt_in_place(&kw.wrap_nonce.into(), &wrap_aad(archive_id, kw), &mut *buf)
            .map_err(|_| Error::WrongPassword)?;
        let mut k = Zeroizing::new([0u8; 32]);
        k.copy_from_slice(&buf);
        Ok(DataKey(k))
    }

    /// Everything needed to seal and open the stored objects of one archive.
    pub struct ArchiveCipher {
        blocks: Aes256Gcm,
        index: Aes256Gcm,
        hash_key: Zeroizing<[u8; 32]>,
        archive_id: [u8; 16],
    }

    impl ArchiveCipher {
        /// Derives the per-archive keys from the data key.
        pub fn new(key: &DataKey, archive_id: &[u8; 16]) -> Self {
            let mut material = Zeroizing::new([0u8; 48]);
            material[..32].copy_from_slice(&*key.0);
            material[32..].copy_from_slice(archive_id);
            let kb = Zeroizing::new(blake3::derive_key(
                "hexz 2026 v1 block encryption key",
                &*material,
            ));
            let ki = Zeroizing::new(blake3::derive_key(
                "hexz 2026 v1 index encryption key",
                &*material,
            ));
            let kh = Zeroizing::new(blake3::derive_key("hexz 2026 v1 content hash key", &*key.0));
            ArchiveCipher {
                blocks: Aes256Gcm::new_from_slice(&*kb).expect("32-byte key"),
                index: Aes256Gcm::new_from_slice(&*ki).expect("32-byte key"),
                hash_key: kh,
                archive_id: *archive_id,
            }
        }

        /// A public fingerprint of the content hash key (equal for archives of one chain).
        pub fn hash_domain(&self) -> [u8; 32] {
            blake3::derive_key("hexz 2026 v1 hash domain fingerprint", &*self.hash_key)
        }

        /// Keyed BLAKE3 of block content: equal content gives equal hashes for holders of the
        /// key, and reveals nothing about the plaintext to anyone else.
        pub fn content_hash(&self, data: &[u8]) -> [u8; 32] {
            *blake3::keyed_hash(&self.hash_key, data).as_bytes()
        }

        fn block_aad(&self, offset: u64, logical_len: u32, codec: Codec) -> [u8; 42] {
            let mut a = [0u8; 42];
            a[..13].copy_from_slice(b"hexz-block-v1");
            a[13..29].copy_from_slice(&self.archive_id);
            a[29..37].copy_from_slice(&offset.to_le_bytes());
            a[37..41].copy_from_slice(&logical_len.to_le_bytes());
            a[41] = codec as u8;
            a
        }

        /// Encrypts a stored block in place (appending the tag); `offset` is where it will be
        /// written in the archive.
        pub fn seal_block(
            &self,
            offset: u64,
            logical_len: u32,
            codec: Codec,
            buf: &mut Vec<u8>,
        ) -> Result<()> {
            self.blocks
                .encrypt_in_place(
                    &nonce(DOMAIN_BLOCK, offset),
                    &self.block_aad(offset, logical_len, codec),
                    buf,
                )
                .map_err(|_| Error::InvalidArgument("block encryption failed".into()))
        }

        /// Decrypts and authenticates the stored block `sealed` (ciphertext and tag) into
        /// `out`, which is resized to the plaintext length; no intermediate copy.
        pub fn open_block_into(
            &self,
            offset: u64,
            logical_len: u32,
            codec: Codec,
            sealed: &[u8],
            out: &mut Vec<u8>,
        ) -> Result<()> {
            let fail = || {
                Error::Decrypt(
                    "authentication failed: the block was tampered with, moved, or comes from \
                     another archive"
                        .into(),
                )
            };
            let n = sealed.len().checked_sub(TAG_LEN).ok_or_else(fail)?;
            let tag =
                aes_gcm::aead::Tag::<Aes256Gcm>::try_from(&sealed[n..]).map_err(|_| fail())?;
            out.clear();
            out.resize(n, 0);
            let buf = aes_gcm::aead::inout::InOutBuf::new(&sealed[..n], &mut out[..])
                .map_err(|_| fail())?;
            self.blocks
                .decrypt_inout_detached(
                    &nonce(DOMAIN_BLOCK, offset),
                    &self.block_aad(offset, logical_len, codec),
                    buf,
                    &tag,
                )
                .map_err(|_| fail())
        }

        fn index_aad(&self, master: bool, stream: u8, offset: u64) -> Vec<u8> {
            let mut a = if master {
                b"hexz-master-v1".to_vec()
            } else {
                b"hexz-page-v1".to_vec()
            };
            a.extend_from_slice(&self.archive_id);
            a.push(stream);
            a.extend_from_slice(&offset.to_le_bytes());
            a
        }

        /// Encrypts an index page (`master == false`, with its stream id) or the master index.
        pub fn seal_index(
            &self,
            master: bool,
            stream: u8,
            offset: u64,
            buf: &mut Vec<u8>,
        ) -> Result<()> {
            let d = if master { DOMAIN_MASTER } else { DOMAIN_PAGE };
            self.index
                .encrypt_in_place(
                    &nonce(d, offset),
                    &self.index_aad(master, stream, offset),
                    buf,
                )
                .map_err(|_| Error::InvalidArgument("index encryption failed".into()))
        }

        /// Encrypts a section object (format 1.2: the file table header and its pages) stored
        /// at `offset`, under the index key with nonce domain 4.
        pub fn seal_section(&self, offset: u64, buf: &mut Vec<u8>) -> Result<()> {
            self.index
                .encrypt_in_place(
                    &nonce(DOMAIN_SECTION, offset),
                    &self.section_aad(offset),
                    buf,
                )
                .map_err(|_| Error::InvalidArgument("section encryption failed".into()))
        }

        /// Decrypts and authenticates a section object stored at `offset`.
        pub fn open_section(&self, offset: u64, buf: &mut Vec<u8>) -> Result<()> {
            self.index
                .decrypt_in_place(
                    &nonce(DOMAIN_SECTION, offset),
                    &self.section_aad(offset),
                    buf,
                )
                .map_err(|_| {
                    Error::InvalidArgument("authentication failed (tampered or wrong key)".into())
                })
        }

        fn section_aad(&self, offset: u64) -> Vec<u8> {
            let mut a = b"hexz-section-v1".to_vec();
            a.extend_from_slice(&self.archive_id);
            a.extend_from_slice(&offset.to_le_bytes());
            a
        }

        /// Decrypts and authenticates an index page or the master index.
        pub fn open_index(
            &self,
            master: bool,
            stream: u8,
            offset: u64,
            buf: &mut Vec<u8>,
        ) -> Result<()> {
            let d = if master { DOMAIN_MASTER } else { DOMAIN_PAGE };
            self.index
                .decrypt_in_place(
                    &nonce(d, offset),
                    &self.index_aad(master, stream, offset),
                    buf,
                )
                .map_err(|_| Error::Decrypt("authentication failed (tampered or wrong key)".into()))
        }
    }
}

#[cfg(not(feature = "encryption"))]
pub use stub::*;

/// Without the `encryption` feature these types exist but cannot be constructed, so callers
/// need no conditional code: an encrypted archive is refused when its header is read.
#[cfg(not(feature = "encryption"))]
mod stub {
    /// The archive data key (uninhabited without the `encryption` feature).
    #[derive(Clone)]
    pub enum DataKey {}
    impl DataKey {
        /// Derives a key for `context` (unreachable without the `encryption` feature).
        pub fn derive(&self, _: &str, _: &[u8; 16]) -> zeroize::Zeroizing<[u8; 32]> {
            match *self {}
        }
    }
    /// Per-archive cipher (uninhabited without the `encryption` feature).
    pub enum ArchiveCipher {}
    impl ArchiveCipher {
        /// Keyed content hash.
        pub fn content_hash(&self, _: &[u8]) -> [u8; 32] {
            match *self {}
        }
        /// Hash-key fingerprint.
        pub fn hash_domain(&self) -> [u8; 32] {
            match *self {}
        }
        /// Seals a block.
        pub fn seal_block(
            &self,
            _: u64,
            _: u32,
            _: crate::format::Codec,
            _: &mut Vec<u8>,
        ) -> crate::error::Result<()> {
            match *self {}
        }
        /// Opens a block into a buffer.
        pub fn open_block_into(
            &self,
            _: u64,
            _: u32,
            _: crate::format::Codec,
            _: &[u8],
            _: &mut Vec<u8>,
        ) -> crate::error::Result<()> {
            match *self {}
        }
        /// Seals index bytes.
        pub fn seal_index(
            &self,
            _: bool,
            _: u8,
            _: u64,
            _: &mut Vec<u8>,
        ) -> crate::error::Result<()> {
            match *self {}
        }
        /// Seals a section object.
        pub fn seal_section(&self, _: u64, _: &mut Vec<u8>) -> crate::error::Result<()> {
            match *self {}
        }
        /// Opens a section object.
        pub fn open_section(&self, _: u64, _: &mut Vec<u8>) -> crate::error::Result<()> {
            match *self {}
        }
        /// Opens index bytes.
        pub fn open_index(
            &self,
            _: bool,
            _: u8,
            _: u64,
            _: &mut Vec<u8>,
        ) -> crate::error::Result<()> {
            match *self {}
        }
    }
}

#[cfg(all(test, feature = "encryption"))]
mod tests {
    use super::*;
    use crate::format::Codec;

    fn fast_kdf() -> Kdf {
        Kdf::Pbkdf2 {
            iterations: MIN_PBKDF2_ITERATIONS,
        }
    }

    #[test]
    fn wrap_unwrap_and_wrong_password() {
        let id = [3u8; 16];
        let k = DataKey::generate().unwrap();
        let kw = wrap_key(&k, &Password::new("right"), fast_kdf(), &id).unwrap();
        let k2 = unwrap_key(&kw, &Password::new("right"), &id).unwrap();
        assert_eq!(*k.0, *k2.0);
        assert!(matches!(
            unwrap_key(&kw, &Password::new("wrong"), &id),
            Err(Error::WrongPassword)
        ));
        assert!(matches!(
            unwrap_key(&kw, &Password::new("right"), &[4u8; 16]),
            Err(Error::WrongPassword)
        ));
        let mut bad = kw.clone();
        bad.wrapped_key[5] ^= 1;
        assert!(matches!(
            unwrap_key(&bad, &Password::new("right"), &id),
            Err(Error::WrongPassword)
        ));
        assert!(wrap_key(
            &k,
            &Password::new("x"),
            Kdf::Pbkdf2 { iterations: 1000 },
            &id
        )
        .is_err());
    }

    #[test]
    fn argon2id_round_trip() {
        let id = [1u8; 16];
        let k = DataKey::generate().unwrap();
        let kdf = Kdf::Argon2id {
            m_kib: 1024,
            t: 1,
            p: 1,
        };
        let kw = wrap_key(&k, &Password::new("pw"), kdf, &id).unwrap();
        assert_eq!(kw.kdf, 2);
        assert_eq!(*unwrap_key(&kw, &Password::new("pw"), &id).unwrap().0, *k.0);
    }

    #[test]
    fn blocks_are_bound_to_their_position_and_archive() {
        let k = DataKey::generate().unwrap();
        let a = ArchiveCipher::new(&k, &[1; 16]);
        let b = ArchiveCipher::new(&k, &[2; 16]);
        let mut buf = b"some compressed block".to_vec();
        a.seal_block(4096, 100, Codec::Lz4, &mut buf).unwrap();
        assert_eq!(buf.len(), 21 + TAG_LEN);
        let sealed = buf.clone();
        assert!(
            a.open_block_into(8192, 100, Codec::Lz4, &sealed, &mut Vec::new())
                .is_err(),
            "moved"
        );
        assert!(
            b.open_block_into(4096, 100, Codec::Lz4, &sealed, &mut Vec::new())
                .is_err(),
            "other archive"
        );
        assert!(
            a.open_block_into(4096, 101, Codec::Lz4, &sealed, &mut Vec::new())
                .is_err(),
            "other length"
        );
        let mut out = Vec::new();
        a.open_block_into(4096, 100, Codec::Lz4, &sealed, &mut out)
            .unwrap();
        assert_eq!(out, b"some compressed block");
        assert!(
            a.open_block_into(4096, 100, Codec::Zstd, &sealed, &mut out)
                .is_err(),
            "other codec"
        );
        assert!(
            a.open_block_into(4096, 100, Codec::Lz4, &sealed[..10], &mut out)
                .is_err(),
            "short"
        );
        let mut flipped = sealed.clone();
        flipped[3] ^= 1;
        assert!(
            a.open_block_into(4096, 100, Codec::Lz4, &flipped, &mut out)
                .is_err(),
            "flipped"
        );
        assert_ne!(&sealed[..21], b"some compressed block");
        assert_eq!(
            a.content_hash(b"x"),
            b.content_hash(b"x"),
            "hash key is shared by the chain"
        );
        assert_ne!(a.content_hash(b"x"), crate::algo::hash::blake3(b"x"));
    }
}
