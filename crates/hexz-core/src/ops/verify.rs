//! Full verification: every index page and every block, checked against its CRC32 and
//! BLAKE3 hash. Stops at the first bad block (in stream order) and names it.

use crate::api::{File, SnapshotStream};
use crate::error::Result;

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
    Ok(report)
}
