//! The HTTP plumbing shared by the HTTP and S3 backends: one `ureq` agent per client (blocking,
//! rustls, connection pool, restricted addresses refused by [`GuardedResolver`]), checked
//! range GETs that resume a body cut short, and plain requests for uploads, all retried by
//! one [`RetryPolicy`].
//!
//! Redirects are followed here, not by the agent, so that every hop goes through the same
//! checks (a redirect to a restricted address is refused at connection time like any other).

use crate::cache::fork::ForkFresh;
use crate::error::{Error, Result};
use crate::store::net::{GuardedResolver, REFUSED};
use crate::store::retry::{status_is_transient, Attempt, RetryPolicy};
use crate::store::{RangeSink, RemoteOptions};
use std::io::Read;
use std::sync::Arc;
use ureq::http::{HeaderMap, Response};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::unversioned::transport::DefaultConnector;
use ureq::{Agent, RequestExt};
use url::Url;

/// Most redirects followed for one request.
const MAX_REDIRECTS: u32 = 5;
/// Size of the buffer that takes range-response bytes no caller buffer is waiting for.
const SCRATCH: usize = 256 << 10;
/// Slowest body accepted, in bytes per second, once a response has been read for longer
/// than the read timeout: a server that trickles a byte now and then (never silent long
/// enough for the per-read timeout) would otherwise hold a read for hours. A range body cut
/// for it is resumed from the missing offset, within the retry budget.
const MIN_BODY_RATE: f64 = 1024.0;
/// Most bytes of an error response body kept for the message.
const MAX_ERROR_BODY: u64 = 16 << 10;
/// Most bytes of a non-range response body read into memory (S3 XML replies).
#[cfg_attr(not(feature = "s3"), allow(dead_code))]
const MAX_REPLY_BODY: u64 = 4 << 20;

/// Something a request can be addressed to: a plain URL, or an S3 object whose URL is
/// presigned afresh for every attempt.
pub(crate) trait Target: Send + Sync {
    /// Backend name for errors ("http", "s3").
    fn backend(&self) -> &'static str;
    /// The object's name for messages: a URL without credentials or signatures.
    fn display(&self) -> &str;
    /// The URL to send a request with `method` to (signed, for S3).
    fn url(&self, method: Method) -> Result<Url>;
}

/// HTTP methods the backends use (all but GET only by the S3 uploads).
#[cfg_attr(not(feature = "s3"), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Put,
    Post,
    Delete,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// The identity of a remote object pinned at open: every later response must match it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pin {
    /// Object size from the `Content-Range` total.
    pub size: u64,
    /// Its ETag, if the server sent one.
    pub etag: Option<String>,
    /// Its Last-Modified, if the server sent one.
    pub last_modified: Option<String>,
}

impl Pin {
    /// The identity string of [`crate::store::StorageBackend::identity`].
    pub fn identity(&self) -> Option<String> {
        match (&self.etag, &self.last_modified) {
            (Some(e), _) => Some(format!("etag:{e};size:{}", self.size)),
            (None, Some(lm)) => Some(format!("last-modified:{lm};size:{}", self.size)),
            (None, None) => None,
        }
    }

    /// The `If-Match` value to send: only a strong ETag can match (RFC 9110 13.1.1).
    fn if_match(&self) -> Option<&str> {
        self.etag.as_deref().filter(|e| !e.starts_with("W/"))
    }
}

/// The answer to a plain (non-range) request.
#[cfg_attr(not(feature = "s3"), allow(dead_code))]
#[derive(Debug)]
pub(crate) struct Reply {
    /// Response headers.
    pub headers: HeaderMap,
    /// The body (bounded).
    pub body: Vec<u8>,
}

/// Bytes a connection reads from its socket at a time (ureq's default is 128 KiB). Each
/// read is a system call that also sends the TCP acknowledgements and runs the network stack.
/// Over loopback 512 KiB took 9% off the CPU of a full read against 128 KiB; once blocks
/// were decoded as they stream in (so the body is copied into one small buffer, not spread
/// over cold ones), 1 MiB took another 10% off (1.00 s against 1.13 s of CPU, medians of 5
/// interleaved rounds; 2 MiB no better). It costs 1 MiB per open connection.
const INPUT_BUFFER: usize = 1 << 20;

