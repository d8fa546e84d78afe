//! The parent of a thin snapshot, and encryption setup: indexing the base chain's blocks by
//! content hash, the path recorded for it, and the data key a new archive shares with it.

use super::write::StoredLoc;
use super::EncryptOptions;
use crate::algo::encryption::{ArchiveCipher, Password};
use crate::api::file::MAX_CHAIN_DEPTH;
use crate::api::File;
use crate::error::{Error, Result};
use crate::format::header::{KeyWrap, ParentRef};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The parent of a thin snapshot being packed.
pub(super) struct Base {
    pub(super) file: File,
    pub(super) parent_ref: ParentRef,
    pub(super) recorded_path: String,
    pub(super) table: HashMap<[u8; 32], StoredLoc>,
}

/// Opens the base archive (checking its own chain), indexes its blocks by content hash, and
/// works out the path to record: relative to the output's directory when both are local
/// files, else the base's file name (a base given by URL, or an output streamed to object
/// storage: the child is meant to sit beside its base, where `hexz push --with-parents`
/// puts it and `hexz pull --with-parents` finds it).
pub(super) fn open_base(
    path: &Path,
    output: Option<&Path>,
    max_entries: usize,
    password: Option<Password>,
    remote: &crate::store::RemoteOptions,
) -> Result<Base> {
    let url = path
        .to_str()
        .filter(|s| crate::store::Location::parse(s).is_ok_and(|l| l.is_remote()));
    let open_opts = crate::api::OpenOptions {
        password,
        remote: remote.clone(),
        ..Default::default()
    };
    let file = match url {
        Some(u) => File::open_location(u, open_opts)?,
        None => File::open_with(path, open_opts)?,
    };
    if file.chain_len() > MAX_CHAIN_DEPTH {
        return Err(Error::InvalidArgument(format!(
            "{} already has {} ancestors; the limit is {MAX_CHAIN_DEPTH} (flatten it first)",
            path.display(),
            file.chain_len() - 1
        )));
    }
    // The output must not replace the base or any of its ancestors.
    if let Some(output) = output {
        let target = canonical_target(output)?;
        let mut cur = Some(&file);
        while let Some(f) = cur {
            if std::fs::canonicalize(f.describe()).is_ok_and(|p| p == target) {
                return Err(Error::InvalidArgument(format!(
                    "the output {} is the base archive or one of its ancestors ({}); write \
                     the child to a new file",
                    output.display(),
                    f.describe()
                )));
            }
            cur = f.parent();
        }
    }
    // Index every block the chain holds, nearest archive first: content the base no longer
    // uses but an ancestor still stores is found too.
    let mut table = HashMap::new();
    let mut cur = Some((&file, 1u16));
    'chain: while let Some((f, depth)) = cur {
        for stream in f.streams() {
            for e in f.entries(stream) {
                let e = e?;
                if e.is_zero() {
                    continue;
                }
                if table.len() >= max_entries {
                    break 'chain;
                }
                table.entry(e.hash).or_insert(StoredLoc {
                    offset: e.stored_offset,
                    len: e.stored_len,
                    crc: e.crc32,
                    codec: e.codec,
                    source: e.source + depth,
                });
            }
        }
        cur = f.parent().map(|p| (p, depth + 1));
    }
    Ok(Base {
        file: file.clone(),
        parent_ref: ParentRef {
            archive_id: file.header().archive_id,
            index_digest: file.master().digest,
        },
        recorded_path: match (url, output) {
            (None, Some(o)) => relative_path(path, o)?,
            _ => file_name(path)?,
        },
        table,
    })
}

/// The last segment of a URL (without query) or path: the parent path a child records when
/// it is to sit beside its base.
fn file_name(path: &Path) -> Result<String> {
    let s = path.to_str().ok_or_else(|| {
        Error::InvalidArgument(format!("parent path {} is not valid UTF-8", path.display()))
    })?;
    let s = s.split(['?', '#']).next().unwrap_or(s);
    match s.rsplit('/').next() {
        Some(n) if !n.is_empty() && n != ".." && n != "." => Ok(n.to_string()),
        _ => Err(Error::InvalidArgument(format!(
            "{s}: the base names no file"
        ))),
    }
}

/// The canonical path `output` will have (its directory resolved; the file need not exist).
fn canonical_target(output: &Path) -> Result<PathBuf> {
    let dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = output.file_name().ok_or_else(|| {
        Error::InvalidArgument(format!("{} is not a file path", output.display()))
    })?;
    Ok(std::fs::canonicalize(&dir)
        .map_err(|e| Error::io(format!("resolving {}", dir.display()), e))?
        .join(name))
}

/// The path of `target` as seen from the directory that will hold `from_file`.
fn relative_path(target: &Path, from_file: &Path) -> Result<String> {
    let abs_target = std::fs::canonicalize(target)
        .map_err(|e| Error::io(format!("resolving {}", target.display()), e))?;
    let dir = match from_file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let abs_dir = std::fs::canonicalize(&dir)
        .map_err(|e| Error::io(format!("resolving {}", dir.display()), e))?;
    let t: Vec<_> = abs_target.components().collect();
    let d: Vec<_> = abs_dir.components().collect();
    let common = t.iter().zip(&d).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in common..d.len() {
        rel.push("..");
    }
    for c in &t[common..] {
        rel.push(c.as_os_str());
    }
    rel.into_os_string().into_string().map_err(|p| {
        Error::InvalidArgument(format!(
            "parent path {} is not valid UTF-8",
            p.to_string_lossy()
        ))
    })
}

/// Creates the cipher and key wrap of a new encrypted archive: a fresh data key, or the
/// base's for a thin child (so content hashes, and therefore dedup, match along the chain).
#[cfg(feature = "encryption")]
pub(super) fn setup_encryption(
    enc: Option<&EncryptOptions>,
    base: Option<&Base>,
    archive_id: &[u8; 16],
) -> Result<(Option<Arc<ArchiveCipher>>, KeyWrap)> {
    use crate::algo::encryption::{wrap_key, DataKey};
    let Some(enc) = enc else {
        return Ok((None, KeyWrap::default()));
    };
    let key = match base.and_then(|b| b.file.data_key().cloned()) {
        Some(k) => k,
        None => DataKey::generate()?,
    };
    let kw = wrap_key(&key, &enc.password, enc.kdf, archive_id)?;
    Ok((Some(Arc::new(ArchiveCipher::new(&key, archive_id))), kw))
}

/// Without the `encryption` feature, asking for encryption is an error.
#[cfg(not(feature = "encryption"))]
pub(super) fn setup_encryption(
    enc: Option<&EncryptOptions>,
    _base: Option<&Base>,
    _archive_id: &[u8; 16],
) -> Result<(Option<Arc<ArchiveCipher>>, KeyWrap)> {
    match enc {
        Some(_) => Err(Error::Unsupported(
            "encryption (this build lacks the encryption feature)".into(),
        )),
        None => Ok((None, KeyWrap::default())),
    }
}
