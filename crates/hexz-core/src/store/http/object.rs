//! [`RemoteObject`]: one remote archive read with range requests, the part the HTTP and S3
//! backends share (open, identity pinning, the head kept from the open request, batched
//! coalesced parallel reads, request counting).

use super::client::{HttpClient, Pin, Target};
use crate::error::{Error, Result};
use crate::store::coalesce::{self, CoalesceConfig, Piece};
use crate::store::{RangeSink, ReadRequest};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes fetched by the open request (`Range: bytes=0-65535`): the header and, for small
/// archives, everything. Reads inside it are served from memory.
pub const OPEN_BYTES: u64 = 64 << 10;

/// A remote object opened for reading.
pub(crate) struct RemoteObject {
    pub client: Arc<HttpClient>,
    pub target: Box<dyn Target>,
    pub pin: Pin,
    head: Vec<u8>,
    pub coalesce: CoalesceConfig,
    requests: AtomicU64,
    bytes: AtomicU64,
}

impl std::fmt::Debug for RemoteObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteObject")
            .field("url", &self.target.display())
            .field("pin", &self.pin)
            .finish()
    }
}

impl RemoteObject {
    /// Opens `target` with one request: `GET Range: bytes=0-65535`, whose `Content-Range`
    /// gives the size and whose ETag / Last-Modified pin the object's identity.
    pub fn open(client: Arc<HttpClient>, target: Box<dyn Target>) -> Result<RemoteObject> {
        let mut head = Vec::new();
        let pin = client.get_range(target.as_ref(), 0, OPEN_BYTES, None, &mut head)?;
        let bytes = head.len() as u64;
        Ok(RemoteObject {
            client,
            target,
            pin,
            head,
            coalesce: CoalesceConfig::default(),
            requests: AtomicU64::new(1),
            bytes: AtomicU64::new(bytes),
        })
    }

    pub fn len(&self) -> u64 {
        self.pin.size
    }

    /// Range requests made so far (the open request included; retries not counted).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Body bytes received so far by range requests.
    pub fn bytes_fetched(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn check_range(&self, offset: u64, len: usize) -> Result<()> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.pin.size => Ok(()),
            _ => Err(Error::Remote {
                backend: self.target.backend(),
                url: self.target.display().to_string(),
                detail: format!(
                    "read of {len} bytes at offset {offset} is past the end of the {}-byte object",
                    self.pin.size
                ),
                transient: false,
            }),
        }
    }

    pub fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let mut one = [ReadRequest { offset, buf }];
        self.read_batch(&mut one)
    }

    /// Reads `buf` at `offset` with requests of its own, even where the bytes lie in the head
    /// kept from the open request
    /// ([`StorageBackend::refetch`](crate::store::StorageBackend::refetch)).
    pub fn refetch(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check_range(offset, buf.len())?;
        if buf.is_empty() {
            return Ok(());
        }
        self.fetch(vec![Piece { offset, buf }])
    }

    pub fn read_batch(&self, reqs: &mut [ReadRequest<'_>]) -> Result<()> {
        let head_len = self.head.len() as u64;
        let mut rest: Vec<Piece<'_>> = Vec::new();
        for r in reqs.iter_mut() {
            self.check_range(r.offset, r.buf.len())?;
            let end = r.offset + r.buf.len() as u64;
            if end <= head_len {
                r.buf
                    .copy_from_slice(&self.head[r.offset as usize..end as usize]);
            } else {
                rest.push(Piece {
                    offset: r.offset,
                    buf: &mut *r.buf,
                });
            }
        }
        if rest.is_empty() {
            return Ok(());
        }
        self.fetch(rest)
    }

    /// Streams `start..end` into `sink`: the bytes inside the head kept from the open
    /// request from memory, the rest with one range request.
    pub fn read_streamed(&self, start: u64, end: u64, sink: &mut dyn RangeSink) -> Result<bool> {
        self.check_range(start, end.saturating_sub(start) as usize)?;
        let head_len = self.head.len() as u64;
        let mut pos = start;
        if pos < end.min(head_len) {
            let stop = end.min(head_len);
            sink.put(pos, &self.head[pos as usize..stop as usize]);
            pos = stop;
        }
        if pos < end {
            self.requests.fetch_add(1, Ordering::Relaxed);
            self.bytes.fetch_add(end - pos, Ordering::Relaxed);
            self.client
                .get_range(self.target.as_ref(), pos, end, Some(&self.pin), sink)?;
        }
        Ok(true)
    }

    /// Fetches `pieces` (checked to lie inside the object) with coalesced parallel range
    /// requests.
    fn fetch(&self, pieces: Vec<Piece<'_>>) -> Result<()> {
        let spans = coalesce::plan(pieces, &self.coalesce);
        coalesce::run(spans, self.coalesce.parallel, &|span| {
            self.requests.fetch_add(1, Ordering::Relaxed);
            self.bytes
                .fetch_add(span.end - span.start, Ordering::Relaxed);
            self.client
                .get_range(
                    self.target.as_ref(),
                    span.start,
                    span.end,
                    Some(&self.pin),
                    span,
                )
                .map(drop)
        })
    }
}

