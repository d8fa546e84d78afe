//! High-level operations on archives: pack, extract, verify, inspect, flatten, transfer
//! (push and pull).

pub mod atomic;
pub mod diff;
pub mod extract;
pub mod flatten;
pub mod inspect;
pub mod pack;
pub mod rewrite;
pub mod transfer;
pub mod tree;
pub mod verify;
pub mod writeback;

pub use diff::{diff, DiffReport, StreamDiff};
pub use flatten::flatten;
pub use inspect::{inspect, ArchiveInfo, StreamInfo};
pub use pack::{
    pack, pack_to, CdcParams, FileSink, PackInput, PackOptions, PackProgress, PackSink, PackSource,
    PackStats,
};
pub use verify::{verify, VerifyProgress, VerifyReport};
