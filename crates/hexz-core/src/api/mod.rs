//! The public reading API: [`File`] over any storage backend, stream selection, and a
//! `Read + Seek` adapter.

pub mod file;
pub mod reader;

pub use file::{Entries, File, OpenOptions};
pub use reader::StreamReader;

/// Re-exported from [`crate::format`], where the stream ids are defined.
pub use crate::format::SnapshotStream;
