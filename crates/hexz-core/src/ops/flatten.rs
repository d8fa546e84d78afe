//! Flattening a thin snapshot into a standalone archive with the same content.

use super::pack::{
    pack_with_sections, CdcParams, EncryptOptions, PackInput, PackOptions, PackProgress,
    PackSource, PackStats,
};
use crate::api::{File, SnapshotStream};
use crate::error::Result;
use crate::format::header::FLAG_CDC;
use std::path::Path;

/// Packs the streams of `file` (read through its whole parent chain, every block checked)
/// into a new standalone archive at `output`, with the same codec, level and block layout.
/// An encrypted source needs `encryption` (a new data key is made under that password).
/// A tree archive keeps its file table: the disk stream's bytes keep their offsets, so the
/// table is rewritten entry for entry (and sealed under the new keys when encrypted).
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
    let Some(tree) = crate::api::FileTree::open(file)? else {
        return pack_with_sections(input, output, &opts, progress, None);
    };
    let (codec, level) = (opts.codec, opts.level);
    let mut write_table = |out: &mut super::pack::SectionOut<'_, '_>| {
        Ok(vec![super::tree::copy_table(&tree, out, codec, level)?])
    };
    pack_with_sections(input, output, &opts, progress, Some(&mut write_table))
}
