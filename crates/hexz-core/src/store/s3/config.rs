//! Where and how to reach S3: region, endpoint, addressing style and credentials, read the
//! way the AWS tools read them.
//!
//! - Region: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region` in the config file,
//!   else `us-east-1`.
//! - Endpoint: `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, the profile's `endpoint_url`, else
//!   AWS (`https://s3.REGION.amazonaws.com`, virtual-hosted buckets). A custom endpoint (an
//!   S3-compatible store) is addressed path-style: `ENDPOINT/BUCKET/KEY`.
//! - Credentials: see [`super::credential`].

use super::credential::{self, Credentials, Sources};
use crate::error::{Error, Result};
use std::path::PathBuf;

/// How to reach an S3-compatible store.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// Signing region (default `us-east-1`).
    pub region: String,
    /// A custom endpoint URL (`http(s)://host:port[/prefix]`), `None` for AWS.
    pub endpoint: Option<String>,
    /// Path-style addressing (`ENDPOINT/BUCKET/KEY`) instead of virtual-hosted buckets;
    /// always on with a custom endpoint.
    pub path_style: bool,
    /// Credentials; `None` sends unsigned requests (public buckets).
    pub credentials: Option<Credentials>,
}

impl S3Config {
    /// A configuration for a custom endpoint with explicit credentials (path-style).
    pub fn custom(endpoint: &str, region: &str, credentials: Option<Credentials>) -> S3Config {
        S3Config {
            region: region.to_string(),
            endpoint: Some(endpoint.to_string()),
            path_style: true,
            credentials,
        }
    }

    /// Reads the configuration from the environment and the AWS config files.
    pub fn from_env() -> Result<S3Config> {
        let var = |k: &str| std::env::var(k).ok();
        let src = Sources {
            var: &var,
            home: std::env::var_os("HOME").map(PathBuf::from),
        };
        Self::from_sources(&src)
    }

    pub(crate) fn from_sources(src: &Sources<'_>) -> Result<S3Config> {
        let section = src.config_section()?;
        let region = src
            .get("AWS_REGION")
            .or_else(|| src.get("AWS_DEFAULT_REGION"))
            .or_else(|| section.get("region").cloned())
            .unwrap_or_else(|| "us-east-1".to_string());
        let endpoint = src
            .get("AWS_ENDPOINT_URL_S3")
            .or_else(|| src.get("AWS_ENDPOINT_URL"))
            .or_else(|| section.get("endpoint_url").cloned());
        Ok(S3Config {
            path_style: endpoint.is_some(),
            region,
            endpoint,
            credentials: credential::resolve(src)?,
        })
    }

    /// The endpoint URL requests go to, and whether to use path-style addressing for
    /// `bucket`.
    pub(crate) fn endpoint_for(&self, bucket: &str) -> Result<(url::Url, bool)> {
        let (s, path_style) = match &self.endpoint {
            Some(e) => (e.clone(), true),
            None => {
                // Bucket names with dots break the TLS wildcard of virtual hosts.
                let dns_safe = !bucket.contains('.')
                    && bucket
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                (
                    format!("https://s3.{}.amazonaws.com", self.region),
                    self.path_style || !dns_safe,
                )
            }
        };
        let u = url::Url::parse(&s)
            .map_err(|e| Error::InvalidArgument(format!("S3 endpoint '{s}' is not a URL: {e}")))?;
        if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
            return Err(Error::InvalidArgument(format!(
                "S3 endpoint '{s}' must be an http:// or https:// URL with a host"
            )));
        }
        Ok((u, path_style))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn region_and_endpoint_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config");
        std::fs::write(
            &cfg,
            "[default]\nregion = eu-west-3\n[profile minio]\nregion = local\nendpoint_url = http://127.0.0.1:9000\naws_access_key_id=A\naws_secret_access_key=S\n",
        )
        .unwrap();
        let mut vars: HashMap<&str, String> = HashMap::new();
        vars.insert("AWS_CONFIG_FILE", cfg.display().to_string());
        vars.insert(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.path().join("nope").display().to_string(),
        );
        let get = |v: &HashMap<&str, String>, k: &str| v.get(k).cloned();
        let f = |k: &str| get(&vars, k);
        let c = S3Config::from_sources(&Sources {
            var: &f,
            home: None,
        })
        .unwrap();
        assert_eq!(c.region, "eu-west-3");
        assert_eq!(c.endpoint, None);
        assert!(c.credentials.is_none());
        let (u, ps) = c.endpoint_for("my-bucket").unwrap();
        assert_eq!(u.as_str(), "https://s3.eu-west-3.amazonaws.com/");
        assert!(!ps);
        assert!(c.endpoint_for("my.bucket").unwrap().1);

        vars.insert("AWS_PROFILE", "minio".into());
        let f = |k: &str| get(&vars, k);
        let c = S3Config::from_sources(&Sources {
            var: &f,
            home: None,
        })
        .unwrap();
        assert_eq!(c.region, "local");
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(c.path_style);
        assert_eq!(c.credentials.unwrap().access_key_id, "A");

        vars.insert("AWS_REGION", "us-west-2".into());
        vars.insert("AWS_ENDPOINT_URL", "http://127.0.0.1:1234".into());
        let f = |k: &str| get(&vars, k);
        let c = S3Config::from_sources(&Sources {
            var: &f,
            home: None,
        })
        .unwrap();
        assert_eq!(c.region, "us-west-2");
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:1234"));
    }

    #[test]
    fn bad_endpoint() {
        let c = S3Config::custom("ftp://x", "r", None);
        assert!(c.endpoint_for("b").is_err());
    }
}
