//! Round-trip properties: whatever is packed (any codec, level, block size, chunking, one or
//! both streams, from a path or a pipe-like reader) reads back byte for byte through every
//! reading API, and the archive's index and statistics describe the input exactly.

#[path = "../common/mod.rs"]
mod common;

use common::*;
use hexz_core::algo::compression::lz4::Lz4Compressor;
use hexz_core::algo::compression::zstd::ZstdCompressor;
use hexz_core::algo::compression::{compressor_for, NoCompression};
use hexz_core::format::header::{FLAG_CDC, HEADER_SIZE, STREAM_BIT_DISK, STREAM_BIT_MEMORY};
use hexz_core::format::index::{ENTRY_SIZE, PAGE_HEADER_SIZE};
use hexz_core::format::{BlockEntry, Codec};
use hexz_core::ops::{self, pack, CdcParams, PackInput, PackOptions, PackProgress, PackSource};
use hexz_core::store::local::{FileBackend, MmapBackend};
use hexz_core::store::StorageBackend;
use hexz_core::{Error, File, OpenOptions, SnapshotStream};
use proptest::prelude::*;
use std::collections::HashSet;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::{Arc, Mutex};

mod dedup;
mod edges;
mod file_api;
mod pack_input;

const CDC: CdcParams = CdcParams {
    min: 2048,
    avg: 8192,
    max: 32768,
};

#[derive(Debug, Clone)]
struct Case {
    codec: Codec,
    level: i32,
    block_size: u32,
    cdc: bool,
    disk: Option<usize>,
    memory: Option<usize>,
    seed: u64,
    via_reader: bool,
    /// 0: File::open, 1: MmapBackend via open_backend, 2: File::new(FileBackend, codec).
    open_mode: u8,
    reads: Vec<(u64, u64, u8)>,
}

