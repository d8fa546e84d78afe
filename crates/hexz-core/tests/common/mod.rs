//! Helpers shared by the hexz-core integration tests: deterministic data generators, packing
//! to a temporary directory, an in-memory storage backend and raw-format patching helpers.

#![allow(dead_code)]

use hexz_core::format::index::{
    ENTRY_SIZE, MASTER_HEADER_SIZE, PAGE_HEADER_SIZE, PAGE_REF_SIZE, STREAM_RECORD_SIZE,
};
use hexz_core::ops::{pack, PackInput, PackOptions, PackSource, PackStats};
use hexz_core::store::StorageBackend;
use hexz_core::{File, SnapshotStream};
use std::io::Read;
use std::path::{Path, PathBuf};

/// splitmix64: tiny, fast, deterministic.
#[derive(Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn fill(&mut self, out: &mut [u8]) {
        for c in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

/// `len` bytes mixing incompressible random runs, zero runs (so whole zero blocks occur),
/// copies of earlier block-aligned blocks (so dedup happens for fixed `block`-sized blocks),
/// short repeated patterns (compressible) and sparse data.
pub fn mixed_data(len: usize, block: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut v: Vec<u8> = Vec::with_capacity(len + 4 * block);
    while v.len() < len {
        match rng.below(5) {
            0 => {
                let n = 1 + rng.below(2 * block as u64) as usize;
                let at = v.len();
                v.resize(at + n, 0);
                rng.fill(&mut v[at..]);
            }
            1 => {
                let n = if rng.below(2) == 0 {
                    block * (1 + rng.below(3) as usize)
                } else {
                    1 + rng.below(3 * block as u64) as usize
                };
                v.resize(v.len() + n, 0);
            }
            2 => {
                // Pad to a block boundary, then repeat an earlier aligned block.
                let pad = (block - v.len() % block) % block;
                let b = rng.next_u64() as u8 | 1;
                v.extend(std::iter::repeat_n(b, pad));
                let have = v.len() / block;
                if have > 0 {
                    let k = rng.below(have as u64) as usize;
                    let copy = v[k * block..(k + 1) * block].to_vec();
                    v.extend_from_slice(&copy);
                }
            }
            3 => {
                let plen = 1 + rng.below(16) as usize;
                let mut pat = vec![0u8; plen];
                rng.fill(&mut pat);
                let n = 1 + rng.below(2 * block as u64) as usize;
                v.extend(pat.iter().cycle().take(n));
            }
            _ => {
                let n = 1 + rng.below(2 * block as u64) as usize;
                let at = v.len();
                v.resize(at + n, 0);
                for _ in 0..1 + n / 512 {
                    let i = at + rng.below(n as u64) as usize;
                    v[i] = rng.next_u64() as u8 | 1;
                }
            }
        }
    }
    v.truncate(len);
    v
}

/// The bytes a read of `len` at `off` must return: the slice clipped to the end of `data`.
pub fn expected(data: &[u8], off: u64, len: usize) -> &[u8] {
    let start = off.min(data.len() as u64) as usize;
    let end = (start as u64)
        .saturating_add(len as u64)
        .min(data.len() as u64) as usize;
    &data[start..end]
}

/// Writes `disk`/`memory` to files in `dir` and packs them (by path) into `dir/name`.
pub fn pack_files(
    dir: &Path,
    name: &str,
    disk: Option<&[u8]>,
    memory: Option<&[u8]>,
    opts: &PackOptions,
) -> (PathBuf, PackStats) {
    let mut input = PackInput::default();
    if let Some(d) = disk {
        let p = dir.join(format!("{name}.disk.raw"));
        std::fs::write(&p, d).unwrap();
        input.disk = Some(PackSource::Path(p));
    }
    if let Some(m) = memory {
        let p = dir.join(format!("{name}.mem.raw"));
        std::fs::write(&p, m).unwrap();
        input.memory = Some(PackSource::Path(p));
    }
    let out = dir.join(name);
    let stats = pack(input, &out, opts, None).expect("pack");
    (out, stats)
}

/// A reader that hands out its data in short, irregular pieces and now and then reports
/// `Interrupted`, like a pipe or a slow network stream.
pub struct Dribble {
    data: Vec<u8>,
    pos: usize,
    rng: Rng,
    /// Fail with an I/O error once this many bytes have been delivered.
    pub fail_at: Option<usize>,
}

impl Dribble {
    pub fn new(data: Vec<u8>, seed: u64) -> Self {
        Dribble {
            data,
            pos: 0,
            rng: Rng::new(seed),
            fail_at: None,
        }
    }
}

