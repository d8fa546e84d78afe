//! Where an archive lives: a local path or a URL (`http://`, `https://`, `s3://bucket/key`),
//! and the options that apply to remote ones.
//!
//! [`open_location`] is the one place that turns a user-given string into a
//! [`StorageBackend`]: the CLI, the Python bindings and the mount all call it.

use super::local::{FileBackend, MmapBackend};
use super::StorageBackend;
use crate::error::{Error, Result};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A parsed archive location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local file.
    Local(PathBuf),
    /// An `http://` or `https://` URL, read with range requests.
    Http(String),
    /// An object in an S3-compatible store.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Object key (no leading slash).
        key: String,
    },
}

impl Location {
    /// Parses `s`: URLs by their scheme, anything else as a local path.
    pub fn parse(s: &str) -> Result<Location> {
        let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return Ok(Location::Http(s.to_string()));
        }
        if lower.starts_with("s3://") {
            let rest = &s[5..];
            let (bucket, key) = rest.split_once('/').ok_or_else(|| {
                Error::InvalidArgument(format!("{s}: an S3 URL is s3://BUCKET/KEY"))
            })?;
            if bucket.is_empty() || key.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "{s}: an S3 URL is s3://BUCKET/KEY"
                )));
            }
            return Ok(Location::S3 {
                bucket: bucket.to_string(),
                key: key.to_string(),
            });
        }
        Ok(Location::Local(PathBuf::from(s)))
    }

    /// Whether the location is a URL.
    pub fn is_remote(&self) -> bool {
        !matches!(self, Location::Local(_))
    }
}

/// Options for remote archives. `Default` reads nothing from the environment; see
/// [`RemoteOptions::from_env`].
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// Allow loopback, private, link-local and cloud-metadata addresses (refused by default,
    /// checked after DNS resolution and on every redirect).
    pub allow_restricted: bool,
    /// Time allowed to establish a connection.
    pub connect_timeout: Duration,
    /// Time allowed without progress while reading a response.
    pub read_timeout: Duration,
    /// Slowest upload accepted, in bytes per second: a request body must be sent within
    /// `read_timeout` plus its size at this rate, so a server that takes it at a trickle
    /// cannot hold an upload for hours (the attempt fails as a timeout and is retried).
    pub min_send_rate: u64,
    /// Most attempts for one request (transient failures only).
    pub max_attempts: u32,
    /// Most total time spent retrying one request.
    pub max_retry_time: Duration,
    /// Directory of the shared disk cache of stored blocks (`None`: no disk tier).
    pub cache_dir: Option<PathBuf>,
    /// Byte cap of the disk cache.
    pub cache_size: u64,
    /// PEM file of the certificate authorities trusted for HTTPS instead of the built-in
    /// (Mozilla) roots, for servers with a private CA (`SSL_CERT_FILE`, as curl and OpenSSL).
    pub ca_file: Option<PathBuf>,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            allow_restricted: false,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            min_send_rate: 16 << 10,
            max_attempts: 6,
            max_retry_time: Duration::from_secs(60),
            cache_dir: None,
            cache_size: 10 << 30,
            ca_file: None,
        }
    }
}

impl RemoteOptions {
    /// Defaults, then `HEXZ_ALLOW_RESTRICTED=1`, `HEXZ_CACHE_DIR` and `SSL_CERT_FILE` from the
    /// environment.
    pub fn from_env() -> Self {
        let mut o = RemoteOptions::default();
        if std::env::var("HEXZ_ALLOW_RESTRICTED").is_ok_and(|v| v == "1" || v == "true") {
            o.allow_restricted = true;
        }
        if let Some(d) = std::env::var_os("HEXZ_CACHE_DIR").filter(|d| !d.is_empty()) {
            o.cache_dir = Some(PathBuf::from(d));
        }
        if let Some(f) = std::env::var_os("SSL_CERT_FILE").filter(|f| !f.is_empty()) {
            o.ca_file = Some(PathBuf::from(f));
        }
        o
    }
}

