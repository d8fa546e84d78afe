//! [`S3Backend`]: an archive in an S3-compatible object store (`s3://BUCKET/KEY`).
//!
//! Requests are SigV4-presigned by the `rusty-s3` crate (never signed by hand) and sent
//! through the same [`HttpClient`](crate::store::http::HttpClient) as plain HTTP, so range
//! checks, identity pinning (`If-Match` with the ETag from the open request), retries (5xx,
//! 429, `SlowDown`), coalescing and restricted-address checks are the same. Configuration
//! comes from the environment and the AWS files ([`S3Config`]); a custom endpoint
//! (`AWS_ENDPOINT_URL`) is addressed path-style. [`S3Client`] also uploads (single PUT and
//! multipart with an abort-on-drop guard) for `hexz push`.

pub mod client;
pub mod config;
pub mod credential;

pub use client::{MultipartUpload, S3Client, MAX_PARTS, MIN_PART_SIZE};
pub use config::S3Config;
pub use credential::Credentials;

use crate::error::Result;
use crate::store::http::client::{Method, Target};
use crate::store::http::object::{resolve_sibling, RemoteObject};
use crate::store::{RangeSink, ReadRequest, RemoteOptions, StorageBackend};
use std::sync::Arc;
use url::Url;

/// An object in a bucket as a request target, presigned afresh for every attempt.
struct S3Target {
    client: Arc<S3Client>,
    key: String,
    display: String,
}

impl Target for S3Target {
    fn backend(&self) -> &'static str {
        "s3"
    }
    fn display(&self) -> &str {
        &self.display
    }
    fn url(&self, _: Method) -> Result<Url> {
        Ok(self.client.presign_get(&self.key))
    }
}

/// An archive stored as one object in an S3-compatible store.
#[derive(Debug)]
pub struct S3Backend {
    obj: RemoteObject,
    client: Arc<S3Client>,
    key: String,
}

impl S3Backend {
    /// Opens `s3://bucket/key` with the configuration from the environment
    /// ([`S3Config::from_env`]) and `options` (one request).
    pub fn open(bucket: &str, key: &str, options: &RemoteOptions) -> Result<S3Backend> {
        let config = S3Config::from_env()?;
        Self::open_with_client(Arc::new(S3Client::new(bucket, &config, options)?), key)
    }

    /// Opens `key` in the bucket of `client`.
    pub fn open_with_client(client: Arc<S3Client>, key: &str) -> Result<S3Backend> {
        let target = S3Target {
            client: client.clone(),
            key: key.to_string(),
            display: client.display(key),
        };
        Ok(S3Backend {
            obj: RemoteObject::open(client.http().clone(), Box::new(target))?,
            client,
            key: key.to_string(),
        })
    }

    /// The object key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The client of the bucket.
    pub fn client(&self) -> &Arc<S3Client> {
        &self.client
    }

    /// Range requests made so far, the open request included (retries not counted).
    pub fn requests(&self) -> u64 {
        self.obj.requests()
    }

    /// Bytes received so far (gaps read through included).
    pub fn bytes_fetched(&self) -> u64 {
        self.obj.bytes_fetched()
    }

    /// The key of `rel` (a parent path recorded in a thin child) next to this object.
    pub fn sibling_key(&self, rel: &str) -> Result<String> {
        Ok(resolve_sibling(&self.key, rel)?.join("/"))
    }
}

impl StorageBackend for S3Backend {
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
        self.client.display(&self.key)
    }

    fn open_relative(&self, path: &str) -> Result<Arc<dyn StorageBackend>> {
        let key = self.sibling_key(path)?;
        Ok(Arc::new(S3Backend::open_with_client(
            self.client.clone(),
            &key,
        )?))
    }
}
