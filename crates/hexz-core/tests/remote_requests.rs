//! The shape of what a remote archive costs the server: how many requests, how large, and
//! where they fall, counted by the fault server on loopback ([`servers::fault`]).
//!
//! - A sequential reader's read-ahead follows the 8 MiB part grid of the uploaded object.
//! - Index pages are written in groups, and a read (or a walk over the index) fetches a
//!   group with one request.
//! - Extraction (`hexz cat URL`, `hexz extract URL`) fetches each part of the grid with one
//!   request, decodes it on a worker of its own and keeps nothing in the block cache; a
//!   writer that fails stops it after a few parts; a server error is reported with its URL;
//!   a byte damaged in transit is fetched again; to a file, zero runs stay holes; bodies cut
//!   short are resumed inside blocks. Every byte is compared.

mod common;
mod servers;

use hexz_core::ops::extract::{extract_to_path, extract_to_writer};
use hexz_core::ops::PackOptions;
use hexz_core::store::REMOTE_ALIGN;
use hexz_core::{File, SnapshotStream};
use servers::archives::{archive_of, archive_with, file_bytes, range_of, test_remote, Archive};
use servers::fault::{Fault, FaultServer};

/// The ranges `srv` was asked for after its first `skip` requests.
fn ranges_after(srv: &FaultServer, skip: usize) -> Vec<(u64, u64)> {
    srv.ranges()[skip..].iter().map(|h| range_of(h)).collect()
}

#[test]
fn sequential_read_requests_follow_the_part_grid() {
    use std::io::Read;
    // 56 MiB of incompressible data: 7 parts of the grid, read start to end as `cat` does.
    let (_d, a) = archive_of(56 << 20);
    let srv = FaultServer::start(file_bytes(&a));
    let f = File::open_location(&srv.url(), a.options(test_remote())).unwrap();
    let mut r = f.reader(SnapshotStream::Disk).unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 128 << 10];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got == a.disk, "the bytes read differ from the source");
    let ranges: Vec<(u64, u64)> = srv.ranges().iter().map(|h| range_of(h)).collect();
    // Read-ahead requests are cut at the grid lines, and the packer keeps every block inside
    // one cell (a block is never split over two requests): each request lies in one part.
    let big: Vec<&(u64, u64)> = ranges.iter().filter(|(s, e)| e - s >= 1 << 20).collect();
    for &&(s, e) in &big {
        let line = (s / REMOTE_ALIGN + 1) * REMOTE_ALIGN;
        assert!(
            e < line,
            "request {s}-{e} straddles the line at {line}: {ranges:?}"
        );
    }
    // And they are few: about one per part, where cutting at read-ahead windows made about
    // twice as many.
    let parts = (a.disk.len() as u64).div_ceil(REMOTE_ALIGN);
    assert!(
        big.len() as u64 <= parts + 3,
        "{} requests of 1 MiB or more for {parts} parts: {ranges:?}",
        big.len()
    );
    let fetched: u64 = big.iter().map(|(s, e)| e - s + 1).sum();
    assert!(
        fetched >= a.disk.len() as u64 * 3 / 4,
        "large requests fetched only {fetched} bytes: {ranges:?}"
    );
}

/// 4 KiB blocks, 1024 to a page: 72 MiB is 18 pages, a group of 16 and one of 2. Every
/// 61st block is random (stored), the rest zeros, so packing and reading stay quick.
fn paged_archive() -> (tempfile::TempDir, Archive) {
    let mut disk = vec![0u8; 72 << 20];
    let mut rng = common::Rng::new(9);
    for b in disk.chunks_mut(4096).step_by(61) {
        rng.fill(b);
    }
    let opts = PackOptions {
        block_size: 4096,
        ..PackOptions::default()
    };
    archive_with(disk, &opts)
}

#[test]
fn index_pages_are_written_and_fetched_in_groups() {
    use std::io::Read;
    let (_d, a) = paged_archive();
    let local = File::open(&a.path).unwrap();
    let rec = local.master().stream(SnapshotStream::Disk).unwrap();
    let pages: Vec<(u64, u64)> = rec
        .pages
        .iter()
        .map(|p| (p.offset, p.offset + u64::from(p.len)))
        .collect();
    assert_eq!(pages.len(), 18);
    // Back to back within a group, the first group before the second.
    for (i, w) in pages.windows(2).enumerate() {
        if i != 15 {
            assert_eq!(w[0].1, w[1].0, "pages {i} and {}: {pages:?}", i + 1);
        } else {
            assert!(w[0].1 < w[1].0, "groups in order: {pages:?}");
        }
    }
    // Over HTTP, a sequential read fetches each group with one request.
    let srv = FaultServer::start(file_bytes(&a));
    let f = File::open_location(&srv.url(), a.options(test_remote())).unwrap();
    let mut got = Vec::new();
    f.reader(SnapshotStream::Disk)
        .unwrap()
        .read_to_end(&mut got)
        .unwrap();
    assert!(got == a.disk, "the bytes read differ from the source");
    let ranges: Vec<(u64, u64)> = srv.ranges().iter().map(|h| range_of(h)).collect();
    let touching: Vec<&(u64, u64)> = ranges
        .iter()
        .filter(|(s, e)| pages.iter().any(|&(ps, pe)| *s < pe && ps <= *e))
        .collect();
    assert!(
        touching.len() <= 3,
        "{} requests fetched the 18 pages: {touching:?} of {ranges:?}",
        touching.len()
    );
}

