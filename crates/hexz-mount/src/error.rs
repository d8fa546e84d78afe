//! The mount crate's error: core errors, overlay and mount-point problems, each mapped to
//! one errno (for FUSE replies) and one NBD error code.

use hexz_core::ErrorKind;
use std::fmt;
use std::io;

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything the mount, the NBD server, the overlay and commit can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error of the archive library (corrupt block, remote failure, wrong password, …).
    #[error(transparent)]
    Core(#[from] hexz_core::Error),
    /// An operating-system I/O error, with what was being done.
    #[error("{context}: {err}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        err: io::Error,
    },
    /// The overlay file is damaged, of another version, or belongs to another archive.
    #[error("overlay {path}: {detail}")]
    Overlay {
        /// The overlay file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// A write or read outside a stream (past its end).
    #[error("{what} at offset {offset} length {len} is past the end of the {size}-byte stream")]
    OutOfRange {
        /// Read or write.
        what: &'static str,
        /// Requested offset.
        offset: u64,
        /// Requested length.
        len: u64,
        /// Stream size.
        size: u64,
    },
    /// A write to a read-only volume (no overlay).
    #[error("the volume is read-only (mount with --overlay FILE to make it writable)")]
    ReadOnly,
    /// The caller passed something unusable (mount point, address, option).
    #[error("{0}")]
    InvalidArgument(String),
}

impl Error {
    /// Wraps an I/O error with context.
    pub fn io(context: impl fmt::Display, err: io::Error) -> Self {
        Error::Io {
            context: context.to_string(),
            err,
        }
    }

    /// An overlay error naming the file.
    pub fn overlay(path: impl fmt::Display, detail: impl fmt::Display) -> Self {
        Error::Overlay {
            path: path.to_string(),
            detail: detail.to_string(),
        }
    }

    /// The errno a FUSE reply carries for this error. Damaged data and remote failures are
    /// EIO (the reader's read fails, the mount keeps running).
    pub fn errno(&self) -> i32 {
        match self {
            Error::Core(e) => match e.kind() {
                ErrorKind::Io => match e {
                    hexz_core::Error::Io { err, .. } => err.raw_os_error().unwrap_or(libc::EIO),
                    _ => libc::EIO,
                },
                ErrorKind::InvalidArgument => libc::EINVAL,
                ErrorKind::NoSuchStream => libc::ENOENT,
                ErrorKind::Password | ErrorKind::Signature => libc::EACCES,
                ErrorKind::Unsupported => libc::EOPNOTSUPP,
                ErrorKind::Corrupt | ErrorKind::Remote => libc::EIO,
            },
            Error::Io { err, .. } => err.raw_os_error().unwrap_or(libc::EIO),
            Error::Overlay { .. } => libc::EIO,
            Error::OutOfRange { what, .. } => {
                if *what == "write" {
                    libc::ENOSPC
                } else {
                    libc::EINVAL
                }
            }
            Error::ReadOnly => libc::EROFS,
            Error::InvalidArgument(_) => libc::EINVAL,
        }
    }

    /// The NBD error code of this error (the protocol uses a subset of Linux errnos).
    pub fn nbd_error(&self) -> u32 {
        match self.errno() {
            libc::EPERM | libc::EROFS | libc::EACCES => 1,
            libc::ENOMEM => 12,
            libc::EINVAL => 22,
            libc::ENOSPC | libc::EFBIG => 28,
            libc::EOVERFLOW => 75,
            libc::EOPNOTSUPP => 95,
            _ => 5,
        }
    }
}
