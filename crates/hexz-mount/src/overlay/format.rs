//! The overlay file's on-disk structures ("Overlay format v1.0" in docs/FORMAT.md): a 4 KiB
//! header naming the base archive, then an append-only log of 64-byte record headers each
//! followed by the chunk's stored bytes. Pure encode/decode, no I/O.

/// Magic of an overlay file: `\x89HXO\r\n\x1a\n`.
pub const MAGIC: [u8; 8] = [0x89, b'H', b'X', b'O', b'\r', b'\n', 0x1a, b'\n'];
/// Major version this build reads and writes.
pub const MAJOR: u16 = 1;
/// Minor version this build writes.
pub const MINOR: u16 = 0;
/// Size of the overlay header; the record log starts here.
pub const HEADER_SIZE: usize = 4096;
/// Size of a record header.
pub const RECORD_HEADER_SIZE: usize = 64;
/// Magic of a record header.
pub const RECORD_MAGIC: [u8; 4] = *b"HXOR";
/// Header flag: record data is encrypted (the base archive is encrypted).
pub const FLAG_ENCRYPTED: u32 = 1;
/// Default chunk size: the unit of copy-on-write.
pub const DEFAULT_CHUNK: u32 = 4096;
/// Longest base location the header holds.
pub const MAX_LOCATION: usize = HEADER_SIZE - 4 - LOCATION_OFFSET;
const LOCATION_OFFSET: usize = 152;
/// AES-GCM tag length added to each encrypted chunk.
pub const TAG_LEN: u32 = 16;

/// The overlay header: what the overlay sits on and how its records are cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayHeader {
    /// Major version.
    pub major: u16,
    /// Minor version.
    pub minor: u16,
    /// Flags ([`FLAG_ENCRYPTED`]).
    pub flags: u32,
    /// Copy-on-write unit in bytes (a power of two, 512..=1 MiB).
    pub chunk_size: u32,
    /// Random id of this overlay (binds record encryption to this file).
    pub overlay_id: [u8; 16],
    /// Archive id of the base archive.
    pub base_id: [u8; 16],
    /// Index digest of the base archive.
    pub base_digest: [u8; 32],
    /// Size of the disk stream (0 when absent).
    pub disk_size: u64,
    /// Size of the memory stream (0 when absent).
    pub memory_size: u64,
    /// Streams present: bit 0 disk, bit 1 memory.
    pub streams: u8,
    /// Key check: BLAKE3 keyed hash proving the record key (all zero when not encrypted).
    pub key_check: [u8; 32],
    /// Creation time, seconds since the Unix epoch.
    pub created_unix: u64,
    /// Where the base archive was opened from (path or URL), for `hexz commit`.
    pub base_location: String,
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

