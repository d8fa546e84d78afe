//! The fixed 512-byte archive header at offset 0 (docs/FORMAT.md, "Header").

use super::{le_u16, le_u32, le_u64, Codec};
use crate::error::{Error, Result};

/// Size of the header in bytes; data starts right after it.
pub const HEADER_SIZE: usize = 512;
/// The eight magic bytes every archive starts with. The CR/LF/EOF bytes catch text-mode mangling.
pub const MAGIC: [u8; 8] = *b"\x89HXZ\r\n\x1a\n";
/// Major format version written and read by this build. A different major is refused.
pub const FORMAT_MAJOR: u16 = 1;
/// Minor format version written by this build (1.1: the bound CRC, [`FLAG_BOUND_CRC`]).
/// Newer minors are read (they only add optional data or required flags a reader refuses).
pub const FORMAT_MINOR: u16 = 1;
/// Minor version of an archive written without the bound CRC (format 1.0).
pub const FORMAT_MINOR_1_0: u16 = 0;

/// Header flag: blocks, index pages and master index are encrypted (format reserves it; see FORMAT.md).
pub const FLAG_ENCRYPTED: u32 = 1 << 0;
/// Header flag: the archive references a parent archive for some blocks (thin snapshot).
pub const FLAG_HAS_PARENT: u32 = 1 << 1;
/// Header flag: blocks were cut by content-defined chunking (variable size).
pub const FLAG_CDC: u32 = 1 << 2;
/// Header flag (format 1.1, required): each block entry's CRC32 covers the block's 32-byte
/// content hash followed by its stored bytes (the *bound CRC*), so it also catches an entry
/// that points at another block's bytes. Readers older than 1.1 refuse such archives.
pub const FLAG_BOUND_CRC: u32 = 1 << 3;
/// Header flag (format 1.2): the master index has a section table (a file table, ...).
/// Required, so that readers of 1.0/1.1, which cannot parse that master index, refuse the
/// archive with "needs features this build does not know" instead of calling it corrupt.
pub const FLAG_SECTIONS: u32 = 1 << 4;
/// Minor version written by archives that use [`FLAG_SECTIONS`].
pub const MINOR_SECTIONS: u16 = 2;
/// Header flag: an Ed25519 signature is present in the header.
pub const FLAG_SIGNED: u32 = 1 << 16;
/// Flags in the low 16 bits are *required*: a reader that does not implement one must refuse.
pub const REQUIRED_FLAGS_MASK: u32 = 0x0000_ffff;
/// Required flags this build implements.
#[cfg(feature = "encryption")]
pub const KNOWN_REQUIRED_FLAGS: u32 =
    FLAG_HAS_PARENT | FLAG_CDC | FLAG_ENCRYPTED | FLAG_BOUND_CRC | FLAG_SECTIONS;
/// Required flags this build implements.
#[cfg(not(feature = "encryption"))]
pub const KNOWN_REQUIRED_FLAGS: u32 = FLAG_HAS_PARENT | FLAG_CDC | FLAG_BOUND_CRC | FLAG_SECTIONS;

/// Bit in [`Header::streams`] for the disk stream.
pub const STREAM_BIT_DISK: u8 = 1;
/// Bit in [`Header::streams`] for the memory stream.
pub const STREAM_BIT_MEMORY: u8 = 2;

/// Key-derivation and key-wrapping parameters kept in the header of an encrypted archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyWrap {
    /// KDF identifier: 0 none, 1 PBKDF2-HMAC-SHA256, 2 Argon2id.
    pub kdf: u8,
    /// PBKDF2 iterations, or Argon2 memory cost in KiB.
    pub param1: u32,
    /// Argon2 time cost (iterations); 0 for PBKDF2.
    pub param2: u32,
    /// Argon2 parallelism; 0 for PBKDF2.
    pub param3: u32,
    /// Random KDF salt.
    pub salt: [u8; 32],
    /// AES-GCM nonce used to wrap the data key.
    pub wrap_nonce: [u8; 12],
    /// The archive data key, encrypted under the password-derived key (32 bytes + 16-byte tag).
    pub wrapped_key: [u8; 48],
}

