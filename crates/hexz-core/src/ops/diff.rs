//! Comparing two archives from their indexes.
//!
//! Blocks that line up (same offset and length in both archives) are compared by their
//! BLAKE3 hashes, without decoding — when the two indexes hash with the same key (both
//! unencrypted, or two archives of one encrypted chain). Otherwise every block is decoded
//! and compared byte for byte, and unique content is found by re-hashing decoded blocks. Only where block boundaries differ (different block
//! sizes, or content-defined cuts that moved) are the overlapping bytes decoded and compared.
//! Differences are reported as byte ranges per stream, at block granularity where hashes
//! decided and at byte granularity where bytes were compared.

use crate::api::{File, SnapshotStream};
use crate::error::Result;
use std::collections::HashSet;

/// Differences in one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamDiff {
    /// Which stream.
    pub stream: SnapshotStream,
    /// Size in the first archive (0 when absent).
    pub size_a: u64,
    /// Size in the second archive (0 when absent).
    pub size_b: u64,
    /// Differing ranges `(offset, length)`, sorted and coalesced. Bytes present on one side
    /// only (a longer stream) count as differing.
    pub ranges: Vec<(u64, u64)>,
}

impl StreamDiff {
    /// Total differing bytes.
    pub fn differing_bytes(&self) -> u64 {
        self.ranges.iter().map(|r| r.1).sum()
    }
}

/// Result of [`diff`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffReport {
    /// Per-stream differences (streams present in either archive).
    pub streams: Vec<StreamDiff>,
    /// Logical bytes of the first archive whose block content does not occur anywhere in the
    /// second (zero blocks excluded).
    pub unique_a: u64,
    /// Logical bytes of the second archive whose block content does not occur in the first.
    pub unique_b: u64,
    /// Bytes decoded to compare misaligned blocks (0 when hashes answered everything).
    pub decoded_bytes: u64,
}

impl DiffReport {
    /// Whether the two archives hold identical streams.
    pub fn identical(&self) -> bool {
        self.streams.iter().all(|s| s.ranges.is_empty())
    }
}

fn push_range(v: &mut Vec<(u64, u64)>, off: u64, len: u64) {
    if len == 0 {
        return;
    }
    if let Some(last) = v.last_mut() {
        if last.0 + last.1 == off {
            last.1 += len;
            return;
        }
    }
    v.push((off, len));
}

/// `(hash, logical length)` of every non-zero block of `file`: the index hash when
/// `from_index`, else the plain BLAKE3 of the decoded block (counted into `decoded`).
fn block_hashes(file: &File, from_index: bool, decoded: &mut u64) -> Result<Vec<([u8; 32], u64)>> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for s in file.streams() {
        // One reader per stream: blocks read in order are read ahead.
        let mut reader = file.reader(s)?;
        for e in file.entries(s) {
            let e = e?;
            if e.is_zero() {
                continue;
            }
            let h = if from_index {
                e.hash
            } else {
                buf.resize(e.logical_len as usize, 0);
                reader.read_at(e.logical_offset, &mut buf)?;
                *decoded += buf.len() as u64;
                crate::algo::hash::blake3(&buf)
            };
            out.push((h, e.logical_len as u64));
        }
    }
    Ok(out)
}

/// Logical bytes of `blocks` whose content is not among `other`.
fn unique_bytes(blocks: &[([u8; 32], u64)], other: &[([u8; 32], u64)]) -> u64 {
    let set: HashSet<&[u8; 32]> = other.iter().map(|(h, _)| h).collect();
    blocks
        .iter()
        .filter(|(h, _)| !set.contains(h))
        .map(|(_, l)| l)
        .sum()
}

/// Compares `a` and `b` stream by stream.
pub fn diff(a: &File, b: &File) -> Result<DiffReport> {
    let mut streams = Vec::new();
    let mut decoded = 0u64;
    // Index hashes are comparable only when both archives hash with the same key.
    let comparable = a.hash_domain() == b.hash_domain();
    for stream in SnapshotStream::ALL {
        if !a.has_stream(stream) && !b.has_stream(stream) {
            continue;
        }
        let (size_a, size_b) = (a.size(stream), b.size(stream));
        let common = size_a.min(size_b);
        let mut ranges = Vec::new();
        if a.has_stream(stream) && b.has_stream(stream) {
            let (mut ca, mut cb) = (a.entries(stream), b.entries(stream));
            let (mut ea, mut eb) = (ca.next().transpose()?, cb.next().transpose()?);
            let mut pos = 0u64;
            let mut buf_a = Vec::new();
            let mut buf_b = Vec::new();
            let (mut ra, mut rb) = (a.reader(stream)?, b.reader(stream)?);
            while pos < common {
                let (Some(x), Some(y)) = (ea, eb) else { break };
                let end = x.logical_end().min(y.logical_end()).min(common);
                let len = end - pos;
                if comparable
                    && x.logical_offset == y.logical_offset
                    && x.logical_len == y.logical_len
                {
                    let same = (x.is_zero() && y.is_zero())
                        || (!x.is_zero() && !y.is_zero() && x.hash == y.hash);
                    if !same {
                        push_range(&mut ranges, pos, len);
                    }
                } else if !(x.is_zero() && y.is_zero()) {
                    // Misaligned blocks: compare the overlapping bytes.
                    buf_a.resize(len as usize, 0);
                    buf_b.resize(len as usize, 0);
                    ra.read_at(pos, &mut buf_a)?;
                    rb.read_at(pos, &mut buf_b)?;
                    decoded += 2 * len;
                    let mut i = 0usize;
                    while i < len as usize {
                        if buf_a[i] == buf_b[i] {
                            i += 1;
                            continue;
                        }
                        let start = i;
                        while i < len as usize && buf_a[i] != buf_b[i] {
                            i += 1;
                        }
                        push_range(&mut ranges, pos + start as u64, (i - start) as u64);
                    }
                }
                pos = end;
                if x.logical_end() <= pos {
                    ea = ca.next().transpose()?;
                }
                if y.logical_end() <= pos {
                    eb = cb.next().transpose()?;
                }
            }
        }
        push_range(&mut ranges, common, size_a.max(size_b) - common);
        streams.push(StreamDiff {
            stream,
            size_a,
            size_b,
            ranges,
        });
    }
    let ha = block_hashes(a, comparable, &mut decoded)?;
    let hb = block_hashes(b, comparable, &mut decoded)?;
    let unique_a = unique_bytes(&ha, &hb);
    let unique_b = unique_bytes(&hb, &ha);
    Ok(DiffReport {
        streams,
        unique_a,
        unique_b,
        decoded_bytes: decoded,
    })
}