/// Opens the archive at `location` (a path or URL). `mmap` maps local files instead of
/// reading them positionally.
pub fn open_location(
    location: &str,
    options: &RemoteOptions,
    mmap: bool,
) -> Result<Arc<dyn StorageBackend>> {
    if let Some(cached) = crate::cache::disk::open_cached(location, options, mmap)? {
        return Ok(cached);
    }
    match Location::parse(location)? {
        Location::Local(p) if mmap => Ok(Arc::new(MmapBackend::new(&p)?)),
        Location::Local(p) => Ok(Arc::new(FileBackend::new(&p)?)),
        #[cfg(feature = "http")]
        Location::Http(url) => Ok(Arc::new(super::http::HttpBackend::open(&url, options)?)),
        #[cfg(feature = "s3")]
        Location::S3 { bucket, key } => Ok(Arc::new(super::s3::S3Backend::open(
            &bucket, &key, options,
        )?)),
        #[allow(unreachable_patterns)]
        Location::Http(_) | Location::S3 { .. } => {
            let _ = options;
            Err(Error::Unsupported(format!(
                "{location}: this build of hexz has no {} support (cargo features `http`, `s3`)",
                if location.to_ascii_lowercase().starts_with("s3:") {
                    "S3"
                } else {
                    "HTTP"
                }
            )))
        }
    }
}

/// The location of `rel` (a thin snapshot's recorded parent path, or a sibling's name) seen
/// from the archive at `base`: for a URL, relative to the URL's directory (`..` segments
/// stop at the host or bucket); for a local path, relative to its directory. An absolute
/// `rel` (a URL, or a `/path` for a local base) is returned as it is.
pub fn sibling_location(base: &str, rel: &str) -> String {
    if Location::parse(rel).is_ok_and(|l| l.is_remote()) {
        return rel.to_string();
    }
    let Ok(loc) = Location::parse(base) else {
        return rel.to_string();
    };
    if !loc.is_remote() {
        return super::local::sibling(std::path::Path::new(base), rel)
            .to_string_lossy()
            .into_owned();
    }
    // Split off "scheme://host/" (or "s3://bucket/"), keep the path without query.
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let root_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let root = &base[..root_end];
    let path = base[root_end..].split(['?', '#']).next().unwrap_or("");
    let mut segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if !rel.starts_with('/') {
        segs.pop(); // the base's own name
    } else {
        segs.clear();
    }
    for s in rel.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    format!("{root}/{}", segs.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siblings() {
        assert_eq!(
            sibling_location("http://h:80/a/b/c.hxz", "p.hxz"),
            "http://h:80/a/b/p.hxz"
        );
        assert_eq!(
            sibling_location("http://h/a/b/c.hxz?x=1", "../p.hxz"),
            "http://h/a/p.hxz"
        );
        assert_eq!(
            sibling_location("s3://bkt/c.hxz", "../../p.hxz"),
            "s3://bkt/p.hxz"
        );
        assert_eq!(
            sibling_location("s3://bkt/d/c.hxz", "http://o/p.hxz"),
            "http://o/p.hxz"
        );
        assert_eq!(sibling_location("d/c.hxz", "p.hxz"), "d/p.hxz");
    }

    #[test]
    fn parses_paths_and_urls() {
        assert_eq!(
            Location::parse("a/b.hxz").unwrap(),
            Location::Local("a/b.hxz".into())
        );
        assert_eq!(
            Location::parse("HTTPS://h/x.hxz").unwrap(),
            Location::Http("HTTPS://h/x.hxz".into())
        );
        assert_eq!(
            Location::parse("s3://bkt/dir/x.hxz").unwrap(),
            Location::S3 {
                bucket: "bkt".into(),
                key: "dir/x.hxz".into()
            }
        );
        assert!(Location::parse("s3://bkt").is_err());
        assert!(Location::parse("s3:///key").is_err());
    }
}
