//! An HTTP/1.1 server on loopback (std `TcpListener`, a thread per connection) that serves one
//! object with range requests, ETag and If-Match like a real server, and misbehaves on
//! command: each queued [`Fault`] applies to one upcoming request, in order.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One misbehaviour.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer normally (queued to aim the faults after it at later requests).
    Pass,
    /// Answer with this status (and a small body) instead of the data.
    Status(u16),
    /// Answer 503 with an S3 `SlowDown` error body.
    SlowDown,
    /// Send the headers and the first half of the body, then reset the connection.
    DropMidBody,
    /// Send the headers (full Content-Length) and a third of the body, then close cleanly.
    Truncate,
    /// Answer 200 with the whole object, as a server without range support does.
    Whole200,
    /// Answer 206 with a Content-Range (and bytes) shifted by one byte.
    WrongRange,
    /// Answer 206 with a Content-Length one byte short of the range.
    WrongLength,
    /// Accept the request and say nothing for this long.
    Stall(Duration),
    /// Replace the object (new bytes, new ETag) before answering.
    Swap(Vec<u8>),
    /// Answer 302 to this path on the same server.
    Redirect(String),
    /// Send the headers, then the body one byte per this interval (shorter than the read
    /// timeout, so no single read times out): a server that would take hours to answer.
    Trickle(Duration),
    /// Send the status line, then header bytes one per this interval, without end.
    TrickleHead(Duration),
    /// Answer 206 with the right headers and one body byte (the middle one) flipped, as a
    /// faulty proxy or NIC would: only the block checksums can tell.
    FlipByte,
}

struct State {
    data: Vec<u8>,
    etag: String,
    generation: u32,
    faults: VecDeque<Fault>,
    /// Faults applied over and over (after the queue is empty).
    always: Option<Fault>,
    honor_if_match: bool,
    /// `Range` header of every request (or "-" without one).
    log: Vec<String>,
}

/// The fault server; stops accepting when dropped.
pub struct FaultServer {
    /// Its port.
    pub port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    conns: Arc<AtomicUsize>,
}

impl FaultServer {
    /// Serves `data` (any path) on a free loopback port.
    pub fn start(data: Vec<u8>) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            data,
            etag: "\"gen-0\"".into(),
            generation: 0,
            faults: VecDeque::new(),
            always: None,
            honor_if_match: true,
            log: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(AtomicUsize::new(0));
        let (st, sp, cn) = (state.clone(), stop.clone(), conns.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                cn.fetch_add(1, Ordering::SeqCst);
                let st = st.clone();
                std::thread::spawn(move || serve(conn, st));
            }
        });
        FaultServer {
            port,
            state,
            stop,
            conns,
        }
    }

    /// The URL of the object.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/archive.hxz", self.port)
    }

    /// Queues faults for the next requests.
    pub fn push(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.lock().unwrap().faults.extend(faults);
    }

    /// Drops the queued faults that no request has taken yet.
    pub fn clear(&self) {
        self.state.lock().unwrap().faults.clear();
    }

    /// Applies `f` to every request once the queue is empty (`None`: behave).
    pub fn always(&self, f: Option<Fault>) {
        self.state.lock().unwrap().always = f;
    }

    /// Whether If-Match is checked (a server that ignores it still changes its ETag).
    pub fn honor_if_match(&self, on: bool) {
        self.state.lock().unwrap().honor_if_match = on;
    }

    /// Number of requests received so far.
    pub fn requests(&self) -> usize {
        self.state.lock().unwrap().log.len()
    }

    /// Number of connections accepted so far.
    pub fn connections(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }

    /// `Range` headers of the requests received so far.
    pub fn ranges(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(conn: TcpStream, state: Arc<Mutex<State>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut range = None;
        let mut if_match = None;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "range" => range = Some(v.trim().to_string()),
                    "if-match" => if_match = Some(v.trim().to_string()),
                    _ => {}
                }
            }
        }
        let (fault, data, etag, honor) = {
            let mut s = state.lock().unwrap();
            s.log.push(range.clone().unwrap_or_else(|| "-".into()));
            let mut f = s.faults.pop_front().or_else(|| s.always.clone());
            if let Some(Fault::Swap(new)) = &f {
                s.data = new.clone();
                s.generation += 1;
                s.etag = format!("\"gen-{}\"", s.generation);
                f = None;
            }
            (f, s.data.clone(), s.etag.clone(), s.honor_if_match)
        };
        if !respond(&mut out, &path, range, if_match, fault, &data, &etag, honor) {
            return;
        }
    }
}

/// The body of an S3 `SlowDown` error (answered with 503).
pub const SLOW_DOWN_BODY: &str = "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code>\
    <Message>Please reduce your request rate.</Message></Error>";

