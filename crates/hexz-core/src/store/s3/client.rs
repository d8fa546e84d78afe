//! [`S3Client`]: requests to one bucket, presigned with SigV4 by `rusty-s3` and sent through
//! the shared [`HttpClient`] (same pool, retries and address checks as plain HTTP), plus the
//! upload calls `hexz push` needs: single PUT and multipart uploads.

use super::config::S3Config;
use crate::error::{Error, Result};
use crate::store::http::client::{xml_field, Method, Target};
use crate::store::http::HttpClient;
use crate::store::RemoteOptions;
use rusty_s3::actions::{
    AbortMultipartUpload, CompleteMultipartUpload, CompleteMultipartUploadResponse,
    CreateMultipartUpload, S3Action,
};
use rusty_s3::{Bucket, UrlStyle};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use url::Url;

/// Lifetime of a presigned URL: each attempt signs afresh, so this only has to cover one
/// request.
const PRESIGN: Duration = Duration::from_secs(15 * 60);

/// Smallest part of a multipart upload other than the last (an S3 rule).
pub const MIN_PART_SIZE: usize = 5 << 20;
/// Most parts of one multipart upload (an S3 rule).
pub const MAX_PARTS: u16 = 10_000;

/// A client for one bucket of an S3-compatible store.
pub struct S3Client {
    bucket: Bucket,
    credentials: Option<rusty_s3::Credentials>,
    http: Arc<HttpClient>,
}

impl std::fmt::Debug for S3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Client")
            .field("bucket", &self.bucket.name())
            .field("endpoint", &self.bucket.base_url().as_str())
            .field("signed", &self.credentials.is_some())
            .finish()
    }
}

/// A request target signed by a closure, for one call.
struct Signed<'a> {
    display: String,
    sign: &'a (dyn Fn() -> Url + Sync),
}

impl Target for Signed<'_> {
    fn backend(&self) -> &'static str {
        "s3"
    }
    fn display(&self) -> &str {
        &self.display
    }
    fn url(&self, _: Method) -> Result<Url> {
        Ok((self.sign)())
    }
}

impl S3Client {
    /// A client for `bucket` with `config`, sending requests through a new [`HttpClient`]
    /// made from `options`.
    pub fn new(bucket: &str, config: &S3Config, options: &RemoteOptions) -> Result<S3Client> {
        Self::with_http(bucket, config, Arc::new(HttpClient::new(options)?))
    }

    /// A client for `bucket` sending requests through `http`.
    pub fn with_http(bucket: &str, config: &S3Config, http: Arc<HttpClient>) -> Result<S3Client> {
        let (endpoint, path_style) = config.endpoint_for(bucket)?;
        let style = if path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let b = Bucket::new(endpoint, style, bucket.to_string(), config.region.clone()).map_err(
            |e| Error::InvalidArgument(format!("S3 bucket '{bucket}': cannot address it: {e:?}")),
        )?;
        let credentials = config.credentials.as_ref().map(|c| match &c.session_token {
            Some(t) => rusty_s3::Credentials::new_with_token(
                c.access_key_id.clone(),
                c.secret_access_key.clone(),
                t.clone(),
            ),
            None => {
                rusty_s3::Credentials::new(c.access_key_id.clone(), c.secret_access_key.clone())
            }
        });
        Ok(S3Client {
            bucket: b,
            credentials,
            http,
        })
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        self.bucket.name()
    }

    /// The HTTP client requests go through.
    pub fn http(&self) -> &Arc<HttpClient> {
        &self.http
    }

