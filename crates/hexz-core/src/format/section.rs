//! The section table of the master index (docs/FORMAT.md, "Sections"), format 1.2.
//!
//! Before 1.2 the master index had a fixed shape (two streams, a capped metadata area, an
//! exact length), so nothing could be added by a minor version. A section is a stored object
//! elsewhere in the archive that the master index points at with its type, location, length
//! and BLAKE3 digest: the index digest (and with it the signature) covers every section.
//! Readers skip sections of unknown types unless the record marks them *required*.

use super::{le_u16, le_u64};
use crate::error::{Error, Result};

/// Size of one encoded section record.
pub const SECTION_RECORD_SIZE: usize = 64;
/// Most section records a reader accepts in one master index.
pub const MAX_SECTIONS: u32 = 1024;
/// Section flag: a reader that does not know the section's type must refuse the archive.
pub const SECTION_FLAG_REQUIRED: u16 = 1;
/// Section type: the file table of a tree archive (see [`crate::format::tree`]).
pub const SECTION_FILE_TABLE: u16 = 1;
/// Section types this build understands.
pub const KNOWN_SECTIONS: &[u16] = &[SECTION_FILE_TABLE];

/// One entry of the section table: where a section's stored bytes are and how to check them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionRecord {
    /// Section type (`SECTION_*`).
    pub ty: u16,
    /// `SECTION_FLAG_*` bits.
    pub flags: u16,
    /// Absolute offset of the section's stored bytes.
    pub offset: u64,
    /// Stored length (plaintext length, plus the 16-byte tag when encrypted).
    pub len: u64,
    /// BLAKE3 of the section's plaintext bytes.
    pub hash: [u8; 32],
}

impl SectionRecord {
    /// Whether readers that do not know the type must refuse the archive.
    pub fn is_required(&self) -> bool {
        self.flags & SECTION_FLAG_REQUIRED != 0
    }

    /// Appends the 64-byte encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ty.to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&[0u8; 4]);
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(&[0u8; 8]);
        out.extend_from_slice(&self.hash);
    }

    /// Decodes record `i` from exactly [`SECTION_RECORD_SIZE`] bytes and checks that it lies
    /// inside an archive of `archive_len` bytes.
    pub fn decode(b: &[u8], i: usize, archive_len: u64) -> Result<SectionRecord> {
        let name = || format!("master index, section record {i}");
        let r = SectionRecord {
            ty: le_u16(b, 0),
            flags: le_u16(b, 2),
            offset: le_u64(b, 8),
            len: le_u64(b, 16),
            hash: b[32..64].try_into().expect("32 bytes"),
        };
        if r.flags & !SECTION_FLAG_REQUIRED != 0 {
            return Err(Error::corrupt(
                name(),
                format!("unknown flags {:#06x}", r.flags),
            ));
        }
        if r.offset < super::HEADER_SIZE as u64
            || r.offset.checked_add(r.len).is_none_or(|e| e > archive_len)
        {
            return Err(Error::corrupt(
                name(),
                format!(
                    "type {} at offset {} length {} lies outside the {archive_len}-byte archive",
                    r.ty, r.offset, r.len
                ),
            ));
        }
        if r.is_required() && !KNOWN_SECTIONS.contains(&r.ty) {
            return Err(Error::Unsupported(format!(
                "the archive has a required section of type {} that this build does not know",
                r.ty
            )));
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ty: u16, flags: u16) -> SectionRecord {
        SectionRecord {
            ty,
            flags,
            offset: 600,
            len: 128,
            hash: [9; 32],
        }
    }

    #[test]
    fn round_trip_and_bounds() {
        let r = sample(SECTION_FILE_TABLE, SECTION_FLAG_REQUIRED);
        let mut b = Vec::new();
        r.encode_into(&mut b);
        assert_eq!(b.len(), SECTION_RECORD_SIZE);
        assert_eq!(SectionRecord::decode(&b, 0, 1000).unwrap(), r);
        let err = SectionRecord::decode(&b, 3, 700).unwrap_err().to_string();
        assert!(
            err.contains("section record 3") && err.contains("outside"),
            "{err}"
        );
    }

    #[test]
    fn unknown_required_refused_unknown_optional_kept() {
        let mut b = Vec::new();
        sample(77, SECTION_FLAG_REQUIRED).encode_into(&mut b);
        let err = SectionRecord::decode(&b, 0, 1000).unwrap_err().to_string();
        assert!(err.contains("required section of type 77"), "{err}");
        let mut b = Vec::new();
        sample(77, 0).encode_into(&mut b);
        assert_eq!(SectionRecord::decode(&b, 0, 1000).unwrap().ty, 77);
    }
}
