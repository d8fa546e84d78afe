//! The NBD front end: serves a [`Volume`]'s streams as NBD exports named after the streams
//! (`disk`, `memory`; the empty name means the first stream), to several clients at once,
//! one thread per connection, over TCP or a Unix socket.
//!
//! The wire format lives in [`proto`] as pure functions; this module only moves bytes. A
//! client that breaks the protocol (bad magic, oversized lengths, garbage) gets its
//! connection closed with a log line; the server keeps serving the others.

pub mod proto;

use crate::error::{Error, Result};
use crate::fs::log;
use crate::volume::Volume;
use hexz_core::SnapshotStream;
use proto::{Command, ProtoError};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Most clients served at once; more are refused (closed) with a log line.
pub const MAX_CONNECTIONS: usize = 64;

/// Where to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// `HOST:PORT` (port 0 picks a free one).
    Tcp(String),
    /// A Unix socket path (`unix:PATH`, or any argument starting with `/`).
    Unix(PathBuf),
}

impl Listen {
    /// Parses `HOST:PORT`, `unix:PATH` or `/PATH`.
    pub fn parse(s: &str) -> Result<Listen> {
        if let Some(p) = s.strip_prefix("unix:") {
            return Ok(Listen::Unix(PathBuf::from(p)));
        }
        if s.starts_with('/') {
            return Ok(Listen::Unix(PathBuf::from(s)));
        }
        if !s.contains(':') {
            return Err(Error::InvalidArgument(format!(
                "NBD address '{s}' is neither HOST:PORT nor unix:PATH"
            )));
        }
        Ok(Listen::Tcp(s.to_string()))
    }
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    fn try_clone(&self) -> std::io::Result<Conn> {
        Ok(match self {
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
        })
    }
    fn shutdown(&self) {
        let _ = match self {
            Conn::Tcp(s) => s.shutdown(Shutdown::Both),
            Conn::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An NBD server over one volume.
pub struct Server {
    volume: Arc<Volume>,
    listener: Listener,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<(u64, Conn)>>>,
    next_id: AtomicU64,
}

/// Why a session ([`serve_session`]) ended.
#[derive(Debug)]
pub enum End {
    /// The client disconnected or aborted normally.
    Clean,
    /// The connection failed (`UnexpectedEof`: the client went away mid-message).
    Io(std::io::Error),
    /// The client broke the protocol.
    Proto(ProtoError),
}

impl From<std::io::Error> for End {
    fn from(e: std::io::Error) -> End {
        End::Io(e)
    }
}
impl From<ProtoError> for End {
    fn from(e: ProtoError) -> End {
        End::Proto(e)
    }
}

impl Server {
    /// Binds the listening socket (an existing Unix socket file is replaced).
    pub fn bind(volume: Arc<Volume>, listen: &Listen) -> Result<Server> {
        let listener = match listen {
            Listen::Tcp(a) => Listener::Tcp(
                TcpListener::bind(a).map_err(|e| Error::io(format!("listening on {a}"), e))?,
            ),
            Listen::Unix(p) => {
                if std::fs::symlink_metadata(p).is_ok_and(|m| {
                    use std::os::unix::fs::FileTypeExt;
                    m.file_type().is_socket()
                }) {
                    let _ = std::fs::remove_file(p);
                }
                Listener::Unix(
                    UnixListener::bind(p)
                        .map_err(|e| Error::io(format!("listening on {}", p.display()), e))?,
                    p.clone(),
                )
            }
        };
        Ok(Server {
            volume,
            listener,
            stop: Arc::new(AtomicBool::new(false)),
            conns: Arc::new(Mutex::new(Vec::new())),
            next_id: AtomicU64::new(1),
        })
    }

    /// The address clients connect to (`HOST:PORT` or the socket path).
    pub fn local_addr(&self) -> String {
        match &self.listener {
            Listener::Tcp(l) => l
                .local_addr()
                .map_or_else(|_| "?".into(), |a| a.to_string()),
            Listener::Unix(_, p) => p.display().to_string(),
        }
    }

    /// A flag that makes [`Server::run`] return when set.
    pub fn stopper(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    fn listen_fd(&self) -> RawFd {
        match &self.listener {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix(l, _) => l.as_raw_fd(),
        }
    }

    fn accept(&self) -> std::io::Result<Conn> {
        Ok(match &self.listener {
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                s.set_nonblocking(false)?;
                let _ = s.set_nodelay(true);
                Conn::Tcp(s)
            }
            Listener::Unix(l, _) => {
                let (s, _) = l.accept()?;
                s.set_nonblocking(false)?;
                Conn::Unix(s)
            }
        })
    }

    /// Accepts and serves clients until the stop flag is set, then closes every connection,
    /// waits for their threads and syncs the volume.
    pub fn run(&self) -> Result<()> {
        let mut threads = Vec::new();
        while !self.stop.load(Ordering::SeqCst) {
            let mut pfd = libc::pollfd {
                fd: self.listen_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, 200) };
            if rc <= 0 {
                continue;
            }
            let conn = match self.accept() {
                Ok(c) => c,
                Err(e) => {
                    log(format!("nbd: accept failed: {e}"));
                    continue;
                }
            };
            threads.retain(|t: &std::thread::JoinHandle<()>| !t.is_finished());
            if threads.len() >= MAX_CONNECTIONS {
                log(format!(
                    "nbd: refusing a connection: {MAX_CONNECTIONS} clients already connected"
                ));
                continue;
            }
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            if let Ok(c) = conn.try_clone() {
                if let Ok(mut v) = self.conns.lock() {
                    v.push((id, c));
                }
            }
            let volume = self.volume.clone();
            let conns = self.conns.clone();
            let t = std::thread::Builder::new()
                .name(format!("nbd-{id}"))
                .spawn(move || {
                    match serve_conn(&volume, conn) {
                        End::Clean => {}
                        End::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
                        End::Io(e) => log(format!("nbd: connection {id}: {e}")),
                        End::Proto(e) => {
                            log(format!("nbd: connection {id} closed: protocol error: {e}"))
                        }
                    }
                    if let Ok(mut v) = conns.lock() {
                        v.retain(|(i, _)| *i != id);
                    }
                })
                .map_err(|e| Error::io("starting an NBD connection thread", e))?;
            threads.push(t);
        }
        if let Ok(v) = self.conns.lock() {
            for (_, c) in v.iter() {
                c.shutdown();
            }
        }
        for t in threads {
            let _ = t.join();
        }
        if let Listener::Unix(_, p) = &self.listener {
            let _ = std::fs::remove_file(p);
        }
        self.volume.sync()
    }
}

/// Reads exactly `len` bytes. The buffer grows with the bytes that arrive, so a client that
/// announces a 32 MiB write and sends nothing does not make the server allocate 32 MiB.
fn read_exact_vec<C: Read>(c: &mut C, len: usize) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    c.by_ref().take(len as u64).read_to_end(&mut v)?;
    if v.len() != len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(v)
}

fn exports(vol: &Volume) -> Vec<SnapshotStream> {
    vol.streams()
}

fn find_export(vol: &Volume, name: &str) -> Option<SnapshotStream> {
    let ex = exports(vol);
    if name.is_empty() {
        return ex.first().copied();
    }
    ex.into_iter().find(|s| s.name() == name)
}

fn transmission_flags(vol: &Volume) -> u16 {
    let mut f = proto::TF_HAS_FLAGS | proto::TF_SEND_FLUSH | proto::TF_SEND_FUA;
    f |= proto::TF_CAN_MULTI_CONN;
    if vol.is_writable() {
        f |= proto::TF_SEND_TRIM | proto::TF_SEND_WRITE_ZEROES;
    } else {
        f |= proto::TF_READ_ONLY;
    }
    f
}

fn serve_conn(vol: &Volume, mut c: Conn) -> End {
    serve_session(vol, &mut c)
}

/// Serves one client over `c` (any byte stream: a socket, or in tests and the `nbd_proto`
/// fuzz target an in-memory pipe): greeting, option negotiation, then transmission until
/// the client disconnects, breaks the protocol or the stream ends.
pub fn serve_session<C: Read + Write>(vol: &Volume, c: &mut C) -> End {
    match negotiate(vol, c) {
        Ok(Some(stream)) => match transmit(vol, c, stream) {
            Ok(()) => End::Clean,
            Err(e) => e,
        },
        Ok(None) => End::Clean,
        Err(e) => e,
    }
}

/// The option haggling phase; `Some(stream)` when the client entered transmission.
fn negotiate<C: Read + Write>(
    vol: &Volume,
    c: &mut C,
) -> std::result::Result<Option<SnapshotStream>, End> {
    c.write_all(&proto::greeting())?;
    let mut fb = [0u8; 4];
    c.read_exact(&mut fb)?;
    let flags = proto::parse_client_flags(&fb)?;
    loop {
        let mut hb = [0u8; 16];
        c.read_exact(&mut hb)?;
        let h = proto::parse_option_header(&hb)?;
        let data = read_exact_vec(c, h.len as usize)?;
        match h.option {
            proto::OPT_EXPORT_NAME => {
                let name = proto::parse_export_name(&data)?;
                let Some(s) = find_export(vol, &name) else {
                    // The protocol has no error reply here: closing is the answer.
                    return Err(End::Proto(ProtoError(format!("no export named '{name}'"))));
                };
                c.write_all(&proto::export_name_reply(
                    vol.size(s),
                    transmission_flags(vol),
                    flags.no_zeroes,
                ))?;
                return Ok(Some(s));
            }
            proto::OPT_ABORT => {
                c.write_all(&proto::option_reply(h.option, proto::REP_ACK, &[]))?;
                return Ok(None);
            }
            proto::OPT_LIST => {
                if !data.is_empty() {
                    c.write_all(&proto::option_reply(
                        h.option,
                        proto::REP_ERR_INVALID,
                        b"NBD_OPT_LIST takes no data",
                    ))?;
                    continue;
                }
                for s in exports(vol) {
                    let n = s.name().as_bytes();
                    let mut d = (n.len() as u32).to_be_bytes().to_vec();
                    d.extend_from_slice(n);
                    c.write_all(&proto::option_reply(h.option, proto::REP_SERVER, &d))?;
                }
                c.write_all(&proto::option_reply(h.option, proto::REP_ACK, &[]))?;
            }
            proto::OPT_INFO | proto::OPT_GO => {
                let req = match proto::parse_go(&data) {
                    Ok(r) => r,
                    Err(e) => {
                        c.write_all(&proto::option_reply(
                            h.option,
                            proto::REP_ERR_INVALID,
                            e.0.as_bytes(),
                        ))?;
                        continue;
                    }
                };
                let Some(s) = find_export(vol, &req.name) else {
                    let msg = format!(
                        "no export named '{}' (exports: {})",
                        req.name,
                        exports(vol)
                            .iter()
                            .map(|s| s.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    c.write_all(&proto::option_reply(
                        h.option,
                        proto::REP_ERR_UNKNOWN,
                        msg.as_bytes(),
                    ))?;
                    continue;
                };
                c.write_all(&proto::option_reply(
                    h.option,
                    proto::REP_INFO,
                    &proto::info_export(vol.size(s), transmission_flags(vol)),
                ))?;
                if req.info.contains(&proto::INFO_BLOCK_SIZE) {
                    c.write_all(&proto::option_reply(
                        h.option,
                        proto::REP_INFO,
                        &proto::info_block_size(1, 4096, proto::MAX_REQUEST_LEN),
                    ))?;
                }
                c.write_all(&proto::option_reply(h.option, proto::REP_ACK, &[]))?;
                if h.option == proto::OPT_GO {
                    return Ok(Some(s));
                }
            }
            other => {
                c.write_all(&proto::option_reply(other, proto::REP_ERR_UNSUP, &[]))?;
            }
        }
    }
}

fn transmit<C: Read + Write>(
    vol: &Volume,
    c: &mut C,
    stream: SnapshotStream,
) -> std::result::Result<(), End> {
    let size = vol.size(stream);
    let writable = vol.is_writable();
    // This connection's own reader: its read-ahead follows this client's reads.
    let mut reader = vol
        .reader(stream)
        .map_err(|e| End::Io(std::io::Error::other(e.to_string())))?;
    // Reply header and read data in one buffer, so each reply is one write.
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let mut rb = [0u8; proto::REQUEST_LEN];
        c.read_exact(&mut rb)?;
        let r = proto::parse_request(&rb)?;
        let reply = |c: &mut C, e: u32| c.write_all(&proto::simple_reply(e, r.cookie));
        match r.command {
            Command::Read => {
                if let Err(e) = proto::check_range(&r, size) {
                    reply(c, e)?;
                    continue;
                }
                let n = r.len as usize;
                buf.resize(16 + n, 0);
                match vol.read_with(&mut reader, stream, r.offset, &mut buf[16..]) {
                    Ok(got) if got == n => {
                        buf[..16].copy_from_slice(&proto::simple_reply(0, r.cookie));
                        c.write_all(&buf)?;
                    }
                    Ok(_) => reply(c, proto::errno::EIO)?,
                    Err(e) => {
                        log(format!(
                            "nbd: read of {n} bytes at offset {} of {stream} failed: {e}",
                            r.offset
                        ));
                        reply(c, e.nbd_error())?;
                    }
                }
            }
            Command::Write => {
                let data = read_exact_vec(c, r.len as usize)?;
                let e = if !writable {
                    proto::errno::EPERM
                } else if let Err(e) = proto::check_range(&r, size) {
                    e
                } else {
                    let res = vol.write_at(stream, r.offset, &data).and_then(|()| {
                        if r.flags & proto::CMD_FLAG_FUA != 0 {
                            vol.sync()
                        } else {
                            Ok(())
                        }
                    });
                    match res {
                        Ok(()) => 0,
                        Err(e) => {
                            log(format!(
                                "nbd: write at offset {} of {stream} failed: {e}",
                                r.offset
                            ));
                            e.nbd_error()
                        }
                    }
                };
                reply(c, e)?;
            }
            Command::Flush => {
                let e = match vol.sync() {
                    Ok(()) => 0,
                    Err(e) => {
                        log(format!("nbd: flush failed: {e}"));
                        e.nbd_error()
                    }
                };
                reply(c, e)?;
            }
            Command::Trim | Command::WriteZeroes => {
                let e = if !writable {
                    proto::errno::EPERM
                } else if let Err(e) = proto::check_range(&r, size) {
                    e
                } else {
                    match vol.zero(stream, r.offset, r.len as u64) {
                        Ok(()) => 0,
                        Err(e) => {
                            log(format!(
                                "nbd: zeroing at offset {} of {stream} failed: {e}",
                                r.offset
                            ));
                            e.nbd_error()
                        }
                    }
                };
                reply(c, e)?;
            }
            Command::Disconnect => return Ok(()),
            Command::Other(_) => reply(c, proto::errno::ENOTSUP)?,
        }
    }
}
