//! One-pass reads by a caller that decodes on its own thread (extraction's part workers)
//! stream the blocks they cover whole from a remote archive: one streamed request, each
//! block decoded as soon as its bytes are in. Through a "remote" backend over a local file
//! that streams in irregular pieces, some straight into the reader's buffers and some
//! through `put` (spanning block boundaries), and can damage one byte in transit or at the
//! origin. The real HTTP and S3 paths are covered by the extraction tests of
//! `remote_requests.rs` and the CLI tests.

mod common;

use common::{mixed_data, pack_files, Rng};
use hexz_core::api::decode_on_this_thread;
use hexz_core::format::BlockEntry;
use hexz_core::ops::PackOptions;
use hexz_core::store::local::FileBackend;
use hexz_core::store::{RangeSink, ReadRequest, StorageBackend};
use hexz_core::{File, OpenOptions, SnapshotStream};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;

const D: SnapshotStream = SnapshotStream::Disk;
const BLOCK: usize = 64 << 10;

/// A streaming "remote" backend over a local file. The next `damage` fetches covering `at`
/// flip that byte (`usize::MAX`: damaged at the origin).
struct Streaming {
    inner: FileBackend,
    at: u64,
    damage: AtomicUsize,
    /// Fetches (of any kind) covering `at`.
    fetches: AtomicUsize,
    /// `read_streamed` calls and the bytes they asked for.
    streamed: AtomicUsize,
    streamed_bytes: AtomicU64,
    /// `read_batch` and `read_exact_at` calls.
    batched: AtomicUsize,
}

impl Streaming {
    fn damage(&self, offset: u64, buf: &mut [u8]) {
        let end = offset + buf.len() as u64;
        if offset <= self.at && self.at < end {
            self.fetches.fetch_add(1, SeqCst);
            if self
                .damage
                .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                buf[(self.at - offset) as usize] ^= 0x20;
            }
        }
    }

    fn reset(&self) {
        self.fetches.store(0, SeqCst);
        self.streamed.store(0, SeqCst);
        self.streamed_bytes.store(0, SeqCst);
        self.batched.store(0, SeqCst);
    }
}

impl StorageBackend for Streaming {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> hexz_core::Result<()> {
        self.batched.fetch_add(1, SeqCst);
        self.inner.read_exact_at(offset, buf)?;
        self.damage(offset, buf);
        Ok(())
    }
    fn read_batch(&self, reqs: &mut [ReadRequest<'_>]) -> hexz_core::Result<()> {
        self.batched.fetch_add(1, SeqCst);
        self.inner.read_batch(reqs)?;
        for r in reqs.iter_mut() {
            self.damage(r.offset, r.buf);
        }
        Ok(())
    }
    /// Hands the range over in pieces of 1 to 7,000 bytes: every third through `put`, the
    /// others into the buffer the sink offers (through `put` where it offers none).
    fn read_streamed(
        &self,
        start: u64,
        end: u64,
        sink: &mut dyn RangeSink,
    ) -> hexz_core::Result<bool> {
        self.streamed.fetch_add(1, SeqCst);
        self.streamed_bytes.fetch_add(end - start, SeqCst);
        let mut data = vec![0u8; (end - start) as usize];
        self.inner.read_exact_at(start, &mut data)?;
        self.damage(start, &mut data);
        let mut rng = Rng::new(end);
        let (mut pos, mut k) = (0usize, 0u64);
        while pos < data.len() {
            let n = (1 + rng.below(7000) as usize).min(data.len() - pos);
            let at = start + pos as u64;
            k += 1;
            match if k % 3 == 0 { None } else { sink.direct(at) } {
                Some(buf) => {
                    let n = n.min(buf.len());
                    buf[..n].copy_from_slice(&data[pos..pos + n]);
                    sink.wrote(at, n);
                    pos += n;
                }
                None => {
                    sink.put(at, &data[pos..pos + n]);
                    pos += n;
                }
            }
        }
        Ok(true)
    }
    fn is_remote(&self) -> bool {
        true
    }
    fn describe(&self) -> String {
        "streaming".into()
    }
}

/// 8 MiB of mixed data (raw, compressed, zero and deduplicated blocks) packed, opened
/// through [`Streaming`] with every index page loaded, and the entry of a compressed block
/// near the middle, whose middle byte the backend damages on its next `damage` fetches.
fn streaming_archive(
    damage: usize,
) -> (tempfile::TempDir, Vec<u8>, BlockEntry, Arc<Streaming>, File) {
    let dir = tempfile::tempdir().unwrap();
    let d = mixed_data(8 << 20, BLOCK, 5);
    let (p, _) = pack_files(dir.path(), "a.hxz", Some(&d), None, &PackOptions::default());
    let entries: Vec<BlockEntry> = File::open(&p)
        .unwrap()
        .entries(D)
        .map(|e| e.unwrap())
        .collect();
    let e = *entries
        .iter()
        .skip(entries.len() / 2)
        .find(|e| !e.is_zero() && e.stored_len < e.logical_len)
        .expect("a compressed block");
    assert!(
        entries
            .iter()
            .any(|e| !e.is_zero() && e.stored_len == e.logical_len),
        "some blocks are stored raw"
    );
    let backend = Arc::new(Streaming {
        inner: FileBackend::new(&p).unwrap(),
        at: e.stored_offset + e.stored_len as u64 / 2,
        damage: AtomicUsize::new(0),
        fetches: AtomicUsize::new(0),
        streamed: AtomicUsize::new(0),
        streamed_bytes: AtomicU64::new(0),
        batched: AtomicUsize::new(0),
    });
    let f = File::open_backend(backend.clone(), None, OpenOptions::default()).unwrap();
    assert!(f.entries(D).all(|e| e.is_ok()));
    backend.reset();
    backend.damage.store(damage, SeqCst);
    (dir, d, e, backend, f)
}

fn read_once(f: &File, off: u64, len: usize) -> hexz_core::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let n = decode_on_this_thread(|| f.read_once_into(D, off, &mut buf))?;
    assert_eq!(n, len);
    Ok(buf)
}