/// A blocking HTTP client for remote archives: timeouts, retries and restricted-address
/// checks from [`RemoteOptions`], one connection pool shared by every object opened through
/// it (a thin chain's archives included). Safe to use after `fork()`: the child builds its
/// own pool instead of sharing the parent's connections.
pub struct HttpClient {
    options: RemoteOptions,
    retry: RetryPolicy,
    agent: ForkFresh<Agent>,
    /// The trusted roots from `options.ca_file`, loaded once (`None`: the built-in roots).
    roots: Option<Arc<Vec<Certificate<'static>>>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("options", &self.options)
            .finish()
    }
}

/// Reads the PEM certificates of `path` (the CAs to trust for HTTPS).
fn load_roots(path: &std::path::Path) -> Result<Arc<Vec<Certificate<'static>>>> {
    let pem = std::fs::read(path).map_err(|e| Error::io(path.display().to_string(), e))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => {
                return Err(Error::InvalidArgument(format!(
                    "{}: not a valid PEM certificate file ({e})",
                    path.display()
                )))
            }
        }
    }
    if certs.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{}: no certificate in it (set by SSL_CERT_FILE)",
            path.display()
        )));
    }
    Ok(Arc::new(certs))
}

fn build_agent(o: &RemoteOptions, roots: Option<&Arc<Vec<Certificate<'static>>>>) -> Agent {
    let tls = match roots {
        Some(r) => TlsConfig::builder()
            .root_certs(RootCerts::Specific(r.clone()))
            .build(),
        None => TlsConfig::default(),
    };
    let config = Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .timeout_resolve(Some(o.connect_timeout))
        .timeout_connect(Some(o.connect_timeout))
        .timeout_per_read(Some(o.read_timeout))
        // A server that trickles its headers is cut off as one that sends nothing would be.
        .timeout_recv_response(Some(o.read_timeout))
        .timeout_per_write(Some(o.read_timeout))
        .input_buffer_size(INPUT_BUFFER)
        .max_idle_connections(64)
        .max_idle_connections_per_host(16)
        .user_agent(concat!("hexz/", env!("CARGO_PKG_VERSION")))
        .build();
    Agent::with_parts(
        config,
        DefaultConnector::default(),
        GuardedResolver::new(o.allow_restricted),
    )
}

impl HttpClient {
    /// A client with `options` (timeouts, retry limits, restricted addresses, trusted CAs).
    /// Fails only when `options.ca_file` cannot be read or holds no certificate.
    pub fn new(options: &RemoteOptions) -> Result<HttpClient> {
        let roots = options.ca_file.as_deref().map(load_roots).transpose()?;
        Ok(HttpClient {
            options: options.clone(),
            retry: RetryPolicy {
                max_attempts: options.max_attempts.max(1),
                max_time: options.max_retry_time,
                ..RetryPolicy::default()
            },
            agent: ForkFresh::new(build_agent(options, roots.as_ref())),
            roots,
        })
    }

    /// The options this client was made with.
    pub fn options(&self) -> &RemoteOptions {
        &self.options
    }

    /// The agent of this process. A forked child gets a fresh one ([`ForkFresh`]): the
    /// inherited agent's pooled connections are shared with the parent (closing them could
    /// send a TLS close_notify on the parent's stream), and a parent's thread may have held
    /// the pool's lock at the fork. The parent's agent is left untouched in the child.
    fn agent(&self) -> Agent {
        self.agent
            .get(|| build_agent(&self.options, self.roots.as_ref()))
            .clone()
    }

    /// Time allowed to send a request body of `len` bytes: the read timeout plus `len` at
    /// [`RemoteOptions::min_send_rate`].
    fn send_budget(&self, len: usize) -> std::time::Duration {
        let rate = self.options.min_send_rate.max(1) as f64;
        self.options.read_timeout + std::time::Duration::from_secs_f64(len as f64 / rate)
    }

