//! Damaged and hostile archives: every kind of damage is a clear error naming the broken
//! structure or block, never a panic, never wrong bytes, never a huge allocation.

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

// ---------------------------------------------------------------------------------------------
// Header.

#[test]
fn every_header_byte_flip_is_detected() {
    let fx = fixture();
    for pos in 0..HEADER_SIZE {
        for mask in [0x01u8, 0x80] {
            let mut a = fx.bytes.clone();
            a[pos] ^= mask;
            let e = err_of(open_mem(a), &format!("header byte {pos} ^ {mask:#x}"));
            match (pos, &e) {
                (0..=7, Error::NotAnArchive(m)) => assert!(m.contains("magic"), "{e}"),
                (8..=9, Error::UnsupportedVersion { major, .. }) => assert_ne!(*major, 1),
                (10.., Error::CorruptStructure { structure, detail }) => {
                    assert!(structure.starts_with("header"), "byte {pos}: {e}");
                    assert!(detail.contains("CRC32"), "byte {pos}: {e}");
                }
                _ => panic!("header byte {pos} ^ {mask:#x}: unexpected error {e:?}"),
            }
        }
    }
    // Through a file, the message names the file.
    let mut a = fx.bytes.clone();
    a[100] ^= 0x10;
    let p = fx.write("hdr.hxz", &a);
    let msg = err_of(File::open(&p), "flipped header").to_string();
    assert!(msg.contains("header") && msg.contains("hdr.hxz"), "{msg}");
}

