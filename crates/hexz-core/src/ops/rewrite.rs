//! Header-only changes to an existing archive: signing (`hexz sign`) and changing the
//! password (`hexz passwd`). Neither touches blocks or index.
//!
//! [`Rewrite::Copy`] (the default) writes a complete new file (a kernel copy, which
//! file systems with reflinks make instant, then the new header) through [`AtomicFile`],
//! checks that it opens as intended, and only then renames it over the original: an
//! interruption or a failed check leaves the original intact. [`Rewrite::InPlace`] checks
//! the new header in memory and overwrites the 512 header bytes of the original, then
//! fsyncs: instant on any file system, but a power cut during that one write could leave a
//! torn header (detected by its CRC, not repaired).

use super::atomic::AtomicFile;
#[cfg(any(feature = "signing", feature = "encryption"))]
use crate::algo::encryption::Password;
#[cfg(any(feature = "signing", feature = "encryption"))]
use crate::api::{File, OpenOptions};
use crate::error::{Error, Result};
use crate::format::Header;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

/// How a header change reaches the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rewrite {
    /// Write a new file and rename it over the original (crash-safe; default).
    #[default]
    Copy,
    /// Overwrite the header of the original (instant; one 512-byte write).
    InPlace,
}

/// Overwrites the first 512 bytes of `path` with `header` and fsyncs, then runs `check`.
#[cfg_attr(
    not(any(feature = "signing", feature = "encryption")),
    allow(dead_code)
)]
fn write_header_in_place(
    path: &Path,
    header: &Header,
    check: &dyn Fn(&Path) -> Result<()>,
) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(format!("cannot open {} for writing", path.display()), e))?;
    f.write_all_at(&header.encode(), 0)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(format!("writing the header of {}", path.display()), e))?;
    check(path)
}

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

/// Opens `file` (a rewritten copy, possibly unnamed) as if it were `name`, so a thin
/// snapshot finds its parent beside `name`.
#[cfg(any(feature = "signing", feature = "encryption"))]
fn open_as(file: &Path, name: &Path, o: OpenOptions) -> Result<()> {
    let b = crate::store::local::FileBackend::open_as(file, name)?;
    File::open_backend(std::sync::Arc::new(b), None, o).map(|_| ())
}

/// Signs the archive at `path` with the Ed25519 secret `seed` (replacing any earlier
/// signature). Encrypted archives need their `password`: the signature covers the decrypted
/// index digest.
#[cfg(feature = "signing")]
pub fn sign(path: &Path, seed: &[u8; 32], password: Option<Password>, how: Rewrite) -> Result<()> {
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
    let digest = f.master().digest;
    h.signature = signing::sign(seed, &signing::signing_message(&h, &digest));
    drop(f);
    let check = |tmp: &Path| {
        let o = OpenOptions {
            require_signer: Some(public),
            ..opts.clone()
        };
        open_as(tmp, path, o)
    };
    match how {
        Rewrite::Copy => replace_header(path, &h, &check),
        Rewrite::InPlace => {
            // The signature was just made over this very header and digest; check it anyway
            // before touching the file.
            signing::verify(
                &public,
                &signing::signing_message(&h, &digest),
                &h.signature,
            )?;
            write_header_in_place(path, &h, &check)
        }
    }
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
    how: Rewrite,
) -> Result<()> {
    use crate::algo::encryption::{unwrap_key, wrap_key};
    let backend = crate::store::local::FileBackend::new(path)?;
    let len = crate::store::StorageBackend::len(&backend);
    let h = crate::api::file::read_header(&backend)?;
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
        open_as(tmp, path, o)
    };
    match how {
        Rewrite::Copy => replace_header(path, &nh, &check),
        Rewrite::InPlace => {
            // The new wrap must open with the new password before the original is touched.
            let back = Header::decode(&nh.encode(), len)?;
            unwrap_key(&back.key_wrap, new, &back.archive_id)?;
            write_header_in_place(path, &nh, &check)
        }
    }
}