    /// `s3://BUCKET/KEY`, the name used in messages.
    pub fn display(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket.name())
    }

    pub(crate) fn creds(&self) -> Option<&rusty_s3::Credentials> {
        self.credentials.as_ref()
    }

    /// A presigned GET URL of `key`.
    pub(crate) fn presign_get(&self, key: &str) -> Url {
        self.bucket.get_object(self.creds(), key).sign(PRESIGN)
    }

    fn call(
        &self,
        key: &str,
        method: Method,
        body: Option<&[u8]>,
        sign: &(dyn Fn() -> Url + Sync),
    ) -> Result<crate::store::http::client::Reply> {
        let t = Signed {
            display: self.display(key),
            sign,
        };
        self.http.request(&t, method, &[], body)
    }

    fn need_creds(&self, what: &str) -> Result<&rusty_s3::Credentials> {
        self.creds().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{what} in s3://{} needs credentials: set AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with a shared credentials file",
                self.bucket.name()
            ))
        })
    }

    /// Creates the bucket (for tests and first-time setup).
    pub fn create_bucket(&self) -> Result<()> {
        let c = self.need_creds("creating a bucket")?;
        let action = self.bucket.create_bucket(c);
        let body = action.body();
        self.call("", Method::Put, Some(body.as_bytes()), &|| {
            action.sign(PRESIGN)
        })
        .map(drop)
    }

    /// Uploads `data` as `key` in one request; the object appears complete or not at all.
    /// Returns its ETag.
    pub fn put_object(&self, key: &str, data: &[u8]) -> Result<String> {
        let reply = self.call(key, Method::Put, Some(data), &|| {
            self.bucket.put_object(self.creds(), key).sign(PRESIGN)
        })?;
        Ok(etag_of(&reply.headers).unwrap_or_default())
    }

    /// Deletes `key` (no error if it does not exist).
    pub fn delete_object(&self, key: &str) -> Result<()> {
        self.call(key, Method::Delete, None, &|| {
            self.bucket.delete_object(self.creds(), key).sign(PRESIGN)
        })
        .map(drop)
    }

    /// Starts a multipart upload of `key`. Nothing is visible under `key` until
    /// [`MultipartUpload::complete`]; dropping the upload without completing it aborts it.
    pub fn create_multipart_upload(self: &Arc<Self>, key: &str) -> Result<MultipartUpload> {
        let reply = self.call(key, Method::Post, None, &|| {
            CreateMultipartUpload::new(&self.bucket, self.creds(), key).sign(PRESIGN)
        })?;
        let body = String::from_utf8_lossy(&reply.body);
        let parsed = CreateMultipartUpload::parse_response(&body).map_err(|e| Error::Remote {
            backend: "s3",
            url: self.display(key),
            detail: format!(
                "CreateMultipartUpload: unexpected reply ({e}): {}",
                snippet(&body)
            ),
            transient: false,
        })?;
        Ok(MultipartUpload {
            client: self.clone(),
            key: key.to_string(),
            upload_id: parsed.upload_id().to_string(),
            parts: Mutex::new(BTreeMap::new()),
            finished: false,
        })
    }

    /// Keys with an unfinished multipart upload whose key starts with `prefix` (to check that
    /// an interrupted upload left nothing behind).
    pub fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<String>> {
        // ListMultipartUploads is `GET /BUCKET?uploads&prefix=P`: the ListObjectsV2 action
        // with its query replaced signs exactly that.
        let reply = self.call(prefix, Method::Get, None, &|| {
            let mut a = self.bucket.list_objects_v2(self.creds());
            let q = a.query_mut();
            q.remove("list-type");
            q.remove("encoding-type");
            q.insert("uploads", "");
            q.insert("prefix", prefix.to_string());
            a.sign(PRESIGN)
        })?;
        let body = String::from_utf8_lossy(&reply.body);
        let mut keys = Vec::new();
        for upload in body.split("<Upload>").skip(1) {
            if let Some(k) = xml_field(upload, "Key") {
                keys.push(k);
            }
        }
        Ok(keys)
    }
}

fn etag_of(h: &ureq::http::HeaderMap) -> Option<String> {
    h.get("etag")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

fn snippet(s: &str) -> String {
    s.chars().take(300).collect()
}

/// A multipart upload in progress. Parts may be uploaded from several threads at once and
/// in any order; [`complete`](Self::complete) makes the object appear. Dropping it without
/// completing aborts the upload on the server (best effort), so a failed or interrupted
/// upload leaves neither a visible object nor stored parts behind.
pub struct MultipartUpload {
    client: Arc<S3Client>,
    key: String,
    upload_id: String,
    parts: Mutex<BTreeMap<u16, String>>,
    finished: bool,
}

impl std::fmt::Debug for MultipartUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultipartUpload")
            .field("key", &self.client.display(&self.key))
            .field("upload_id", &self.upload_id)
            .finish()
    }
}