#[test]
fn unknown_major_version_is_refused_with_a_clear_message() {
    let fx = fixture();
    let mut a = fx.bytes.clone();
    a[8..10].copy_from_slice(&2u16.to_le_bytes());
    fix_header_crc(&mut a);
    let p = fx.write("v2.hxz", &a);
    let e = err_of(File::open(&p), "major version 2");
    assert!(
        matches!(
            e,
            Error::UnsupportedVersion {
                major: 2,
                minor: 1,
                supported: 1
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("unsupported archive format version 2"),
        "{e}"
    );
    // Major 0 as well.
    a[8..10].copy_from_slice(&0u16.to_le_bytes());
    fix_header_crc(&mut a);
    let e = err_of(open_mem(a), "major version 0");
    assert!(
        e.to_string()
            .contains("unsupported archive format version 0.1"),
        "{e}"
    );
}

#[test]
fn newer_minor_version_opens_and_reads() {
    let fx = fixture();
    let mut a = fx.bytes.clone();
    a[10..12].copy_from_slice(&7u16.to_le_bytes());
    fix_header_crc(&mut a);
    let p = fx.write("minor7.hxz", &a);
    let f = File::open(&p).unwrap();
    assert_eq!((f.header().major, f.header().minor), (1, 7));
    assert!(read_all(&f, SnapshotStream::Disk).unwrap() == fx.disk);
    assert!(read_all(&f, SnapshotStream::Memory).unwrap() == fx.memory);
    ops::verify(&f, None).unwrap();
}

#[test]
fn unknown_required_flag_is_refused_and_optional_flag_ignored() {
    let fx = fixture();
    let mut a = fx.bytes.clone();
    // The fixture's own flags (BOUND_CRC) stay set: each case adds one bit.
    let own = u32::from_le_bytes(a[12..16].try_into().unwrap());
    a[12..16].copy_from_slice(&(own | 1u32 << 9).to_le_bytes());
    fix_header_crc(&mut a);
    let e = err_of(open_mem(a.clone()), "unknown required flag");
    assert!(matches!(e, Error::Unsupported(_)), "{e:?}");
    assert!(e.to_string().contains("0x0200"), "{e}");
    // Bit 0: encrypted.
    a[12..16].copy_from_slice(&(own | 1).to_le_bytes());
    fix_header_crc(&mut a);
    let e = err_of(open_mem(a.clone()), "encrypted");
    assert!(e.to_string().contains("encrypted"), "{e}");
    // High (optional) bits are ignored.
    a[12..16].copy_from_slice(&(own | 1u32 << 20).to_le_bytes());
    fix_header_crc(&mut a);
    let f = open_mem(a).unwrap();
    assert!(read_all(&f, SnapshotStream::Memory).unwrap() == fx.memory);
}

#[test]
fn header_fields_inconsistent_with_the_index_are_refused() {
    let fx = fixture();
    type Mutation = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Mutation, &str)> = vec![
        (
            "disk size",
            Box::new(|a| {
                let v = le_u64(a, 32) + 1;
                a[32..40].copy_from_slice(&v.to_le_bytes())
            }),
            "master index",
        ),
        (
            "memory bit cleared",
            Box::new(|a| a[48] = 1),
            "master index",
        ),
        ("unknown stream bit", Box::new(|a| a[48] = 7), "stream bits"),
        ("codec id", Box::new(|a| a[16] = 9), "unknown codec id 9"),
        (
            "block size 0",
            Box::new(|a| a[20..24].copy_from_slice(&0u32.to_le_bytes())),
            "block size",
        ),
        (
            "block size 1 GiB",
            Box::new(|a| a[20..24].copy_from_slice(&(1u32 << 30).to_le_bytes())),
            "block size",
        ),
        (
            "master inside the header",
            Box::new(|a| a[56..64].copy_from_slice(&100u64.to_le_bytes())),
            "master index at offset 100",
        ),
        (
            "master offset overflows",
            Box::new(|a| a[56..64].copy_from_slice(&(u64::MAX - 3).to_le_bytes())),
            "lies outside",
        ),
        (
            "master too short",
            Box::new(|a| a[64..68].copy_from_slice(&20u32.to_le_bytes())),
            "master index",
        ),
        (
            "master one byte short",
            Box::new(|a| {
                let v = le_u32(a, 64) - 1;
                a[64..68].copy_from_slice(&v.to_le_bytes())
            }),
            "master index",
        ),
    ];
    for (what, edit, want) in cases {
        let mut a = fx.bytes.clone();
        edit(&mut a);
        fix_header_crc(&mut a);
        let (r, big) = max_alloc(|| open_mem(a));
        let e = err_of(r, what);
        assert!(e.to_string().contains(want), "{what}: {e}");
        assert!(big < 1 << 20, "{what}: allocated {big} bytes");
    }
}

// ---------------------------------------------------------------------------------------------
// Index pages and master index.

#[test]
fn flipped_index_page_is_reported_for_reads_it_covers() {
    let fx = fixture();
    let f0 = File::open(&fx.path).unwrap();
    let pages = f0.master().streams[0].pages.clone();
    assert_eq!(pages.len(), 2);
    for (page_no, r) in pages.iter().enumerate() {
        for k in [0usize, 4, 8, 20, 16 + 64 * 5 + 33, r.len as usize - 1] {
            let mut a = fx.bytes.clone();
            a[r.offset as usize + k] ^= 0x04;
            let p = fx.write("page.hxz", &a);
            let f = File::open(&p).expect("pages are checked when used, not at open");
            let inside = r.first_logical + 5 * BS as u64 + 17;
            let e = err_of(
                f.read_at(SnapshotStream::Disk, inside, 100),
                "read in flipped page",
            );
            let want = format!("index page {page_no} of disk stream");
            match &e {
                Error::CorruptStructure { structure, .. } => {
                    assert!(structure.contains(&want), "page {page_no} byte {k}: {e}")
                }
                other => panic!("page {page_no} byte {k}: {other:?}"),
            }
            assert!(e.to_string().contains("index page"), "{e}");
            // The other page still serves correct bytes.
            let other = &pages[1 - page_no];
            let off = other.first_logical + 3 * BS as u64 + 1;
            assert!(
                f.read_at(SnapshotStream::Disk, off, 2 * BS).unwrap()
                    == expected(&fx.disk, off, 2 * BS)
            );
            // And the memory stream is unaffected.
            assert!(read_all(&f, SnapshotStream::Memory).unwrap() == fx.memory);
            let e = err_of(ops::verify(&f, None), "verify with a flipped page");
            assert!(e.to_string().contains(&want), "{e}");
        }
    }
}

#[test]
fn flipped_master_index_fails_open() {
    let fx = fixture();
    let (mo, ml) = master_range(&fx.bytes);
    for k in [
        0,
        3,
        4,
        8,
        16,
        17,
        16 + 48 + 5,
        ml / 2,
        ml - 33,
        ml - 32,
        ml - 1,
    ] {
        let mut a = fx.bytes.clone();
        a[mo + k] ^= 0x20;
        let p = fx.write("master.hxz", &a);
        let e = err_of(File::open(&p), &format!("master byte {k}"));
        match &e {
            Error::CorruptStructure { structure, .. } => {
                assert!(structure.starts_with("master index"), "byte {k}: {e}")
            }
            other => panic!("master byte {k}: {other:?}"),
        }
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

#[test]
fn resealed_but_invalid_entries_are_refused() {
    let fx = fixture();
    let d = SnapshotStream::Disk;
    let f = File::open(&fx.path).unwrap();
    let (blk, ent) = unique_block(&f, d, 0, Codec::None);
    let len = fx.bytes.len() as u64;
    type Edit = Box<dyn Fn(&mut [u8])>;
    let struct_cases: Vec<(&str, usize, Edit, &str)> = vec![
        (
            "logical offset",
            blk as usize,
            Box::new(|e| e[0] ^= 1),
            "breaks the sequence",
        ),
        (
            "logical length of last entry",
            1023,
            Box::new(|e| e[8..12].copy_from_slice(&4000u32.to_le_bytes())),
            "blocks end at logical offset",
        ),
        (
            "logical length 0",
            blk as usize,
            Box::new(|e| e[8..12].copy_from_slice(&0u32.to_le_bytes())),
            "logical length 0",
        ),
        (
            "logical length huge",
            blk as usize,
            Box::new(|e| e[8..12].copy_from_slice(&u32::MAX.to_le_bytes())),
            "out of range",
        ),
        (
            "codec id",
            blk as usize,
            Box::new(|e| e[28] = 9),
            "unknown codec id 9",
        ),
        (
            "flags",
            blk as usize,
            Box::new(|e| e[29] = 0x80),
            "unknown flags",
        ),
        (
            "zero flag on a stored block",
            blk as usize,
            Box::new(|e| e[29] = 1),
            "zero block with stored bytes",
        ),
        (
            "stored length 0",
            blk as usize,
            Box::new(|e| e[12..16].copy_from_slice(&0u32.to_le_bytes())),
            "stored length 0",
        ),
        (
            "stored length u32::MAX",
            blk as usize,
            Box::new(|e| e[12..16].copy_from_slice(&u32::MAX.to_le_bytes())),
            "stored length",
        ),
        (
            "source archive",
            blk as usize,
            Box::new(|e| e[30] = 3),
            "ancestor",
        ),
    ];
    for (what, block, edit, want) in struct_cases {
        let a = edit_entry(&fx, d, block, edit);
        let f = open_mem(a).unwrap();
        let page_no = block / 1024;
        let (r, big) = max_alloc(|| f.read_at(d, (block * BS) as u64, 10));
        let e = err_of(r, what);
        assert!(big < 1 << 20, "{what}: allocated {big} bytes");
        let msg = e.to_string();
        assert!(msg.contains(want), "{what}: {msg}");
        assert!(
            msg.contains(&format!("index page {page_no} of disk stream"))
                || matches!(e, Error::CorruptBlock { block: b, .. } if b == block as u64),
            "{what}: {msg}"
        );
    }
    let block_cases: Vec<(&str, Edit, &str)> = vec![
        (
            "stored offset past the end",
            Box::new(move |e| e[16..24].copy_from_slice(&len.to_le_bytes())),
            "outside",
        ),
        (
            "stored offset near u64::MAX",
            Box::new(|e| e[16..24].copy_from_slice(&(u64::MAX - 10).to_le_bytes())),
            "outside",
        ),
        (
            "stored offset inside the header",
            Box::new(|e| e[16..24].copy_from_slice(&0u64.to_le_bytes())),
            "outside",
        ),
        ("crc32", Box::new(|e| e[24] ^= 0xff), "CRC32 mismatch"),
        // Format 1.1: the hash is inside the bound CRC, so a changed hash fails the CRC
        // (a 1.0 archive catches it with BLAKE3: tests/bound_crc.rs).
        (
            "content hash",
            Box::new(|e| e[40] ^= 0xff),
            "bound CRC32 mismatch",
        ),
        (
            "codec none -> lz4",
            Box::new(|e| e[28] = Codec::Lz4 as u8),
            "",
        ),
    ];
    for (what, edit, want) in block_cases {
        let a = edit_entry(&fx, d, blk as usize, edit);
        let f = open_mem(a).unwrap();
        let e = err_of(f.read_at(d, ent.logical_offset, BS), what);
        assert_corrupt_block(&e, d, blk, ent.logical_offset, want);
        // Neighbours still read correctly.
        let next = ent.logical_offset + BS as u64;
        assert!(f.read_at(d, next, BS).unwrap() == expected(&fx.disk, next, BS));
        let e = err_of(ops::verify(&f, None), what);
        assert_corrupt_block(&e, d, blk, ent.logical_offset, want);
    }
}

#[test]
fn page_of_the_wrong_stream_is_refused() {
    let fx = fixture();
    let f = File::open(&fx.path).unwrap();
    let r = f.master().streams[0].pages[0];
    let mut a = fx.bytes.clone();
    a[r.offset as usize + 4] = 1; // claims to belong to the memory stream
    reseal_page(&mut a, 0, 0);
    let f = open_mem(a).unwrap();
    let e = err_of(f.read_at(SnapshotStream::Disk, 0, 1), "stream id");
    assert!(
        e.to_string().contains("index page 0 of disk stream")
            && e.to_string().contains("stream id 1"),
        "{e}"
    );
}

#[test]
fn huge_counts_and_lengths_fail_without_huge_allocations() {
    // The watch itself works.
    let (v, big) = max_alloc(|| vec![1u8; 3 << 20]);
    assert!(big >= 3 << 20 && v.len() == 3 << 20);
    let fx = fixture();
    // master_len = u32::MAX with a valid header CRC.
    let mut a = fx.bytes.clone();
    a[64..68].copy_from_slice(&u32::MAX.to_le_bytes());
    fix_header_crc(&mut a);
    let p = fx.write("biglen.hxz", &a);
    let (r, big) = max_alloc(|| File::open(&p));
    let e = err_of(r, "master_len u32::MAX");
    assert!(e.to_string().contains("header"), "{e}");
    assert!(big < 1 << 20, "allocated {big} bytes");

    // A master length above the limit inside a (sparse) file big enough to hold it.
    let mut a = fx.bytes.clone();
    a[56..64].copy_from_slice(&512u64.to_le_bytes());
    a[64..68].copy_from_slice(&(MAX_MASTER_LEN + 1).to_le_bytes());
    fix_header_crc(&mut a);
    let p = fx.write("sparse.hxz", &a);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(MAX_MASTER_LEN as u64 + (1 << 20))
        .unwrap();
    let (r, big) = max_alloc(|| File::open(&p));
    let e = err_of(r, "master_len above the limit");
    assert!(e.to_string().contains("exceeds"), "{e}");
    assert!(big < 1 << 20, "allocated {big} bytes");

    // Index page entry count 0xFFFFFFFF (page re-sealed so the count itself is checked).
    let f = File::open(&fx.path).unwrap();
    let r0 = f.master().streams[0].pages[0];
    let mut a = fx.bytes.clone();
    a[r0.offset as usize + 8..r0.offset as usize + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    reseal_page(&mut a, 0, 0);
    let f = open_mem(a).unwrap();
    let (r, big) = max_alloc(|| f.read_at(SnapshotStream::Disk, 0, 10));
    let e = err_of(r, "page entry count");
    assert!(
        e.to_string().contains("index page 0 of disk stream")
            && e.to_string().contains("4294967295"),
        "{e}"
    );
    assert!(big < 1 << 20, "allocated {big} bytes");

    // The master's own fields, with its digest re-computed.
    let (mo, _) = master_range(&fx.bytes);
    let rec0 = mo + MASTER_HEADER_SIZE;
    let pref = page_ref_offset(&fx.bytes, 0, 0);
    let cases: Vec<(&str, usize, Vec<u8>)> = vec![
        ("stream count", mo + 4, 0xffffu16.to_le_bytes().to_vec()),
        ("metadata length", mo + 8, u32::MAX.to_le_bytes().to_vec()),
        ("page count", rec0 + 4, u32::MAX.to_le_bytes().to_vec()),
        ("block count", rec0 + 8, u64::MAX.to_le_bytes().to_vec()),
        (
            "page entry count",
            pref + 20,
            u32::MAX.to_le_bytes().to_vec(),
        ),
        ("page length", pref + 16, u32::MAX.to_le_bytes().to_vec()),
        (
            "page offset",
            pref + 8,
            (u64::MAX - 100).to_le_bytes().to_vec(),
        ),
        ("stream id", rec0, vec![7]),
        ("second stream id", rec0 + STREAM_RECORD_SIZE, vec![0]),
        ("logical size", rec0 + 32, 1u64.to_le_bytes().to_vec()),
    ];
    for (what, at, val) in cases {
        let mut a = fx.bytes.clone();
        a[at..at + val.len()].copy_from_slice(&val);
        fix_master_digest(&mut a);
        let (r, big) = max_alloc(|| open_mem(a));
        let e = err_of(r, what);
        assert!(e.to_string().contains("master index"), "{what}: {e}");
        assert!(big < 1 << 20, "{what}: allocated {big} bytes");
    }
}

// ---------------------------------------------------------------------------------------------
// Data blocks.

#[test]
fn flipped_data_block_names_block_and_stream() {
    let fx = fixture();
    let f = File::open(&fx.path).unwrap();
    let targets = [
        (
            SnapshotStream::Disk,
            unique_block(&f, SnapshotStream::Disk, 0, Codec::None),
        ),
        (
            SnapshotStream::Disk,
            unique_block(&f, SnapshotStream::Disk, 0, Codec::Lz4),
        ),
        (
            SnapshotStream::Disk,
            unique_block(&f, SnapshotStream::Disk, 1030, Codec::Lz4),
        ),
        (
            SnapshotStream::Memory,
            unique_block_any(&f, SnapshotStream::Memory, 1, None),
        ),
    ];
    assert!(targets[2].1 .0 >= 1024, "a block of the second page");
    for (s, (blk, e)) in targets {
        let mut a = fx.bytes.clone();
        a[(e.stored_offset + e.stored_len as u64 / 2) as usize] ^= 0x01;
        let p = fx.write("blk.hxz", &a);
        for (mode, o) in [
            ("default", OpenOptions::default()),
            (
                "mmap",
                OpenOptions {
                    mmap: true,
                    ..OpenOptions::default()
                },
            ),
            (
                "no cache, no hashes",
                OpenOptions {
                    cache_bytes: 0,
                    verify_hashes: false,
                    ..OpenOptions::default()
                },
            ),
        ] {
            let f = File::open_with(&p, o).unwrap();
            let lo = e.logical_offset;
            let ll = e.logical_len as usize;
            let ctx = format!("{mode}: {s} block {blk}");
            // The whole block, part of it, and a multi-block range around it.
            for (off, len) in [
                (lo, ll),
                (lo + 100, 50),
                (lo.saturating_sub(3 * BS as u64), 7 * BS),
            ] {
                let err = err_of(f.read_at(s, off, len), &ctx);
                assert_corrupt_block(&err, s, blk, lo, "CRC32 mismatch");
                let mut buf = vec![0u8; len];
                let err = err_of(f.read_at_into(s, off, &mut buf), &ctx);
                assert_corrupt_block(&err, s, blk, lo, "CRC32 mismatch");
            }
            // Through the Read adapter the error keeps its message.
            let mut r = f.reader(s).unwrap();
            let mut all = Vec::new();
            let ioe = std::io::Read::read_to_end(&mut r, &mut all).unwrap_err();
            assert!(
                ioe.to_string()
                    .contains(&format!("block {blk} of {s} stream")),
                "{ctx}: {ioe}"
            );
            // Everything else reads correctly.
            let after = lo + ll as u64;
            let n = (f.size(s) - after).min(5 * BS as u64) as usize;
            assert!(f.read_at(s, after, n).unwrap() == expected(fx.data(s), after, n));
            if lo > 0 {
                assert!(f.read_at(s, 0, lo as usize).unwrap() == fx.data(s)[..lo as usize]);
            }
            let err = err_of(ops::verify(&f, None), &ctx);
            assert_corrupt_block(&err, s, blk, lo, "CRC32 mismatch");
        }
    }
}

/// Format 1.0 (plain CRC): a wrong reference passes the CRC and only the BLAKE3 catches it.
/// (Format 1.1's bound CRC catches it too: tests/bound_crc.rs.)
#[test]
fn block_replaced_by_another_valid_block_is_caught_by_blake3() {
    let fx = fixture_with(false);
    let d = SnapshotStream::Disk;
    let f = File::open(&fx.path).unwrap();
    let (bi, ei) = unique_block(&f, d, 0, Codec::None);
    let (bj, ej) = unique_block(&f, d, bi as usize + 1, Codec::None);
    assert_ne!(bi, bj);
    assert_eq!(ei.logical_len, ej.logical_len);
    // Entry i now points at block j's stored bytes, with j's (valid) CRC: only the content
    // hash still says it is the wrong block.
    let a = edit_entry(&fx, d, bi as usize, |e| {
        e[12..16].copy_from_slice(&ej.stored_len.to_le_bytes());
        e[16..24].copy_from_slice(&ej.stored_offset.to_le_bytes());
        e[24..28].copy_from_slice(&ej.crc32.to_le_bytes());
        e[28] = ej.codec as u8;
    });
    let f = open_mem(a.clone()).unwrap();
    let e = err_of(f.read_at(d, ei.logical_offset, BS), "swapped block");
    assert_corrupt_block(&e, d, bi, ei.logical_offset, "BLAKE3");
    let e = err_of(
        f.read_at(d, ei.logical_offset + 10, 10),
        "swapped block, partial",
    );
    assert_corrupt_block(&e, d, bi, ei.logical_offset, "BLAKE3");
    let e = err_of(ops::verify(&f, None), "verify swapped block");
    assert_corrupt_block(&e, d, bi, ei.logical_offset, "BLAKE3");
    // With hash checks off the CRC passes and block j's content comes back: the BLAKE3 check
    // is what catches this.
    let g = File::open_backend(
        Arc::new(MemBackend(a)),
        None,
        OpenOptions {
            verify_hashes: false,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    let jl = ej.logical_offset as usize;
    assert!(g.read_at(d, ei.logical_offset, BS).unwrap() == fx.disk[jl..jl + BS]);
}

#[test]
fn zeroed_sector_gives_errors_or_correct_bytes() {
    let fx = fixture();
    let mut a = fx.bytes.clone();
    let mid = a.len() / 3;
    a[mid..mid + 4096].fill(0);
    let f = open_mem(a).unwrap();
    let (mut bad, mut good) = (0, 0);
    for b in 0..DISK_BLOCKS {
        let off = (b * BS) as u64;
        match f.read_at(SnapshotStream::Disk, off, BS) {
            Ok(v) => {
                assert!(
                    v == fx.disk[off as usize..off as usize + BS],
                    "block {b}: wrong bytes"
                );
                good += 1;
            }
            Err(Error::CorruptBlock { block, .. }) => {
                assert_eq!(block, b as u64);
                bad += 1;
            }
            Err(e) => panic!("block {b}: {e}"),
        }
    }
    assert!(bad > 0 && good > 0, "bad {bad} good {good}");
}

// ---------------------------------------------------------------------------------------------
// Truncation, garbage, empty files.

#[test]
fn truncated_archives_fail_cleanly() {
    let fx = fixture();
    let len = fx.bytes.len();
    for cut in [0, 1, 100, 511, 512, len / 2, len - 1, len - 33] {
        let p = fx.write("trunc.hxz", &fx.bytes[..cut]);
        for mmap in [false, true] {
            let r = File::open_with(
                &p,
                OpenOptions {
                    mmap,
                    ..OpenOptions::default()
                },
            );
            match r {
                Err(e) => {
                    let m = e.to_string();
                    assert!(
                        m.contains("header") || m.contains("master index"),
                        "cut at {cut}: {m}"
                    );
                }
                Ok(f) => {
                    for s in f.streams() {
                        if let Ok(v) = read_all(&f, s) {
                            assert!(v == fx.data(s), "cut at {cut}: wrong bytes");
                        }
                    }
                }
            }
        }
    }
}

fn tiny_archive() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let d = tempfile::tempdir().unwrap();
    let mut disk = vec![0u8; 3 * BS + 500];
    Rng::new(1).fill(&mut disk[..BS]);
    for (i, x) in disk[2 * BS..].iter_mut().enumerate() {
        *x = (i % 13) as u8;
    }
    let memory: Vec<u8> = (0..BS + 7).map(|i| (i * 7 % 256) as u8).collect();
    let opts = PackOptions {
        codec: Codec::Lz4,
        block_size: BS as u32,
        ..PackOptions::default()
    };
    let (p, _) = pack_files(d.path(), "t.hxz", Some(&disk), Some(&memory), &opts);
    (std::fs::read(p).unwrap(), disk, memory)
}

#[test]
fn every_truncation_of_a_small_archive_is_an_error() {
    let (a, _, _) = tiny_archive();
    for cut in 0..a.len() {
        let (r, big) = max_alloc(|| open_mem(a[..cut].to_vec()));
        assert!(r.is_err(), "truncated to {cut} of {} bytes opened", a.len());
        assert!(big <= a.len() + 1024, "cut {cut}: allocated {big} bytes");
    }
}

#[test]
fn every_single_bit_flip_of_a_small_archive_is_detected() {
    let (a, disk, memory) = tiny_archive();
    assert!(a.len() < 16 << 10, "archive is {} bytes", a.len());
    for pos in 0..a.len() {
        for mask in [0x01u8, 0x40] {
            let mut b = a.clone();
            b[pos] ^= mask;
            let Ok(f) = open_mem(b) else { continue };
            let d = read_all(&f, SnapshotStream::Disk);
            let m = read_all(&f, SnapshotStream::Memory);
            if let Ok(d) = &d {
                assert!(*d == disk, "flip at {pos}: wrong disk bytes");
            }
            if let Ok(m) = &m {
                assert!(*m == memory, "flip at {pos}: wrong memory bytes");
            }
            assert!(
                d.is_err() || m.is_err(),
                "flip of byte {pos} ^ {mask:#x} went unnoticed by open and full reads"
            );
            assert!(
                ops::verify(&f, None).is_err(),
                "flip of byte {pos} ^ {mask:#x} passed verify"
            );
        }
    }
}

#[test]
fn garbage_and_empty_files_are_not_archives() {
    let d = tempfile::tempdir().unwrap();
    let mut g = vec![0u8; 4096];
    Rng::new(3).fill(&mut g);
    let p = d.path().join("garbage.bin");
    std::fs::write(&p, &g).unwrap();
    let e = err_of(File::open(&p), "garbage");
    assert!(matches!(e, Error::NotAnArchive(_)), "{e:?}");
    assert!(e.to_string().contains("not a hexz archive"), "{e}");
    assert!(e.to_string().contains("garbage.bin"), "{e}");

    let p = d.path().join("empty.hxz");
    std::fs::write(&p, b"").unwrap();
    for mmap in [false, true] {
        let e = err_of(
            File::open_with(
                &p,
                OpenOptions {
                    mmap,
                    ..OpenOptions::default()
                },
            ),
            "empty file",
        );
        let m = e.to_string();
        assert!(
            matches!(e, Error::NotAnArchive(_)) || m.contains("header"),
            "mmap {mmap}: {m}"
        );
        assert!(m.contains("empty.hxz"), "mmap {mmap}: {m}");
    }

    // A directory is not an archive either (and must not panic).
    assert!(File::open(d.path()).is_err());
    // A missing file names the path.
    let e = err_of(File::open(d.path().join("nope.hxz")), "missing");
    assert!(e.to_string().contains("nope.hxz"), "{e}");
}

/// A short text file is "not a hexz archive", not a truncated archive: its magic is wrong,
/// whatever its length.
#[test]
fn short_file_with_wrong_magic_is_not_an_archive() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("notes.txt");
    std::fs::write(&p, b"hello, this is a short text file\n").unwrap();
    let e = err_of(File::open(&p), "short text file");
    assert!(matches!(e, Error::NotAnArchive(_)), "{e}");
}
