//! Tree-archive halves of `pack`, `cat`, `extract`, `info` and `diff` (the commands decide
//! by their arguments, or by whether the archive has a file table, and call in here).

use crate::util::{human, progress_bar};
use anyhow::{bail, Context, Result};
use hexz_core::api::tree::EntryKind;
use hexz_core::api::FileTree;
use hexz_core::format::tree::TreeEntry;
use hexz_core::ops::pack::{FileSink, PackSink};
use hexz_core::ops::transfer::{upload_packed, TransferOptions};
use hexz_core::ops::tree::{pack_tar_to, pack_tree_to, ExtractOptions, TreePackOptions};
use hexz_core::ops::{PackOptions, PackProgress};
use hexz_core::File;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::ExitCode;

/// The file table of `f`, or an error saying the archive holds only streams.
pub fn require_tree(f: &File, name: &Path) -> Result<FileTree> {
    FileTree::open(f)?.with_context(|| {
        format!(
            "{} holds byte streams only, not a file tree (use --stream)",
            name.display()
        )
    })
}

/// `hexz pack DIR` / `hexz pack --from-tar FILE|-`, to a local file or, with `upload`
/// (the URL and transfer options), streamed into an object.
pub fn pack(
    dir: Option<&Path>,
    from_tar: Option<&Path>,
    output: &Path,
    upload: Option<(&str, TransferOptions<'_>)>,
    opts: &PackOptions,
    tree: &TreePackOptions,
    json: bool,
) -> Result<ExitCode> {
    let pb = progress_bar(None, "files");
    let on_progress = |p: &PackProgress| pb.set_position(p.done);
    let (what, tar) = match (dir, from_tar) {
        (Some(d), None) => (d, None),
        (None, Some(t)) => {
            let input: Box<dyn std::io::Read + Send> = if t.as_os_str() == "-" {
                Box::new(std::io::stdin())
            } else {
                Box::new(std::io::BufReader::with_capacity(
                    1 << 20,
                    std::fs::File::open(t).with_context(|| format!("opening {}", t.display()))?,
                ))
            };
            (t, Some(input))
        }
        _ => bail!("give either a directory or --from-tar, not both"),
    };
    let run = |sink: &mut dyn PackSink| match tar {
        None => pack_tree_to(what, sink, opts, tree, Some(&on_progress)),
        Some(input) => pack_tar_to(input, sink, opts, tree, Some(&on_progress)),
    };
    let stats = match upload {
        Some((url, topts)) => upload_packed(url, &topts, run),
        None => FileSink::create(output).and_then(|mut sink| run(&mut sink)),
    }
    .with_context(|| format!("packing {} into {}", what.display(), output.display()))?;
    pb.finish_and_clear();
    for w in &stats.warnings {
        eprintln!("hexz: warning: {w}");
    }
    if stats.warning_count > stats.warnings.len() as u64 {
        eprintln!(
            "hexz: warning: ... and {} more warnings",
            stats.warning_count - stats.warnings.len() as u64
        );
    }
    let t = &stats.table;
    let secs = stats.pack.elapsed.as_secs_f64().max(1e-9);
    if json {
        let v = serde_json::json!({
            "output": output.display().to_string(),
            "archive_bytes": stats.pack.archive_bytes,
            "file_bytes": t.file_bytes,
            "entries": t.entries, "files": t.files, "dirs": t.dirs, "symlinks": t.symlinks,
            "specials": t.specials, "hardlinks": stats.hardlinks,
            "dedup_files": stats.dedup_files, "table_bytes": stats.table_bytes,
            "warnings": stats.warning_count,
            "seconds": secs,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        eprintln!(
            "packed {} files, {} directories, {} symlinks ({}) into {} ({}) in {:.2}s",
            t.files,
            t.dirs,
            t.symlinks,
            human(t.file_bytes),
            output.display(),
            human(stats.pack.archive_bytes),
            secs
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `hexz cat ARCHIVE PATH [--offset --length]`.
pub fn cat(
    f: &File,
    archive: &Path,
    path: &Path,
    offset: u64,
    length: Option<u64>,
) -> Result<ExitCode> {
    let t = require_tree(f, archive)?;
    let p = path.as_os_str().as_bytes();
    let e = t
        .lookup(p)?
        .with_context(|| format!("no such file in {}: {}", archive.display(), path.display()))?;
    if e.kind != EntryKind::File {
        bail!(
            "{} is a {}, not a regular file",
            path.display(),
            e.kind.name()
        );
    }
    let end = length.map_or(e.size, |l| offset.saturating_add(l).min(e.size));
    let mut pos = offset.min(e.size);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    while pos < end {
        let n = (end - pos).min(8 << 20) as usize;
        let b = t.read_file(&e, pos, n)?;
        if b.is_empty() {
            break;
        }
        out.write_all(&b)?;
        pos += b.len() as u64;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `hexz extract ARCHIVE -o DIR [PATH...]` of a tree archive.
pub fn extract(
    t: &FileTree,
    dest: &Path,
    paths: &[std::ffi::OsString],
    force: bool,
) -> Result<ExitCode> {
    let pb = progress_bar(Some(t.header().file_bytes), "files");
    let on_progress = |n: u64| pb.set_position(n);
    let opts = ExtractOptions {
        force,
        paths: paths.iter().map(|p| p.as_bytes().to_vec()).collect(),
        owners: None,
        threads: 0,
    };
    let stats = hexz_core::ops::tree::extract(t, dest, &opts, Some(&on_progress))
        .with_context(|| format!("extracting into {}", dest.display()))?;
    pb.finish_and_clear();
    for w in &stats.warnings {
        eprintln!("hexz: warning: {w}");
    }
    eprintln!(
        "extracted {} entries ({} files, {} directories, {}) into {}",
        stats.entries,
        stats.files,
        stats.dirs,
        human(stats.bytes),
        dest.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The tree part of `hexz info` (JSON value, or text lines).
pub fn info_json(t: &FileTree) -> serde_json::Value {
    let h = t.header();
    serde_json::json!({
        "entries": h.entries, "files": h.files, "dirs": h.dirs, "symlinks": h.symlinks,
        "specials": h.specials, "file_bytes": h.file_bytes, "table_depth": h.depth,
    })
}

/// Text lines of the tree part of `hexz info`.
pub fn info_text(t: &FileTree) {
    let h = t.header();
    println!(
        "file tree    {} files, {} directories, {} symlinks, {} other; {} of file data",
        h.files,
        h.dirs,
        h.symlinks,
        h.specials,
        human(h.file_bytes)
    );
}

/// One entry as JSON (for `ls --json` and `diff --json`).
pub fn entry_json(e: &TreeEntry) -> serde_json::Value {
    let mut v = serde_json::json!({
        "path": String::from_utf8_lossy(&e.path),
        "type": e.kind.name(),
        "mode": format!("{:04o}", e.mode),
        "uid": e.uid, "gid": e.gid,
        "size": e.size,
        "mtime": e.mtime, "mtime_nsec": e.mtime_nsec,
    });
    if !e.link.is_empty() {
        v[if e.is_hardlink() {
            "hardlink"
        } else {
            "target"
        }] = serde_json::json!(String::from_utf8_lossy(&e.link));
    }
    if matches!(e.kind, EntryKind::CharDevice | EntryKind::BlockDevice) {
        v["rdev"] = serde_json::json!(e.rdev);
    }
    if !e.xattrs.is_empty() {
        v["xattrs"] = serde_json::json!(e
            .xattrs
            .iter()
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
            .collect::<Vec<_>>());
    }
    v
}

/// `hexz diff` of two tree archives: added, removed and changed paths (a merge of the two
/// sorted tables; contents compared by the BLAKE3 of their bytes only when sizes match).
pub fn diff(a: &FileTree, b: &FileTree, json: bool, exit_code: bool) -> Result<ExitCode> {
    let mut ia = a.iter()?.peekable();
    let mut ib = b.iter()?.peekable();
    let (mut added, mut removed, mut changed) = (Vec::new(), Vec::new(), Vec::new());
    loop {
        let ord = match (ia.peek(), ib.peek()) {
            (None, None) => break,
            (Some(Err(_)), _) => return Err(ia.next().expect("peeked").unwrap_err().into()),
            (_, Some(Err(_))) => return Err(ib.next().expect("peeked").unwrap_err().into()),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(Ok(x)), Some(Ok(y))) => hexz_core::format::tree::key_cmp(&x.path, &y.path),
        };
        match ord {
            std::cmp::Ordering::Less => removed.push(ia.next().expect("peeked")?),
            std::cmp::Ordering::Greater => added.push(ib.next().expect("peeked")?),
            std::cmp::Ordering::Equal => {
                let x = ia.next().expect("peeked")?;
                let y = ib.next().expect("peeked")?;
                if entry_differs(a, &x, b, &y)? {
                    changed.push(y);
                }
            }
        }
    }
    let same = added.is_empty() && removed.is_empty() && changed.is_empty();
    if json {
        let l = |v: &[TreeEntry]| v.iter().map(entry_json).collect::<Vec<_>>();
        let v = serde_json::json!({
            "identical": same, "added": l(&added), "removed": l(&removed), "changed": l(&changed),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        for (sign, v) in [("+", &added), ("-", &removed), ("M", &changed)] {
            for e in v {
                writeln!(out, "{sign} {}", String::from_utf8_lossy(&e.path))?;
            }
        }
        writeln!(
            out,
            "{} added, {} removed, {} changed",
            added.len(),
            removed.len(),
            changed.len()
        )?;
    }
    Ok(if exit_code && !same {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn entry_differs(a: &FileTree, x: &TreeEntry, b: &FileTree, y: &TreeEntry) -> Result<bool> {
    if x.kind != y.kind
        || x.mode != y.mode
        || x.uid != y.uid
        || x.gid != y.gid
        || x.size != y.size
        || x.link != y.link
        || x.rdev != y.rdev
        || x.xattrs != y.xattrs
        || (x.kind != EntryKind::Dir && (x.mtime, x.mtime_nsec) != (y.mtime, y.mtime_nsec))
    {
        return Ok(true);
    }
    if x.kind != EntryKind::File {
        return Ok(false);
    }
    let mut off = 0u64;
    while off < x.size {
        let n = (x.size - off).min(4 << 20) as usize;
        if a.read_file(x, off, n)? != b.read_file(y, off, n)? {
            return Ok(true);
        }
        off += n as u64;
    }
    Ok(false)
}
