//! High-level operations on archives: pack, verify, inspect.

pub mod atomic;
pub mod inspect;
pub mod pack;
pub mod verify;

pub use inspect::{inspect, ArchiveInfo, StreamInfo};
pub use pack::{pack, CdcParams, PackInput, PackOptions, PackProgress, PackSource, PackStats};
pub use verify::{verify, VerifyProgress, VerifyReport};