impl OverlayHeader {
    /// Encodes the header into its 4096 bytes (CRC32 of bytes 0..4092 at 4092).
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let loc = self.base_location.as_bytes();
        if loc.len() > MAX_LOCATION {
            return Err(format!(
                "base location is {} bytes long, at most {MAX_LOCATION} fit in the overlay header",
                loc.len()
            ));
        }
        let mut b = vec![0u8; HEADER_SIZE];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&self.major.to_le_bytes());
        b[10..12].copy_from_slice(&self.minor.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        b[16..20].copy_from_slice(&self.chunk_size.to_le_bytes());
        b[24..40].copy_from_slice(&self.overlay_id);
        b[40..56].copy_from_slice(&self.base_id);
        b[56..88].copy_from_slice(&self.base_digest);
        b[88..96].copy_from_slice(&self.disk_size.to_le_bytes());
        b[96..104].copy_from_slice(&self.memory_size.to_le_bytes());
        b[104] = self.streams;
        b[108..110].copy_from_slice(&(loc.len() as u16).to_le_bytes());
        b[112..144].copy_from_slice(&self.key_check);
        b[144..152].copy_from_slice(&self.created_unix.to_le_bytes());
        b[LOCATION_OFFSET..LOCATION_OFFSET + loc.len()].copy_from_slice(loc);
        let crc = crc32fast::hash(&b[..HEADER_SIZE - 4]);
        b[HEADER_SIZE - 4..].copy_from_slice(&crc.to_le_bytes());
        Ok(b)
    }

    /// Decodes and checks a header: magic, major version, CRC, chunk size, stream bits,
    /// location length. Each failure is its own message.
    pub fn decode(b: &[u8]) -> Result<OverlayHeader, String> {
        if b.len() < HEADER_SIZE {
            return Err(format!(
                "file is {} bytes, shorter than the {HEADER_SIZE}-byte overlay header",
                b.len()
            ));
        }
        if b[0..8] != MAGIC {
            return Err("not a hexz overlay (bad magic)".into());
        }
        let major = u16_at(b, 8);
        let minor = u16_at(b, 10);
        if major != MAJOR {
            return Err(format!(
                "unsupported overlay format version {major}.{minor} (this build reads {MAJOR}.x)"
            ));
        }
        let crc = u32_at(b, HEADER_SIZE - 4);
        if crc != crc32fast::hash(&b[..HEADER_SIZE - 4]) {
            return Err("header CRC32 mismatch (the header is damaged)".into());
        }
        let flags = u32_at(b, 12);
        if flags & !FLAG_ENCRYPTED & 0xffff != 0 {
            return Err(format!("unknown required header flags {flags:#x}"));
        }
        let chunk_size = u32_at(b, 16);
        if !chunk_size.is_power_of_two() || !(512..=1 << 20).contains(&chunk_size) {
            return Err(format!(
                "chunk size {chunk_size} is not a power of two in 512..=1 MiB"
            ));
        }
        let streams = b[104];
        if streams & !3 != 0 || streams == 0 {
            return Err(format!("stream bits {streams:#x} are invalid"));
        }
        let loc_len = u16_at(b, 108) as usize;
        if loc_len > MAX_LOCATION {
            return Err(format!("base location length {loc_len} is too long"));
        }
        let base_location = std::str::from_utf8(&b[LOCATION_OFFSET..LOCATION_OFFSET + loc_len])
            .map_err(|_| "base location is not UTF-8".to_string())?
            .to_string();
        let mut h = OverlayHeader {
            major,
            minor,
            flags,
            chunk_size,
            overlay_id: [0; 16],
            base_id: [0; 16],
            base_digest: [0; 32],
            disk_size: u64_at(b, 88),
            memory_size: u64_at(b, 96),
            streams,
            key_check: [0; 32],
            created_unix: u64_at(b, 144),
            base_location,
        };
        h.overlay_id.copy_from_slice(&b[24..40]);
        h.base_id.copy_from_slice(&b[40..56]);
        h.base_digest.copy_from_slice(&b[56..88]);
        h.key_check.copy_from_slice(&b[112..144]);
        Ok(h)
    }

    /// Whether record data is encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.flags & FLAG_ENCRYPTED != 0
    }
}

/// What a record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// New content of one chunk follows.
    Data = 1,
    /// The chunk now reads as zeros (trim, write-zeroes); no stored bytes.
    Zero = 2,
    /// Everything before this record was made durable (fdatasync) before it was written.
    Sync = 3,
}

/// One record header (64 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Kind of record.
    pub kind: RecordKind,
    /// Stream id (0 disk, 1 memory; 0 for Sync).
    pub stream: u8,
    /// Sequence number: 1 for the first record, +1 for each following one.
    pub seq: u64,
    /// Logical offset of the chunk in its stream (a multiple of the chunk size).
    pub offset: u64,
    /// Logical bytes the chunk covers (the chunk size, less at the end of a stream).
    pub length: u32,
    /// Bytes stored after the header (length, plus the tag when encrypted; 0 for Zero/Sync).
    pub stored_len: u32,
    /// AES-GCM nonce (random; zero when not encrypted).
    pub nonce: [u8; 12],
    /// CRC32 of the stored bytes.
    pub data_crc: u32,
}

