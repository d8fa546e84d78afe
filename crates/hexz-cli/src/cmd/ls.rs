//! `hexz ls`: list a directory (or, with -R, a subtree) of a tree archive.

use anyhow::{Context, Result};
use hexz_core::api::tree::EntryKind;
use hexz_core::format::tree::TreeEntry;
use hexz_core::OpenOptions;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Tree archive to list.
    archive: PathBuf,
    /// Directory or file inside the archive (default: the root).
    path: Option<PathBuf>,
    /// Long format: type and mode, owner, size, modification time, link target.
    #[arg(short = 'l', long)]
    long: bool,
    /// Recurse into subdirectories (paths are printed relative to the archive root).
    #[arg(short = 'R', long)]
    recursive: bool,
    /// One JSON object per entry, in an array.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    open: crate::secret::OpenArgs,
}

fn mode_string(e: &TreeEntry) -> String {
    let m = e.mode;
    let mut s = String::with_capacity(10);
    s.push(e.kind.ls_char());
    for (i, c) in ['r', 'w', 'x', 'r', 'w', 'x', 'r', 'w', 'x']
        .iter()
        .enumerate()
    {
        let bit = 1 << (8 - i);
        let set = m & bit != 0;
        let special = match i {
            2 => m & 0o4000 != 0,
            5 => m & 0o2000 != 0,
            8 => m & 0o1000 != 0,
            _ => false,
        };
        s.push(match (special, set) {
            (true, true) if i == 8 => 't',
            (true, false) if i == 8 => 'T',
            (true, true) => 's',
            (true, false) => 'S',
            (false, true) => *c,
            (false, false) => '-',
        });
    }
    s
}

/// UTC date and time of `secs` since the epoch ("2026-12-04 14:15:52").
fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Civil date from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn line(e: &TreeEntry, long: bool, shown: &str) -> String {
    if !long {
        return shown.to_string();
    }
    let size = match e.kind {
        EntryKind::CharDevice | EntryKind::BlockDevice => {
            format!("{},{}", libc::major(e.rdev), libc::minor(e.rdev))
        }
        _ => e.size.to_string(),
    };
    let mut s = format!(
        "{} {:>5} {:>5} {:>12} {} {}",
        mode_string(e),
        e.uid,
        e.gid,
        size,
        utc(e.mtime),
        shown
    );
    if e.kind == EntryKind::Symlink {
        s.push_str(" -> ");
        s.push_str(&String::from_utf8_lossy(&e.link));
    } else if e.is_hardlink() {
        s.push_str(" link to ");
        s.push_str(&String::from_utf8_lossy(&e.link));
    }
    s
}

pub fn run(a: Args) -> Result<std::process::ExitCode> {
    let opts = OpenOptions {
        mmap: true,
        ..OpenOptions::default()
    };
    let f = crate::secret::open(&a.archive, opts, &a.open)?;
    let t = super::tree::require_tree(&f, &a.archive)?;
    let path = a
        .path
        .as_ref()
        .map_or(&b""[..], |p| p.as_os_str().as_bytes());
    let top = t.lookup(path)?.with_context(|| {
        format!(
            "no such file or directory in {}: {}",
            a.archive.display(),
            String::from_utf8_lossy(path)
        )
    })?;
    let mut entries = Vec::new();
    if top.kind != EntryKind::Dir {
        entries.push(top);
    } else if a.recursive {
        let top_path = top.path.clone();
        t.walk(&top_path, &mut |e| {
            if e.path != top_path {
                entries.push(e);
            }
            Ok(())
        })?;
    } else {
        entries = t.read_dir(&top.path)?;
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if a.json {
        let v: Vec<_> = entries.iter().map(super::tree::entry_json).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        for e in &entries {
            let shown = if a.recursive {
                String::from_utf8_lossy(&e.path).into_owned()
            } else {
                String::from_utf8_lossy(e.name()).into_owned()
            };
            let shown = if e.path.is_empty() { ".".into() } else { shown };
            writeln!(out, "{}", line(e, a.long, &shown))?;
        }
    }
    out.flush()?;
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_modes() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_796_393_752), "2026-12-04 14:15:52");
        assert_eq!(utc(-1), "1969-12-31 23:59:59");
        let mut e = TreeEntry {
            mode: 0o1755,
            ..TreeEntry::dir(b"x".to_vec())
        };
        assert_eq!(mode_string(&e), "drwxr-xr-t");
        e.kind = EntryKind::File;
        e.mode = 0o4640;
        assert_eq!(mode_string(&e), "-rwSr-----");
    }
}
