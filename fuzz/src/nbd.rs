//! The NBD session oracle of the `nbd_proto` fuzz target, kept in its own file (not in the
//! `hexz_fuzz` library, which hexz-core's tests include and which must not need hexz-mount)
//! so that hexz-mount's tests replay the committed corpus through it too
//! (`crates/hexz-mount/tests/nbd_fuzz_corpus.rs`).
//!
//! An input is one mode byte (bit 0: a writable volume with an overlay) and a client byte
//! stream. The real server ([`hexz_mount::nbd::serve_session`]) serves a small real archive
//! (a 16 KiB disk stream and a 4 KiB memory stream) over an in-memory pipe; then an
//! independent model of the protocol walks the client's bytes and the server's reply
//! stream side by side: every reply must be well formed (magics, echoed option codes and
//! cookies, lengths), carry the error the protocol calls for, and every successful read must
//! return exactly the bytes of the stream — as changed by the session's own successful writes
//! and trims on a writable volume. The server may close the connection only where the model
//! says the client broke the protocol or its bytes ran out, and must say which.

use hexz_core::{File, SnapshotStream};
use hexz_mount::nbd::{proto, serve_session, End};
use hexz_mount::overlay::Overlay;
use hexz_mount::Volume;
use std::io::{Read, Write};
use std::sync::OnceLock;

/// Client bytes looked at per execution. Each 28-byte read request can return the whole
/// 16 KiB stream, so this bounds the reply stream (about 5 MiB) and one execution's work.
pub const MAX_CLIENT_BYTES: usize = 8 << 10;

/// Disk stream size of the served archive.
pub const DISK_SIZE: usize = 16 << 10;
/// Memory stream size of the served archive.
pub const MEMORY_SIZE: usize = 4 << 10;

/// An in-memory connection: the client's bytes in, the server's bytes out.
pub struct Pipe<'a> {
    input: &'a [u8],
    pos: usize,
    /// Everything the server wrote.
    pub output: Vec<u8>,
}

impl Read for Pipe<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.input.len() - self.pos);
        buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for Pipe<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| match (i / 4096) % 3 {
            0 => (i as u8).wrapping_mul(seed),
            1 => 0,
            _ => (i / 7) as u8 ^ seed,
        })
        .collect()
}

/// The served archive, in memory.
struct Mem(Vec<u8>);

impl hexz_core::store::StorageBackend for Mem {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> hexz_core::Result<()> {
        let o = usize::try_from(offset).unwrap_or(usize::MAX);
        match o.checked_add(buf.len()).and_then(|e| self.0.get(o..e)) {
            Some(b) => {
                buf.copy_from_slice(b);
                Ok(())
            }
            None => Err(hexz_core::Error::io(
                format!("reading {} bytes at {offset}", buf.len()),
                std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
            )),
        }
    }
    fn describe(&self) -> String {
        "served archive".into()
    }
}

/// A scratch directory for this process (on tmpfs when there is one, so overlay fsyncs are
/// cheap).
fn scratch() -> std::path::PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!("hexz-nbd-fuzz-{}", std::process::id()))
}

/// The served archive (packed once per process, LZ4, 4 KiB blocks) and its streams' bytes.
pub fn archive() -> &'static (File, Vec<u8>, Vec<u8>) {
    static A: OnceLock<(File, Vec<u8>, Vec<u8>)> = OnceLock::new();
    A.get_or_init(|| {
        use hexz_core::ops::{pack, PackInput, PackOptions, PackSource};
        let dir = scratch();
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let (disk, mem) = (pattern(DISK_SIZE, 3), pattern(MEMORY_SIZE, 5));
        std::fs::write(dir.join("disk"), &disk).expect("write disk");
        std::fs::write(dir.join("mem"), &mem).expect("write memory");
        let out = dir.join("served.hxz");
        let opts = PackOptions {
            block_size: 4096,
            threads: 1,
            ..PackOptions::default()
        };
        let input = PackInput {
            disk: Some(PackSource::Path(dir.join("disk"))),
            memory: Some(PackSource::Path(dir.join("mem"))),
        };
        pack(input, &out, &opts, None).expect("pack the served archive");
        let bytes = std::fs::read(&out).expect("read the served archive");
        let _ = std::fs::remove_dir_all(&dir);
        let f = File::open_backend(
            std::sync::Arc::new(Mem(bytes)),
            None,
            hexz_core::OpenOptions {
                read_ahead: 0,
                ..hexz_core::OpenOptions::default()
            },
        )
        .expect("open the served archive");
        (f, disk, mem)
    })
}

