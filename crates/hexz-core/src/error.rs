//! The error type every fallible hexz-core function returns.
//!
//! Errors name what is wrong precisely (stream, block number, offset, field) so that a
//! corrupt or hostile archive produces an actionable message instead of wrong bytes.

use crate::format::SnapshotStream;
use std::fmt;

/// Result alias used throughout hexz-core.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong while reading, writing or checking an archive.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O error, with what we were doing when it happened. The OS error
    /// is part of the message (and deliberately not also a `source()`, so error chains print
    /// it once).
    #[error("{context}: {err}")]
    Io {
        /// What hexz was doing (e.g. "reading header of archive.hxz").
        context: String,
        /// The underlying error.
        err: std::io::Error,
    },
    /// The file is not a hexz archive at all (bad magic).
    #[error("not a hexz archive: {0}")]
    NotAnArchive(String),
    /// The archive was written by a newer, incompatible major format version.
    #[error(
        "unsupported archive format version {major}.{minor}: this build reads major version {supported} \
         (upgrade hexz to read it)"
    )]
    UnsupportedVersion {
        /// Major version found in the header.
        major: u16,
        /// Minor version found in the header.
        minor: u16,
        /// Major version this build understands.
        supported: u16,
    },
    /// The archive uses a feature this build does not have (e.g. zstd compiled out).
    #[error("unsupported feature: {0}")]
    Unsupported(String),
    /// A structure of the archive (header, master index, index page) is damaged or inconsistent.
    #[error("corrupt archive: {structure}: {detail}")]
    CorruptStructure {
        /// Which structure ("header", "master index", "index page 3 of disk stream", …).
        structure: String,
        /// What exactly is wrong (field, expected vs found).
        detail: String,
    },
    /// A data block failed a checksum or could not be decoded.
    #[error("corrupt block {block} of {stream} stream (logical offset {offset}): {detail}")]
    CorruptBlock {
        /// The stream the block belongs to.
        stream: SnapshotStream,
        /// Block number within the stream (0-based).
        block: u64,
        /// Logical offset of the block's first byte within the stream.
        offset: u64,
        /// What failed (CRC32 mismatch, BLAKE3 mismatch, decode error, …).
        detail: String,
    },
    /// A codec could not decode stored bytes (malformed data, or a size other than the
    /// index records). Inside a read it is reported as [`Error::CorruptBlock`] naming the
    /// block, with this error's text as the detail.
    #[error("cannot decode {codec} data: {detail}")]
    Decode {
        /// The codec that failed.
        codec: crate::format::Codec,
        /// What went wrong.
        detail: String,
    },
    /// Authenticated decryption failed: the object (block, index page, master index) was
    /// tampered with, moved, comes from another archive, or the key is wrong.
    #[error("decryption failed: {0}")]
    Decrypt(String),
    /// The caller asked for something invalid (bad level, block size, missing stream…).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The password does not unwrap the archive key.
    #[error("wrong password or not a hexz key")]
    WrongPassword,
    /// The archive is encrypted and no password was given.
    #[error(
        "{0} is encrypted: a password is needed (HEXZ_PASSWORD, --password-file or the prompt)"
    )]
    PasswordRequired(String),
    /// A signature is missing, made by another key, or does not match the archive.
    #[error("signature check failed: {0}")]
    Signature(String),
    /// The requested stream is not present in this archive.
    #[error("the archive has no {0} stream")]
    NoSuchStream(SnapshotStream),
    /// A remote backend (HTTP, S3) failed: which backend, the URL, and what went wrong
    /// (status, what was expected). `transient` failures were retried and may succeed later.
    #[error("{backend} {url}: {detail}")]
    Remote {
        /// Backend name ("http", "s3").
        backend: &'static str,
        /// The URL of the object.
        url: String,
        /// What failed: status, expected vs received, the underlying error.
        detail: String,
        /// Whether a later retry may succeed (connection errors, timeouts, 5xx, 429).
        transient: bool,
    },
    /// The remote object is not the one that was opened: its identity (ETag, or
    /// Last-Modified and size) changed, so reading on could mix two versions.
    #[error("archive changed on the server: {url}: {detail}")]
    ArchiveChanged {
        /// The URL of the object.
        url: String,
        /// What changed (the pinned identity and what the server answered).
        detail: String,
    },
}

/// Coarse classes of [`Error`], for callers that map errors to exit codes, errnos or
/// exception classes without matching every variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Local I/O failed (includes a missing file: see [`Error::is_not_found`]).
    Io,
    /// Not an archive, an unsupported version or feature.
    Unsupported,
    /// The archive (structure or a block) is damaged, or fails authentication.
    Corrupt,
    /// The caller passed something invalid.
    InvalidArgument,
    /// Wrong or missing password.
    Password,
    /// A signature is missing or does not verify.
    Signature,
    /// A remote store failed or the remote object changed.
    Remote,
    /// The requested stream does not exist.
    NoSuchStream,
}

impl Error {
    /// The coarse class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } => ErrorKind::Io,
            Error::NotAnArchive(_) | Error::UnsupportedVersion { .. } | Error::Unsupported(_) => {
                ErrorKind::Unsupported
            }
            Error::CorruptStructure { .. }
            | Error::CorruptBlock { .. }
            | Error::Decode { .. }
            | Error::Decrypt(_) => ErrorKind::Corrupt,
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::WrongPassword | Error::PasswordRequired(_) => ErrorKind::Password,
            Error::Signature(_) => ErrorKind::Signature,
            Error::Remote { .. } | Error::ArchiveChanged { .. } => ErrorKind::Remote,
            Error::NoSuchStream(_) => ErrorKind::NoSuchStream,
        }
    }

    /// Whether retrying the same operation later may succeed (a transient remote failure,
    /// an interrupted or timed-out local read).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Remote { transient, .. } => *transient,
            Error::Io { err, .. } => matches!(
                err.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::WouldBlock
            ),
            _ => false,
        }
    }

    /// Whether the error says a file or remote object does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::Io { err, .. } => err.kind() == std::io::ErrorKind::NotFound,
            Error::Remote { detail, .. } => detail.contains("404"),
            _ => false,
        }
    }
}

impl Error {
    /// Wraps an `io::Error` with a description of the operation that failed.
    pub fn io(context: impl fmt::Display, source: std::io::Error) -> Self {
        Error::Io {
            context: context.to_string(),
            err: source,
        }
    }

    /// Builds a [`Error::CorruptStructure`].
    pub fn corrupt(structure: impl fmt::Display, detail: impl fmt::Display) -> Self {
        Error::CorruptStructure {
            structure: structure.to_string(),
            detail: detail.to_string(),
        }
    }
}