fn size_for(bs: usize) -> impl Strategy<Value = usize> {
    prop_oneof![
        1 => Just(0usize),
        1 => Just(1usize),
        1 => Just(bs - 1),
        1 => Just(bs),
        1 => Just(bs + 1),
        3 => 2..3 * bs,
        3 => (2usize..10, 0..bs).prop_map(move |(k, r)| k * bs + r),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let codec = prop_oneof![
        Just((Codec::Lz4, 3)),
        Just((Codec::Zstd, 1)),
        Just((Codec::Zstd, 3)),
        Just((Codec::Zstd, 19)),
        Just((Codec::None, 3)),
    ];
    let bs = prop_oneof![Just(4096u32), Just(12288u32), Just(65536u32)];
    (codec, bs, proptest::bool::weighted(0.3))
        .prop_flat_map(|((codec, level), bs, cdc)| {
            let b = bs as usize;
            (
                Just((codec, level, bs, cdc)),
                (0u8..3, size_for(b), size_for(b)),
                any::<u64>(),
                any::<bool>(),
                0u8..3,
                proptest::collection::vec((any::<u64>(), any::<u64>(), any::<u8>()), 20),
            )
        })
        .prop_map(
            |(
                (codec, level, block_size, cdc),
                (which, d, m),
                seed,
                via_reader,
                open_mode,
                reads,
            )| {
                Case {
                    codec,
                    level,
                    block_size,
                    cdc,
                    disk: (which != 1).then_some(d),
                    memory: (which != 0).then_some(m),
                    seed,
                    via_reader,
                    open_mode,
                    reads,
                }
            },
        )
}

fn open(path: &Path, mode: u8, codec: Codec, level: i32) -> File {
    match mode {
        0 => File::open(path).expect("File::open"),
        1 => File::open_backend(
            Arc::new(MmapBackend::new(path).expect("mmap")),
            None,
            OpenOptions::default(),
        )
        .expect("open_backend(mmap)"),
        _ => File::new(
            Arc::new(FileBackend::new(path).expect("backend")),
            compressor_for(codec, level).expect("compressor"),
            None,
        )
        .expect("File::new"),
    }
}

/// Expected (blocks, zero blocks, dedup blocks, distinct stored logical bytes) of a stream
/// cut into `lens`, with `seen` the content already stored by earlier streams.
fn expected_counts(
    data: &[u8],
    lens: &[usize],
    seen: &mut HashSet<Vec<u8>>,
) -> (u64, u64, u64, u64) {
    let (mut zero, mut dedup, mut distinct) = (0, 0, 0);
    let mut at = 0;
    for &l in lens {
        let c = &data[at..at + l];
        at += l;
        if c.iter().all(|&b| b == 0) {
            zero += 1;
        } else if !seen.insert(c.to_vec()) {
            dedup += 1;
        } else {
            distinct += l as u64;
        }
    }
    (lens.len() as u64, zero, dedup, distinct)
}

/// Block lengths the packer must produce: fixed blocks, or FastCDC over the whole input.
fn expected_lens(data: &[u8], bs: usize, cdc: Option<CdcParams>) -> Vec<usize> {
    match cdc {
        None => data.chunks(bs).map(|c| c.len()).collect(),
        Some(p) => {
            fastcdc::v2020::FastCDC::new(data, p.min as usize, p.avg as usize, p.max as usize)
                .map(|c| c.length)
                .collect()
        }
    }
}

fn all_entries(f: &File, s: SnapshotStream) -> Vec<BlockEntry> {
    let rec = f.master().stream(s).expect("stream record");
    let mut v = Vec::new();
    for p in 0..rec.pages.len() {
        v.extend_from_slice(&f.index_page(s, p).expect("index page").entries);
    }
    v
}

fn check_reads(f: &File, s: SnapshotStream, data: &[u8], bs: usize, reads: &[(u64, u64, u8)]) {
    let size = data.len() as u64;
    assert_eq!(f.size(s), size);
    assert_eq!(
        read_all(f, s).expect("read whole stream"),
        data,
        "{s} stream differs"
    );
    let mut list: Vec<(u64, usize, u8)> = vec![
        (0, data.len(), 0),
        (0, 0, 1),
        (size, 1, 2),
        (size.saturating_sub(1), 2, 0),
        (u64::MAX, 10, 1),
        (u64::MAX - 5, 10, 2),
        (bs as u64 - 1, 2, 0),
        (bs as u64, bs, 1),
        (size / 2, bs * 2 + 3, 2),
    ];
    for &(a, b, k) in reads {
        let off = a % (size + 2 * bs as u64 + 1);
        let len = (b % (3 * bs as u64 + 2)) as usize;
        list.push((off, len, k));
    }
    let mut r = f.reader(s).expect("reader");
    assert_eq!(r.len(), size);
    for (off, len, k) in list {
        let want = expected(data, off, len);
        // read_at: truncated at the end, empty at or after it.
        let got = f.read_at(s, off, len).expect("read_at");
        assert_eq!(got.len(), want.len(), "read_at({s}, {off}, {len}) length");
        assert!(got == want, "read_at({s}, {off}, {len}) bytes differ");
        // read_at_into: returns the count and leaves the rest of the buffer alone.
        let mut buf = vec![0xa5u8; len];
        let n = f.read_at_into(s, off, &mut buf).expect("read_at_into");
        assert_eq!(n, want.len(), "read_at_into({s}, {off}, {len}) count");
        assert!(buf[..n] == *want, "read_at_into({s}, {off}, {len}) bytes");
        assert!(
            buf[n..].iter().all(|&b| b == 0xa5),
            "read_at_into({s}, {off}, {len}) wrote past the returned count"
        );
        // StreamReader.
        match k % 3 {
            0 => {
                assert_eq!(r.seek(SeekFrom::Start(off)).unwrap(), off);
                let mut buf = vec![0u8; len];
                let res = r.read_exact(&mut buf);
                if len == 0 || off.checked_add(len as u64).is_some_and(|e| e <= size) {
                    res.expect("read_exact inside the stream");
                    assert!(buf == want, "read_exact({off}, {len})");
                    assert_eq!(r.position(), off.saturating_add(len as u64));
                } else {
                    assert_eq!(res.unwrap_err().kind(), ErrorKind::UnexpectedEof);
                }
            }
            1 => {
                if off > size || off == u64::MAX {
                    let d = off.saturating_sub(size).min(i64::MAX as u64) as i64;
                    assert_eq!(r.seek(SeekFrom::End(d)).unwrap(), size + d as u64);
                } else {
                    let back = (size - off) as i64;
                    assert_eq!(r.seek(SeekFrom::End(-back)).unwrap(), off);
                }
                let mut all = Vec::new();
                r.read_to_end(&mut all).expect("read_to_end");
                assert!(
                    all == expected(data, off, usize::MAX),
                    "read_to_end from {off}"
                );
            }
            _ => {
                let start = off.saturating_sub(12345);
                r.seek(SeekFrom::Start(start)).unwrap();
                let d = (off - start) as i64;
                assert_eq!(r.seek(SeekFrom::Current(d)).unwrap(), off);
                let mut got = Vec::new();
                (&mut r)
                    .take(len as u64)
                    .read_to_end(&mut got)
                    .expect("take.read_to_end");
                assert!(got == want, "seek current + take({len}) at {off}");
            }
        }
    }
    // Seeking before the start is an error, not a wrap-around.
    let e = r.seek(SeekFrom::End(-(size as i64) - 1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    r.seek(SeekFrom::Start(3)).unwrap();
    let e = r.seek(SeekFrom::Current(-4)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

fn run_case(c: &Case) {
    let bs = c.block_size as usize;
    let disk = c.disk.map(|n| mixed_data(n, bs, c.seed));
    let memory = c.memory.map(|n| mixed_data(n, bs, c.seed ^ 0x5eed));
    let cdc = c.cdc.then_some(CDC);
    let opts = PackOptions {
        codec: c.codec,
        level: c.level,
        block_size: c.block_size,
        cdc,
        threads: 2,
        ..PackOptions::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a.hxz");
    let src = |d: &Option<Vec<u8>>, tag: &str, seed: u64| -> Option<PackSource> {
        d.as_ref().map(|d| {
            if c.via_reader {
                PackSource::Reader(Box::new(Dribble::new(d.clone(), seed)))
            } else {
                let p = dir.path().join(tag);
                std::fs::write(&p, d).unwrap();
                PackSource::Path(p)
            }
        })
    };
    let input = PackInput {
        disk: src(&disk, "disk.raw", c.seed),
        memory: src(&memory, "mem.raw", c.seed + 1),
    };
    let events: Mutex<Vec<PackProgress>> = Mutex::new(Vec::new());
    let cb = |p: &PackProgress| events.lock().unwrap().push(*p);
    let stats = pack(input, &out, &opts, Some(&cb)).expect("pack");
    let arch_len = std::fs::metadata(&out).unwrap().len();
    assert_eq!(stats.archive_bytes, arch_len, "PackStats::archive_bytes");

    // Progress: per stream monotonic, ending at the stream size, with the size known only
    // for path inputs.
    let events = events.into_inner().unwrap();
    for (s, d) in [
        (SnapshotStream::Disk, &disk),
        (SnapshotStream::Memory, &memory),
    ] {
        let ev: Vec<_> = events.iter().filter(|e| e.stream == s).collect();
        let Some(d) = d else {
            assert!(ev.is_empty());
            continue;
        };
        if d.is_empty() {
            continue;
        }
        assert!(!ev.is_empty(), "no progress for {s}");
        assert!(ev.windows(2).all(|w| w[0].done <= w[1].done));
        assert_eq!(ev.last().unwrap().done, d.len() as u64);
        let total = (!c.via_reader).then_some(d.len() as u64);
        assert!(
            ev.iter().all(|e| e.total == total),
            "progress total for {s}"
        );
    }
    // The disk stream's events all come before the memory stream's.
    if let Some(first_mem) = events
        .iter()
        .position(|e| e.stream == SnapshotStream::Memory)
    {
        assert!(events[first_mem..]
            .iter()
            .all(|e| e.stream == SnapshotStream::Memory));
    }

    let f = open(&out, c.open_mode, c.codec, c.level);
    let h = f.header();
    assert_eq!(h.major, 1);
    assert_eq!(h.minor, hexz_core::format::header::FORMAT_MINOR);
    assert_eq!(h.codec, c.codec);
    assert_eq!(
        h.level as i32,
        if c.codec == Codec::Zstd { c.level } else { 0 }
    );
    match cdc {
        Some(p) => {
            assert_eq!(h.flags & FLAG_CDC, FLAG_CDC);
            assert_eq!((h.block_size, h.cdc_min, h.cdc_max), (p.avg, p.min, p.max));
        }
        None => {
            assert_eq!(h.flags & FLAG_CDC, 0);
            assert_eq!((h.block_size, h.cdc_min, h.cdc_max), (c.block_size, 0, 0));
        }
    }
    let bits = disk.as_ref().map_or(0, |_| STREAM_BIT_DISK)
        | memory.as_ref().map_or(0, |_| STREAM_BIT_MEMORY);
    assert_eq!(h.streams, bits);
    assert_eq!(h.disk_size, disk.as_ref().map_or(0, |d| d.len() as u64));
    assert_eq!(h.memory_size, memory.as_ref().map_or(0, |d| d.len() as u64));
    let mut want_streams = Vec::new();
    if disk.is_some() {
        want_streams.push(SnapshotStream::Disk);
    }
    if memory.is_some() {
        want_streams.push(SnapshotStream::Memory);
    }
    assert_eq!(f.streams(), want_streams);

    // Index and statistics describe the input exactly; the archive holds nothing else.
    let mut seen = HashSet::new();
    let mut layout = HEADER_SIZE as u64 + h.master_len as u64;
    let (mut total_pages, mut total_blocks, mut total_bytes) = (0u64, 0u64, 0u64);
    for (s, d, st) in [
        (SnapshotStream::Disk, &disk, &stats.disk),
        (SnapshotStream::Memory, &memory, &stats.memory),
    ] {
        let Some(d) = d else {
            assert!(!f.has_stream(s));
            assert!(st.is_none());
            assert_eq!(f.size(s), 0);
            assert!(matches!(f.read_at(s, 0, 1), Err(Error::NoSuchStream(x)) if x == s));
            assert!(f.reader(s).is_err());
            continue;
        };
        let st = st.as_ref().expect("stream stats");
        let rec = f.master().stream(s).unwrap().clone();
        let lens = expected_lens(d, bs, cdc);
        let (blocks, zero, dedup, distinct) = expected_counts(d, &lens, &mut seen);
        assert_eq!(st.input_bytes, d.len() as u64);
        assert_eq!(
            (st.blocks, st.zero_blocks, st.dedup_blocks),
            (blocks, zero, dedup),
            "{s}: (blocks, zero, dedup)"
        );
        assert_eq!(
            (
                rec.block_count,
                rec.zero_blocks,
                rec.stored_bytes,
                rec.logical_size
            ),
            (st.blocks, st.zero_blocks, st.stored_bytes, d.len() as u64),
            "{s}: master record vs pack stats"
        );
        if c.codec == Codec::None {
            assert_eq!(
                st.stored_bytes, distinct,
                "{s}: stored bytes without compression"
            );
        } else {
            assert!(
                st.stored_bytes <= distinct,
                "{s}: stored more than the input"
            );
        }
        assert_eq!(rec.pages.len(), (blocks as usize).div_ceil(1024));
        let entries = all_entries(&f, s);
        let got_lens: Vec<usize> = entries.iter().map(|e| e.logical_len as usize).collect();
        assert_eq!(got_lens, lens, "{s}: block boundaries");
        let mut at = 0usize;
        for (i, e) in entries.iter().enumerate() {
            let chunk = &d[at..at + e.logical_len as usize];
            assert_eq!(e.logical_offset, at as u64);
            at += chunk.len();
            let zero = chunk.iter().all(|&b| b == 0);
            assert_eq!(e.is_zero(), zero, "{s} block {i}: zero flag");
            if zero {
                assert_eq!(e.stored_len, 0);
                continue;
            }
            assert_eq!(
                e.hash,
                *blake3::hash(chunk).as_bytes(),
                "{s} block {i}: hash"
            );
            assert!(e.stored_offset >= HEADER_SIZE as u64);
            assert!(e.stored_offset + e.stored_len as u64 <= h.master_offset);
            if e.codec == Codec::None {
                assert_eq!(e.stored_len, e.logical_len);
            } else {
                assert_eq!(e.codec, c.codec, "{s} block {i}: codec");
                assert!(e.stored_len < e.logical_len);
            }
        }
        for (p, r) in rec.pages.iter().enumerate() {
            assert_eq!(r.first_block, p as u64 * 1024);
            assert_eq!(
                r.len as usize,
                PAGE_HEADER_SIZE + r.entry_count as usize * ENTRY_SIZE
            );
            layout += r.len as u64;
        }
        layout += rec.stored_bytes;
        total_pages += rec.pages.len() as u64;
        total_blocks += blocks;
        total_bytes += d.len() as u64;
        check_reads(&f, s, d, bs, &c.reads);
    }
    assert_eq!(
        layout, arch_len,
        "archive = header + stored blocks + index pages + master index"
    );
    assert_eq!(h.master_offset + h.master_len as u64, arch_len);
    let rep = ops::verify(&f, None).expect("verify");
    assert_eq!(
        (rep.pages, rep.blocks, rep.bytes),
        (total_pages, total_blocks, total_bytes)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn packed_streams_read_back_exactly(c in case()) {
        run_case(&c);
    }
}

fn opts(codec: Codec, level: i32, bs: u32) -> PackOptions {
    PackOptions {
        codec,
        level,
        block_size: bs,
        ..PackOptions::default()
    }
}
