//! Helpers shared by the CLI test files: a temporary directory with convenience paths.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

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
