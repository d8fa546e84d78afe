//! `hexz keygen`, `hexz sign`, `hexz passwd`.

use crate::secret::{get_password, parse_kdf};
use anyhow::{bail, Context, Result};
use hexz_core::algo::encryption::Kdf;
use hexz_core::algo::signing;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct KeygenArgs {
    /// Key name: writes NAME (secret, owner-only) and NAME.pub.
    #[arg(short = 'o', long = "output", value_name = "NAME")]
    output: PathBuf,
    /// Protect the secret key with a password (HEXZ_KEY_PASSWORD, --key-password-file or prompt).
    #[arg(long)]
    protect: bool,
    /// Read the key password from this file.
    #[arg(long, value_name = "FILE")]
    key_password_file: Option<PathBuf>,
}

/// Writes `data` to a new file with owner-only permissions; refuses to overwrite.
fn write_private(path: &Path, data: &str, mode: u32) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    f.write_all(data.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

pub fn keygen(a: KeygenArgs) -> Result<ExitCode> {
    let pw = if a.protect || a.key_password_file.is_some() {
        Some(get_password(
            a.key_password_file.as_deref(),
            "HEXZ_KEY_PASSWORD",
            "Key password",
            true,
        )?)
    } else {
        None
    };
    let (seed, public) = signing::generate_keypair()?;
    let mut pub_path = a.output.clone().into_os_string();
    pub_path.push(".pub");
    let pub_path = PathBuf::from(pub_path);
    if pub_path.exists() {
        bail!("{} already exists", pub_path.display());
    }
    write_private(
        &a.output,
        &signing::secret_key_file(&seed, pw.as_ref())?,
        0o600,
    )?;
    write_private(&pub_path, &signing::public_key_file(&public), 0o644)?;
    eprintln!(
        "wrote secret key {} ({}) and public key {}",
        a.output.display(),
        if pw.is_some() {
            "password-protected"
        } else {
            "unprotected"
        },
        pub_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct SignArgs {
    /// Archive to sign (rewritten safely with the signature in its header).
    archive: PathBuf,
    /// Secret key file made by `hexz keygen`.
    #[arg(long, value_name = "NAME")]
    key: PathBuf,
    /// Read the key password from this file (else HEXZ_KEY_PASSWORD or a prompt).
    #[arg(long, value_name = "FILE")]
    key_password_file: Option<PathBuf>,
    /// Archive password file, for encrypted archives (else HEXZ_PASSWORD or a prompt).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Overwrite the header in place (instant) instead of writing a new copy of the archive
    /// and renaming it (crash-safe, the default).
    #[arg(long)]
    in_place: bool,
}

pub fn sign(a: SignArgs) -> Result<ExitCode> {
    let text =
        std::fs::read_to_string(&a.key).with_context(|| format!("reading {}", a.key.display()))?;
    let seed = match signing::parse_secret_key(&text, None) {
        Err(hexz_core::Error::PasswordRequired(_)) => {
            let pw = get_password(
                a.key_password_file.as_deref(),
                "HEXZ_KEY_PASSWORD",
                "Key password",
                false,
            )?;
            signing::parse_secret_key(&text, Some(&pw))?
        }
        r => r.with_context(|| format!("in {}", a.key.display()))?,
    };
    let header_encrypted = {
        let f = hexz_core::File::open(&a.archive);
        matches!(f, Err(hexz_core::Error::PasswordRequired(_)))
    };
    let pw = if header_encrypted {
        Some(get_password(
            a.password_file.as_deref(),
            "HEXZ_PASSWORD",
            "Password",
            false,
        )?)
    } else {
        None
    };
    hexz_core::ops::rewrite::sign(&a.archive, &seed, pw, rewrite_mode(a.in_place))
        .with_context(|| format!("signing {}", a.archive.display()))?;
    eprintln!("signed {}", a.archive.display());
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct PasswdArgs {
    /// Encrypted archive whose password to change.
    archive: PathBuf,
    /// Current password file (else HEXZ_PASSWORD or a prompt).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// New password file (else HEXZ_NEW_PASSWORD or a prompt).
    #[arg(long, value_name = "FILE")]
    new_password_file: Option<PathBuf>,
    /// Key derivation for the new password: pbkdf2 (default) or argon2id.
    #[arg(long, value_name = "pbkdf2|argon2id", value_parser = parse_kdf)]
    kdf: Option<Kdf>,
    /// Overwrite the header in place (instant) instead of writing a new copy of the archive
    /// and renaming it (crash-safe, the default).
    #[arg(long)]
    in_place: bool,
}

fn rewrite_mode(in_place: bool) -> hexz_core::ops::rewrite::Rewrite {
    if in_place {
        hexz_core::ops::rewrite::Rewrite::InPlace
    } else {
        hexz_core::ops::rewrite::Rewrite::Copy
    }
}

pub fn passwd(a: PasswdArgs) -> Result<ExitCode> {
    let old = get_password(
        a.password_file.as_deref(),
        "HEXZ_PASSWORD",
        "Current password",
        false,
    )?;
    let new = get_password(
        a.new_password_file.as_deref(),
        "HEXZ_NEW_PASSWORD",
        "New password",
        true,
    )?;
    hexz_core::ops::rewrite::change_password(
        &a.archive,
        &old,
        &new,
        a.kdf.unwrap_or_default(),
        rewrite_mode(a.in_place),
    )
    .with_context(|| format!("changing the password of {}", a.archive.display()))?;
    eprintln!(
        "password of {} changed (data untouched)",
        a.archive.display()
    );
    Ok(ExitCode::SUCCESS)
}
