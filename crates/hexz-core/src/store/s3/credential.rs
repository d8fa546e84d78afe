//! S3 credentials found the way the AWS tools find them: `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` first, then the profile (`AWS_PROFILE`,
//! else `default`) in the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else
//! `~/.aws/credentials`), then in the config file (`AWS_CONFIG_FILE`, else `~/.aws/config`).
//!
//! Not supported: `credential_process`, SSO, web identity and the instance metadata service.
//! Without credentials requests go unsigned, which public buckets accept.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// An access key pair, with a session token for temporary credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access key id (`AWS_ACCESS_KEY_ID`).
    pub access_key_id: String,
    /// The secret access key (`AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key: String,
    /// The session token of temporary credentials (`AWS_SESSION_TOKEN`).
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl Credentials {
    /// A key pair without session token.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
        }
    }
}

/// Sections of an AWS-style INI file: section name -> (key -> value). Comments start with
/// `#` or `;`; keys are lower-cased.
pub(crate) type Ini = HashMap<String, HashMap<String, String>>;

/// Parses the AWS shared config / credentials format.
pub(crate) fn parse_ini(text: &str) -> Ini {
    let mut out: Ini = HashMap::new();
    let mut section: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim().to_string();
            out.entry(name.clone()).or_default();
            section = Some(name);
            continue;
        }
        if let (Some(s), Some((k, v))) = (&section, line.split_once('=')) {
            out.entry(s.clone())
                .or_default()
                .insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    out
}

/// Reads and parses an INI file; a missing file is an empty one.
pub(crate) fn read_ini(path: &Path) -> Result<Ini> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(parse_ini(&t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ini::new()),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// The environment and files credentials and configuration are read from; a seam for tests.
pub(crate) struct Sources<'a> {
    /// Environment lookup.
    pub var: &'a dyn Fn(&str) -> Option<String>,
    /// The home directory (for `~/.aws/...`).
    pub home: Option<PathBuf>,
}

impl Sources<'_> {
    pub fn get(&self, k: &str) -> Option<String> {
        (self.var)(k).filter(|v| !v.is_empty())
    }

    /// The profile name and whether the user chose it.
    pub fn profile(&self) -> (String, bool) {
        match self
            .get("AWS_PROFILE")
            .or_else(|| self.get("AWS_DEFAULT_PROFILE"))
        {
            Some(p) => (p, true),
            None => ("default".to_string(), false),
        }
    }

    fn file(&self, var: &str, name: &str) -> Option<PathBuf> {
        self.get(var)
            .map(PathBuf::from)
            .or_else(|| self.home.as_ref().map(|h| h.join(".aws").join(name)))
    }

    pub fn credentials_file(&self) -> Option<PathBuf> {
        self.file("AWS_SHARED_CREDENTIALS_FILE", "credentials")
    }

    pub fn config_file(&self) -> Option<PathBuf> {
        self.file("AWS_CONFIG_FILE", "config")
    }

    /// The profile's section of the config file (`[default]` or `[profile NAME]`).
    pub fn config_section(&self) -> Result<HashMap<String, String>> {
        let Some(path) = self.config_file() else {
            return Ok(HashMap::new());
        };
        let ini = read_ini(&path)?;
        let (p, _) = self.profile();
        let names = if p == "default" {
            vec!["default".to_string(), "profile default".to_string()]
        } else {
            vec![format!("profile {p}"), p.clone()]
        };
        Ok(names
            .iter()
            .find_map(|n| ini.get(n).cloned())
            .unwrap_or_default())
    }
}

fn from_section(
    s: &HashMap<String, String>,
    file: &Path,
    profile: &str,
) -> Result<Option<Credentials>> {
    match (s.get("aws_access_key_id"), s.get("aws_secret_access_key")) {
        (Some(k), Some(sec)) => Ok(Some(Credentials {
            access_key_id: k.clone(),
            secret_access_key: sec.clone(),
            session_token: s.get("aws_session_token").cloned(),
        })),
        (None, None) => Ok(None),
        _ => Err(Error::InvalidArgument(format!(
            "profile '{profile}' in {} has only one of aws_access_key_id and \
             aws_secret_access_key",
            file.display()
        ))),
    }
}

