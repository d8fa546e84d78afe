//! Read-ahead of positional reads (`StreamReader::read_at`), counted through
//! `CountingBackend`: records read in index order (what a PyTorch map-style dataset does
//! with `num_workers=0`) are fetched ahead in a few large calls, also when the records leave
//! small gaps between them; records read in random order cost exactly their own blocks, with
//! nothing fetched ahead; and blocks stored raw (incompressible data), served from the
//! fetched buffer without a copy, are still checked.

mod common;

use common::{pack_files, Rng};
use hexz_core::cache::prefetch::MAX_SKIP;
use hexz_core::format::BlockEntry;
use hexz_core::ops::PackOptions;
use hexz_core::store::local::FileBackend;
use hexz_core::store::testing::{Counters, CountingBackend};
use hexz_core::store::StorageBackend;
use hexz_core::{File, OpenOptions, SnapshotStream};
use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

const BLOCK: u64 = 64 << 10;
const D: SnapshotStream = SnapshotStream::Disk;

fn open_counted(path: &Path, opts: OpenOptions) -> (File, Arc<Counters>) {
    let inner: Arc<dyn StorageBackend> = Arc::new(FileBackend::new(path).unwrap());
    let b = CountingBackend::new(inner);
    let c = b.counters();
    let f = File::open_backend(Arc::new(b), None, opts).unwrap();
    // Load every index page now, so the counts below are block fetches only.
    assert!(f.entries(D).all(|e| e.is_ok()));
    c.reset();
    (f, c)
}

/// `len` incompressible bytes: every block is stored raw.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng::new(seed).fill(&mut v);
    v
}

/// Records of 4–150 KiB in index order, starting `gap(i)` bytes after the previous one.
fn records(total: u64, seed: u64, gap: impl Fn(&mut Rng) -> u64) -> Vec<(u64, u64)> {
    let mut rng = Rng::new(seed);
    let mut v = Vec::new();
    let mut off = 0;
    loop {
        let len = (4 << 10) + rng.below(146 << 10);
        if off + len > total {
            return v;
        }
        v.push((off, len));
        off += len + gap(&mut rng);
    }
}

/// Stored bytes of the blocks `[off, off+len)` spans.
fn stored_span(f: &File, off: u64, len: u64) -> u64 {
    f.entries(D)
        .map(|e| e.unwrap())
        .filter(|e| e.logical_offset < off + len && off < e.logical_end() && !e.is_zero())
        .map(|e| e.stored_len as u64)
        .sum()
}

/// Reads `recs` through one reader's `read_at`, checking every byte; with `settle`, waits
/// for the read-ahead after each record.
fn read_records(f: &File, want: &[u8], recs: &[(u64, u64)], settle: bool) {
    let mut r = f.reader(D).unwrap();
    let mut buf = Vec::new();
    for (i, &(off, len)) in recs.iter().enumerate() {
        buf.resize(len as usize, 0);
        assert_eq!(r.read_at(off, &mut buf).unwrap(), len as usize);
        assert!(
            buf == want[off as usize..(off + len) as usize],
            "record {i} at {off} (+{len}) differs"
        );
        if settle {
            f.wait_for_read_ahead();
        }
    }
    f.wait_for_read_ahead();
}

/// Index-order reads, contiguous or with small gaps, are fetched ahead: few large backend
/// calls instead of one per record, and no more bytes than the records span plus one
/// read-ahead window.
#[test]
fn index_order_positional_reads_are_read_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let d = random_bytes(24 << 20, 1);
    let (p, _) = pack_files(dir.path(), "a.hxz", Some(&d), None, &PackOptions::default());
    let window = 2u64 << 20;
    let opts = || OpenOptions {
        read_ahead: window,
        ..OpenOptions::default()
    };
    let contiguous = records(d.len() as u64, 2, |_| 0);
    let gappy = records(d.len() as u64, 3, |rng| rng.below(MAX_SKIP + 1));
    for (what, recs) in [("contiguous", &contiguous), ("gaps", &gappy)] {
        for settle in [true, false] {
            let (f, c) = open_counted(&p, opts());
            read_records(&f, &d, recs, settle);
            let first = recs[0];
            let last = recs[recs.len() - 1];
            let span = stored_span(&f, first.0, last.0 + last.1 - first.0);
            let calls = c.calls();
            if settle {
                // Each read-ahead has finished before the next record: after the first two
                // records, every record finds its blocks fetched ahead, one call per half
                // window; and nothing is fetched beyond one window past the last record.
                assert!(
                    calls <= 3 + span / (window / 2),
                    "{what}: {calls} backend calls for {} records over {span} bytes",
                    recs.len()
                );
                assert!(
                    calls * 4 < recs.len() as u64,
                    "{what}: {calls} calls for {} records",
                    recs.len()
                );
                assert!(
                    c.bytes() <= span + window + BLOCK,
                    "{what}: fetched {} bytes for a {span}-byte span",
                    c.bytes()
                );
            } else {
                // Racing the read-ahead, a record may fetch a block itself, and a late
                // read-ahead job may fetch it again; still bounded.
                assert!(
                    c.bytes() <= 2 * span + window + BLOCK,
                    "{what} (racing): fetched {} bytes for a {span}-byte span",
                    c.bytes()
                );
            }
        }
    }
}

