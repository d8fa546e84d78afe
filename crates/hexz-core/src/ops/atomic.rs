//! Crash-safe output files: the new file has no name until it is complete.
//!
//! Nothing half-written ever appears under the final name, and a crash (even `kill -9`)
//! leaves no temporary file behind:
//! - where the file system supports it (ext4, xfs, btrfs, tmpfs), the data goes to an
//!   unnamed `O_TMPFILE` in the target's directory; [`AtomicFile::commit`] fsyncs it and
//!   links it in with `linkat(2)` — straight under the final name when that is free, or
//!   under a temporary name renamed over the existing file at once (the only moment a name
//!   other than the target exists);
//! - elsewhere it falls back to a named temporary `.NAME.tmp-PID-RANDOM`, and every
//!   [`AtomicFile::create`] first deletes such files in the directory whose writing process
//!   is gone, so debris of a crash lives only until the next write.
//!
//! A dropped (uncommitted) `AtomicFile` leaves nothing: an unnamed file vanishes with its
//! descriptor, a named one is deleted.

use crate::error::{Error, Result};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// A temporary file that becomes `target` on [`commit`](AtomicFile::commit).
pub struct AtomicFile {
    file: Option<fs::File>,
    /// Named temporary path (fallback), or `None` for an unnamed `O_TMPFILE`.
    named: Option<PathBuf>,
    /// `/proc/self/fd/N` for an unnamed file: a path other code can open it by.
    fd_path: PathBuf,
    target: PathBuf,
    name: String,
}

impl AtomicFile {
    /// Creates the temporary file in `target`'s directory (unnamed when the file system
    /// allows), after removing temporaries left there by crashed writers.
    pub fn create(target: &Path) -> Result<Self> {
        let dir = parent_dir(target);
        let name = target
            .file_name()
            .ok_or_else(|| {
                Error::InvalidArgument(format!("{} is not a file path", target.display()))
            })?
            .to_string_lossy()
            .into_owned();
        remove_stale_temporaries(&dir);
        let unnamed = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o666)
            .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
            .open(&dir);
        match unnamed {
            Ok(file) => {
                let fd_path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
                Ok(AtomicFile {
                    file: Some(file),
                    named: None,
                    fd_path,
                    target: target.to_path_buf(),
                    name,
                })
            }
            Err(e) if !matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::EACCES)) => {
                let tmp = dir.join(temp_name(&name)?);
                let file = fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&tmp)
                    .map_err(|e| Error::io(format!("cannot create {}", tmp.display()), e))?;
                Ok(AtomicFile {
                    file: Some(file),
                    fd_path: tmp.clone(),
                    named: Some(tmp),
                    target: target.to_path_buf(),
                    name,
                })
            }
            Err(e) => Err(Error::io(
                format!("cannot create a file in {}", dir.display()),
                e,
            )),
        }
    }

    /// The open temporary file.
    pub fn file(&mut self) -> &mut fs::File {
        self.file.as_mut().expect("file is present until commit")
    }

    /// A path that opens the temporary file (`/proc/self/fd/N` for an unnamed one). Note
    /// that its directory is not the target's: resolve relative paths against the target.
    pub fn temp_path(&self) -> &Path {
        &self.fd_path
    }

    /// Flushes the data to stable storage, gives the file the target's name (replacing any
    /// file there) and syncs the directory so the name itself is durable.
    pub fn commit(mut self) -> Result<()> {
        let file = self.file.take().expect("file is present until commit");
        let tmp_display = self.fd_path.display().to_string();
        file.sync_all()
            .map_err(|e| Error::io(format!("fsync {tmp_display}"), e))?;
        let dir = parent_dir(&self.target);
        match self.named.take() {
            Some(tmp) => rename(&tmp, &self.target)?,
            None => {
                // Free name: link straight in. Taken: link under a temporary name and rename
                // that over the target (rename replaces atomically, link cannot).
                match link_fd(&file, &self.target) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                        let tmp = dir.join(temp_name(&self.name)?);
                        link_fd(&file, &tmp).map_err(|e| {
                            Error::io(format!("linking the new file as {}", tmp.display()), e)
                        })?;
                        if let Err(e) = rename(&tmp, &self.target) {
                            let _ = fs::remove_file(&tmp);
                            return Err(e);
                        }
                    }
                    Err(e) => {
                        return Err(Error::io(
                            format!("linking the new file as {}", self.target.display()),
                            e,
                        ))
                    }
                }
            }
        }
        drop(file);
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            if let Some(tmp) = &self.named {
                let _ = fs::remove_file(tmp);
            }
        }
    }
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(|e| {
        Error::io(
            format!("renaming {} to {}", from.display(), to.display()),
            e,
        )
    })
}

/// Gives the unnamed file `file` the name `to` (fails with EEXIST if `to` exists).
fn link_fd(file: &fs::File, to: &Path) -> std::io::Result<()> {
    let from = std::ffi::CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .expect("no NUL in a number");
    let to = std::ffi::CString::new(to.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: both are valid NUL-terminated paths; linkat does not keep them.
    let r = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `.NAME.tmp-PID-RANDOM`: the writer's PID tells a later run whether its writer is gone.
fn temp_name(name: &str) -> Result<String> {
    let rnd = crate::algo::hash::random_bytes::<6>()?;
    let suffix: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(".{name}.tmp-{}-{suffix}", std::process::id()))
}

/// Deletes `.*.tmp-PID-*` files in `dir` whose PID is not a running process (left by a
/// writer that crashed). Files of live writers, and anything else, are left alone.
pub fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = stale_pid(&name.to_string_lossy()) else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// The PID in a temporary's name `.NAME.tmp-PID-HEX12`, if it is one.
fn stale_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix('.')?;
    let at = rest.rfind(".tmp-")?;
    let (pid, suffix) = rest[at + 5..].split_once('-')?;
    if suffix.len() != 12 || !suffix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    pid.parse().ok().filter(|p| *p > 0)
}

fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_recognised() {
        let n = temp_name("a.hxz").unwrap();
        assert_eq!(stale_pid(&n), Some(std::process::id() as i32));
        assert_eq!(stale_pid(".a.hxz.tmp-12-zz"), None);
        assert_eq!(stale_pid("a.hxz"), None);
    }

    #[test]
    fn commit_creates_and_replaces_without_debris() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("out");
        for content in [&b"first"[..], b"second"] {
            let mut f = AtomicFile::create(&t).unwrap();
            std::io::Write::write_all(f.file(), content).unwrap();
            f.commit().unwrap();
            assert_eq!(fs::read(&t).unwrap(), content);
            assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
        }
        let f = AtomicFile::create(&t).unwrap();
        drop(f);
        assert_eq!(fs::read(&t).unwrap(), b"second");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn stale_temporaries_of_dead_writers_are_removed() {
        let d = tempfile::tempdir().unwrap();
        // PIDs above the kernel's maximum never run.
        let dead = d.path().join(".x.hxz.tmp-2147483646-0123456789ab");
        let live = d
            .path()
            .join(format!(".x.hxz.tmp-{}-0123456789ab", std::process::id()));
        let other = d.path().join("keep.tmp-1-0123456789ab");
        for p in [&dead, &live, &other] {
            fs::write(p, b"x").unwrap();
        }
        remove_stale_temporaries(d.path());
        assert!(!dead.exists());
        assert!(live.exists() && other.exists());
    }
}