impl MultipartUpload {
    /// The upload id the server assigned.
    pub fn upload_id(&self) -> &str {
        &self.upload_id
    }

    /// The key being uploaded.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Uploads part `number` (1 to 10,000; every part but the last at least 5 MiB).
    /// Uploading the same number again replaces the part.
    pub fn upload_part(&self, number: u16, data: &[u8]) -> Result<()> {
        if number == 0 || number > MAX_PARTS {
            return Err(Error::InvalidArgument(format!(
                "part number {number} of {}: parts are numbered 1 to {MAX_PARTS}",
                self.client.display(&self.key)
            )));
        }
        let c = &self.client;
        let reply = c.call(&self.key, Method::Put, Some(data), &|| {
            c.bucket
                .upload_part(c.creds(), &self.key, number, &self.upload_id)
                .sign(PRESIGN)
        })?;
        let etag = etag_of(&reply.headers).ok_or_else(|| Error::Remote {
            backend: "s3",
            url: c.display(&self.key),
            detail: format!("UploadPart {number}: the reply has no ETag"),
            transient: false,
        })?;
        self.parts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(number, etag);
        Ok(())
    }

    /// Completes the upload: the object appears under the key with the parts 1..=n in order.
    /// Returns its ETag. On error the upload is aborted.
    pub fn complete(mut self) -> Result<String> {
        let parts = std::mem::take(&mut *self.parts.lock().unwrap_or_else(|e| e.into_inner()));
        let c = self.client.clone();
        let url = c.display(&self.key);
        if parts.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{url}: a multipart upload needs at least one part"
            )));
        }
        if let Some((i, (n, _))) = parts
            .iter()
            .enumerate()
            .find(|(i, (n, _))| usize::from(**n) != i + 1)
        {
            return Err(Error::InvalidArgument(format!(
                "{url}: part {} is missing (found part {n} in position {})",
                i + 1,
                i + 1
            )));
        }
        let etags: Vec<&str> = parts.values().map(String::as_str).collect();
        let action = CompleteMultipartUpload::new(
            &c.bucket,
            c.creds(),
            &self.key,
            &self.upload_id,
            etags.iter().copied(),
        );
        let body = CompleteMultipartUpload::new(
            &c.bucket,
            c.creds(),
            &self.key,
            &self.upload_id,
            etags.iter().copied(),
        )
        .body();
        let reply = c.call(&self.key, Method::Post, Some(body.as_bytes()), &|| {
            action.sign(PRESIGN)
        })?;
        let text = String::from_utf8_lossy(&reply.body);
        // S3 may answer 200 OK and still fail, with an <Error> in the body.
        match CompleteMultipartUploadResponse::parse(&text) {
            Ok(r) => {
                self.finished = true;
                Ok(r.etag().to_string())
            }
            Err(e) => Err(Error::Remote {
                backend: "s3",
                url,
                detail: format!(
                    "CompleteMultipartUpload failed: {}",
                    xml_field(&text, "Message")
                        .or_else(|| xml_field(&text, "Code"))
                        .unwrap_or_else(|| format!("{e}: {}", snippet(&text)))
                ),
                transient: false,
            }),
        }
    }

    /// Aborts the upload: the parts are deleted and nothing appears under the key.
    pub fn abort(mut self) -> Result<()> {
        self.finished = true;
        self.abort_inner()
    }

    fn abort_inner(&self) -> Result<()> {
        let c = &self.client;
        c.call(&self.key, Method::Delete, None, &|| {
            AbortMultipartUpload::new(&c.bucket, c.creds(), &self.key, &self.upload_id)
                .sign(PRESIGN)
        })
        .map(drop)
    }
}

impl Drop for MultipartUpload {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.abort_inner();
        }
    }
}
