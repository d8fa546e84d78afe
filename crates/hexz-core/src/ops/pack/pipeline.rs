//! The bounded pipeline that packs one stream: the calling thread reads and chunks, one
//! worker per core compresses, a writer thread puts batches back in order and writes them.
//!
//! A fixed pool of batches bounds memory whatever the input size. Any stage failing ends the
//! stream with an error: a panic in the reader, a worker or the writer (or in the progress
//! callback, which runs on the writer) is caught and reported, every other stage sees its
//! channel close and stops, so the pack never hangs and the caller's sink, dropped
//! unfinished, leaves nothing behind.

use super::chunk::{Batch, Splitter};
use super::compress::cook;
use super::write::{write_batch, StreamBuild, Writer};
use super::PackProgress;
use crate::algo::compression::Compressor;
use crate::algo::encryption::ArchiveCipher;
use crate::api::SnapshotStream;
use crate::error::{Error, Result};
use crossbeam_channel::bounded;
use std::collections::BTreeMap;
use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The error a caught panic becomes.
fn panicked(stage: &str, name: &str, p: Box<dyn std::any::Any + Send>) -> Error {
    let msg = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    Error::io(
        format!("packing {name}"),
        std::io::Error::other(format!("the {stage} panicked: {msg}")),
    )
}

/// Packs one stream from `reader` into `w`; returns its index pages and statistics.
#[allow(clippy::too_many_arguments)]
pub(super) fn pack_stream(
    stream: SnapshotStream,
    reader: &mut dyn Read,
    name: &str,
    total: Option<u64>,
    mut splitter: Splitter,
    compressor: &dyn Compressor,
    cipher: Option<&ArchiveCipher>,
    threads: usize,
    w: &mut Writer,
    progress: Option<&(dyn Fn(&PackProgress) + Sync)>,
) -> Result<StreamBuild> {
    // Enough batches in flight to keep every worker busy while the reader and writer work;
    // few enough to bound memory (each batch holds its raw and compressed bytes).
    let slots = 2 * threads + 2;
    let bound = w.bound_crc;
    let (work_tx, work_rx) = bounded::<Batch>(slots);
    let (done_tx, done_rx) = bounded::<Result<Batch>>(slots);
    let (pool_tx, pool_rx) = bounded::<Batch>(slots);
    for _ in 0..slots {
        pool_tx.send(Batch::default()).expect("pool has room");
    }
    let mut sb = StreamBuild::new(stream);
    std::thread::scope(|s| -> Result<()> {
        for _ in 0..threads {
            let work_rx = work_rx.clone();
            let done_tx = done_tx.clone();
            s.spawn(move || {
                for mut b in work_rx {
                    let r =
                        catch_unwind(AssertUnwindSafe(|| cook(&mut b, compressor, cipher, bound)));
                    let r = match r {
                        Ok(r) => r.map(|_| b),
                        Err(p) => Err(panicked("compression worker", name, p)),
                    };
                    let failed = r.is_err();
                    if done_tx.send(r).is_err() || failed {
                        break;
                    }
                }
            });
        }
        drop(work_rx);
        drop(done_tx);
        let sb = &mut sb;
        let writer = s.spawn(move || -> Result<()> {
            let mut pending: BTreeMap<u64, Batch> = BTreeMap::new();
            let mut next = 0u64;
            for r in done_rx {
                let b = r?;
                pending.insert(b.seq, b);
                while let Some(b) = pending.remove(&next) {
                    write_batch(w, sb, &b)?;
                    next += 1;
                    if let Some(cb) = progress {
                        cb(&PackProgress {
                            stream,
                            done: sb.next_logical,
                            total,
                        });
                    }
                    let _ = pool_tx.send(b);
                }
            }
            if let Some(seq) = pending.keys().next() {
                // Cannot happen unless a stage vanished: never write a stream with a gap.
                return Err(Error::io(
                    format!("packing {name}"),
                    std::io::Error::other(format!("batch {next} lost before batch {seq}")),
                ));
            }
            sb.finish_pages(w)
        });
        let mut read_result = Ok(());
        for (seq, mut b) in pool_rx.iter().enumerate() {
            b.clear();
            let filled = catch_unwind(AssertUnwindSafe(|| splitter.fill(reader, &mut b)));
            match filled {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    read_result = Err(Error::io(format!("reading {name}"), e));
                    break;
                }
                Err(p) => {
                    read_result = Err(panicked("reader", name, p));
                    break;
                }
            }
            if b.lens.is_empty() {
                break;
            }
            b.seq = seq as u64;
            if work_tx.send(b).is_err() {
                break;
            }
        }
        drop(work_tx);
        drop(pool_rx);
        let written = writer
            .join()
            .unwrap_or_else(|p| Err(panicked("writer", name, p)));
        // A failed read must not let the (shorter) stream pass as complete.
        read_result.and(written)
    })?;
    Ok(sb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Codec;

    /// A compressor that panics on the third block it sees.
    struct Bomb(std::sync::atomic::AtomicUsize);

    impl Compressor for Bomb {
        fn codec(&self) -> Codec {
            Codec::Lz4
        }
        fn compress(&self, src: &[u8], dst: &mut Vec<u8>) -> Result<()> {
            if self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 2 {
                panic!("bomb");
            }
            dst.clear();
            dst.extend_from_slice(&src[..src.len() / 2]);
            Ok(())
        }
        fn decompress_into(&self, _src: &[u8], _dst: &mut [u8]) -> Result<()> {
            unreachable!("packing never decompresses")
        }
    }

    struct NullSink;
    impl super::super::PackSink for NullSink {
        fn append(&mut self, _buf: &[u8]) -> Result<()> {
            Ok(())
        }
        fn write_header(&mut self, _h: &[u8]) -> Result<()> {
            Ok(())
        }
        fn finish(&mut self) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn worker_panic_is_an_error_not_a_hang() {
        let data: Vec<u8> = (0..8 << 20).map(|i| (i * 7 % 253) as u8 | 1).collect();
        let mut sink = NullSink;
        let mut w = Writer {
            sink: &mut sink,
            pos: 0,
            dedup: Default::default(),
            parent: Default::default(),
            dedup_on: true,
            dedup_max: 1 << 20,
            cipher: None,
            bound_crc: true,
        };
        let bomb = Bomb(0.into());
        let r = pack_stream(
            SnapshotStream::Disk,
            &mut &data[..],
            "test input",
            None,
            Splitter::Fixed(64 << 10),
            &bomb,
            None,
            2,
            &mut w,
            None,
        );
        let e = r.err().expect("the panic must fail the pack").to_string();
        assert!(
            e.contains("compression worker panicked: bomb"),
            "unexpected error: {e}"
        );
    }
}
