//! Archive summary for `hexz info`: header fields, per-stream sizes, block counts, ratio.

use crate::api::{File, SnapshotStream};
use crate::format::header::{
    FLAG_BOUND_CRC, FLAG_CDC, FLAG_ENCRYPTED, FLAG_HAS_PARENT, FLAG_SIGNED,
};
use crate::format::Codec;

/// Per-stream summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// Which stream.
    pub stream: SnapshotStream,
    /// Logical size in bytes.
    pub logical_size: u64,
    /// Number of blocks.
    pub blocks: u64,
    /// All-zero blocks (stored as holes).
    pub zero_blocks: u64,
    /// Bytes of block data this archive stores for the stream.
    pub stored_bytes: u64,
    /// Index pages.
    pub index_pages: u64,
}

/// Summary of an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveInfo {
    /// Format version "major.minor".
    pub version: String,
    /// Archive id as 32 hex digits.
    pub archive_id: String,
    /// Creation time (Unix seconds).
    pub created_unix: u64,
    /// Default codec.
    pub codec: Codec,
    /// Codec level (zstd), 0 otherwise.
    pub level: i32,
    /// "fixed" or "cdc".
    pub chunking: &'static str,
    /// Fixed block size or CDC average.
    pub block_size: u32,
    /// CDC minimum and maximum (0 for fixed).
    pub cdc_min: u32,
    /// CDC maximum (0 for fixed).
    pub cdc_max: u32,
    /// Flag names set in the header.
    pub flags: Vec<&'static str>,
    /// Streams present.
    pub streams: Vec<StreamInfo>,
    /// Archive file size.
    pub archive_bytes: u64,
    /// Total logical bytes over all streams.
    pub logical_bytes: u64,
    /// Size of the master index.
    pub master_index_bytes: u64,
}

impl ArchiveInfo {
    /// Logical bytes per archive byte (higher is better); 0 for an empty archive.
    pub fn ratio(&self) -> f64 {
        if self.archive_bytes == 0 {
            0.0
        } else {
            self.logical_bytes as f64 / self.archive_bytes as f64
        }
    }
}

/// Summarises `file` from its header and master index (no block is read).
pub fn inspect(file: &File, archive_bytes: u64) -> ArchiveInfo {
    let h = file.header();
    let mut flags = Vec::new();
    for (bit, name) in [
        (FLAG_ENCRYPTED, "encrypted"),
        (FLAG_HAS_PARENT, "thin"),
        (FLAG_CDC, "cdc"),
        (FLAG_BOUND_CRC, "bound-crc"),
        (FLAG_SIGNED, "signed"),
    ] {
        if h.flags & bit != 0 {
            flags.push(name);
        }
    }
    let streams: Vec<StreamInfo> = file
        .master()
        .streams
        .iter()
        .map(|r| StreamInfo {
            stream: r.stream,
            logical_size: r.logical_size,
            blocks: r.block_count,
            zero_blocks: r.zero_blocks,
            stored_bytes: r.stored_bytes,
            index_pages: r.pages.len() as u64,
        })
        .collect();
    ArchiveInfo {
        version: format!("{}.{}", h.major, h.minor),
        archive_id: h.archive_id.iter().map(|b| format!("{b:02x}")).collect(),
        created_unix: h.created_unix,
        codec: h.codec,
        level: h.level as i32,
        chunking: if h.flags & FLAG_CDC != 0 {
            "cdc"
        } else {
            "fixed"
        },
        block_size: h.block_size,
        cdc_min: h.cdc_min,
        cdc_max: h.cdc_max,
        flags,
        logical_bytes: streams.iter().map(|s| s.logical_size).sum(),
        streams,
        archive_bytes,
        master_index_bytes: h.master_len as u64,
    }
}

/// One archive of a thin snapshot's chain and how much of the child's content it supplies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    /// Position in the chain: 0 the archive itself, 1 its parent, …
    pub depth: usize,
    /// Where the archive lives.
    pub location: String,
    /// Its archive id (hex).
    pub archive_id: String,
    /// Logical bytes of the child's streams whose blocks this archive stores.
    pub supplied_bytes: u64,
}

/// Lists the chain of `file` (itself first) with the logical bytes each archive supplies.
/// Reads every index page of `file`; zero blocks are supplied by nobody.
pub fn chain(file: &File) -> crate::error::Result<Vec<ChainLink>> {
    let mut supplied = vec![0u64; file.chain_len()];
    for s in file.streams() {
        for e in file.entries(s) {
            let e = e?;
            if !e.is_zero() {
                supplied[e.source as usize] += e.logical_len as u64;
            }
        }
    }
    let mut out = Vec::new();
    let mut cur = Some(file);
    let mut depth = 0;
    while let Some(f) = cur {
        out.push(ChainLink {
            depth,
            location: f.describe(),
            archive_id: f
                .header()
                .archive_id
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            supplied_bytes: supplied[depth],
        });
        depth += 1;
        cur = f.parent();
    }
    Ok(out)
}

/// Name of the key-derivation function an encrypted archive's key is wrapped with (or why it
/// cannot be named).
pub fn kdf_name(h: &crate::format::Header) -> String {
    let k = &h.key_wrap;
    crate::algo::encryption::Kdf::from_params(k.kdf, k.param1, k.param2, k.param3)
        .map_or_else(|e| e.to_string(), |kdf| kdf.name())
}

/// Everything `hexz info --json` prints about `file`, as one JSON object: `path` is how the
/// caller named the archive. Shared by the CLI and the Python bindings (`Archive.info()`) so
/// both report the same fields. Reads every index page when `file` is a thin snapshot (for
/// its `chain`).
pub fn info_json(file: &File, path: &str) -> crate::error::Result<serde_json::Value> {
    let i = inspect(file, file.archive_len());
    let streams: Vec<_> = i
        .streams
        .iter()
        .map(|s| {
            serde_json::json!({
                "stream": s.stream.name(), "logical_size": s.logical_size, "blocks": s.blocks,
                "zero_blocks": s.zero_blocks, "stored_bytes": s.stored_bytes,
                "index_pages": s.index_pages,
            })
        })
        .collect();
    let h = file.header();
    let mut v = serde_json::json!({
        "path": path,
        "format_version": i.version,
        "archive_id": i.archive_id,
        "created_unix": i.created_unix,
        "compression": i.codec.name(),
        "level": i.level,
        "chunking": i.chunking,
        "block_size": i.block_size,
        "cdc_min": i.cdc_min,
        "cdc_max": i.cdc_max,
        "flags": i.flags,
        "encryption": h.is_encrypted().then(|| kdf_name(h)),
        "signed": h.flags & FLAG_SIGNED != 0,
        "archive_bytes": i.archive_bytes,
        "logical_bytes": i.logical_bytes,
        "ratio": i.ratio(),
        "master_index_bytes": i.master_index_bytes,
        "streams": streams,
    });
    if file.parent().is_some() {
        v["chain"] = serde_json::json!(chain(file)?
            .iter()
            .map(|c| serde_json::json!({
                "depth": c.depth, "location": c.location, "archive_id": c.archive_id,
                "supplied_bytes": c.supplied_bytes,
            }))
            .collect::<Vec<_>>());
    }
    Ok(v)
}
