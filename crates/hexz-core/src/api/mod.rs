//! The public reading API: [`File`] over any storage backend, stream selection, and a
//! `Read + Seek` adapter.
//!
//! [`file`] holds the `File` type and its public methods; the rest is split by concept:
//! opening and chain resolution (`open`), unlocking (`unlock`), index pages (`index`), the
//! read path (`read`: plan, one batched fetch, parallel decode), decoding one block
//! (`decode`), single-flight fetches (`flight`), the crate-owned thread pools (`pool`) and
//! the `Read + Seek` reader with its own read-ahead ([`reader`]).

mod decode;
pub mod file;
mod flight;
mod index;
pub(crate) mod open;
mod pool;
mod read;
pub mod reader;
mod streamed;
pub mod tree;
mod unlock;

pub use file::{File, OpenOptions, REMOTE_WINDOW_FACTOR};
pub use index::Entries;
pub use pool::{decode_on_this_thread, decode_pool_handoffs, process_id, set_process_threads};
pub use reader::StreamReader;
pub use tree::FileTree;

/// Re-exported from [`crate::format`], where the stream ids are defined.
pub use crate::format::SnapshotStream;