impl Default for KeyWrap {
    fn default() -> Self {
        KeyWrap {
            kdf: 0,
            param1: 0,
            param2: 0,
            param3: 0,
            salt: [0; 32],
            wrap_nonce: [0; 12],
            wrapped_key: [0; 48],
        }
    }
}

/// Identity of the parent archive a thin snapshot refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParentRef {
    /// The parent's unique archive id.
    pub archive_id: [u8; 16],
    /// BLAKE3 digest of the parent's master index (commits to every block hash of the parent).
    pub index_digest: [u8; 32],
}

/// The decoded archive header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Major format version.
    pub major: u16,
    /// Minor format version.
    pub minor: u16,
    /// Feature flags (`FLAG_*`).
    pub flags: u32,
    /// Codec the packer used by default (individual blocks may be stored raw).
    pub codec: Codec,
    /// Compression level the packer used (zstd 1-22; 0 for LZ4 and none).
    pub level: i8,
    /// Fixed block size, or the CDC average size when [`FLAG_CDC`] is set.
    pub block_size: u32,
    /// CDC minimum chunk size (0 for fixed-size blocks).
    pub cdc_min: u32,
    /// CDC maximum chunk size (0 for fixed-size blocks).
    pub cdc_max: u32,
    /// Logical size in bytes of the disk stream (0 when absent).
    pub disk_size: u64,
    /// Logical size in bytes of the memory stream (0 when absent).
    pub memory_size: u64,
    /// Which streams are present (`STREAM_BIT_*`).
    pub streams: u8,
    /// Absolute offset of the master index.
    pub master_offset: u64,
    /// Length in bytes of the master index.
    pub master_len: u32,
    /// Random, unique id of this archive.
    pub archive_id: [u8; 16],
    /// Creation time, seconds since the Unix epoch.
    pub created_unix: u64,
    /// Parent reference (meaningful only with [`FLAG_HAS_PARENT`]).
    pub parent: ParentRef,
    /// Key-wrap parameters (meaningful only with [`FLAG_ENCRYPTED`]).
    pub key_wrap: KeyWrap,
    /// Ed25519 signature (meaningful only with [`FLAG_SIGNED`]).
    pub signature: [u8; 64],
    /// BLAKE3 fingerprint of the signing public key (meaningful only with [`FLAG_SIGNED`]).
    pub signer: [u8; 32],
}

