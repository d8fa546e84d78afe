//! A fault-injecting HTTP/1.1 proxy on loopback in front of a real server (SeaweedFS): the
//! S3 faults of [`fault`](super::fault) with real SigV4 signatures, real multipart uploads
//! and real error bodies behind them. Each request is forwarded on a new upstream connection
//! with `Connection: close` (so the proxy never has to frame a response body it relays), and
//! each queued [`ProxyFault`] applies to one upcoming request whose method matches.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::fault::{simple, SLOW_DOWN_BODY};

/// One misbehaviour of the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyFault {
    /// Forward and relay normally.
    Pass,
    /// Answer with this status without forwarding (the request body is read first).
    Status(u16),
    /// Answer 503 with an S3 `SlowDown` error body without forwarding.
    SlowDown,
    /// Forward, relay the response head and half its body, then reset the connection.
    DropMidBody,
    /// Forward, relay the response head and a third of its body, then close cleanly.
    Truncate,
    /// Read the request, then say nothing for this long and close.
    Stall(Duration),
    /// Read half the request body, then reset the connection (an upload cut midway).
    ResetMidRequest,
    /// Read the request body 1 KiB per this interval through a small receive buffer (a
    /// server or middlebox that takes an upload at a trickle), then forward it.
    SlowRead(Duration),
}

/// A queued fault and the method it waits for (`None`: any).
type Queued = (Option<String>, ProxyFault);

struct State {
    upstream: u16,
    faults: VecDeque<Queued>,
    always: Option<Queued>,
    /// `METHOD path` and the fault applied, for every request.
    log: Vec<(String, ProxyFault)>,
}

/// The proxy; stops accepting when dropped.
pub struct FaultProxy {
    /// Its port.
    pub port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Forwards to `127.0.0.1:upstream` from a free loopback port.
    pub fn start(upstream: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            upstream,
            faults: VecDeque::new(),
            always: None,
            log: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || serve(conn, st));
            }
        });
        FaultProxy { port, state, stop }
    }

    /// `http://127.0.0.1:PORT`, the endpoint clients are configured with.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Queues faults for the next requests with `method` (`None`: any method).
    pub fn push(&self, method: Option<&str>, faults: impl IntoIterator<Item = ProxyFault>) {
        let mut s = self.state.lock().unwrap();
        for f in faults {
            s.faults.push_back((method.map(str::to_string), f));
        }
    }

    /// Applies `f` to every request with `method` once no queued fault matches (`None`:
    /// behave).
    pub fn always(&self, method: Option<&str>, f: Option<ProxyFault>) {
        self.state.lock().unwrap().always = f.map(|f| (method.map(str::to_string), f));
    }

    /// Drops the queued faults and the standing one, and forgets the log.
    pub fn reset(&self) {
        let mut s = self.state.lock().unwrap();
        s.faults.clear();
        s.always = None;
        s.log.clear();
    }

    /// Queued faults no request has taken yet.
    pub fn pending(&self) -> usize {
        self.state.lock().unwrap().faults.len()
    }

    /// `METHOD path` (without the query) and the fault applied, for every request so far.
    pub fn log(&self) -> Vec<(String, ProxyFault)> {
        self.state.lock().unwrap().log.clone()
    }

    /// How many requests got fault `f`.
    pub fn applied(&self, f: &ProxyFault) -> usize {
        self.log().iter().filter(|(_, g)| g == f).count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Serves one client connection: one request, then the connection is closed.
fn serve(conn: TcpStream, state: Arc<Mutex<State>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(clone) = conn.try_clone() else { return };
    let mut reader = BufReader::new(clone);
    let mut out = conn;
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let mut head = line.trim_end().to_string() + "\r\n";
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        let t = h.trim_end();
        if t.is_empty() {
            break;
        }
        let name = t
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if name == "content-length" {
            len = t
                .split_once(':')
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
        }
        if name != "connection" {
            head.push_str(t);
            head.push_str("\r\n");
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    let (fault, upstream) = {
        let mut s = state.lock().unwrap();
        let i = s
            .faults
            .iter()
            .position(|(m, _)| m.as_deref().is_none_or(|m| m == method));
        let f = match i.and_then(|i| s.faults.remove(i)) {
            Some((_, f)) => f,
            None => match &s.always {
                Some((m, f)) if m.as_deref().is_none_or(|m| m == method) => f.clone(),
                _ => ProxyFault::Pass,
            },
        };
        let path = target.split('?').next().unwrap_or("").to_string();
        s.log.push((format!("{method} {path}"), f.clone()));
        (f, s.upstream)
    };

    // The request body, read as the fault says.
    let mut body = vec![0u8; len];
    match &fault {
        ProxyFault::ResetMidRequest => {
            let _ = reader.read_exact(&mut body[..len / 2]);
            let _ = super::fault::socket_linger_zero(&out);
            return;
        }
        ProxyFault::SlowRead(d) => {
            let _ = super::fault::set_option(&out, libc::SOL_SOCKET, libc::SO_RCVBUF, &4096i32);
            let mut got = 0;
            while got < len {
                std::thread::sleep(*d);
                let n = (len - got).min(1024);
                match reader.read(&mut body[got..got + n]) {
                    Ok(0) | Err(_) => return,
                    Ok(k) => got += k,
                }
            }
        }
        _ => {
            if reader.read_exact(&mut body).is_err() {
                return;
            }
        }
    }
    // Answers made here close the connection, as every relayed one does.
    const CLOSE: &str = "Connection: close\r\n";
    match &fault {
        ProxyFault::Status(code) => {
            simple(&mut out, *code, "Injected", CLOSE, "injected failure");
            return;
        }
        ProxyFault::SlowDown => {
            let xml = format!("Content-Type: application/xml\r\n{CLOSE}");
            simple(&mut out, 503, "Slow Down", &xml, SLOW_DOWN_BODY);
            return;
        }
        ProxyFault::Stall(d) => {
            std::thread::sleep(*d);
            return;
        }
        _ => {}
    }

    let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
        simple(&mut out, 502, "Bad Gateway", CLOSE, "upstream down");
        return;
    };
    let _ = up.set_read_timeout(Some(Duration::from_secs(60)));
    if up.write_all(head.as_bytes()).is_err() || up.write_all(&body).is_err() {
        return;
    }
    // The response head, then the body as the fault says.
    let mut up = BufReader::new(up);
    let mut rhead = Vec::new();
    let mut clen: Option<u64> = None;
    loop {
        let mut h = Vec::new();
        if up.read_until(b'\n', &mut h).unwrap_or(0) == 0 {
            return;
        }
        let t = String::from_utf8_lossy(&h).to_ascii_lowercase();
        if let Some(v) = t.strip_prefix("content-length:") {
            clen = v.trim().parse().ok();
        }
        rhead.extend_from_slice(&h);
        if h == b"\r\n" {
            break;
        }
    }
    if out.write_all(&rhead).is_err() {
        return;
    }
    let cut = |num: u64, den: u64| clen.map_or(64, |c| c * num / den);
    match fault {
        ProxyFault::DropMidBody => {
            let _ = std::io::copy(&mut up.by_ref().take(cut(1, 2)), &mut out);
            let _ = out.flush();
            let _ = super::fault::socket_linger_zero(&out);
        }
        ProxyFault::Truncate => {
            let _ = std::io::copy(&mut up.by_ref().take(cut(1, 3)), &mut out);
            let _ = out.shutdown(Shutdown::Write);
        }
        _ => {
            let _ = std::io::copy(&mut up, &mut out);
        }
    }
}
