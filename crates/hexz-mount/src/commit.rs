//! `hexz commit`: turns an overlay into a thin child archive of its base.
//!
//! The child is packed by the core packer with the base as parent (`--base` semantics):
//! its streams are the overlay read over the base, and every block whose content the base
//! chain already holds is stored as a reference, so only changed blocks take space. By
//! default the child uses the base's block size (fixed or CDC) and codec, so unchanged
//! blocks line up with the base's. The overlay is only read (and locked, so a mounted
//! overlay is refused); the child appears atomically when complete.

use crate::error::{Error, Result};
use crate::overlay::{self, Overlay};
use crate::volume::Volume;
use hexz_core::algo::encryption::{Kdf, Password};
use hexz_core::format::header::FLAG_CDC;
use hexz_core::format::Codec;
use hexz_core::ops::pack::EncryptOptions;
use hexz_core::ops::{
    pack, CdcParams, PackInput, PackOptions, PackProgress, PackSource, PackStats,
};
use hexz_core::{File, OpenOptions, SnapshotStream};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Options of a commit; `None` fields take the base archive's settings.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// Codec of the child (default: the base's).
    pub codec: Option<Codec>,
    /// zstd level (default: the base's, else 3).
    pub level: Option<i32>,
    /// Fixed block size (default: the base's).
    pub block_size: Option<u32>,
    /// Content-defined blocks (default: as the base).
    pub cdc: Option<CdcParams>,
    /// Key derivation for the child's key wrap (encrypted bases only).
    pub kdf: Option<Kdf>,
    /// Password of an encrypted base (the child is encrypted with the same data key).
    pub password: Option<Password>,
    /// Require `--encrypt`-style confirmation: refuse unless the base is encrypted.
    pub encrypt: bool,
    /// Packing threads (0 = one per core).
    pub threads: usize,
}

/// What a commit produced.
#[derive(Debug, Clone)]
pub struct CommitStats {
    /// The packer's statistics of the child.
    pub pack: PackStats,
    /// The base archive (the child's parent).
    pub base: PathBuf,
    /// Chunks the overlay changed.
    pub changed_chunks: usize,
    /// Overlay chunk size.
    pub chunk_size: u64,
}

/// `Read` over one stream of a volume (overlay over base), for the packer.
struct VolumeReader {
    vol: Arc<Volume>,
    stream: SnapshotStream,
    pos: u64,
}

impl Read for VolumeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self
            .vol
            .read_at(self.stream, self.pos, buf)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Commits the overlay at `overlay_path` into a new thin child archive at `output`.
pub fn commit(
    overlay_path: &Path,
    output: &Path,
    opts: &CommitOptions,
    progress: Option<&(dyn Fn(&PackProgress) + Sync)>,
) -> Result<CommitStats> {
    let header = overlay::read_header(overlay_path)?;
    let loc = header.base_location.clone();
    if loc.contains("://") {
        return Err(Error::InvalidArgument(format!(
            "the overlay's base is the remote archive {loc}: commit needs the base as a local file \
             (the child references it)"
        )));
    }
    let base_path = PathBuf::from(&loc);
    let file = File::open_with(
        &base_path,
        OpenOptions {
            password: opts.password.clone(),
            ..OpenOptions::default()
        },
    )
    .map_err(|e| {
        Error::InvalidArgument(format!("opening the overlay's base archive {loc}: {e}"))
    })?;
    let ov = Overlay::open(overlay_path, &file, false)?;
    let changed_chunks = ov.changed_chunks();
    let chunk_size = ov.chunk_size();
    let h = file.header().clone();
    let encrypted = h.is_encrypted();
    if opts.encrypt && !encrypted {
        return Err(Error::InvalidArgument(
            "--encrypt: the base archive is not encrypted, and a thin child is encrypted exactly \
             when its base is"
                .into(),
        ));
    }
    let base_cdc = (h.flags & FLAG_CDC != 0).then_some(CdcParams {
        min: h.cdc_min,
        avg: h.block_size,
        max: h.cdc_max,
    });
    let codec = opts.codec.unwrap_or(if h.codec == Codec::None {
        Codec::Lz4
    } else {
        h.codec
    });
    let pack_opts = PackOptions {
        codec,
        level: opts
            .level
            .unwrap_or(if h.codec == Codec::Zstd && h.level > 0 {
                h.level as i32
            } else {
                3
            }),
        block_size: opts.block_size.unwrap_or(h.block_size),
        cdc: if opts.block_size.is_some() {
            opts.cdc
        } else {
            opts.cdc.or(base_cdc)
        },
        threads: opts.threads,
        base: Some(base_path.clone()),
        encryption: if encrypted {
            Some(EncryptOptions {
                password: opts.password.clone().ok_or_else(|| {
                    Error::InvalidArgument(format!("{loc} is encrypted: a password is needed"))
                })?,
                kdf: opts.kdf.unwrap_or_default(),
            })
        } else {
            None
        },
        ..PackOptions::default()
    };
    let vol = Arc::new(Volume::with_overlay(file.clone(), ov));
    let source = |s: SnapshotStream| -> Option<PackSource> {
        file.has_stream(s).then(|| {
            PackSource::SizedReader(
                Box::new(VolumeReader {
                    vol: vol.clone(),
                    stream: s,
                    pos: 0,
                }),
                file.size(s),
            )
        })
    };
    let input = PackInput {
        disk: source(SnapshotStream::Disk),
        memory: source(SnapshotStream::Memory),
    };
    let stats = pack(input, output, &pack_opts, progress)?;
    Ok(CommitStats {
        pack: stats,
        base: base_path,
        changed_chunks,
        chunk_size,
    })
}
