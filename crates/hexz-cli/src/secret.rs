//! Passwords and keys on the command line: never as an argument value, only from a file,
//! an environment variable, or an interactive prompt without echo.

use anyhow::{bail, Context, Result};
use hexz_core::algo::encryption::{Kdf, Password};
use hexz_core::api::REMOTE_WINDOW_FACTOR;
use hexz_core::{Error, File, OpenOptions};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Options every command that opens archives shares.
#[derive(clap::Args, Clone, Default)]
pub struct OpenArgs {
    /// Read the archive password from this file (first line). Otherwise HEXZ_PASSWORD, or a
    /// prompt when the archive is encrypted and a terminal is attached.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Require a valid signature by this public key (NAME.pub); refuse unsigned archives.
    #[arg(long, value_name = "NAME.pub")]
    pub pubkey: Option<PathBuf>,
    #[command(flatten)]
    pub remote: crate::remote::RemoteArgs,
}

fn from_file(p: &Path) -> Result<Password> {
    let s = std::fs::read(p).with_context(|| format!("reading password file {}", p.display()))?;
    let end = s.iter().position(|&b| b == b'\n').unwrap_or(s.len());
    let line = &s[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Ok(Password::new(line.to_vec()))
}

/// Gets a password: `file`, then the environment variable `env`, then a prompt (twice when
/// `confirm`, for new passwords).
pub fn get_password(file: Option<&Path>, env: &str, what: &str, confirm: bool) -> Result<Password> {
    if let Some(f) = file {
        return from_file(f);
    }
    if let Ok(v) = std::env::var(env) {
        return Ok(Password::new(v.into_bytes()));
    }
    let first = rpassword::prompt_password(format!("{what}: ")).map_err(|_| {
        anyhow::anyhow!(
            "{what} needed: set {env} or use --password-file (no terminal to prompt on)"
        )
    })?;
    if confirm {
        let again = rpassword::prompt_password(format!("{what} (again): "))?;
        if again != first {
            bail!("the passwords do not match");
        }
    }
    if first.is_empty() {
        bail!("empty password");
    }
    Ok(Password::new(first.into_bytes()))
}

/// Reads a public key file.
pub fn read_pubkey(p: &Path) -> Result<[u8; 32]> {
    let text = std::fs::read_to_string(p)
        .with_context(|| format!("reading public key {}", p.display()))?;
    hexz_core::algo::signing::parse_public_key(&text).with_context(|| format!("in {}", p.display()))
}

/// The archive password when one is given without prompting (`--password-file`,
/// `HEXZ_PASSWORD`); `None` otherwise.
/// Runs `op` with the password given by flag or environment (if any); when the archive turns
/// out to need one and none was given, prompts for it (naming `what`) and runs `op` again.
pub fn with_password_retry<T>(
    a: &OpenArgs,
    what: &str,
    op: impl Fn(Option<Password>) -> hexz_core::Result<T>,
) -> Result<hexz_core::Result<T>> {
    let given = password_if_given(a)?;
    let none_given = given.is_none();
    Ok(match op(given) {
        Err(hexz_core::Error::PasswordRequired(_)) if none_given => {
            let pw = get_password(
                None,
                "HEXZ_PASSWORD",
                &format!("Password for {what}"),
                false,
            )?;
            op(Some(pw))
        }
        r => r,
    })
}

pub fn password_if_given(a: &OpenArgs) -> Result<Option<Password>> {
    if a.password_file.is_some() || std::env::var_os("HEXZ_PASSWORD").is_some() {
        return get_password(
            a.password_file.as_deref(),
            "HEXZ_PASSWORD",
            "Password",
            false,
        )
        .map(Some);
    }
    Ok(None)
}

/// Memory cache for a one-pass read of a remote archive through a reader (`flatten`, a file
/// of a tree archive) with a read-ahead of `read_ahead` bytes: its window grows to
/// [`REMOTE_WINDOW_FACTOR`] times that (at most as many stored bytes), and the cache holds it
/// and the read being served, with half a window to spare (96 MiB for the default 8 MiB). A
/// larger cache only costs memory and page faults (every block is used once): 256 MiB cost
/// 5% more CPU than 64 MiB in a full read over HTTP, twice the page faults. (`cat` and
/// `extract` of a stream fetch parts in parallel without a reader, and leave the block cache
/// to the index pages: see `hexz_core::ops::extract`.)
fn remote_stream_cache(read_ahead: u64) -> usize {
    let window = read_ahead.saturating_mul(REMOTE_WINDOW_FACTOR);
    usize::try_from(window.saturating_add(window / 2)).unwrap_or(usize::MAX)
}

/// Opens an archive given by path or URL (`http(s)://`, `s3://`), asking for a password only
/// if it turns out to be encrypted.
pub fn open(location: impl AsRef<OsStr>, mut opts: OpenOptions, a: &OpenArgs) -> Result<File> {
    let location = location.as_ref();
    let path = Path::new(location);
    opts.remote = a.remote.options();
    let remote = location
        .to_str()
        .is_some_and(|l| hexz_core::store::Location::parse(l).is_ok_and(|l| l.is_remote()));
    if remote && opts.read_ahead == 0 {
        // Remote reads need read-ahead to keep several large requests in flight, and a
        // block cache that holds what was read ahead until it is used.
        let d = OpenOptions::default();
        opts.read_ahead = d.read_ahead;
        opts.cache_bytes = opts.cache_bytes.max(remote_stream_cache(d.read_ahead));
    }
    let open_with = |o: OpenOptions| match location.to_str() {
        Some(l) => File::open_location(l, o),
        None => File::open_with(path, o),
    };
    if let Some(pk) = &a.pubkey {
        opts.require_signer = Some(read_pubkey(pk)?);
    }
    if a.password_file.is_some() || std::env::var_os("HEXZ_PASSWORD").is_some() {
        opts.password = Some(get_password(
            a.password_file.as_deref(),
            "HEXZ_PASSWORD",
            "Password",
            false,
        )?);
    }
    match open_with(opts.clone()) {
        Err(Error::PasswordRequired(_)) if opts.password.is_none() => {
            opts.password = Some(get_password(
                None,
                "HEXZ_PASSWORD",
                &format!("Password for {}", path.display()),
                false,
            )?);
            Ok(open_with(opts).with_context(|| format!("opening {}", path.display()))?)
        }
        r => Ok(r.with_context(|| format!("opening {}", path.display()))?),
    }
}

/// Parses `--kdf`.
pub fn parse_kdf(s: &str) -> Result<Kdf, String> {
    match s.to_ascii_lowercase().as_str() {
        "pbkdf2" | "pbkdf2-sha256" => Ok(Kdf::default()),
        "argon2id" | "argon2" => Ok(Kdf::argon2id_default()),
        o => Err(format!(
            "unknown key-derivation function '{o}' (pbkdf2 or argon2id)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_stream_cache_holds_the_whole_read_ahead_window() {
        let ra = OpenOptions::default().read_ahead;
        let window = ra * REMOTE_WINDOW_FACTOR;
        let cache = remote_stream_cache(ra) as u64;
        assert!(
            cache >= window + window / 2,
            "{cache} for a window of {window}"
        );
        assert_eq!(cache, 96 << 20, "the default: 8 MiB read-ahead");
        assert!(cache < OpenOptions::default().cache_bytes as u64);
    }
}