impl RecordHeader {
    /// Encodes the 64-byte record header (CRC32 of bytes 0..60 at 60).
    pub fn encode(&self) -> [u8; RECORD_HEADER_SIZE] {
        let mut b = [0u8; RECORD_HEADER_SIZE];
        b[0..4].copy_from_slice(&RECORD_MAGIC);
        b[4] = self.kind as u8;
        b[5] = self.stream;
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..24].copy_from_slice(&self.offset.to_le_bytes());
        b[24..28].copy_from_slice(&self.length.to_le_bytes());
        b[28..32].copy_from_slice(&self.stored_len.to_le_bytes());
        b[32..44].copy_from_slice(&self.nonce);
        b[44..48].copy_from_slice(&self.data_crc.to_le_bytes());
        let crc = crc32fast::hash(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a record header. `Ok(None)` means "not a valid record" (bad magic or CRC:
    /// the torn end of the log); field values are checked by the caller against the header.
    pub fn decode(b: &[u8]) -> Result<Option<RecordHeader>, String> {
        if b.len() < RECORD_HEADER_SIZE || b[0..4] != RECORD_MAGIC {
            return Ok(None);
        }
        if u32_at(b, 60) != crc32fast::hash(&b[..60]) {
            return Ok(None);
        }
        let kind = match b[4] {
            1 => RecordKind::Data,
            2 => RecordKind::Zero,
            3 => RecordKind::Sync,
            k => return Err(format!("record kind {k} is unknown")),
        };
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&b[32..44]);
        Ok(Some(RecordHeader {
            kind,
            stream: b[5],
            seq: u64_at(b, 8),
            offset: u64_at(b, 16),
            length: u32_at(b, 24),
            stored_len: u32_at(b, 28),
            nonce,
            data_crc: u32_at(b, 44),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> OverlayHeader {
        OverlayHeader {
            major: MAJOR,
            minor: MINOR,
            flags: 0,
            chunk_size: DEFAULT_CHUNK,
            overlay_id: [1; 16],
            base_id: [2; 16],
            base_digest: [3; 32],
            disk_size: 1 << 30,
            memory_size: 0,
            streams: 1,
            key_check: [0; 32],
            created_unix: 1234,
            base_location: "/var/tmp/base.hxz".into(),
        }
    }

    #[test]
    fn header_roundtrip_and_checks() {
        let h = header();
        let b = h.encode().unwrap();
        assert_eq!(b.len(), HEADER_SIZE);
        assert_eq!(OverlayHeader::decode(&b).unwrap(), h);
        let mut bad = b.clone();
        bad[200] ^= 1;
        assert!(OverlayHeader::decode(&bad).unwrap_err().contains("CRC32"));
        let mut bad = b.clone();
        bad[0] = 0;
        assert!(OverlayHeader::decode(&bad).unwrap_err().contains("magic"));
        assert!(OverlayHeader::decode(&b[..100])
            .unwrap_err()
            .contains("shorter"));
        let mut v2 = h.clone();
        v2.major = 2;
        let b2 = v2.encode().unwrap();
        assert!(OverlayHeader::decode(&b2)
            .unwrap_err()
            .contains("version 2.0"));
        let mut long = h;
        long.base_location = "x".repeat(MAX_LOCATION + 1);
        assert!(long.encode().is_err());
    }

    #[test]
    fn record_roundtrip_and_torn() {
        let r = RecordHeader {
            kind: RecordKind::Data,
            stream: 1,
            seq: 7,
            offset: 8192,
            length: 4096,
            stored_len: 4112,
            nonce: [9; 12],
            data_crc: 0xdead_beef,
        };
        let b = r.encode();
        assert_eq!(RecordHeader::decode(&b).unwrap(), Some(r));
        let mut torn = b;
        torn[20] ^= 0x10;
        assert_eq!(RecordHeader::decode(&torn).unwrap(), None);
        assert_eq!(RecordHeader::decode(&[0u8; 64]).unwrap(), None);
        assert_eq!(RecordHeader::decode(&b[..10]).unwrap(), None);
    }
}