    /// Sends one request, following redirects (each hop checked again).
    fn send(
        &self,
        target: &dyn Target,
        method: Method,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> std::result::Result<(Url, Response<ureq::Body>), Failure> {
        let agent = self.agent();
        let mut url = target.url(method).map_err(Failure::Error)?;
        let mut hops = 0;
        loop {
            let mut req = ureq::http::Request::builder()
                .method(method.as_str())
                .uri(url.as_str());
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let resp = match body {
                Some(b) => req
                    .body(b)
                    .map_err(|e| Failure::Error(invalid(target, e)))
                    .and_then(|r| {
                        r.with_agent(&agent)
                            .configure()
                            .timeout_send_body(Some(self.send_budget(b.len())))
                            .run()
                            .map_err(Failure::Transport)
                    }),
                None => req
                    .body(())
                    .map_err(|e| Failure::Error(invalid(target, e)))
                    .and_then(|r| agent.run(r).map_err(Failure::Transport)),
            }?;
            let status = resp.status().as_u16();
            if matches!(status, 301 | 302 | 303 | 307 | 308) && method == Method::Get {
                let loc = resp
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let Some(loc) = loc else {
                    return Ok((url, resp));
                };
                hops += 1;
                if hops > MAX_REDIRECTS {
                    return Err(Failure::Error(remote(
                        target,
                        format!("more than {MAX_REDIRECTS} redirects (last to {loc})"),
                        false,
                    )));
                }
                url = url.join(&loc).map_err(|e| {
                    Failure::Error(remote(
                        target,
                        format!("redirect to an invalid location '{loc}': {e}"),
                        false,
                    ))
                })?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(Failure::Error(remote(
                        target,
                        format!("redirect to a non-HTTP location '{loc}'"),
                        false,
                    )));
                }
                continue;
            }
            return Ok((url, resp));
        }
    }

