//! Unlocking an encrypted archive: the password (or the data key shared along a thin chain)
//! becomes the archive's cipher.

use crate::algo::encryption::{ArchiveCipher, DataKey, Password};
use crate::error::Result;
use crate::format::Header;
use crate::store::StorageBackend;
use std::sync::Arc;

/// Unwraps the data key of an encrypted archive: `(None, None)` for unencrypted ones.
#[cfg(feature = "encryption")]
pub(super) fn unlock(
    header: &Header,
    password: Option<&Password>,
    chain_key: Option<&DataKey>,
    backend: &dyn StorageBackend,
) -> Result<(Option<Arc<ArchiveCipher>>, Option<DataKey>)> {
    if !header.is_encrypted() {
        return Ok((None, None));
    }
    if let Some(key) = chain_key {
        let cipher = ArchiveCipher::new(key, &header.archive_id);
        return Ok((Some(Arc::new(cipher)), Some(key.clone())));
    }
    let pw = password.ok_or_else(|| crate::error::Error::PasswordRequired(backend.describe()))?;
    let key = crate::algo::encryption::unwrap_key(&header.key_wrap, pw, &header.archive_id)?;
    let cipher = ArchiveCipher::new(&key, &header.archive_id);
    Ok((Some(Arc::new(cipher)), Some(key)))
}

/// Without the `encryption` feature the header decoder already refused encrypted archives.
#[cfg(not(feature = "encryption"))]
pub(super) fn unlock(
    _header: &Header,
    _password: Option<&Password>,
    _chain_key: Option<&DataKey>,
    _backend: &dyn StorageBackend,
) -> Result<(Option<Arc<ArchiveCipher>>, Option<DataKey>)> {
    Ok((None, None))
}
