//! hexz-core: seekable, deduplicated, compressed snapshot archives (`.hxz`).
//!
//! An archive holds up to two byte streams — **disk** and **memory**, as in a VM snapshot —
//! cut into blocks that are compressed (LZ4 or Zstandard) and checksummed independently, with
//! a two-level index at the end, so any byte range can be read without decompressing the
//! rest. This crate has no UI code; the `hexz` command-line tool lives in `hexz-cli`.
//!
//! # Architecture
//! - [`format`]: on-disk structures (header, block entries, index pages, master index),
//!   specified byte for byte in `docs/FORMAT.md`.
//! - [`algo`]: block codecs ([`algo::compression`]) and hashing ([`algo::hash`]).
//! - [`store`]: the [`store::StorageBackend`] trait and local backends.
//! - [`cache`]: the sharded, byte-bounded LRU for blocks and index pages, and read-ahead.
//! - [`api`]: the [`File`] reader and its `Read + Seek` adapter.
//! - [`ops`]: pack, verify, inspect.
//!
//! # Quick start
//! ```
//! use hexz_core::{File, SnapshotStream};
//! use hexz_core::store::local::FileBackend;
//! use hexz_core::algo::compression::lz4::Lz4Compressor;
//! use hexz_core::ops::{pack, PackInput, PackOptions, PackSource};
//! use std::sync::Arc;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let image = dir.path().join("disk.img");
//! # let data: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
//! # std::fs::write(&image, &data)?;
//! # let path = dir.path().join("snapshot.hxz");
//! // Pack a raw disk image (LZ4, 64 KiB blocks by default).
//! let input = PackInput { disk: Some(PackSource::Path(image.clone())), memory: None };
//! pack(input, &path, &PackOptions::default(), None)?;
//!
//! // Open the snapshot through a storage backend and a decompressor...
//! let backend = Arc::new(FileBackend::new(&path)?);
//! let compressor = Box::new(Lz4Compressor::new());
//! let snapshot = File::new(backend, compressor, None)?;
//!
//! // ...and read 4 KiB from the disk stream at offset 1 MiB.
//! let bytes = snapshot.read_at(SnapshotStream::Disk, 1024 * 1024, 4096)?;
//! assert_eq!(bytes.len(), 4096);
//! # assert_eq!(&bytes[..], &data[1 << 20..(1 << 20) + 4096]);
//!
//! // File::open reads the codec from the header for callers who don't want to choose.
//! let same = File::open(&path)?;
//! assert_eq!(same.read_at(SnapshotStream::Disk, 1024 * 1024, 4096)?, bytes);
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod algo;
pub mod api;
pub mod cache;
pub mod error;
pub mod format;
pub mod ops;
pub mod store;

pub use api::{File, OpenOptions, StreamReader};
pub use error::{Error, ErrorKind, Result};
pub use format::SnapshotStream;