/// Resolves a parent path recorded in a thin child (a relative file path, `/`-separated)
/// against the directory of `base`, a `/`-separated object path (a URL path or an S3 key).
/// `..` cannot climb above the root. An absolute recorded path names a file on the machine
/// that packed the child; remotely only its file name is meaningful, so it is looked up in
/// the child's directory.
pub(crate) fn resolve_sibling(base: &str, rel: &str) -> Result<Vec<String>> {
    let bad = |why: &str| Error::InvalidArgument(format!("parent path '{rel}': {why}"));
    if rel.is_empty() || rel.ends_with('/') {
        return Err(bad("no file name"));
    }
    let mut segs: Vec<String> = base.split('/').map(str::to_string).collect();
    segs.pop(); // the child's own name
    let rel_segs: Vec<&str> = if rel.starts_with('/') {
        rel.rsplit('/').take(1).collect()
    } else {
        rel.split('/').collect()
    };
    for s in rel_segs {
        match s {
            "" | "." => {}
            ".." => {
                // The first segment of a URL path is the empty string before the leading '/'.
                if segs.len() <= usize::from(base.starts_with('/')) {
                    return Err(bad("'..' climbs above the root of the server or bucket"));
                }
                segs.pop();
            }
            s => segs.push(s.to_string()),
        }
    }
    match segs.last() {
        Some(l) if !l.is_empty() => Ok(segs),
        _ => Err(bad("no file name")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(base: &str, rel: &str) -> String {
        resolve_sibling(base, rel).unwrap().join("/")
    }

    #[test]
    fn siblings() {
        assert_eq!(join("/child.hxz", "parent.hxz"), "/parent.hxz");
        assert_eq!(join("/a/b/child.hxz", "parent.hxz"), "/a/b/parent.hxz");
        assert_eq!(join("/a/b/child.hxz", "../p.hxz"), "/a/p.hxz");
        assert_eq!(join("/a/b/child.hxz", "./x/p.hxz"), "/a/b/x/p.hxz");
        assert_eq!(join("/a/child.hxz", "/home/u/base.hxz"), "/a/base.hxz");
        assert_eq!(join("dir/child.hxz", "p.hxz"), "dir/p.hxz");
        assert_eq!(join("child.hxz", "p.hxz"), "p.hxz");
        assert_eq!(join("dir/child.hxz", "../p.hxz"), "p.hxz");
        assert!(resolve_sibling("/child.hxz", "../p.hxz").is_err());
        assert!(resolve_sibling("child.hxz", "../p.hxz").is_err());
        assert!(resolve_sibling("/a/child.hxz", "x/").is_err());
    }
}