/// Runs one session (see the module documentation) and checks it.
pub fn check_session(data: &[u8]) {
    let Some((&mode, client)) = data.split_first() else {
        return;
    };
    let client = &client[..client.len().min(MAX_CLIENT_BYTES)];
    let (file, disk, mem) = archive();
    let writable = mode & 1 != 0;
    let mut overlay_path = None;
    let vol = if writable {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        // A file beside the scratch directory (not in it), removed after the session, so
        // nothing is left behind.
        let mut name = scratch().into_os_string();
        name.push(format!(
            "-overlay-{}",
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let p = std::path::PathBuf::from(name);
        let ov = Overlay::create(&p, file, "fuzz").expect("create an overlay");
        overlay_path = Some(p);
        Volume::with_overlay(file.clone(), ov)
    } else {
        Volume::new(file.clone())
    };
    let mut pipe = Pipe {
        input: client,
        pos: 0,
        output: Vec::new(),
    };
    let end = serve_session(&vol, &mut pipe);
    drop(vol);
    if let Some(p) = overlay_path {
        let _ = std::fs::remove_file(p);
    }
    let expected = Model {
        input: Bytes { b: client, pos: 0 },
        output: Bytes {
            b: &pipe.output,
            pos: 0,
        },
        writable,
        disk: disk.clone(),
        mem: mem.clone(),
    }
    .run();
    match (&end, expected) {
        (End::Clean, Expect::Clean) | (End::Proto(_), Expect::Proto) => {}
        (End::Io(e), Expect::Eof) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        (end, want) => panic!("session ended with {end:?}, the model expected {want:?}"),
    }
}

/// How the model says the session must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Clean,
    Proto,
    Eof,
}

struct Bytes<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn rest(&self) -> usize {
        self.b.len() - self.pos
    }
}

fn be16(b: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([b[o], b[o + 1]])
}
fn be32(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}
fn be64(b: &[u8], o: usize) -> u64 {
    u64::from_be_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

struct Model<'a> {
    input: Bytes<'a>,
    output: Bytes<'a>,
    writable: bool,
    disk: Vec<u8>,
    mem: Vec<u8>,
}

