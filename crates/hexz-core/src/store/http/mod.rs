//! [`HttpBackend`]: an archive on a plain HTTP(S) server, read with range requests.
//!
//! # What the server must support
//! - `Range: bytes=A-B` answered with `206 Partial Content` and a `Content-Range` giving the
//!   total size (any static file server does: nginx, Apache, S3, CDNs). A server that answers
//!   `200` with the whole file is refused rather than downloaded.
//! - An `ETag` (or at least `Last-Modified`) and `If-Match`: the identity is pinned when the
//!   archive is opened and sent as `If-Match` on every later request, so an archive replaced
//!   on the server gives [`Error::ArchiveChanged`] instead of a mix of two versions. Without
//!   an ETag every response's Last-Modified and size are still compared; with neither, only
//!   the size is, and the backend has no [`identity`](StorageBackend::identity) (disk caches
//!   then do not keep its blocks).
//!
//! Opening costs one request (`GET bytes=0-65535`, whose `Content-Range` gives the size; no
//! `HEAD`); reads inside those first 64 KiB are served from memory. Batched reads are merged
//! and fetched in parallel ([`crate::store::coalesce`]); failures are retried as
//! [`crate::store::retry`] says; loopback, private and link-local addresses are refused
//! unless allowed ([`crate::store::net`]).

pub(crate) mod client;
pub(crate) mod object;

pub use client::HttpClient;
pub use object::OPEN_BYTES;

use crate::error::{Error, Result};
use crate::store::{RangeSink, ReadRequest, RemoteOptions, StorageBackend};
use client::{Method, Target};
use object::{resolve_sibling, RemoteObject};
use std::sync::Arc;
use url::Url;

/// A plain URL as a request target.
struct HttpTarget {
    url: Url,
    display: String,
}

impl HttpTarget {
    fn new(url: &str) -> Result<HttpTarget> {
        let bad = |why: String| Error::InvalidArgument(format!("{url}: {why}"));
        let u = Url::parse(url).map_err(|e| bad(format!("not a valid URL: {e}")))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(bad(
                "only http:// and https:// URLs are read by the HTTP backend".into(),
            ));
        }
        if u.host_str().is_none_or(str::is_empty) {
            return Err(bad("the URL has no host".into()));
        }
        let mut shown = u.clone();
        let _ = shown.set_password(None);
        let _ = shown.set_username("");
        Ok(HttpTarget {
            display: shown.to_string(),
            url: u,
        })
    }
}

impl Target for HttpTarget {
    fn backend(&self) -> &'static str {
        "http"
    }
    fn display(&self) -> &str {
        &self.display
    }
    fn url(&self, _: Method) -> Result<Url> {
        Ok(self.url.clone())
    }
}

/// An archive on an HTTP(S) server. See the [module docs](self) for what the server must
/// support.
#[derive(Debug)]
pub struct HttpBackend {
    obj: RemoteObject,
    url: Url,
}

impl HttpBackend {
    /// Opens the archive at `url` with a new client made from `options` (one request).
    pub fn open(url: &str, options: &RemoteOptions) -> Result<HttpBackend> {
        Self::open_with_client(Arc::new(HttpClient::new(options)?), url)
    }

    /// Opens the archive at `url` through `client` (sharing its connections and options).
    pub fn open_with_client(client: Arc<HttpClient>, url: &str) -> Result<HttpBackend> {
        let target = HttpTarget::new(url)?;
        let u = target.url.clone();
        Ok(HttpBackend {
            obj: RemoteObject::open(client, Box::new(target))?,
            url: u,
        })
    }

    /// The archive's URL (without credentials).
    pub fn url(&self) -> &str {
        self.obj.target.display()
    }

    /// The client this backend sends its requests through.
    pub fn client(&self) -> &Arc<HttpClient> {
        &self.obj.client
    }

    /// Range requests made so far, the open request included (retries not counted).
    pub fn requests(&self) -> u64 {
        self.obj.requests()
    }

    /// Bytes received so far (gaps read through included).
    pub fn bytes_fetched(&self) -> u64 {
        self.obj.bytes_fetched()
    }

    /// The URL of `rel` (a parent path recorded in a thin child) next to this archive.
    pub fn sibling_url(&self, rel: &str) -> Result<String> {
        sibling_url(&self.url, rel).map(|u| u.to_string())
    }
}

/// Resolves `rel` against the directory of `base`, keeping the `/` between the directory
/// and the name, percent-encoding the new segments, dropping query and fragment.
fn sibling_url(base: &Url, rel: &str) -> Result<Url> {
    let encoded: Vec<String> = rel
        .split('/')
        .map(|s| match s {
            "" | "." | ".." => s.to_string(),
            s => {
                let mut scratch = Url::parse("http://x/").expect("static URL");
                scratch
                    .path_segments_mut()
                    .expect("http URLs have a path")
                    .push(s);
                scratch.path()[1..].to_string()
            }
        })
        .collect();
    let segs = resolve_sibling(base.path(), &encoded.join("/"))?;
    let mut u = base.clone();
    u.set_path(&segs.join("/"));
    u.set_query(None);
    u.set_fragment(None);
    Ok(u)
}

impl StorageBackend for HttpBackend {
    fn len(&self) -> u64 {
        self.obj.len()
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.obj.read_exact_at(offset, buf)
    }

    fn read_batch(&self, reqs: &mut [ReadRequest<'_>]) -> Result<()> {
        self.obj.read_batch(reqs)
    }

    fn refetch(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.obj.refetch(offset, buf)
    }

    fn read_streamed(&self, start: u64, end: u64, sink: &mut dyn RangeSink) -> Result<bool> {
        self.obj.read_streamed(start, end, sink)
    }

    fn identity(&self) -> Option<String> {
        self.obj.pin.identity()
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        self.url().to_string()
    }

    fn open_relative(&self, path: &str) -> Result<Arc<dyn StorageBackend>> {
        let u = sibling_url(&self.url, path)?;
        Ok(Arc::new(HttpBackend::open_with_client(
            self.obj.client.clone(),
            u.as_str(),
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sib(base: &str, rel: &str) -> String {
        sibling_url(&Url::parse(base).unwrap(), rel)
            .unwrap()
            .to_string()
    }

    #[test]
    fn sibling_urls_keep_the_slash() {
        assert_eq!(
            sib("http://127.0.0.1:8080/child.hxz", "parent.hxz"),
            "http://127.0.0.1:8080/parent.hxz"
        );
        assert_eq!(
            sib("https://h/d/e/child.hxz?x=1#f", "../p q.hxz"),
            "https://h/d/p%20q.hxz"
        );
        assert_eq!(
            sib("http://h/d/child.hxz", "/abs/dir/base.hxz"),
            "http://h/d/base.hxz"
        );
        assert_eq!(
            sib("http://h/d/child.hxz", "a?b#c.hxz"),
            "http://h/d/a%3Fb%23c.hxz"
        );
        assert!(sibling_url(&Url::parse("http://h/child.hxz").unwrap(), "../x.hxz").is_err());
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(HttpTarget::new("http://").is_err());
        assert!(HttpTarget::new("ftp://h/x").is_err());
        let t = HttpTarget::new("http://user:secret@h/x.hxz").unwrap();
        assert_eq!(t.display(), "http://h/x.hxz");
    }
}