impl Header {
    /// Whether the archive is encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.flags & FLAG_ENCRYPTED != 0
    }

    /// Whether the block entries' CRC32s are bound to the content hash ([`FLAG_BOUND_CRC`]).
    pub fn has_bound_crc(&self) -> bool {
        self.flags & FLAG_BOUND_CRC != 0
    }

    /// Whether the archive has the given stream.
    pub fn has_stream_bit(&self, bit: u8) -> bool {
        self.streams & bit != 0
    }

    /// Serialises the header to its 512-byte on-disk form, computing the header CRC.
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&self.major.to_le_bytes());
        b[10..12].copy_from_slice(&self.minor.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        b[16] = self.codec as u8;
        b[17] = self.level as u8;
        b[20..24].copy_from_slice(&self.block_size.to_le_bytes());
        b[24..28].copy_from_slice(&self.cdc_min.to_le_bytes());
        b[28..32].copy_from_slice(&self.cdc_max.to_le_bytes());
        b[32..40].copy_from_slice(&self.disk_size.to_le_bytes());
        b[40..48].copy_from_slice(&self.memory_size.to_le_bytes());
        b[48] = self.streams;
        b[56..64].copy_from_slice(&self.master_offset.to_le_bytes());
        b[64..68].copy_from_slice(&self.master_len.to_le_bytes());
        b[72..88].copy_from_slice(&self.archive_id);
        b[88..96].copy_from_slice(&self.created_unix.to_le_bytes());
        b[96..112].copy_from_slice(&self.parent.archive_id);
        b[112..144].copy_from_slice(&self.parent.index_digest);
        let k = &self.key_wrap;
        b[144] = k.kdf;
        b[148..152].copy_from_slice(&k.param1.to_le_bytes());
        b[152..156].copy_from_slice(&k.param2.to_le_bytes());
        b[156..160].copy_from_slice(&k.param3.to_le_bytes());
        b[160..192].copy_from_slice(&k.salt);
        b[192..204].copy_from_slice(&k.wrap_nonce);
        b[204..252].copy_from_slice(&k.wrapped_key);
        b[256..320].copy_from_slice(&self.signature);
        b[320..352].copy_from_slice(&self.signer);
        let crc = crc32fast::hash(&b[..508]);
        b[508..512].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses and validates a header. `file_len` is the archive size, used to bounds-check
    /// the master index location before anything is allocated for it.
    pub fn decode(b: &[u8], file_len: u64) -> Result<Header> {
        if b.is_empty() {
            return Err(Error::NotAnArchive("the file is empty (no header)".into()));
        }
        let n = b.len().min(MAGIC.len());
        if b[..n] != MAGIC[..n] {
            return Err(Error::NotAnArchive(format!(
                "bad magic bytes {:02x?} at offset 0",
                &b[..n]
            )));
        }
        if b.len() < HEADER_SIZE {
            return Err(Error::corrupt(
                "header",
                format!(
                    "file is {} bytes, shorter than the {HEADER_SIZE}-byte header (truncated?)",
                    b.len()
                ),
            ));
        }
        if b[0..8] != MAGIC {
            return Err(Error::NotAnArchive(format!(
                "bad magic bytes {:02x?} at offset 0",
                &b[0..8]
            )));
        }
        let major = le_u16(b, 8);
        let minor = le_u16(b, 10);
        if major != FORMAT_MAJOR {
            return Err(Error::UnsupportedVersion {
                major,
                minor,
                supported: FORMAT_MAJOR,
            });
        }
        let stored_crc = le_u32(b, 508);
        let crc = crc32fast::hash(&b[..508]);
        if stored_crc != crc {
            return Err(Error::corrupt(
                "header",
                format!("header CRC32 mismatch (stored {stored_crc:08x}, computed {crc:08x})"),
            ));
        }
        let flags = le_u32(b, 12);
        check_required_flags(flags, KNOWN_REQUIRED_FLAGS)?;
        let codec = Codec::from_u8(b[16]).ok_or_else(|| {
            Error::corrupt("header", format!("unknown codec id {} at offset 16", b[16]))
        })?;
        let level = b[17] as i8;
        let block_size = le_u32(b, 20);
        let cdc_min = le_u32(b, 24);
        let cdc_max = le_u32(b, 28);
        if block_size == 0 || block_size > super::MAX_BLOCK_SIZE {
            return Err(Error::corrupt(
                "header",
                format!("block size {block_size} at offset 20 is out of range"),
            ));
        }
        let streams = b[48];
        if streams & !(STREAM_BIT_DISK | STREAM_BIT_MEMORY) != 0 {
            return Err(Error::corrupt(
                "header",
                format!("unknown stream bits {streams:#04x} at offset 48"),
            ));
        }
        let master_offset = le_u64(b, 56);
        let master_len = le_u32(b, 64);
        let end = master_offset.checked_add(master_len as u64);
        if master_offset < HEADER_SIZE as u64 || end.is_none_or(|e| e > file_len) {
            return Err(Error::corrupt(
                "header",
                format!(
                    "master index at offset {master_offset} length {master_len} lies outside the \
                     {file_len}-byte file (truncated?)"
                ),
            ));
        }
        let mut h = Header {
            major,
            minor,
            flags,
            codec,
            level,
            block_size,
            cdc_min,
            cdc_max,
            disk_size: le_u64(b, 32),
            memory_size: le_u64(b, 40),
            streams,
            master_offset,
            master_len,
            archive_id: b[72..88].try_into().expect("16 bytes"),
            created_unix: le_u64(b, 88),
            parent: ParentRef {
                archive_id: b[96..112].try_into().expect("16 bytes"),
                index_digest: b[112..144].try_into().expect("32 bytes"),
            },
            key_wrap: KeyWrap::default(),
            signature: b[256..320].try_into().expect("64 bytes"),
            signer: b[320..352].try_into().expect("32 bytes"),
        };
        h.key_wrap = KeyWrap {
            kdf: b[144],
            param1: le_u32(b, 148),
            param2: le_u32(b, 152),
            param3: le_u32(b, 156),
            salt: b[160..192].try_into().expect("32 bytes"),
            wrap_nonce: b[192..204].try_into().expect("12 bytes"),
            wrapped_key: b[204..252].try_into().expect("48 bytes"),
        };
        Ok(h)
    }
}

