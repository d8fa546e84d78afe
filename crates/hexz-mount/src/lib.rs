//! hexz-mount: archives as disks that ordinary tools and VMs use.
//!
//! - [`volume`]: an archive's streams as block devices, optionally writable through an
//!   [`overlay`] file; the one object both front ends serve.
//! - [`fs`]: the stream-as-files view (`disk`, `memory` in a root directory), FUSE-free.
//! - [`tree`]: the file-tree view of a tree archive (its own directories, files and
//!   links, read-only), FUSE-free, with its FUSE adapter in [`tree::fuse`].
//! - [`ahead`]: read-ahead of a file handle in whole requests (runs of large reads).
//! - [`fuse`]: the FUSE mount (multi-threaded, 1 MiB requests, kernel page cache kept).
//! - [`nbd`]: an NBD server (newstyle fixed handshake, several clients); [`nbd::proto`] is
//!   the pure wire parser.
//! - [`overlay`]: copy-on-write chunks in an append-only, crash-safe log ("Overlay format
//!   v1.0" in docs/FORMAT.md), encrypted over encrypted archives.
//! - [`commit`]: an overlay packed into a thin child of its base.
//!
//! Kept out of hexz-core so the library builds without FUSE.

#![warn(missing_docs)]

pub mod ahead;
pub mod commit;
pub mod error;
pub mod fs;
pub mod fuse;
pub mod nbd;
pub mod overlay;
pub mod signals;
pub mod tree;
pub mod volume;

pub use error::{Error, Result};
pub use volume::Volume;