/// A walk over the index of a remote archive ([`File::entries`], as extraction plans its
/// parts) fetches the pages a group at a time.
#[test]
fn an_index_walk_fetches_pages_a_group_at_a_time() {
    let (_d, a) = paged_archive();
    let srv = FaultServer::start(file_bytes(&a));
    let f = File::open_location(&srv.url(), a.options(test_remote())).unwrap();
    let before = srv.requests();
    let entries: Vec<_> = f
        .entries(SnapshotStream::Disk)
        .collect::<hexz_core::Result<_>>()
        .unwrap();
    assert_eq!(entries.len(), (72 << 20) / 4096);
    let ranges = ranges_after(&srv, before);
    assert!(
        ranges.len() <= 2,
        "walking 18 index pages made {} requests: {ranges:?}",
        ranges.len()
    );
}

/// 48 MiB: incompressible, but for a run of zero blocks from 20 to 23 MiB.
fn data_archive() -> (tempfile::TempDir, Archive) {
    let mut disk = vec![0u8; 48 << 20];
    common::Rng::new(11).fill(&mut disk);
    disk[20 << 20..23 << 20].fill(0);
    archive_with(disk, &PackOptions::default())
}

#[test]
fn extraction_fetches_each_part_once_and_keeps_nothing() {
    let (_d, a) = data_archive();
    let raw = file_bytes(&a);
    let srv = FaultServer::start(raw.clone());
    let f = File::open_location(&srv.url(), a.options(test_remote())).unwrap();
    let before = srv.requests();
    let mut out = Vec::new();
    let stats = extract_to_writer(&f, SnapshotStream::Disk, &mut out, None).unwrap();
    assert!(out == a.disk, "the bytes extracted differ from the source");
    assert_eq!(stats.bytes, a.disk.len() as u64);
    assert_eq!(stats.zero_bytes, 3 << 20, "the zero run is not fetched");
    let ranges = ranges_after(&srv, before);
    // The packer kept every block inside one cell of the grid (zeros before a block that
    // would cross a line) ...
    for e in f.entries(SnapshotStream::Disk).map(|e| e.unwrap()) {
        let (s, end) = (e.stored_offset, e.stored_offset + u64::from(e.stored_len));
        assert!(
            e.is_zero() || s / REMOTE_ALIGN == (end - 1) / REMOTE_ALIGN,
            "block stored at {s}-{end} crosses a line of the grid"
        );
    }
    // ... so there is one request per part, inside one cell (the zero run splits one cell
    // into two parts).
    for &(s, e) in &ranges {
        let line = (s / REMOTE_ALIGN + 1) * REMOTE_ALIGN;
        assert!(
            e < line,
            "request {s}-{e} straddles the line at {line}: {ranges:?}"
        );
    }
    let cells = (raw.len() as u64).div_ceil(REMOTE_ALIGN);
    assert!(
        ranges.len() as u64 <= cells + 1,
        "{} requests for {cells} cells: {ranges:?}",
        ranges.len()
    );
    let fetched: u64 = ranges.iter().map(|(s, e)| e - s + 1).sum();
    assert!(
        fetched >= (a.disk.len() as u64 - (3 << 20)) * 9 / 10,
        "requests fetched only {fetched} bytes: {ranges:?}"
    );
    // Nothing was kept in the block cache: reading a block back asks the server again.
    let n = srv.requests();
    let at = 30 << 20;
    let got = f.read_at(SnapshotStream::Disk, at as u64, 4096).unwrap();
    assert!(got == a.disk[at..at + 4096]);
    assert!(
        srv.requests() > n,
        "the extraction left its blocks in the block cache"
    );
}

#[test]
fn a_failing_writer_stops_the_extraction() {
    // 96 MiB: 12 parts.
    let (_d, a) = archive_of(96 << 20);
    let srv = FaultServer::start(file_bytes(&a));
    let f = File::open_location(&srv.url(), a.options(test_remote())).unwrap();
    let before = srv.requests();
    let mut w = common::FailingWriter { left: 1 << 20 };
    let e = extract_to_writer(&f, SnapshotStream::Disk, &mut w, None).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("no space left on the test device"), "{msg}");
    // The parts in flight and queued when the writer failed, not the other 7 or more.
    let ranges = ranges_after(&srv, before);
    assert!(
        ranges.len() <= 5,
        "{} parts fetched after the writer failed: {ranges:?}",
        ranges.len()
    );
}

