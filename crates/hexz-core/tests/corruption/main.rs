//! Damaged and hostile archives: every kind of damage is a clear error naming the broken
//! structure or block, never a panic, never wrong bytes, never a huge allocation.

#[path = "../common/mod.rs"]
mod common;

use common::*;
use hexz_core::format::header::HEADER_SIZE;
use hexz_core::format::index::{MASTER_HEADER_SIZE, MAX_MASTER_LEN, STREAM_RECORD_SIZE};
use hexz_core::format::{BlockEntry, Codec};
use hexz_core::ops::{self, PackOptions};
use hexz_core::{Error, File, OpenOptions, SnapshotStream};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;
use std::sync::Arc;

mod blocks;
mod header;
mod index;
mod truncation;

// ---------------------------------------------------------------------------------------------
// Allocation watch: the largest single allocation made by the current thread.

struct Watch;

thread_local! {
    static MAX_ALLOC: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Watch {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = MAX_ALLOC.try_with(|m| m.set(m.get().max(l.size())));
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let _ = MAX_ALLOC.try_with(|m| m.set(m.get().max(l.size())));
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let _ = MAX_ALLOC.try_with(|m| m.set(m.get().max(new)));
        unsafe { System.realloc(p, l, new) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Watch = Watch;

/// Runs `f` and returns its result and the largest allocation it made on this thread.
fn max_alloc<T>(f: impl FnOnce() -> T) -> (T, usize) {
    MAX_ALLOC.with(|m| m.set(0));
    let r = f();
    (r, MAX_ALLOC.with(|m| m.get()))
}

// ---------------------------------------------------------------------------------------------
// Fixture.

const BS: usize = 4096;
const DISK_BLOCKS: usize = 1100;

struct Fixture {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    path: PathBuf,
    bytes: Vec<u8>,
    disk: Vec<u8>,
    memory: Vec<u8>,
}

/// Block i of the disk stream: zero (i%5==0), random (1, 2), a compressible pattern unique to
/// the block (3), or a copy of block 1 (4, deduplicated).
fn disk_data() -> Vec<u8> {
    let mut rng = Rng::new(99);
    let mut v = vec![0u8; DISK_BLOCKS * BS];
    for (i, b) in v.chunks_mut(BS).enumerate() {
        match i % 5 {
            0 => {}
            1 | 2 => rng.fill(b),
            3 => {
                let tag = (i as u32).to_le_bytes();
                for (j, x) in b.iter_mut().enumerate() {
                    *x = if j % 64 < 4 {
                        tag[j % 4]
                    } else {
                        (j % 7) as u8
                    };
                }
            }
            _ => {}
        }
    }
    for i in (4..DISK_BLOCKS).step_by(5) {
        let (a, b) = v.split_at_mut(i * BS);
        b[..BS].copy_from_slice(&a[BS..2 * BS]);
    }
    v
}

fn fixture() -> Fixture {
    fixture_with(true)
}

/// The fixture, in format 1.1 (`bound_crc`) or 1.0.
fn fixture_with(bound_crc: bool) -> Fixture {
    let d = tempfile::tempdir().unwrap();
    let disk = disk_data();
    let memory = mixed_data(3 * BS + 100, BS, 5);
    let opts = PackOptions {
        codec: Codec::Lz4,
        block_size: BS as u32,
        bound_crc,
        ..PackOptions::default()
    };
    let (path, _) = pack_files(d.path(), "a.hxz", Some(&disk), Some(&memory), &opts);
    let bytes = std::fs::read(&path).unwrap();
    Fixture {
        dir: d.path().to_path_buf(),
        _dir: d,
        path,
        bytes,
        disk,
        memory,
    }
}

impl Fixture {
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
    fn data(&self, s: SnapshotStream) -> &[u8] {
        match s {
            SnapshotStream::Disk => &self.disk,
            SnapshotStream::Memory => &self.memory,
        }
    }
}

fn open_mem(bytes: Vec<u8>) -> hexz_core::Result<File> {
    File::open_backend(
        Arc::new(MemBackend(bytes)),
        None,
        OpenOptions {
            cache_bytes: 0,
            read_ahead: 0,
            ..OpenOptions::default()
        },
    )
}

fn err_of<T>(r: hexz_core::Result<T>, what: &str) -> Error {
    match r {
        Ok(_) => panic!("{what}: expected an error, got Ok"),
        Err(e) => e,
    }
}

fn all_entries(f: &File, s: SnapshotStream) -> Vec<BlockEntry> {
    let rec = f.master().stream(s).unwrap();
    (0..rec.pages.len())
        .flat_map(|p| f.index_page(s, p).unwrap().entries.clone())
        .collect()
}

/// First block at or after `from` stored with `codec` whose stored bytes no other block
/// shares: (block number, entry).
fn unique_block(f: &File, s: SnapshotStream, from: usize, codec: Codec) -> (u64, BlockEntry) {
    unique_block_any(f, s, from, Some(codec))
}

fn unique_block_any(
    f: &File,
    s: SnapshotStream,
    from: usize,
    codec: Option<Codec>,
) -> (u64, BlockEntry) {
    let all = all_entries(f, s);
    for (i, e) in all.iter().enumerate().skip(from) {
        if e.is_zero() || codec.is_some_and(|c| e.codec != c) {
            continue;
        }
        let shared = all
            .iter()
            .filter(|x| !x.is_zero() && x.stored_offset == e.stored_offset)
            .count();
        if shared == 1 {
            return (i as u64, *e);
        }
    }
    panic!("no unique {codec:?} block after {from} in {s}");
}

fn stream_idx(s: SnapshotStream) -> usize {
    match s {
        SnapshotStream::Disk => 0,
        SnapshotStream::Memory => 1,
    }
}

fn assert_corrupt_block(e: &Error, s: SnapshotStream, block: u64, offset: u64, detail: &str) {
    match e {
        Error::CorruptBlock {
            stream,
            block: b,
            offset: o,
            detail: d,
        } => {
            assert_eq!((*stream, *b, *o), (s, block, offset), "{e}");
            assert!(d.contains(detail), "detail of {e} lacks '{detail}'");
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("block {block} of {s} stream")),
                "{msg}"
            );
        }
        other => panic!("expected CorruptBlock {s} block {block}, got {other:?}"),
    }
}

/// Edits an index page entry field, re-seals page and master hashes, and returns the archive.
fn edit_entry(fx: &Fixture, s: SnapshotStream, block: usize, edit: impl Fn(&mut [u8])) -> Vec<u8> {
    let f = File::open(&fx.path).unwrap();
    let rec = f.master().stream(s).unwrap();
    let page_no = block / 1024;
    let mut a = fx.bytes.clone();
    let at = entry_offset(rec.pages[page_no].offset, block % 1024);
    edit(&mut a[at..at + 64]);
    reseal_page(&mut a, stream_idx(s), page_no);
    a
}