    /// Reads `start..end` of the object into `sink`, in order, checking status,
    /// `Content-Range`, length and identity, retrying transient failures and resuming a body
    /// cut short from the first missing byte. With `pin` `None` (the open request), `end` may
    /// be cut down to the object's size and the returned pin describes the object.
    pub(crate) fn get_range(
        &self,
        target: &dyn Target,
        start: u64,
        end: u64,
        pin: Option<&Pin>,
        sink: &mut dyn RangeSink,
    ) -> Result<Pin> {
        debug_assert!(start < end);
        let mut pos = start;
        let mut end = end;
        let mut pinned: Option<Pin> = pin.cloned();
        let mut scratch = Vec::new();
        self.retry.run(|_| {
            let before = pos;
            match self.range_attempt(
                target,
                &mut pos,
                &mut end,
                &mut pinned,
                pin.is_none(),
                &mut scratch,
                sink,
            ) {
                Ok(()) => match &pinned {
                    Some(p) => Attempt::Done(p.clone()),
                    None => Attempt::Failed {
                        err: remote(target, "no object identity after a response", false),
                        progress: false,
                    },
                },
                Err(err) => Attempt::Failed {
                    err,
                    progress: pos > before,
                },
            }
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn range_attempt(
        &self,
        target: &dyn Target,
        pos: &mut u64,
        end: &mut u64,
        pinned: &mut Option<Pin>,
        opening: bool,
        scratch: &mut Vec<u8>,
        sink: &mut dyn RangeSink,
    ) -> Result<()> {
        let range = format!("bytes={}-{}", *pos, *end - 1);
        let what = format!("GET {range}");
        let mut headers = vec![("range", range.as_str())];
        let if_match = pinned
            .as_ref()
            .and_then(|p| p.if_match().map(str::to_string));
        if let Some(m) = &if_match {
            headers.push(("if-match", m.as_str()));
        }
        let (_, mut resp) = match self.send(target, Method::Get, &headers, None) {
            Ok(r) => r,
            Err(f) => return Err(f.into_error(target, &what)),
        };
        let status = resp.status().as_u16();
        match status {
            206 => {}
            200 => {
                return Err(remote(
                    target,
                    format!(
                        "{what}: the server answered 200 OK (the whole object) where 206 Partial \
                         Content was expected: it does not serve range requests"
                    ),
                    false,
                ))
            }
            412 if if_match.is_some() => {
                return Err(Error::ArchiveChanged {
                    url: target.display().to_string(),
                    detail: format!(
                        "{what} with If-Match: {} was answered 412 Precondition Failed",
                        if_match.as_deref().unwrap_or_default()
                    ),
                })
            }
            416 if opening => {
                // An empty object has no byte 0: "bytes */0" says so.
                let cr = header(&resp, "content-range").unwrap_or_default();
                if cr.trim() == "bytes */0" {
                    *end = *pos;
                    *pinned = Some(Pin {
                        size: 0,
                        etag: header(&resp, "etag"),
                        last_modified: header(&resp, "last-modified"),
                    });
                    return Ok(());
                }
                return Err(status_error(target, &what, &mut resp));
            }
            _ => return Err(status_error(target, &what, &mut resp)),
        }
        if let Some(enc) = header(&resp, "content-encoding") {
            if !enc.eq_ignore_ascii_case("identity") {
                return Err(remote(
                    target,
                    format!("{what}: unexpected Content-Encoding '{enc}' on a range response"),
                    false,
                ));
            }
        }
        let cr = header(&resp, "content-range").ok_or_else(|| {
            remote(
                target,
                format!("{what}: 206 response without a Content-Range header"),
                false,
            )
        })?;
        let (rs, re, total) = parse_content_range(&cr).ok_or_else(|| {
            remote(
                target,
                format!("{what}: malformed Content-Range '{cr}'"),
                false,
            )
        })?;
        let etag = header(&resp, "etag");
        let last_modified = header(&resp, "last-modified");
        match pinned {
            Some(p) => {
                if total != Some(p.size) {
                    return Err(Error::ArchiveChanged {
                        url: target.display().to_string(),
                        detail: format!(
                            "{what}: the object's size is now {} (Content-Range '{cr}'), it was {} \
                             when opened",
                            total.map_or("unknown".to_string(), |t| t.to_string()),
                            p.size
                        ),
                    });
                }
                let changed = match (&p.etag, &etag, &p.last_modified, &last_modified) {
                    (Some(a), Some(b), ..) => (a != b).then(|| format!("ETag {a} -> {b}")),
                    (Some(a), None, ..) => Some(format!("ETag {a} -> none")),
                    (None, _, Some(a), Some(b)) => {
                        (a != b).then(|| format!("Last-Modified {a} -> {b}"))
                    }
                    _ => None,
                };
                if let Some(c) = changed {
                    return Err(Error::ArchiveChanged {
                        url: target.display().to_string(),
                        detail: format!("{what}: {c}"),
                    });
                }
            }
            None => {
                let size = total.ok_or_else(|| {
                    remote(
                        target,
                        format!("{what}: Content-Range '{cr}' does not give the object's size"),
                        false,
                    )
                })?;
                if size == 0 || *pos >= size {
                    return Err(remote(
                        target,
                        format!("{what}: Content-Range '{cr}' is outside the object"),
                        false,
                    ));
                }
                *end = (*end).min(size);
                *pinned = Some(Pin {
                    size,
                    etag,
                    last_modified,
                });
            }
        }
        if rs != *pos || re + 1 != *end {
            return Err(remote(
                target,
                format!(
                    "{what}: Content-Range '{cr}' does not match the requested bytes {}-{}",
                    *pos,
                    *end - 1
                ),
                false,
            ));
        }
        let want = *end - *pos;
        if let Some(cl) = header(&resp, "content-length") {
            if cl.trim().parse::<u64>().ok() != Some(want) {
                return Err(remote(
                    target,
                    format!("{what}: Content-Length {cl} where {want} bytes were expected"),
                    false,
                ));
            }
        }
        let mut reader = RateGuard::new(resp.body_mut().as_reader(), self.options.read_timeout);
        while *pos < *end {
            let left = (*end - *pos) as usize;
            // Straight into the caller's buffer where there is one for these bytes; through
            // the scratch buffer for gaps read through and overlapping requests.
            let got = match sink.direct(*pos) {
                Some(buf) => {
                    let room = left.min(buf.len());
                    reader.read(&mut buf[..room]).inspect(|&n| {
                        if n > 0 {
                            sink.wrote(*pos, n);
                        }
                    })
                }
                None => {
                    if scratch.is_empty() {
                        scratch.resize(SCRATCH, 0);
                    }
                    let room = left.min(scratch.len());
                    reader.read(&mut scratch[..room]).inspect(|&n| {
                        if n > 0 {
                            sink.put(*pos, &scratch[..n]);
                        }
                    })
                }
            };
            match got {
                Ok(0) => {
                    return Err(remote(
                        target,
                        format!(
                            "{what}: the body ended after {} of {want} bytes",
                            want - (*end - *pos)
                        ),
                        true,
                    ))
                }
                Ok(n) => *pos += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(remote(
                        target,
                        format!(
                            "{what}: reading the body failed after {} of {want} bytes: {e}",
                            want - (*end - *pos)
                        ),
                        true,
                    ))
                }
            }
        }
        // The body must end where the range does.
        let mut one = [0u8; 1];
        match reader.read(&mut one) {
            Ok(0) => Ok(()),
            Ok(_) => Err(remote(
                target,
                format!("{what}: the body is longer than the {want} bytes of its Content-Range"),
                false,
            )),
            // The bytes are all here and checked; a failure after them loses nothing.
            Err(_) => Ok(()),
        }
    }

    /// Sends a request with a body (uploads, S3 multipart calls) and reads the whole reply,
    /// retrying transient failures (the same bytes are sent again: every use is idempotent).
    /// Any status other than 2xx is an error naming the target, status and S3 error code.
    #[cfg_attr(not(feature = "s3"), allow(dead_code))]
    pub(crate) fn request(
        &self,
        target: &dyn Target,
        method: Method,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Reply> {
        let what = method.as_str();
        self.retry.run(|_| {
            let r = self
                .send(target, method, headers, body)
                .map_err(|f| f.into_error(target, what))
                .and_then(|(_, mut resp)| {
                    if !resp.status().is_success() {
                        return Err(status_error(target, what, &mut resp));
                    }
                    let mut buf = Vec::new();
                    RateGuard::new(resp.body_mut().as_reader(), self.options.read_timeout)
                        .take(MAX_REPLY_BODY)
                        .read_to_end(&mut buf)
                        .map_err(|e| {
                            remote(
                                target,
                                format!("{what}: reading the reply failed: {e}"),
                                true,
                            )
                        })?;
                    Ok(Reply {
                        headers: resp.headers().clone(),
                        body: buf,
                    })
                });
            match r {
                Ok(v) => Attempt::Done(v),
                Err(err) => Attempt::Failed {
                    err,
                    progress: false,
                },
            }
        })
    }
}

/// A response body reader that fails (as a timeout) once the body has been read for longer
/// than `grace` at under [`MIN_BODY_RATE`] on average.
struct RateGuard<R> {
    inner: R,
    start: std::time::Instant,
    got: u64,
    grace: std::time::Duration,
}

impl<R: Read> RateGuard<R> {
    fn new(inner: R, grace: std::time::Duration) -> Self {
        RateGuard {
            inner,
            start: std::time::Instant::now(),
            got: 0,
            grace,
        }
    }
}

impl<R: Read> Read for RateGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.got += n as u64;
        let secs = self.start.elapsed().as_secs_f64();
        if n > 0 && secs > self.grace.as_secs_f64() && (self.got as f64) < MIN_BODY_RATE * secs {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the body arrives at {:.0} bytes/s ({} bytes in {secs:.1} s), under the \
                     {MIN_BODY_RATE:.0} bytes/s accepted",
                    self.got as f64 / secs,
                    self.got
                ),
            ));
        }
        Ok(n)
    }
}