#[test]
fn a_server_error_during_extraction_names_the_url() {
    let (_d, a) = data_archive();
    let srv = FaultServer::start(file_bytes(&a));
    let f = File::open_location(&srv.url(), a.options(test_remote())).unwrap();
    srv.push([Fault::Pass, Fault::Status(403)]);
    let mut out = Vec::new();
    let msg = extract_to_writer(&f, SnapshotStream::Disk, &mut out, None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("403"), "{msg}");
    assert!(msg.contains(&srv.url()), "{msg}");
}

#[test]
fn a_byte_flipped_during_extraction_is_fetched_again() {
    let (_d, a) = data_archive();
    let srv = FaultServer::start(file_bytes(&a));
    let f = File::open_location(&srv.url(), a.options(test_remote())).unwrap();
    let before = srv.requests();
    srv.push([Fault::Pass, Fault::FlipByte]);
    let mut out = Vec::new();
    extract_to_writer(&f, SnapshotStream::Disk, &mut out, None).unwrap();
    assert!(out == a.disk, "the bytes extracted differ from the source");
    // The damaged block alone was fetched again: one small request more than the parts.
    let ranges = ranges_after(&srv, before);
    let small = ranges.iter().filter(|(s, e)| e - s < 1 << 20).count();
    assert_eq!(small, 1, "{ranges:?}");
}

/// Extraction of a remote archive to a regular file goes through the same parts, then the
/// writer's aligned buffers: every byte, and the zero run left as a hole.
#[test]
fn extraction_to_a_file_keeps_the_zero_run_a_hole() {
    use std::os::unix::fs::MetadataExt;
    let (d, a) = data_archive();
    let srv = FaultServer::start(file_bytes(&a));
    let f = File::open_location(&srv.url(), a.options(test_remote())).unwrap();
    let out = d.path().join("out.img");
    let stats = extract_to_path(&f, SnapshotStream::Disk, &out, None).unwrap();
    assert_eq!(stats.zero_bytes, 3 << 20);
    assert!(
        std::fs::read(&out).unwrap() == a.disk,
        "the file differs from the source"
    );
    let m = std::fs::metadata(&out).unwrap();
    assert!(
        m.blocks() * 512 <= m.len() - (2 << 20),
        "{} bytes allocated for {} with a 3 MiB zero run",
        m.blocks() * 512,
        m.len()
    );
}

/// Extraction streams each part and decodes its blocks as they arrive: bodies cut short
/// (six responses closed a third of the way in) are resumed from the byte where they
/// stopped, inside a block, and every byte comes out right, for blocks stored compressed
/// (decoded from the part's scratch buffer) and raw (read into place). Nothing is fetched
/// beyond the clean extraction's requests and one resumption per cut (a block put together
/// wrongly would fail its check and be fetched once more).
#[test]
fn bodies_cut_during_extraction_are_resumed_inside_blocks() {
    // 40 MiB of distinct blocks (no dedup: which worker fetches what cannot vary), every
    // fifth one random (stored raw), the others half random (stored compressed).
    let mut disk = vec![0u8; 40 << 20];
    common::Rng::new(17).fill(&mut disk);
    for (k, b) in disk.chunks_mut(64 << 10).enumerate() {
        if k % 5 != 0 {
            for (i, x) in b.iter_mut().enumerate() {
                if i % 4096 < 2048 {
                    *x = (i / 7 % 61) as u8;
                }
            }
        }
    }
    let (_d, a) = archive_with(disk, &PackOptions::default());
    let srv = FaultServer::start(file_bytes(&a));
    let extract = |cuts: usize| {
        let f = File::open_location(&srv.url(), a.options(test_remote())).unwrap();
        // The index first: the requests below are the parts' and their resumptions.
        assert!(f.entries(SnapshotStream::Disk).all(|e| e.is_ok()));
        let before = srv.requests();
        srv.push(std::iter::repeat_with(|| Fault::Truncate).take(cuts));
        let mut out = Vec::new();
        extract_to_writer(&f, SnapshotStream::Disk, &mut out, None).unwrap();
        assert!(out == a.disk, "the bytes extracted differ from the source");
        ranges_after(&srv, before)
    };
    let mut clean = extract(0);
    assert!(clean.len() >= 3, "{clean:?}");
    let ranges = extract(6);
    // A resumed request asks for the rest of an earlier one: a later start, the same end
    // (parts are fetched in parallel, so not necessarily right after it).
    let (mut first, mut resumed) = (Vec::new(), 0);
    for (i, r) in ranges.iter().enumerate() {
        if ranges[..i].iter().any(|p| p.1 == r.1 && p.0 < r.0) {
            resumed += 1;
        } else {
            first.push(*r);
        }
    }
    clean.sort_unstable();
    first.sort_unstable();
    assert_eq!(first, clean, "requests other than resumptions: {ranges:?}");
    assert_eq!(resumed, 6, "{ranges:?}");
}
