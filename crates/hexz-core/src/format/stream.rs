//! [`SnapshotStream`]: which of an archive's byte streams a block, page or read belongs to.
//! It is part of the format (stream ids are stored in the master index and index pages).

use std::fmt;

/// One of the two independent address spaces an archive can hold (as in a VM snapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SnapshotStream {
    /// The disk image stream.
    Disk,
    /// The memory (RAM) image stream.
    Memory,
}

impl SnapshotStream {
    /// Both streams, in on-disk order.
    pub const ALL: [SnapshotStream; 2] = [SnapshotStream::Disk, SnapshotStream::Memory];

    /// The stream id used in the format (0 disk, 1 memory).
    pub fn id(self) -> u8 {
        match self {
            SnapshotStream::Disk => 0,
            SnapshotStream::Memory => 1,
        }
    }

    /// Decodes a format stream id.
    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            0 => Some(SnapshotStream::Disk),
            1 => Some(SnapshotStream::Memory),
            _ => None,
        }
    }

    /// Lower-case name ("disk" / "memory").
    pub fn name(self) -> &'static str {
        match self {
            SnapshotStream::Disk => "disk",
            SnapshotStream::Memory => "memory",
        }
    }

    /// The header bit marking this stream present.
    pub fn header_bit(self) -> u8 {
        match self {
            SnapshotStream::Disk => crate::format::header::STREAM_BIT_DISK,
            SnapshotStream::Memory => crate::format::header::STREAM_BIT_MEMORY,
        }
    }
}

impl fmt::Display for SnapshotStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for SnapshotStream {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "disk" => Ok(SnapshotStream::Disk),
            "memory" | "mem" => Ok(SnapshotStream::Memory),
            o => Err(format!("unknown stream '{o}' (expected disk or memory)")),
        }
    }
}