/// Refuses `flags` when it sets a required bit (0-15) outside `known`, naming the bits.
fn check_required_flags(flags: u32, known: u32) -> Result<()> {
    let unknown = flags & REQUIRED_FLAGS_MASK & !known;
    if unknown & FLAG_ENCRYPTED != 0 {
        return Err(Error::Unsupported(
            "the archive is encrypted, and this build of hexz cannot decrypt archives".into(),
        ));
    }
    if unknown != 0 {
        return Err(Error::Unsupported(format!(
            "the archive needs features this build does not know (required flags \
             {unknown:#06x}); it was written by a newer hexz"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            major: FORMAT_MAJOR,
            minor: FORMAT_MINOR,
            flags: 0,
            codec: Codec::Lz4,
            level: 0,
            block_size: 65536,
            cdc_min: 0,
            cdc_max: 0,
            disk_size: 123,
            memory_size: 0,
            streams: STREAM_BIT_DISK,
            master_offset: 1000,
            master_len: 100,
            archive_id: [7; 16],
            created_unix: 42,
            parent: ParentRef::default(),
            key_wrap: KeyWrap::default(),
            signature: [0; 64],
            signer: [0; 32],
        }
    }

    #[test]
    fn round_trip() {
        let h = sample();
        let b = h.encode();
        assert_eq!(Header::decode(&b, 2000).unwrap(), h);
    }

    #[test]
    fn newer_minor_is_accepted_unknown_major_refused() {
        let mut h = sample();
        h.minor = 9;
        assert_eq!(Header::decode(&h.encode(), 2000).unwrap().minor, 9);
        h.major = 2;
        let err = Header::decode(&h.encode(), 2000).unwrap_err().to_string();
        assert!(
            err.contains("unsupported archive format version 2.9"),
            "{err}"
        );
    }

    #[test]
    fn bound_crc_is_known_and_unknown_required_flags_are_refused() {
        let mut h = sample();
        h.flags = FLAG_BOUND_CRC;
        assert!(Header::decode(&h.encode(), 2000).unwrap().has_bound_crc());
        // A required bit this build does not know is refused with an error naming it.
        h.flags = FLAG_BOUND_CRC | 1 << 5;
        let err = Header::decode(&h.encode(), 2000).unwrap_err().to_string();
        assert!(err.contains("required flags 0x0020"), "{err}");
        // A 1.0 reader (which knows bits 0-2 only) refuses a 1.1 archive the same way.
        let known_1_0 = FLAG_ENCRYPTED | FLAG_HAS_PARENT | FLAG_CDC;
        let err = check_required_flags(FLAG_BOUND_CRC, known_1_0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("required flags 0x0008"), "{err}");
        // Unknown optional bits are ignored.
        h.flags = FLAG_BOUND_CRC | 1 << 20;
        assert!(Header::decode(&h.encode(), 2000).is_ok());
    }

    #[test]
    fn master_outside_file_is_refused() {
        let b = sample().encode();
        let err = Header::decode(&b, 1050).unwrap_err().to_string();
        assert!(err.contains("master index at offset 1000"), "{err}");
    }
}
