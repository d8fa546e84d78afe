//! Crash-safe output files: write to a temporary file beside the target, fsync, rename.
//!
//! Nothing half-written ever appears under the final name: until [`AtomicFile::commit`]
//! succeeds the target is untouched, and a dropped (uncommitted) `AtomicFile` deletes its
//! temporary file.

use crate::error::{Error, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// A temporary file that becomes `target` on [`commit`](AtomicFile::commit).
pub struct AtomicFile {
    file: Option<fs::File>,
    tmp: PathBuf,
    target: PathBuf,
}

impl AtomicFile {
    /// Creates a fresh temporary file in `target`'s directory.
    pub fn create(target: &Path) -> Result<Self> {
        let dir = parent_dir(target);
        let name = target
            .file_name()
            .ok_or_else(|| {
                Error::InvalidArgument(format!("{} is not a file path", target.display()))
            })?
            .to_string_lossy()
            .into_owned();
        let rnd = crate::algo::hash::random_bytes::<6>()?;
        let suffix: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
        let tmp = dir.join(format!(".{name}.tmp-{}-{suffix}", std::process::id()));
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io(format!("cannot create {}", tmp.display()), e))?;
        Ok(AtomicFile {
            file: Some(file),
            tmp,
            target: target.to_path_buf(),
        })
    }

    /// The open temporary file.
    pub fn file(&mut self) -> &mut fs::File {
        self.file.as_mut().expect("file is present until commit")
    }

    /// Path of the temporary file.
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// Flushes the data to stable storage, renames the file over the target and syncs the
    /// directory so the rename itself is durable.
    pub fn commit(mut self) -> Result<()> {
        let file = self.file.take().expect("file is present until commit");
        file.sync_all()
            .map_err(|e| Error::io(format!("fsync {}", self.tmp.display()), e))?;
        drop(file);
        fs::rename(&self.tmp, &self.target).map_err(|e| {
            Error::io(
                format!(
                    "renaming {} to {}",
                    self.tmp.display(),
                    self.target.display()
                ),
                e,
            )
        })?;
        if let Ok(d) = fs::File::open(parent_dir(&self.target)) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
