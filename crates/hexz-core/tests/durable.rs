//! Durable writes: the pack output seam (`pack_to`), failures mid-pack leaving no debris,
//! and extraction to regular files (sparse, atomic), `/dev/null`, FIFOs and writers.

mod common;

use common::mixed_data;
use hexz_core::ops::extract::{extract_range_to_writer, extract_to_path, extract_to_writer};
use hexz_core::ops::{pack, pack_to, PackInput, PackOptions, PackSink, PackSource};
use hexz_core::{File, OpenOptions, Result, SnapshotStream};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

const DISK: SnapshotStream = SnapshotStream::Disk;

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn pack_bytes(dir: &Path, data: &[u8]) -> std::path::PathBuf {
    let out = dir.join("a.hxz");
    let input = PackInput {
        disk: Some(PackSource::Reader(Box::new(std::io::Cursor::new(
            data.to_vec(),
        )))),
        memory: None,
    };
    pack(input, &out, &PackOptions::default(), None).unwrap();
    out
}

fn open(p: &Path) -> File {
    File::open_with(
        p,
        OpenOptions {
            read_ahead: 0,
            cache_bytes: 4 << 20,
            ..Default::default()
        },
    )
    .unwrap()
}

/// A reader that panics after handing out `left` bytes.
struct PanicAfter {
    left: usize,
}

impl Read for PanicAfter {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            panic!("input device vanished");
        }
        let n = buf.len().min(self.left);
        buf[..n].fill(7);
        self.left -= n;
        Ok(n)
    }
}

#[test]
fn reader_panic_fails_the_pack_and_leaves_no_debris() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.hxz");
    let input = PackInput {
        disk: Some(PackSource::Reader(Box::new(PanicAfter { left: 5 << 20 }))),
        memory: None,
    };
    let e = pack(input, &out, &PackOptions::default(), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("reader panicked: input device vanished"), "{e}");
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
}

#[test]
fn progress_callback_panic_fails_the_pack_and_leaves_no_debris() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.hxz");
    let data = mixed_data(6 << 20, 64 << 10, 3);
    let input = PackInput {
        disk: Some(PackSource::Reader(Box::new(std::io::Cursor::new(data)))),
        memory: None,
    };
    let cb = |p: &hexz_core::ops::PackProgress| {
        if p.done > 2 << 20 {
            panic!("progress bar broke");
        }
    };
    let e = pack(input, &out, &PackOptions::default(), Some(&cb))
        .unwrap_err()
        .to_string();
    assert!(e.contains("writer panicked: progress bar broke"), "{e}");
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
}

/// A sink that keeps the archive in memory, failing after `fail_after` bytes if set.
#[derive(Default)]
struct VecSink {
    bytes: Vec<u8>,
    fail_after: Option<usize>,
    finished: bool,
}

impl PackSink for VecSink {
    fn append(&mut self, buf: &[u8]) -> Result<()> {
        if self
            .fail_after
            .is_some_and(|n| self.bytes.len() + buf.len() > n)
        {
            return Err(hexz_core::Error::io(
                "uploading part",
                std::io::Error::other("connection reset"),
            ));
        }
        self.bytes.extend_from_slice(buf);
        Ok(())
    }
    fn write_header(&mut self, header: &[u8]) -> Result<()> {
        self.bytes[..header.len()].copy_from_slice(header);
        Ok(())
    }
    fn finish(&mut self) -> Result<()> {
        self.finished = true;
        Ok(())
    }
}

#[test]
fn pack_to_a_custom_sink_gives_a_readable_archive() {
    let data = mixed_data(5 << 20, 64 << 10, 11);
    let mut sink = VecSink::default();
    let input = PackInput {
        disk: Some(PackSource::Reader(Box::new(std::io::Cursor::new(
            data.clone(),
        )))),
        memory: None,
    };
    let stats = pack_to(input, &mut sink, &PackOptions::default(), None).unwrap();
    assert!(sink.finished);
    assert_eq!(stats.archive_bytes, sink.bytes.len() as u64);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("sink.hxz");
    std::fs::write(&p, &sink.bytes).unwrap();
    let f = open(&p);
    assert_eq!(f.read_at(DISK, 0, data.len()).unwrap(), data);
}

#[test]
fn sink_error_fails_the_pack_without_finishing() {
    let data = mixed_data(5 << 20, 64 << 10, 12);
    let mut sink = VecSink {
        fail_after: Some(300_000),
        ..Default::default()
    };
    let input = PackInput {
        disk: Some(PackSource::Reader(Box::new(std::io::Cursor::new(data)))),
        memory: None,
    };
    let e = pack_to(input, &mut sink, &PackOptions::default(), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("uploading part: connection reset"), "{e}");
    assert!(!sink.finished);
}