/// A whole-stream one-pass read is one streamed request and returns every byte; nothing is
/// fetched otherwise and nothing is cached (a later read asks the backend again).
#[test]
fn a_one_pass_read_streams_its_blocks_and_decodes_them_as_they_arrive() {
    let (_dir, d, e, backend, f) = streaming_archive(0);
    assert!(
        read_once(&f, 0, d.len()).unwrap() == d,
        "the bytes read back"
    );
    assert_eq!(backend.streamed.load(SeqCst), 1, "one streamed request");
    assert_eq!(backend.batched.load(SeqCst), 0, "nothing fetched otherwise");
    let stored: u64 = f
        .entries(D)
        .map(|e| e.unwrap())
        .filter(|e| !e.is_zero())
        .map(|e| (e.stored_offset, e.stored_len))
        .collect::<std::collections::BTreeSet<_>>()
        .iter()
        .map(|&(_, l)| u64::from(l))
        .sum();
    assert_eq!(
        backend.streamed_bytes.load(SeqCst),
        stored,
        "the request covers the stored blocks, each once"
    );
    let at = e.logical_offset as usize;
    assert!(f.read_at(D, at as u64, 10).unwrap() == d[at..at + 10]);
    assert_eq!(backend.batched.load(SeqCst), 1, "the block was not cached");
}

/// A read that starts and ends inside blocks streams the blocks it covers whole; the two
/// partial ones go through the batched path.
#[test]
fn partly_covered_blocks_of_a_one_pass_read_are_fetched_apart() {
    let (_dir, d, _e, backend, f) = streaming_archive(0);
    let (off, len) = (100_000u64, 3 << 20);
    assert!(read_once(&f, off, len).unwrap() == d[off as usize..off as usize + len]);
    assert_eq!(backend.streamed.load(SeqCst), 1, "one streamed request");
    assert_eq!(
        backend.batched.load(SeqCst),
        1,
        "the partial blocks in one batch"
    );
}

/// Reads that keep blocks (`read_at_into`) or decode on the pool do not stream.
#[test]
fn reads_that_cache_or_decode_on_the_pool_are_not_streamed() {
    let (_dir, d, _e, backend, f) = streaming_archive(0);
    let mut buf = vec![0u8; 1 << 20];
    decode_on_this_thread(|| f.read_at_into(D, 0, &mut buf)).unwrap();
    assert!(buf == d[..1 << 20]);
    f.read_once_into(D, 1 << 20, &mut buf).unwrap();
    assert!(buf == d[1 << 20..2 << 20]);
    assert_eq!(backend.streamed.load(SeqCst), 0);
    assert!(backend.batched.load(SeqCst) >= 2);
}

/// A block damaged in transit fails its check as it streams in, is fetched once more, and
/// the read returns the right bytes.
#[test]
fn a_block_damaged_in_a_streamed_read_is_fetched_again() {
    let (_dir, d, _e, backend, f) = streaming_archive(1);
    assert!(read_once(&f, 0, d.len()).unwrap() == d);
    assert_eq!(backend.damage.load(SeqCst), 0, "the damage was applied");
    assert_eq!(
        backend.fetches.load(SeqCst),
        2,
        "streamed, then fetched again"
    );
    assert_eq!(backend.streamed.load(SeqCst), 1);
}

/// A block damaged at the origin fails the read with an error naming it, after one more
/// fetch.
#[test]
fn a_block_damaged_at_the_origin_fails_a_streamed_read_naming_it() {
    let (_dir, d, e, backend, f) = streaming_archive(usize::MAX);
    let block_no = f
        .entries(D)
        .position(|x| x.unwrap() == e)
        .expect("the damaged block");
    let err = read_once(&f, 0, d.len()).unwrap_err().to_string();
    assert!(
        err.contains(&format!("block {block_no}")),
        "unexpected error: {err}"
    );
    assert_eq!(
        backend.fetches.load(SeqCst),
        2,
        "streamed, then fetched again"
    );
}