/// Records read in random order (no record starting within `MAX_SKIP` after the previous
/// one) fetch exactly the blocks they span: nothing ahead.
#[test]
fn random_order_positional_reads_fetch_nothing_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let d = random_bytes(24 << 20, 4);
    let (p, _) = pack_files(dir.path(), "a.hxz", Some(&d), None, &PackOptions::default());
    let (f, c) = open_counted(&p, OpenOptions::default());
    let all = records(d.len() as u64, 5, |_| 0);
    let mut rng = Rng::new(6);
    let mut order: Vec<(u64, u64)> = Vec::new();
    while order.len() < 80 {
        let (off, len) = all[rng.below(all.len() as u64) as usize];
        let far = order.last().is_none_or(|&(po, pl)| {
            let end = po + pl;
            off < end || off - end > MAX_SKIP
        });
        // Blocks not fetched yet, so each record's cost is its own span.
        let fresh = order
            .iter()
            .all(|&(o, l)| off + len + BLOCK <= o || o + l + BLOCK <= off);
        if far && fresh {
            order.push((off, len));
        }
    }
    let want: u64 = order.iter().map(|&(o, l)| stored_span(&f, o, l)).sum();
    c.reset();
    read_records(&f, &d, &order, true);
    assert_eq!(
        c.bytes(),
        want,
        "random-order reads fetched more than they span"
    );
    // One call per record, or two when it covers some blocks whole (read straight into the
    // caller's buffer) and others in part.
    assert!(
        c.calls() <= 2 * order.len() as u64,
        "{} calls for {} random records",
        c.calls(),
        order.len()
    );
}

/// Size of each read of [`read_until_error`].
const READ: usize = 20_000;

/// Reads `f`'s disk stream from the start in reads of [`READ`] bytes through one reader
/// (letting read-ahead finish after each), checking every byte against `d`, until a read
/// fails: returns its offset and error. The failing read must be the one that covers the
/// start of `damaged`, the block the test damaged.
fn read_until_error(f: &File, d: &[u8], damaged: &BlockEntry) -> (u64, String) {
    let mut r = f.reader(D).unwrap();
    let mut buf = vec![0u8; READ];
    let mut off = 0u64;
    let err = loop {
        match r.read_at(off, &mut buf) {
            Ok(0) => panic!("the whole stream was read without an error"),
            Ok(n) => {
                assert!(
                    buf[..n] == d[off as usize..off as usize + n],
                    "bytes at {off}"
                );
                off += n as u64;
            }
            Err(err) => break err.to_string(),
        }
        f.wait_for_read_ahead();
    };
    let at = damaged.logical_offset;
    assert!(
        off <= at && at < off + READ as u64,
        "the error came at {off}, the damaged block starts at {at}"
    );
    (off, err)
}

/// Packs `d` as the disk stream of `dir/a.hxz`; returns its path and the entry of block `n`.
fn pack_with_block(dir: &Path, d: &[u8], n: usize) -> (std::path::PathBuf, BlockEntry) {
    let (p, _) = pack_files(dir, "a.hxz", Some(d), None, &PackOptions::default());
    let e = File::open(&p)
        .unwrap()
        .entries(D)
        .map(|e| e.unwrap())
        .nth(n)
        .unwrap();
    (p, e)
}

/// A damaged block stored raw is an error naming the block, whether a foreground read or
/// the read-ahead fetches it first; the bytes around it still read back.
#[test]
fn damaged_raw_block_is_an_error_through_read_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let d = random_bytes(8 << 20, 7);
    let (p, e) = pack_with_block(dir.path(), &d, 40);
    assert_eq!(e.stored_len, e.logical_len, "random data is stored raw");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[e.stored_offset as usize + 7] ^= 0x01;
    std::fs::write(&p, &bytes).unwrap();
    let (f, _) = open_counted(&p, OpenOptions::default());
    let (_, err) = read_until_error(&f, &d, &e);
    assert!(err.contains("CRC32"), "unexpected error: {err}");
    // A partial read of the damaged block alone fails too (it was not cached).
    assert!(f.read_at(D, e.logical_offset + 100, 100).is_err());
    let after = e.logical_end();
    assert!(f.read_at(D, after, 1000).unwrap() == d[after as usize..after as usize + 1000]);
}

/// A "remote" backend over a local file whose next `damage` fetches covering `at` flip that
/// byte (as a damaged transfer would: `usize::MAX` is an archive damaged at the origin);
/// later fetches are clean. Counts the fetches that cover `at`.
struct Damaging {
    inner: FileBackend,
    at: u64,
    damage: AtomicUsize,
    fetches: AtomicUsize,
    /// Name of the thread of every fetch covering `at`.
    threads: std::sync::Mutex<Vec<String>>,
}