/// Why a request produced no response.
pub(crate) enum Failure {
    /// The transport failed (connection, timeout, TLS, refused address).
    Transport(ureq::Error),
    /// Already an error.
    Error(Error),
}

impl Failure {
    fn into_error(self, target: &dyn Target, what: &str) -> Error {
        let e = match self {
            Failure::Error(e) => return e,
            Failure::Transport(e) => e,
        };
        let transient = match &e {
            ureq::Error::Io(io) => {
                !(io.kind() == std::io::ErrorKind::PermissionDenied
                    && io.to_string().contains(REFUSED))
            }
            ureq::Error::Timeout(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::Protocol(_)
            | ureq::Error::BodyStalled => true,
            _ => false,
        };
        let msg = match &e {
            ureq::Error::HostNotFound => "host not found (DNS lookup failed)".to_string(),
            ureq::Error::Timeout(t) => format!("timed out ({t})"),
            other => other.to_string(),
        };
        remote(target, format!("{what}: {msg}"), transient)
    }
}

fn invalid(target: &dyn Target, e: impl std::fmt::Display) -> Error {
    remote(target, format!("cannot build the request: {e}"), false)
}

/// A [`Error::Remote`] about `target`.
pub(crate) fn remote(target: &dyn Target, detail: impl Into<String>, transient: bool) -> Error {
    Error::Remote {
        backend: target.backend(),
        url: target.display().to_string(),
        detail: detail.into(),
        transient,
    }
}

fn header(resp: &Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

/// The error for an unexpected status: the status, the S3 error code and message if the body
/// carries one, and a hint for the usual causes.
fn status_error(target: &dyn Target, what: &str, resp: &mut Response<ureq::Body>) -> Error {
    let status = resp.status();
    let mut body = Vec::new();
    let _ = resp
        .body_mut()
        .as_reader()
        .take(MAX_ERROR_BODY)
        .read_to_end(&mut body);
    let body = String::from_utf8_lossy(&body);
    let code = xml_field(&body, "Code");
    let transient = status_is_transient(status.as_u16(), code.as_deref());
    let mut detail = format!(
        "{what}: {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .trim_end()
    .to_string();
    if let Some(c) = &code {
        detail.push_str(&format!(" ({c}"));
        if let Some(m) = xml_field(&body, "Message") {
            detail.push_str(&format!(": {m}"));
        }
        detail.push(')');
    }
    let hint = match (status.as_u16(), code.as_deref()) {
        (_, Some("SignatureDoesNotMatch")) => {
            "; check the secret key (AWS_SECRET_ACCESS_KEY or the shared credentials file)"
        }
        (_, Some("InvalidAccessKeyId")) => {
            "; check the access key (AWS_ACCESS_KEY_ID or the shared credentials file)"
        }
        (_, Some("AccessDenied")) | (403, None) => "; access denied: check the credentials",
        (404, _) => "; the object does not exist",
        _ => "",
    };
    detail.push_str(hint);
    remote(target, detail, transient)
}

/// The text of the first `<tag>…</tag>` in an XML error body (S3 `Code`, `Message`).
pub(crate) fn xml_field(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let at = body.find(&open)? + open.len();
    let len = body[at..].find(&close)?;
    let v = body[at..at + len].trim();
    (!v.is_empty()).then(|| v.chars().take(300).collect())
}

/// Parses `bytes START-END/TOTAL` (TOTAL may be `*`) into (start, end inclusive, total).
pub(crate) fn parse_content_range(s: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = s.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (a, b) = range.trim().split_once('-')?;
    let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    if b < a {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        t => {
            let t: u64 = t.parse().ok()?;
            if b >= t {
                return None;
            }
            Some(t)
        }
    };
    Some((a, b, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(
            parse_content_range("bytes 0-99/1000"),
            Some((0, 99, Some(1000)))
        );
        assert_eq!(parse_content_range("bytes 5-5/*"), Some((5, 5, None)));
        assert_eq!(parse_content_range("bytes 10-5/100"), None);
        assert_eq!(parse_content_range("bytes 0-100/100"), None);
        assert_eq!(parse_content_range("bytes */100"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
        assert_eq!(parse_content_range("bytes 0-x/2"), None);
    }

    #[test]
    fn xml_fields() {
        let b = "<?xml?><Error><Code>SlowDown</Code><Message> Reduce </Message></Error>";
        assert_eq!(xml_field(b, "Code").as_deref(), Some("SlowDown"));
        assert_eq!(xml_field(b, "Message").as_deref(), Some("Reduce"));
        assert_eq!(xml_field(b, "Key"), None);
    }

    #[test]
    fn identity_prefers_etag() {
        let p = Pin {
            size: 5,
            etag: Some("\"a\"".into()),
            last_modified: Some("x".into()),
        };
        assert_eq!(p.identity().unwrap(), "etag:\"a\";size:5");
        assert_eq!(p.if_match(), Some("\"a\""));
        let w = Pin {
            size: 5,
            etag: Some("W/\"a\"".into()),
            last_modified: None,
        };
        assert_eq!(w.if_match(), None);
        let l = Pin {
            size: 5,
            etag: None,
            last_modified: Some("Mon".into()),
        };
        assert_eq!(l.identity().unwrap(), "last-modified:Mon;size:5");
    }
}