/// Finds credentials (see the module docs); `Ok(None)` means none are configured.
pub(crate) fn resolve(src: &Sources<'_>) -> Result<Option<Credentials>> {
    match (
        src.get("AWS_ACCESS_KEY_ID"),
        src.get("AWS_SECRET_ACCESS_KEY"),
    ) {
        (Some(k), Some(s)) => {
            return Ok(Some(Credentials {
                access_key_id: k,
                secret_access_key: s,
                session_token: src.get("AWS_SESSION_TOKEN"),
            }))
        }
        (Some(_), None) => {
            return Err(Error::InvalidArgument(
                "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(Error::InvalidArgument(
                "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not".into(),
            ))
        }
        (None, None) => {}
    }
    let (profile, chosen) = src.profile();
    let mut found_profile = false;
    if let Some(path) = src.credentials_file() {
        let ini = read_ini(&path)?;
        if let Some(s) = ini.get(&profile) {
            found_profile = true;
            if let Some(c) = from_section(s, &path, &profile)? {
                return Ok(Some(c));
            }
        }
    }
    if let Some(path) = src.config_file() {
        let ini = read_ini(&path)?;
        let name = if profile == "default" {
            "default".to_string()
        } else {
            format!("profile {profile}")
        };
        if let Some(s) = ini.get(&name) {
            found_profile = true;
            if let Some(c) = from_section(s, &path, &profile)? {
                return Ok(Some(c));
            }
        }
    }
    if chosen && !found_profile {
        return Err(Error::InvalidArgument(format!(
            "AWS profile '{profile}' was not found in {} or {}",
            src.credentials_file()
                .map_or("~/.aws/credentials".into(), |p| p.display().to_string()),
            src.config_file()
                .map_or("~/.aws/config".into(), |p| p.display().to_string())
        )));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(vars: &HashMap<&str, String>, home: Option<PathBuf>) -> Result<Option<Credentials>> {
        let f = |k: &str| vars.get(k).cloned();
        resolve(&Sources { var: &f, home })
    }

    #[test]
    fn ini_parsing() {
        let ini = parse_ini(
            "# c\n[default]\naws_access_key_id = AK\nAWS_Secret_Access_Key=SK\n; x\n[profile p]\nregion = eu-west-1\n",
        );
        assert_eq!(ini["default"]["aws_access_key_id"], "AK");
        assert_eq!(ini["default"]["aws_secret_access_key"], "SK");
        assert_eq!(ini["profile p"]["region"], "eu-west-1");
    }

    #[test]
    fn env_first_then_files() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("creds");
        std::fs::write(
            &creds,
            "[default]\naws_access_key_id=FILEK\naws_secret_access_key=FILES\n[other]\naws_access_key_id=OK\naws_secret_access_key=OS\naws_session_token=OT\n",
        )
        .unwrap();
        let mut vars: HashMap<&str, String> = HashMap::new();
        vars.insert("AWS_SHARED_CREDENTIALS_FILE", creds.display().to_string());
        vars.insert(
            "AWS_CONFIG_FILE",
            dir.path().join("none").display().to_string(),
        );
        assert_eq!(
            run(&vars, None).unwrap().unwrap(),
            Credentials::new("FILEK", "FILES")
        );

        vars.insert("AWS_PROFILE", "other".into());
        let c = run(&vars, None).unwrap().unwrap();
        assert_eq!(c.access_key_id, "OK");
        assert_eq!(c.session_token.as_deref(), Some("OT"));

        vars.insert("AWS_PROFILE", "missing".into());
        let e = run(&vars, None).unwrap_err();
        assert!(e.to_string().contains("'missing' was not found"), "{e}");

        vars.insert("AWS_ACCESS_KEY_ID", "EK".into());
        vars.insert("AWS_SECRET_ACCESS_KEY", "ES".into());
        vars.insert("AWS_SESSION_TOKEN", "ET".into());
        let c = run(&vars, None).unwrap().unwrap();
        assert_eq!(c.access_key_id, "EK");
        assert_eq!(c.session_token.as_deref(), Some("ET"));
        assert!(!format!("{c:?}").contains("ES"));

        vars.remove("AWS_SECRET_ACCESS_KEY");
        assert!(run(&vars, None).is_err());
    }

    #[test]
    fn nothing_configured_is_anonymous() {
        let dir = tempfile::tempdir().unwrap();
        let vars: HashMap<&str, String> = HashMap::new();
        assert_eq!(run(&vars, Some(dir.path().to_path_buf())).unwrap(), None);
    }
}