impl Damaging {
    fn damage(&self, offset: u64, buf: &mut [u8]) {
        let end = offset + buf.len() as u64;
        if offset <= self.at && self.at < end {
            self.fetches.fetch_add(1, SeqCst);
            let name = std::thread::current().name().unwrap_or("?").to_string();
            self.threads.lock().unwrap().push(name);
            if self
                .damage
                .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                buf[(self.at - offset) as usize] ^= 0x20;
            }
        }
    }
}

impl StorageBackend for Damaging {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> hexz_core::Result<()> {
        self.inner.read_exact_at(offset, buf)?;
        self.damage(offset, buf);
        Ok(())
    }
    fn read_batch(&self, reqs: &mut [hexz_core::store::ReadRequest<'_>]) -> hexz_core::Result<()> {
        self.inner.read_batch(reqs)?;
        for r in reqs.iter_mut() {
            self.damage(r.offset, r.buf);
        }
        Ok(())
    }
    fn is_remote(&self) -> bool {
        true
    }
    fn describe(&self) -> String {
        "damaging".into()
    }
}

/// An 8 MiB archive of compressible blocks (so read-ahead keeps stored bytes) behind a
/// [`Damaging`] backend that damages block 40 on its next `damage` fetches of it.
fn damaging_archive(
    damage: usize,
) -> (tempfile::TempDir, Vec<u8>, BlockEntry, Arc<Damaging>, File) {
    let dir = tempfile::tempdir().unwrap();
    // Half random, half repetitive: blocks are stored compressed (so read-ahead keeps
    // stored bytes), and the archive is much larger than what opening it reads.
    let mut d = random_bytes(8 << 20, 11);
    for (i, b) in d.iter_mut().enumerate() {
        if i % 4096 < 2048 {
            *b = (i / 7 % 61) as u8;
        }
    }
    let (p, e) = pack_with_block(dir.path(), &d, 40);
    assert!(e.stored_len < e.logical_len, "blocks are stored compressed");
    let backend = Arc::new(Damaging {
        inner: FileBackend::new(&p).unwrap(),
        at: e.stored_offset + e.stored_len as u64 / 2,
        damage: AtomicUsize::new(0),
        fetches: AtomicUsize::new(0),
        threads: Default::default(),
    });
    let f = File::open_backend(backend.clone(), None, OpenOptions::default()).unwrap();
    assert!(f.is_remote());
    assert!(f.entries(D).all(|e| e.is_ok()));
    backend.damage.store(damage, SeqCst);
    (dir, d, e, backend, f)
}

/// Over a remote archive, read-ahead keeps blocks as their stored bytes and the reader
/// decodes them: a block damaged in transit and fetched ahead fails its check when read,
/// is fetched once more, past the damaged copy, and the read returns the right bytes.
#[test]
fn remote_block_damaged_in_transit_is_fetched_again() {
    let (_dir, d, _e, backend, f) = damaging_archive(1);
    let mut r = f.reader(D).unwrap();
    let mut buf = vec![0u8; READ];
    let mut off = 0u64;
    while off < d.len() as u64 {
        let n = r.read_at(off, &mut buf).unwrap();
        assert!(
            buf[..n] == d[off as usize..off as usize + n],
            "bytes at {off}"
        );
        off += n as u64;
        f.wait_for_read_ahead();
    }
    assert_eq!(backend.damage.load(SeqCst), 0, "the damage was applied");
    assert_eq!(
        backend.fetches.load(SeqCst),
        2,
        "fetched, then fetched again"
    );
}

/// A remote block damaged at the origin (every copy) is fetched once more, then refused
/// with an error naming it; nothing damaged is kept, and the blocks around it read back.
#[test]
fn remote_block_damaged_at_the_origin_is_refused_after_one_more_fetch() {
    let (_dir, d, e, backend, f) = damaging_archive(usize::MAX);
    let (off, err) = read_until_error(&f, &d, &e);
    assert!(err.contains("block 40"), "unexpected error: {err}");
    let fetched = backend.fetches.load(SeqCst);
    assert!(fetched >= 2, "fetched {fetched} times");
    // The next read of it fails the same way, after fetching it again (no poisoned copy
    // is served, and nothing is cached).
    assert!(f
        .reader(D)
        .unwrap()
        .read_at(off, &mut vec![0u8; READ])
        .is_err());
    assert!(backend.fetches.load(SeqCst) > fetched);
    let after = e.logical_end();
    assert!(f.read_at(D, after, 1000).unwrap() == d[after as usize..after as usize + 1000]);
}

/// The second fetch of a damaged block is made by the reading thread, never on the decode
/// pool (blocking network I/O there would stall every decode): one read of 64 blocks,
/// decoded in parallel, with block 40 damaged in transit.
#[test]
fn damaged_block_is_fetched_again_off_the_decode_pool() {
    let (_dir, d, e, backend, f) = damaging_archive(1);
    let len = 64 * e.logical_len as usize;
    assert!(f.read_at(D, 0, len).unwrap() == d[..len]);
    assert_eq!(
        backend.fetches.load(SeqCst),
        2,
        "fetched, then fetched again"
    );
    let threads = backend.threads.lock().unwrap().clone();
    assert!(
        threads.iter().all(|t| !t.starts_with("hexz-decode")),
        "fetched on {threads:?}"
    );
}
