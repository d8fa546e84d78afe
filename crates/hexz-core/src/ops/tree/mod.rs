//! Tree archives: pack a directory (or a tar stream) with a file table, extract it again.
//!
//! Packing reuses the stream packer unchanged: a producer thread walks the input and feeds
//! the file contents, back to back, into the disk stream through a bounded channel (so the
//! usual options — codec, level, block size, CDC, dedup, `--base`, encryption — all apply),
//! while it builds the file table. Once the stream is written, the table's pages, its header
//! and a section record are added before the master index ([`crate::ops::pack::pack_with_sections`]).
//!
//! Layout of the data stream: files in table order, so a directory's small files are adjacent
//! and compress together; small files with identical content are stored once (by BLAKE3);
//! with fixed-size blocks, files of at least one block start on a block boundary, so that
//! identical large files, and large files unchanged since a `--base`, share whole blocks
//! through the block-level dedup.
//!
//! Reading is [`crate::api::FileTree`]; extracting is [`extract()`].

mod extract;
mod files;
mod pack;
mod tar;
mod walk;

pub use extract::{extract, ExtractOptions, ExtractStats};
pub(crate) use pack::copy_table;
pub use pack::{
    pack_entries, pack_tar, pack_tar_to, pack_tree, pack_tree_to, TreePackOptions, TreePackStats,
    MAX_DEDUP_FILES,
};