impl Read for Dribble {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(f) = self.fail_at {
            if self.pos >= f {
                return Err(std::io::Error::other("synthetic read failure"));
            }
        }
        if self.rng.below(8) == 0 {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        let left = self.data.len() - self.pos;
        let mut n = buf.len().min(left).min(1 + self.rng.below(7000) as usize);
        if let Some(f) = self.fail_at {
            n = n.min(f - self.pos);
        }
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// An archive held in memory.
pub struct MemBackend(pub Vec<u8>);

impl StorageBackend for MemBackend {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> hexz_core::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        match end {
            Some(e) if e <= self.0.len() as u64 => {
                buf.copy_from_slice(&self.0[offset as usize..e as usize]);
                Ok(())
            }
            _ => Err(hexz_core::Error::io(
                format!("reading {} bytes at {offset} of memory", buf.len()),
                std::io::ErrorKind::UnexpectedEof.into(),
            )),
        }
    }
    fn describe(&self) -> String {
        "<memory>".into()
    }
}

pub fn le_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
pub fn le_u64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// Recomputes the header CRC (bytes 508..512 = CRC32 of bytes 0..508).
pub fn fix_header_crc(a: &mut [u8]) {
    let crc = crc32fast::hash(&a[..508]);
    a[508..512].copy_from_slice(&crc.to_le_bytes());
}

/// Master index location from the header: (offset, length).
pub fn master_range(a: &[u8]) -> (usize, usize) {
    (le_u64(a, 56) as usize, le_u32(a, 64) as usize)
}

/// Byte offset, inside the archive, of the master index's page reference `page_no` of the
/// `stream_idx`-th stream record (streams in master order).
pub fn page_ref_offset(a: &[u8], stream_idx: usize, page_no: usize) -> usize {
    let (mo, _) = master_range(a);
    let nstreams = u16::from_le_bytes([a[mo + 4], a[mo + 5]]) as usize;
    let mut pos = mo + MASTER_HEADER_SIZE + nstreams * STREAM_RECORD_SIZE;
    for s in 0..stream_idx {
        let pages = le_u32(a, mo + MASTER_HEADER_SIZE + s * STREAM_RECORD_SIZE + 4) as usize;
        pos += pages * PAGE_REF_SIZE;
    }
    pos + page_no * PAGE_REF_SIZE
}

/// Recomputes the master index's trailing BLAKE3 digest.
pub fn fix_master_digest(a: &mut [u8]) {
    let (mo, ml) = master_range(a);
    let d = *blake3::hash(&a[mo..mo + ml - 32]).as_bytes();
    a[mo + ml - 32..mo + ml].copy_from_slice(&d);
}

/// After editing index page `page_no` of the `stream_idx`-th stream in place, updates the
/// page's BLAKE3 in the master index and the master digest, so only the edit's own
/// consequences are observed.
pub fn reseal_page(a: &mut [u8], stream_idx: usize, page_no: usize) {
    let r = page_ref_offset(a, stream_idx, page_no);
    let off = le_u64(a, r + 8) as usize;
    let len = le_u32(a, r + 16) as usize;
    let d = *blake3::hash(&a[off..off + len]).as_bytes();
    a[r + 32..r + 64].copy_from_slice(&d);
    fix_master_digest(a);
}

/// Archive offset of entry `idx` of the index page at archive offset `page_off`.
pub fn entry_offset(page_off: u64, idx: usize) -> usize {
    page_off as usize + PAGE_HEADER_SIZE + idx * ENTRY_SIZE
}

/// Reads the whole of `stream` through `read_at`.
pub fn read_all(f: &File, s: SnapshotStream) -> hexz_core::Result<Vec<u8>> {
    f.read_at(s, 0, f.size(s) as usize)
}

/// Runs `child` in a forked process and returns its exit status (`child` returns the code).
pub fn in_child(child: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child only runs `child` and leaves with `_exit`, never returning into the
    // test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // A child that hangs (a lock inherited held) dies of SIGALRM: the test fails, never hangs.
        // SAFETY: alarm has no preconditions.
        unsafe { libc::alarm(60) };
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(101);
        // SAFETY: ends the child at once, without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid");
    assert!(
        libc::WIFEXITED(status),
        "child did not exit normally ({status:#x})"
    );
    libc::WEXITSTATUS(status)
}

/// Runs `f` on a thread with a deadline, so a reader that recursed forever (or hung) fails
/// the test instead of hanging it.
pub fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || {
            let _ = tx.send(f());
        })
        .unwrap();
    match rx.recv_timeout(std::time::Duration::from_secs(secs)) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("did not finish within {secs} s: endless recursion or a hang?")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(h.join().expect_err("thread ended without a result"))
        }
    }
}

/// A writer that takes `left` bytes, then fails ("no space left on the test device").
pub struct FailingWriter {
    /// Bytes still taken before the writes fail.
    pub left: usize,
}

impl std::io::Write for FailingWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::other("no space left on the test device"));
        }
        let n = b.len().min(self.left);
        self.left -= n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
