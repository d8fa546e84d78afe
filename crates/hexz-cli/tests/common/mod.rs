//! Helpers shared by the CLI test files: a temporary directory with convenience paths.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A path as `&str` (test paths are always UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub struct Dir {
    _t: tempfile::TempDir,
    p: PathBuf,
}

pub fn tmp() -> Dir {
    let t = tempfile::tempdir().unwrap();
    Dir {
        p: t.path().to_path_buf(),
        _t: t,
    }
}

impl Dir {
    pub fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.p.join(name);
        std::fs::write(&p, data).unwrap();
        p
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.p.join(name)
    }
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

/// Whether `mp` is a mount point now (per /proc/self/mountinfo).
pub fn is_mounted(mp: &Path) -> bool {
    let canon = std::fs::canonicalize(mp).unwrap_or_else(|_| mp.to_path_buf());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(s(&canon)))
}

/// Unmounts on drop (lazily if need be), whatever happened in the test.
pub struct MountGuard(pub PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = Command::new("fusermount3").arg("-u").arg(&self.0).output();
        }
        if is_mounted(&self.0) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).output();
        }
    }
}
