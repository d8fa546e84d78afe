//! Full verification: every index page and every block, checked against its CRC32 and
//! BLAKE3 hash. Stops at the first bad block (in stream order) and names it.

use crate::api::tree::EntryKind;
use crate::api::{File, SnapshotStream};
use crate::error::{Error, Result};

/// What a successful verification covered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Index pages checked.
    pub pages: u64,
    /// Blocks checked (zero blocks included).
    pub blocks: u64,
    /// Logical bytes covered.
    pub bytes: u64,
    /// Archives checked (1 plus the number of ancestors).
    pub archives: u64,
    /// File table entries checked (tree archives, format 1.2; 0 otherwise).
    pub tree_entries: u64,
}

/// Progress of a verification: logical bytes checked so far out of the total of all streams.
#[derive(Debug, Clone, Copy)]
pub struct VerifyProgress {
    /// Bytes checked.
    pub done: u64,
    /// Bytes to check.
    pub total: u64,
}

/// Checks every page and block of `file` and then of each ancestor in its chain (a thin
/// snapshot's blocks are checked through the references that use them, and each ancestor on
/// its own). The first failure is returned as an error naming the stream, block number and
/// offset, and the archive when it is an ancestor.
pub fn verify(
    file: &File,
    progress: Option<&(dyn Fn(&VerifyProgress) + Sync)>,
) -> Result<VerifyReport> {
    let mut report = verify_one(file, progress)?;
    let mut cur = file.parent();
    while let Some(p) = cur {
        let r = verify_one(p, None)
            .map_err(|e| crate::error::Error::corrupt(format!("ancestor {}", p.describe()), e))?;
        report.pages += r.pages;
        report.blocks += r.blocks;
        report.bytes += r.bytes;
        report.archives += 1;
        cur = p.parent();
    }
    Ok(report)
}

fn verify_one(
    file: &File,
    progress: Option<&(dyn Fn(&VerifyProgress) + Sync)>,
) -> Result<VerifyReport> {
    let total: u64 = file.streams().iter().map(|&s| file.size(s)).sum();
    let mut report = VerifyReport {
        archives: 1,
        ..VerifyReport::default()
    };
    for stream in SnapshotStream::ALL {
        let Some(rec) = file.master().stream(stream) else {
            continue;
        };
        for (page_no, r) in rec.pages.iter().enumerate() {
            let page = file.index_page(stream, page_no)?;
            report.pages += 1;
            file.verify_blocks(stream, r.first_block, &page.entries)?;
            report.blocks += page.entries.len() as u64;
            report.bytes += page
                .entries
                .iter()
                .map(|e| e.logical_len as u64)
                .sum::<u64>();
            if let Some(cb) = progress {
                cb(&VerifyProgress {
                    done: report.bytes,
                    total,
                });
            }
        }
    }
    report.tree_entries = verify_tree(file)?;
    Ok(report)
}

/// Reads every page of a tree archive's file table (each checked against the BLAKE3 in its
/// reference, entries checked for order and fields as they decode), checks that every
/// regular file's bytes lie inside the data stream and that the counts match the header.
/// Returns the number of entries; 0 for a streams-only archive.
fn verify_tree(file: &File) -> Result<u64> {
    let Some(tree) = crate::api::FileTree::open(file)? else {
        return Ok(0);
    };
    let h = *tree.header();
    let data_len = file.size(SnapshotStream::Disk);
    let (mut n, mut files, mut dirs, mut links, mut specials) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for e in tree.iter()? {
        let e = e?;
        n += 1;
        match e.kind {
            EntryKind::File => files += 1,
            EntryKind::Dir => dirs += 1,
            EntryKind::Symlink => links += 1,
            _ => specials += 1,
        }
        if e.kind == EntryKind::File
            && e.size > 0
            && e.data_offset
                .checked_add(e.size)
                .is_none_or(|end| end > data_len)
        {
            return Err(Error::corrupt(
                format!("file table entry '{}'", String::from_utf8_lossy(&e.path)),
                format!(
                    "data at offset {} length {} lies outside the {data_len}-byte data stream",
                    e.data_offset, e.size
                ),
            ));
        }
    }
    let found = (n, files, dirs, links, specials);
    let recorded = (h.entries, h.files, h.dirs, h.symlinks, h.specials);
    if found != recorded {
        return Err(Error::corrupt(
            "file table header",
            format!(
                "counts (entries, files, dirs, symlinks, specials) {recorded:?} do not match \
                 the table's {found:?}"
            ),
        ));
    }
    Ok(n)
}