#[test]
fn extract_to_regular_file_is_sparse_and_atomic() {
    let dir = tempfile::tempdir().unwrap();
    // 4 MiB of data, 64 MiB of zeros, 4 MiB of data, 8 MiB of zeros at the end.
    let mut data = mixed_data(4 << 20, 64 << 10, 5);
    data.truncate(4 << 20);
    data.resize(68 << 20, 0);
    data.extend_from_slice(&mixed_data(4 << 20, 64 << 10, 6)[..4 << 20]);
    data.resize(80 << 20, 0);
    let a = pack_bytes(dir.path(), &data);
    let f = open(&a);
    let out = dir.path().join("disk.img");
    std::fs::write(&out, b"old content").unwrap();
    let seen = std::sync::Mutex::new(Vec::new());
    let cb = |d: u64| seen.lock().unwrap().push(d);
    let st = extract_to_path(&f, DISK, &out, Some(&cb)).unwrap();
    assert!(!st.in_place);
    assert_eq!(st.bytes, 80 << 20);
    assert!(st.zero_bytes >= 70 << 20, "{}", st.zero_bytes);
    assert_eq!(*seen.lock().unwrap().last().unwrap(), 80 << 20);
    let got = std::fs::read(&out).unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "extracted bytes differ");
    let m = std::fs::metadata(&out).unwrap();
    // Holes: far fewer blocks allocated than the 80 MiB length (mixed data is itself partly
    // zero blocks, so at most the 8 MiB of data is allocated).
    assert!(
        m.blocks() * 512 <= 9 << 20,
        "{} bytes allocated for a file of 80 MiB with 72 MiB of zeros",
        m.blocks() * 512
    );
    assert_eq!(names(dir.path()), vec!["a.hxz", "disk.img"]);
}

#[test]
fn extract_to_dev_null_writes_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let data = mixed_data(3 << 20, 64 << 10, 8);
    let f = open(&pack_bytes(dir.path(), &data));
    let st = extract_to_path(&f, DISK, Path::new("/dev/null"), None).unwrap();
    assert!(st.in_place);
    assert_eq!(st.bytes, data.len() as u64);
    let m = std::fs::metadata("/dev/null").unwrap();
    assert!(m.file_type().is_char_device(), "/dev/null was replaced");
    assert!(!std::fs::read_dir("/dev").unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains(".tmp-")));
}

/// A loop device stands in for a disk: the stream is written in place, zero runs as zeros
/// (over old content), and the node stays a block device. Needs root and `losetup`; says so
/// and passes without them.
#[test]
fn extract_to_block_device_writes_in_place_with_zeros() {
    let dir = tempfile::tempdir().unwrap();
    // Data, a zero run, data, and an odd tail, so every write path is taken.
    let mut data = mixed_data(2 << 20, 64 << 10, 9);
    data.resize(6 << 20, 0);
    data.extend_from_slice(&mixed_data(1 << 20, 64 << 10, 10));
    data.extend_from_slice(&[7u8; 1000]);
    let backing = dir.path().join("backing.img");
    let len = 8u64 << 20;
    std::fs::write(&backing, vec![0xEEu8; len as usize]).unwrap();
    let out = std::process::Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&backing)
        .output();
    let dev = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        other => {
            eprintln!("skipped: no loop device ({other:?})");
            return;
        }
    };
    struct Detach(String);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = std::process::Command::new("losetup")
                .args(["-d", &self.0])
                .status();
        }
    }
    let _detach = Detach(dev.clone());
    let f = open(&pack_bytes(dir.path(), &data));
    let st = extract_to_path(&f, DISK, Path::new(&dev), None).unwrap();
    assert!(st.in_place);
    assert_eq!(st.bytes, data.len() as u64);
    assert!(std::fs::metadata(&dev)
        .unwrap()
        .file_type()
        .is_block_device());
    let mut got = vec![0u8; data.len()];
    std::fs::File::open(&dev)
        .unwrap()
        .read_exact(&mut got)
        .unwrap();
    assert!(got == data, "device content differs from the stream");
}

#[test]
fn extract_to_fifo_streams_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let data = mixed_data(6 << 20, 64 << 10, 9);
    let f = open(&pack_bytes(dir.path(), &data));
    let fifo = dir.path().join("pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: plain libc call with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let st = extract_to_path(&f, DISK, &fifo, None).unwrap();
    assert!(st.in_place);
    let got = reader.join().unwrap();
    assert!(got == data, "bytes through the FIFO differ");
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
}

#[test]
fn extract_to_writer_and_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = mixed_data(20 << 20, 64 << 10, 10);
    data.resize(30 << 20, 0);
    let f = open(&pack_bytes(dir.path(), &data));
    let mut v = Vec::new();
    extract_to_writer(&f, DISK, &mut v, None).unwrap();
    assert!(v == data);
    for (s, e) in [
        (0u64, 1u64),
        (12345, 9 << 20),
        (19 << 20, 40 << 20),
        (50 << 20, 60 << 20),
    ] {
        let mut v = Vec::new();
        let st = extract_range_to_writer(&f, DISK, s, e, &mut v, None).unwrap();
        let (s, e) = ((s as usize).min(data.len()), (e as usize).min(data.len()));
        assert_eq!(st.bytes as usize, e - s);
        assert!(v[..] == data[s..e], "range {s}..{e}");
    }
}

/// A writer that fails stops the extraction with its error: the planner and the workers
/// stop, and the call returns.
#[test]
fn extract_to_a_failing_writer_stops_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = mixed_data(64 << 20, 64 << 10, 12);
    let f = open(&pack_bytes(dir.path(), &data));
    for left in [0, 1 << 20, 20 << 20] {
        let mut w = common::FailingWriter { left };
        let e = extract_to_writer(&f, DISK, &mut w, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no space left on the test device"), "{e}");
    }
}

#[test]
fn extract_missing_stream_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = open(&pack_bytes(dir.path(), &[1u8; 100]));
    let e = extract_to_path(&f, SnapshotStream::Memory, &dir.path().join("m"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no memory stream"), "{e}");
    assert_eq!(names(dir.path()), vec!["a.hxz"]);
}
