//! Full verification: every index page and every block, checked against its CRC32 and
//! BLAKE3 hash. Stops at the first bad block (in stream order) and names it.

use crate::api::{File, SnapshotStream};
use crate::error::Result;
use rayon::prelude::*;

/// What a successful verification covered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Index pages checked.
    pub pages: u64,
    /// Blocks checked (zero blocks included).
    pub blocks: u64,
    /// Logical bytes covered.
    pub bytes: u64,
}

/// Progress of a verification: logical bytes checked so far out of the total of all streams.
#[derive(Debug, Clone, Copy)]
pub struct VerifyProgress {
    /// Bytes checked.
    pub done: u64,
    /// Bytes to check.
    pub total: u64,
}

/// Checks every page and block of `file`. The first failure is returned as an error naming
/// the stream, block number and offset.
pub fn verify(
    file: &File,
    progress: Option<&(dyn Fn(&VerifyProgress) + Sync)>,
) -> Result<VerifyReport> {
    let total: u64 = file.streams().iter().map(|&s| file.size(s)).sum();
    let mut report = VerifyReport::default();
    for stream in SnapshotStream::ALL {
        let Some(rec) = file.master().stream(stream) else {
            continue;
        };
        for (page_no, r) in rec.pages.iter().enumerate() {
            let page = file.index_page(stream, page_no)?;
            report.pages += 1;
            page.entries
                .par_iter()
                .enumerate()
                .map_init(Vec::new, |buf, (i, e)| {
                    buf.resize(e.logical_len as usize, 0);
                    file.decode_block_into(stream, r.first_block + i as u64, e, buf)
                })
                .collect::<Result<Vec<()>>>()?;
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
