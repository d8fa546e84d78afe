//! On-disk structures of a `.hxz` archive: header, block entries, index pages, master index.
//!
//! Every structure has an explicit little-endian layout documented byte for byte in
//! `docs/FORMAT.md`; the code here is the executable form of that spec. Every length or count
//! read from a file is bounds-checked before it is used to allocate.

pub mod header;
pub mod index;
pub mod section;
pub mod stream;
pub mod tree;

pub use header::{Header, HEADER_SIZE};
pub use index::{BlockEntry, IndexPage, MasterIndex, PageRef, StreamRecord};
pub use stream::SnapshotStream;

/// Largest logical block size any archive may use (16 MiB). Bounds every block allocation.
pub const MAX_BLOCK_SIZE: u32 = 16 * 1024 * 1024;
/// Smallest fixed block size the packer accepts (4 KiB).
pub const MIN_BLOCK_SIZE: u32 = 4096;
/// Extra bytes a stored block may take beyond its logical size (codec framing, AEAD tag).
pub const MAX_STORED_OVERHEAD: u32 = 64 * 1024;

/// Block codec identifiers as stored in the header and in every block entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Codec {
    /// Stored as is (incompressible data, or `--compression none`).
    None = 0,
    /// LZ4 block format (no frame).
    Lz4 = 1,
    /// Zstandard frame.
    Zstd = 2,
}

impl Codec {
    /// Decodes a codec id; `None` for ids this build does not know.
    pub fn from_u8(v: u8) -> Option<Codec> {
        match v {
            0 => Some(Codec::None),
            1 => Some(Codec::Lz4),
            2 => Some(Codec::Zstd),
            _ => None,
        }
    }

    /// Lower-case name as used on the command line and in `info`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Codec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "raw" => Ok(Codec::None),
            "lz4" => Ok(Codec::Lz4),
            "zstd" | "zstandard" => Ok(Codec::Zstd),
            other => Err(format!(
                "unknown compression '{other}' (expected lz4, zstd or none)"
            )),
        }
    }
}

// Little-endian field readers. Callers guarantee `off + N <= b.len()` (structures are
// length-checked as a whole before their fields are read).
pub(crate) fn le_u16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}
pub(crate) fn le_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}
pub(crate) fn le_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}
