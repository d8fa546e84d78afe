//! Reading and chunking: cuts a stream into blocks (fixed-size or content-defined) and hands
//! them out in batches of about [`BATCH_BYTES`], read with large reads.

use super::compress::Cooked;
use super::{CdcParams, PackSource};
use crate::error::{Error, Result};
use std::io::Read;

/// Bytes of raw input per batch handed to a worker.
pub(super) const BATCH_BYTES: usize = 2 << 20;

/// A unit of pipeline work: consecutive blocks of one stream.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) seq: u64,
    pub(super) raw: Vec<u8>,
    pub(super) lens: Vec<u32>,
    /// Stored bytes of the batch's blocks, `out[..out_used]`. The vector keeps its length
    /// across batches (only its first use zeroes it), so that blocks compress straight into it.
    pub(super) out: Vec<u8>,
    pub(super) out_used: usize,
    pub(super) cooked: Vec<Cooked>,
}

impl Batch {
    pub(super) fn clear(&mut self) {
        self.raw.clear();
        self.lens.clear();
        self.out_used = 0;
        self.cooked.clear();
    }
}

/// Cuts a source into blocks.
pub(super) enum Splitter {
    Fixed(u32),
    Cdc {
        p: CdcParams,
        buf: Vec<u8>,
        start: usize,
        eof: bool,
    },
}

/// Appends up to `want` bytes from `r` to `buf` (fewer only at end of input); returns how
/// many. Reads into the vector's spare capacity: a file reads there directly, without the
/// zeroing that resizing first would cost for every batch.
fn read_append(r: &mut dyn Read, buf: &mut Vec<u8>, want: usize) -> std::io::Result<usize> {
    buf.reserve(want);
    (&mut *r).take(want as u64).read_to_end(buf)
}

impl Splitter {
    /// Fills `b` with up to about [`BATCH_BYTES`] of blocks; leaves it empty at end of input.
    pub(super) fn fill(&mut self, r: &mut dyn Read, b: &mut Batch) -> std::io::Result<()> {
        match self {
            Splitter::Fixed(bs) => {
                let bs = *bs as usize;
                let want = (BATCH_BYTES / bs).max(1) * bs;
                b.raw.clear();
                let mut left = read_append(r, &mut b.raw, want)?;
                while left > 0 {
                    let l = left.min(bs);
                    b.lens.push(l as u32);
                    left -= l;
                }
            }
            Splitter::Cdc { p, buf, start, eof } => {
                let max = p.max as usize;
                while b.raw.len() < BATCH_BYTES {
                    let avail = buf.len() - *start;
                    if !*eof && avail < max {
                        buf.drain(..*start);
                        *start = 0;
                        let have = buf.len();
                        let grow = (4 * max).max(BATCH_BYTES);
                        let n = read_append(r, buf, grow)?;
                        debug_assert_eq!(buf.len(), have + n);
                        if n < grow {
                            *eof = true;
                        }
                        continue;
                    }
                    if avail == 0 {
                        break;
                    }
                    let data = &buf[*start..];
                    let len =
                        fastcdc::v2020::FastCDC::new(data, p.min as usize, p.avg as usize, max)
                            .next()
                            .map_or(data.len(), |c| c.length)
                            .min(data.len());
                    b.raw.extend_from_slice(&data[..len]);
                    b.lens.push(len as u32);
                    *start += len;
                }
            }
        }
        Ok(())
    }
}

pub(super) fn open_source(src: PackSource) -> Result<(Box<dyn Read + Send>, Option<u64>, String)> {
    match src {
        PackSource::Path(p) => {
            let f = std::fs::File::open(&p)
                .map_err(|e| Error::io(format!("cannot open input {}", p.display()), e))?;
            let meta = f
                .metadata()
                .map_err(|e| Error::io(format!("cannot stat {}", p.display()), e))?;
            let size = if meta.is_file() {
                Some(meta.len())
            } else {
                None
            };
            Ok((Box::new(f), size, p.display().to_string()))
        }
        PackSource::Reader(r) => Ok((r, None, "standard input".into())),
        PackSource::SizedReader(r, n) => Ok((r, Some(n), "input stream".into())),
    }
}
