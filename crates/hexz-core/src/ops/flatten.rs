//! Flattening a thin snapshot into a standalone archive with the same content.

use super::pack::{
    pack, CdcParams, EncryptOptions, PackInput, PackOptions, PackProgress, PackSource, PackStats,
};
use crate::api::{File, SnapshotStream};
use crate::error::Result;
use crate::format::header::FLAG_CDC;
use std::path::Path;

/// Packs the streams of `file` (read through its whole parent chain, every block checked)
/// into a new standalone archive at `output`, with the same codec, level and block layout.
/// An encrypted source needs `encryption` (a new data key is made under that password).
pub fn flatten(
    file: &File,
    output: &Path,
    encryption: Option<EncryptOptions>,
    progress: Option<&(dyn Fn(&PackProgress) + Sync)>,
) -> Result<PackStats> {
    if file.header().is_encrypted() && encryption.is_none() {
        return Err(crate::error::Error::InvalidArgument(
            "flattening an encrypted archive needs a password for the output".into(),
        ));
    }
    let h = file.header();
    let opts = PackOptions {
        codec: h.codec,
        level: if h.level > 0 { h.level as i32 } else { 3 },
        block_size: h.block_size,
        cdc: (h.flags & FLAG_CDC != 0).then_some(CdcParams {
            min: h.cdc_min,
            avg: h.block_size,
            max: h.cdc_max,
        }),
        encryption,
        ..PackOptions::default()
    };
    let source = |s: SnapshotStream| -> Result<Option<PackSource>> {
        if !file.has_stream(s) {
            return Ok(None);
        }
        Ok(Some(PackSource::SizedReader(
            Box::new(file.reader(s)?),
            file.size(s),
        )))
    };
    let input = PackInput {
        disk: source(SnapshotStream::Disk)?,
        memory: source(SnapshotStream::Memory)?,
    };
    pack(input, output, &opts, progress)
}