impl Model<'_> {
    /// Walks the session; asserts on every reply; returns how the session must end, after
    /// checking that the server wrote nothing more.
    fn run(mut self) -> Expect {
        let e = self.session();
        assert_eq!(
            self.output.rest(),
            0,
            "the server wrote {} bytes after the session should have ended ({e:?})",
            self.output.rest()
        );
        e
    }

    fn out(&mut self, n: usize, what: &str) -> &[u8] {
        let at = self.output.pos;
        self.output
            .take(n)
            .unwrap_or_else(|| panic!("reply stream ends inside {what} at byte {at}"))
    }

    fn tflags(&self) -> u16 {
        let mut f = proto::TF_HAS_FLAGS
            | proto::TF_SEND_FLUSH
            | proto::TF_SEND_FUA
            | proto::TF_CAN_MULTI_CONN;
        if self.writable {
            f |= proto::TF_SEND_TRIM | proto::TF_SEND_WRITE_ZEROES;
        } else {
            f |= proto::TF_READ_ONLY;
        }
        f
    }

    fn export(name: &[u8]) -> Option<SnapshotStream> {
        match name {
            b"" | b"disk" => Some(SnapshotStream::Disk),
            b"memory" => Some(SnapshotStream::Memory),
            _ => None,
        }
    }

    fn size(&self, s: SnapshotStream) -> u64 {
        match s {
            SnapshotStream::Disk => self.disk.len() as u64,
            SnapshotStream::Memory => self.mem.len() as u64,
        }
    }

    /// One option reply: checks magic and echoed option; returns (type, payload).
    fn option_reply(&mut self, option: u32) -> (u32, Vec<u8>) {
        let h = self.out(20, "an option reply header").to_vec();
        assert_eq!(be64(&h, 0), proto::REPLY_MAGIC, "option reply magic");
        assert_eq!(be32(&h, 8), option, "option reply echoes another option");
        let len = be32(&h, 16) as usize;
        (
            be32(&h, 12),
            self.out(len, "an option reply payload").to_vec(),
        )
    }

    fn session(&mut self) -> Expect {
        assert_eq!(self.out(18, "the greeting"), &proto::greeting()[..]);
        let Some(f) = self.input.take(4) else {
            return Expect::Eof;
        };
        let cf = be32(f, 0);
        if cf & !3 != 0 {
            return Expect::Proto;
        }
        let no_zeroes = cf & 2 != 0;
        loop {
            let Some(h) = self.input.take(16) else {
                return Expect::Eof;
            };
            if be64(h, 0) != proto::IHAVEOPT {
                return Expect::Proto;
            }
            let (option, len) = (be32(h, 8), be32(h, 12));
            if len > 64 * 1024 {
                return Expect::Proto;
            }
            let Some(payload) = self.input.take(len as usize) else {
                return Expect::Eof;
            };
            match option {
                proto::OPT_EXPORT_NAME => {
                    let stream = match std::str::from_utf8(payload) {
                        Ok(_) if payload.len() <= 4096 => Self::export(payload),
                        _ => None,
                    };
                    let Some(s) = stream else {
                        return Expect::Proto;
                    };
                    let r = self.out(10, "the export name reply").to_vec();
                    assert_eq!(be64(&r, 0), self.size(s), "export size");
                    assert_eq!(be16(&r, 8), self.tflags(), "transmission flags");
                    if !no_zeroes {
                        assert!(self.out(124, "the zero padding").iter().all(|&b| b == 0));
                    }
                    return self.transmission(s);
                }
                proto::OPT_ABORT => {
                    assert_eq!(self.option_reply(option), (proto::REP_ACK, Vec::new()));
                    return Expect::Clean;
                }
                proto::OPT_LIST => {
                    if !payload.is_empty() {
                        assert_eq!(self.option_reply(option).0, proto::REP_ERR_INVALID);
                        continue;
                    }
                    for name in [&b"disk"[..], b"memory"] {
                        let mut d = (name.len() as u32).to_be_bytes().to_vec();
                        d.extend_from_slice(name);
                        assert_eq!(self.option_reply(option), (proto::REP_SERVER, d));
                    }
                    assert_eq!(self.option_reply(option), (proto::REP_ACK, Vec::new()));
                }
                proto::OPT_INFO | proto::OPT_GO => {
                    // The name, when the payload holds one (the server decides validity;
                    // the model checks the decision against the name).
                    let name = (payload.len() >= 4)
                        .then(|| be32(payload, 0) as usize)
                        .and_then(|n| payload.get(4..4usize.checked_add(n)?));
                    let (ty, d) = self.option_reply(option);
                    match ty {
                        proto::REP_ERR_INVALID => continue,
                        proto::REP_ERR_UNKNOWN => {
                            let name = name.expect("an unknown export has a name");
                            assert!(Self::export(name).is_none(), "export refused");
                            continue;
                        }
                        proto::REP_INFO => {}
                        other => panic!("option {option}: reply type {other:#x}"),
                    }
                    let s = Self::export(name.expect("a named export"))
                        .expect("INFO for an export that does not exist");
                    assert_eq!(d.len(), 12, "NBD_INFO_EXPORT payload");
                    assert_eq!(be16(&d, 0), proto::INFO_EXPORT);
                    assert_eq!(be64(&d, 2), self.size(s), "export size");
                    assert_eq!(be16(&d, 10), self.tflags(), "transmission flags");
                    let (mut ty, mut d) = self.option_reply(option);
                    if ty == proto::REP_INFO {
                        assert_eq!(d.len(), 14, "NBD_INFO_BLOCK_SIZE payload");
                        assert_eq!(be16(&d, 0), proto::INFO_BLOCK_SIZE);
                        let (min, pref, max) = (be32(&d, 2), be32(&d, 6), be32(&d, 10));
                        assert!(min.is_power_of_two() && min <= pref && pref <= max);
                        (ty, d) = self.option_reply(option);
                    }
                    assert_eq!((ty, d), (proto::REP_ACK, Vec::new()));
                    if option == proto::OPT_GO {
                        return self.transmission(s);
                    }
                }
                _ => {
                    assert_eq!(
                        self.option_reply(option),
                        (proto::REP_ERR_UNSUP, Vec::new())
                    );
                }
            }
        }
    }

    fn transmission(&mut self, s: SnapshotStream) -> Expect {
        use proto::errno::{EINVAL, ENOSPC, ENOTSUP, EPERM};
        let size = self.size(s);
        loop {
            let Some(r) = self.input.take(28) else {
                return Expect::Eof;
            };
            if be32(r, 0) != proto::REQUEST_MAGIC {
                return Expect::Proto;
            }
            let (cmd, cookie, offset, len) = (be16(r, 6), be64(r, 8), be64(r, 16), be32(r, 24));
            if cmd <= 1 && len > proto::MAX_REQUEST_LEN {
                return Expect::Proto;
            }
            let payload: &[u8] = if cmd == 1 {
                let Some(p) = self.input.take(len as usize) else {
                    return Expect::Eof;
                };
                p
            } else {
                &[]
            };
            let in_range = offset.checked_add(len as u64).is_some_and(|e| e <= size);
            let want = match cmd {
                0 if !in_range => EINVAL,
                1 | 4 | 6 if !self.writable => EPERM,
                1 if !in_range => ENOSPC,
                4 | 6 if !in_range => EINVAL,
                0 | 1 | 3 | 4 | 6 => 0,
                2 => return Expect::Clean,
                _ => ENOTSUP,
            };
            let h = self.out(16, "a simple reply").to_vec();
            assert_eq!(be32(&h, 0), proto::SIMPLE_REPLY_MAGIC, "simple reply magic");
            assert_eq!(
                be32(&h, 4),
                want,
                "error of command {cmd} at {offset}+{len}"
            );
            assert_eq!(be64(&h, 8), cookie, "cookie");
            if want != 0 {
                continue;
            }
            let (o, n) = (offset as usize, len as usize);
            let shadow = match s {
                SnapshotStream::Disk => &mut self.disk,
                SnapshotStream::Memory => &mut self.mem,
            };
            match cmd {
                0 => {
                    let got = self
                        .output
                        .take(n)
                        .unwrap_or_else(|| panic!("read reply of {n} bytes truncated"));
                    assert!(
                        got == &shadow[o..o + n],
                        "read of {n} bytes at {o}: wrong bytes"
                    );
                }
                1 => shadow[o..o + n].copy_from_slice(payload),
                4 | 6 => shadow[o..o + n].fill(0),
                _ => {}
            }
        }
    }
}
