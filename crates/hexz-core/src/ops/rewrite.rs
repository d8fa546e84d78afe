//! Header-only changes to an existing archive: signing (`hexz sign`) and changing the
//! password (`hexz passwd`). Neither touches blocks or index; both write a complete new file
//! (a fast kernel copy, then the new header) through [`AtomicFile`], check that the new file
//! opens as intended, and only then rename it over the original: an interruption or a failed
//! check leaves the original archive intact.

use super::atomic::AtomicFile;
#[cfg(any(feature = "signing", feature = "encryption"))]
use crate::algo::encryption::Password;
#[cfg(any(feature = "signing", feature = "encryption"))]
use crate::api::{File, OpenOptions};
use crate::error::{Error, Result};
use crate::format::Header;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

/// Copies `path` to a temporary file beside it, writes `header` over its first 512 bytes,
/// runs `check` on the temporary file, and only if that succeeds renames it over `path`.
#[cfg_attr(
    not(any(feature = "signing", feature = "encryption")),
    allow(dead_code)
)]
fn replace_header(path: &Path, header: &Header, check: &dyn Fn(&Path) -> Result<()>) -> Result<()> {
    let mut src = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let mut out = AtomicFile::create(path)?;
    let f = out.file();
    std::io::copy(&mut src, f).map_err(|e| Error::io(format!("copying {}", path.display()), e))?;
    f.seek(SeekFrom::Start(0))
        .and_then(|_| f.write_all(&header.encode()))
        .and_then(|_| f.flush())
        .map_err(|e| Error::io("writing the new header", e))?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(out.temp_path(), meta.permissions());
    }
    check(out.temp_path())?;
    out.commit()
}

/// Signs the archive at `path` with the Ed25519 secret `seed` (replacing any earlier
/// signature). Encrypted archives need their `password`: the signature covers the decrypted
/// index digest.
#[cfg(feature = "signing")]
pub fn sign(path: &Path, seed: &[u8; 32], password: Option<Password>) -> Result<()> {
    use crate::algo::signing;
    use crate::format::header::FLAG_SIGNED;
    let opts = OpenOptions {
        password,
        ..OpenOptions::default()
    };
    let f = File::open_with(path, opts.clone())?;
    let mut h = f.header().clone();
    let public = signing::public_of(seed);
    h.flags |= FLAG_SIGNED;
    h.signer = signing::fingerprint(&public);
    h.signature = [0; 64];
    h.signature = signing::sign(seed, &signing::signing_message(&h, &f.master().digest));
    drop(f);
    let check = |tmp: &Path| {
        let o = OpenOptions {
            require_signer: Some(public),
            ..opts.clone()
        };
        File::open_with(tmp, o).map(|_| ())
    };
    replace_header(path, &h, &check)
}

/// Changes the password of an encrypted archive: the data key is unwrapped with `old` and
/// wrapped again under `new` (fresh salt) with `kdf`. Blocks, index and any signature stay
/// valid. Works on thin children too: a chain shares one data key, so the child's password
/// alone opens its ancestors.
#[cfg(feature = "encryption")]
pub fn change_password(
    path: &Path,
    old: &Password,
    new: &Password,
    kdf: crate::algo::encryption::Kdf,
) -> Result<()> {
    use crate::algo::encryption::{unwrap_key, wrap_key};
    let mut b = vec![0u8; crate::format::HEADER_SIZE];
    let file = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let len = file.metadata().map_err(|e| Error::io("stat", e))?.len();
    let n = (len as usize).min(b.len());
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut b[..n], 0)
        .map_err(|e| Error::io(format!("reading header of {}", path.display()), e))?;
    let h = Header::decode(&b[..n], len)?;
    if !h.is_encrypted() {
        return Err(Error::InvalidArgument(format!(
            "{} is not encrypted; there is no password to change",
            path.display()
        )));
    }
    let key = unwrap_key(&h.key_wrap, old, &h.archive_id)?;
    let mut nh = h.clone();
    nh.key_wrap = wrap_key(&key, new, kdf, &h.archive_id)?;
    let check = |tmp: &Path| {
        let o = OpenOptions {
            password: Some(new.clone()),
            ..OpenOptions::default()
        };
        File::open_with(tmp, o).map(|_| ())
    };
    replace_header(path, &nh, &check)
}