/// Writes a whole response: `status`, the `extra` header lines (each ending in CRLF) and
/// `body`. False when the client has gone.
pub fn simple(out: &mut TcpStream, status: u16, reason: &str, extra: &str, body: &str) -> bool {
    write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
    .is_ok()
}

#[allow(clippy::too_many_arguments)]
fn respond(
    out: &mut TcpStream,
    _path: &str,
    range: Option<String>,
    if_match: Option<String>,
    fault: Option<Fault>,
    data: &[u8],
    etag: &str,
    honor: bool,
) -> bool {
    let total = data.len() as u64;
    match &fault {
        Some(Fault::Status(code)) => {
            return simple(out, *code, "Injected", "", "injected failure");
        }
        Some(Fault::SlowDown) => {
            return simple(
                out,
                503,
                "Slow Down",
                "Content-Type: application/xml\r\n",
                SLOW_DOWN_BODY,
            );
        }
        Some(Fault::Stall(d)) => {
            std::thread::sleep(*d);
            return false;
        }
        Some(Fault::TrickleHead(d)) => {
            if out.write_all(b"HTTP/1.1 206 Partial Content\r\n").is_err() {
                return false;
            }
            loop {
                std::thread::sleep(*d);
                if out.write_all(b"X").and_then(|()| out.flush()).is_err() {
                    return false;
                }
            }
        }
        Some(Fault::Redirect(to)) => {
            return simple(out, 302, "Found", &format!("Location: {to}\r\n"), "");
        }
        Some(Fault::Whole200) => {
            let _ = write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Length: {total}\r\nETag: {etag}\r\n\r\n"
            );
            return out.write_all(data).is_ok();
        }
        _ => {}
    }
    if honor {
        if let Some(m) = &if_match {
            if m != etag && m != "*" {
                return simple(out, 412, "Precondition Failed", "", "");
            }
        }
    }
    let Some((a, b)) = range.as_deref().and_then(parse_range) else {
        return simple(
            out,
            400,
            "Bad Request",
            "",
            "range required by this test server",
        );
    };
    if a >= total {
        return simple(
            out,
            416,
            "Range Not Satisfiable",
            &format!("Content-Range: bytes */{total}\r\n"),
            "",
        );
    }
    let b = b.min(total - 1);
    let (mut ra, mut rb) = (a, b);
    if let Some(Fault::WrongRange) = fault {
        ra = (a + 1).min(total - 1);
        rb = (b + 1).min(total - 1);
    }
    let body = &data[ra as usize..=rb as usize];
    let mut len = body.len();
    if let Some(Fault::WrongLength) = fault {
        len -= 1;
    }
    let head = format!(
        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {ra}-{rb}/{total}\r\n\
         Content-Length: {len}\r\nETag: {etag}\r\nLast-Modified: Fri, 04 Dec 2026 10:00:00 GMT\r\n\r\n"
    );
    if out.write_all(head.as_bytes()).is_err() {
        return false;
    }
    match fault {
        Some(Fault::DropMidBody) => {
            let _ = out.write_all(&body[..body.len() / 2]);
            let _ = out.flush();
            // SO_LINGER 0: close with a reset.
            let _ = socket_linger_zero(out);
            false
        }
        Some(Fault::Truncate) => {
            let _ = out.write_all(&body[..body.len() / 3]);
            let _ = out.shutdown(Shutdown::Write);
            false
        }
        Some(Fault::WrongLength) => out.write_all(&body[..len]).is_ok(),
        Some(Fault::Trickle(d)) => {
            for b in body {
                std::thread::sleep(d);
                if out.write_all(&[*b]).and_then(|()| out.flush()).is_err() {
                    return false;
                }
            }
            true
        }
        Some(Fault::FlipByte) => {
            let mut bad = body.to_vec();
            bad[body.len() / 2] ^= 0x01;
            out.write_all(&bad).is_ok()
        }
        _ => out.write_all(body).is_ok(),
    }
}

/// Makes closing `s` send a reset instead of a clean FIN (`SO_LINGER` 0).
pub fn socket_linger_zero(s: &TcpStream) -> std::io::Result<()> {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    set_option(s, libc::SOL_SOCKET, libc::SO_LINGER, &l)
}

/// Sets socket option `name` at `level` of `s` to `value` (`setsockopt`).
pub fn set_option<T>(
    s: &TcpStream,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket fd, and a value of the size passed.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            value as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Parses `bytes=A-B` (or `bytes=A-`).
fn parse_range(r: &str) -> Option<(u64, u64)> {
    let (a, b) = r.strip_prefix("bytes=")?.split_once('-')?;
    let a = a.parse().ok()?;
    let b = if b.is_empty() {
        u64::MAX
    } else {
        b.parse().ok()?
    };
    Some((a, b))
}
