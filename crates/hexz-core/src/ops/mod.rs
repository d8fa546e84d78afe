//! High-level operations on archives: pack, verify, inspect, transfer (push and pull).

pub mod atomic;
pub mod diff;
pub mod flatten;
pub mod inspect;
pub mod pack;
pub mod rewrite;
pub mod transfer;
pub mod verify;

pub use diff::{diff, DiffReport, StreamDiff};
pub use flatten::flatten;
pub use inspect::{inspect, ArchiveInfo, StreamInfo};
pub use pack::{pack, CdcParams, PackInput, PackOptions, PackProgress, PackSource, PackStats};
pub use verify::{verify, VerifyProgress, VerifyReport};
