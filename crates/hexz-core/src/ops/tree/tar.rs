//! `pack --from-tar`: a tar stream (ustar, GNU or PAX, via the `tar` crate) into a tree
//! archive, without unpacking it to disk.
//!
//! File contents go into the data stream in tar order as they are read; the entries are kept
//! in memory, then sorted into table order (a tar is not sorted). As with `tar -x`, a path
//! given twice keeps its last version; missing parent directories are added (mode 0755,
//! owner 0, time 0); hard links are stored as links to the entry that comes first in table
//! order, which holds the data once.

use super::pack::{DataOut, Produced, TableBuilder};
use super::walk::Excludes;
use crate::error::{Error, Result};
use crate::format::tree::{
    check_path, key_cmp, split_path, EntryKind, TreeEntry, ENTRY_FLAG_HARDLINK, MAX_PATH_LEN,
};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom, Write};

/// Normalises a tar member name to table form ("./a/b/" -> "a/b"; "." -> root).
fn tar_path(raw: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("path has a '..' component".into()),
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    check_path(&out)?;
    Ok(out)
}

fn bad(name: &[u8], what: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!(
        "tar member '{}': {what}",
        String::from_utf8_lossy(name)
    ))
}

/// A large member as long as an earlier one is held here this long in memory (longer ones in
/// an unnamed temporary file) until its hash says whether it repeats that one.
const SPOOL_IN_MEMORY: u64 = 16 << 20;

/// A large member held back until its hash is known.
enum Spool {
    Mem(Vec<u8>),
    File(std::fs::File),
}

/// An unnamed temporary file (`O_TMPFILE` in the temp directory), gone when closed.
fn temp_file() -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o600)
        .open(std::env::temp_dir())
}

/// Stores a large member (a block or more) and returns its data offset and length. As for
/// a directory, it is deduplicated whole: when an earlier large file had the same size, the
/// member is held back (in memory, or in a temporary file when longer than
/// [`SPOOL_IN_MEMORY`]) and hashed first, and a repeat points at the earlier copy. A tar
/// stream cannot be read twice, hence the holding; it is needed only on a size collision.
fn large_file(
    m: &mut impl Read,
    size: u64,
    data: &mut DataOut,
    buf: &mut [u8],
) -> Result<(u64, u64)> {
    let rd = |e: std::io::Error| Error::io("reading the tar stream", e);
    let spool = if !data.large_size_seen(size) {
        None
    } else if size <= SPOOL_IN_MEMORY {
        Some(Spool::Mem(Vec::with_capacity(size as usize)))
    } else {
        // Without a temporary file, the member is stored again (its full blocks still
        // shared by the block dedup).
        temp_file().ok().map(Spool::File)
    };
    let mut hasher = blake3::Hasher::new();
    let mut got = 0u64;
    let Some(mut spool) = spool else {
        let off = data.begin_large()?;
        loop {
            let n = m.read(buf).map_err(rd)?;
            if n == 0 {
                break;
            }
            data.append(&buf[..n])?;
            hasher.update(&buf[..n]);
            got += n as u64;
        }
        data.remember_large(got, *hasher.finalize().as_bytes(), off);
        return Ok((off, got));
    };
    let tmp = |e: std::io::Error| Error::io("writing a temporary file for a tar member", e);
    loop {
        let n = m.read(buf).map_err(rd)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        got += n as u64;
        match &mut spool {
            Spool::Mem(v) => v.extend_from_slice(&buf[..n]),
            Spool::File(f) => f.write_all(&buf[..n]).map_err(tmp)?,
        }
    }
    let hash = *hasher.finalize().as_bytes();
    if let Some(off) = data.large_lookup(got, &hash) {
        return Ok((off, got));
    }
    let off = data.begin_large()?;
    match &mut spool {
        Spool::Mem(v) => data.append(v)?,
        Spool::File(f) => {
            f.seek(SeekFrom::Start(0)).map_err(tmp)?;
            loop {
                let n = f.read(buf).map_err(tmp)?;
                if n == 0 {
                    break;
                }
                data.append(&buf[..n])?;
            }
        }
    }
    data.remember_large(got, hash, off);
    Ok((off, got))
}

/// Reads the whole tar stream, sending file contents to `data`; returns the sorted table.
pub(super) fn produce(
    input: Box<dyn Read + Send>,
    data: &mut DataOut,
    mut table: TableBuilder,
    excludes: &Excludes,
) -> Result<Produced> {
    let mut ar = tar::Archive::new(input);
    // path -> entry; hard links kept apart until every target is known.
    let mut entries: HashMap<Vec<u8>, TreeEntry> = HashMap::new();
    let mut hard: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    let rd = |e: std::io::Error| Error::io("reading the tar stream", e);
    for member in ar.entries().map_err(rd)? {
        let mut m = member.map_err(rd)?;
        let raw = m.path_bytes().into_owned();
        let ty = m.header().entry_type();
        if matches!(
            ty,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader | tar::EntryType::GNULongName
        ) || matches!(ty, tar::EntryType::GNULongLink)
        {
            continue;
        }
        let path = tar_path(&raw).map_err(|d| bad(&raw, d))?;
        let name = split_path(&path).1.to_vec();
        if !path.is_empty()
            && (excludes.excluded(&path, &name) || {
                let mut p: &[u8] = &path;
                let mut hit = false;
                while let Some(i) = p.iter().rposition(|&b| b == b'/') {
                    p = &p[..i];
                    if excludes.excluded(p, split_path(p).1) {
                        hit = true;
                        break;
                    }
                }
                hit
            })
        {
            continue;
        }
        let h = m.header();
        let kind = match ty {
            tar::EntryType::Regular
            | tar::EntryType::Continuous
            | tar::EntryType::GNUSparse
            | tar::EntryType::Link => EntryKind::File,
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Symlink => EntryKind::Symlink,
            tar::EntryType::Char => EntryKind::CharDevice,
            tar::EntryType::Block => EntryKind::BlockDevice,
            tar::EntryType::Fifo => EntryKind::Fifo,
            other => return Err(bad(&raw, format!("unsupported entry type {other:?}"))),
        };
        if path.is_empty() && kind != EntryKind::Dir {
            return Err(bad(&raw, "the root is not a directory"));
        }
        let mut e = TreeEntry::dir(path.clone());
        e.kind = kind;
        e.mode = h.mode().map_err(|err| bad(&raw, err))? & 0o7777;
        e.uid = h.uid().map_err(|err| bad(&raw, err))? as u32;
        e.gid = h.gid().map_err(|err| bad(&raw, err))? as u32;
        e.mtime = h.mtime().map_err(|err| bad(&raw, err))? as i64;
        if matches!(kind, EntryKind::CharDevice | EntryKind::BlockDevice) {
            let major = h.device_major().ok().flatten().unwrap_or(0);
            let minor = h.device_minor().ok().flatten().unwrap_or(0);
            e.rdev = libc::makedev(major, minor);
        }
        if let Ok(Some(pax)) = m.pax_extensions() {
            for ext in pax.flatten() {
                let key = ext.key_bytes();
                if key == b"mtime" {
                    if let Ok(v) = std::str::from_utf8(ext.value_bytes()) {
                        if let Some((s, frac)) = v.split_once('.') {
                            if let Ok(s) = s.parse::<i64>() {
                                e.mtime = s;
                                let mut f: String = frac.chars().take(9).collect();
                                while f.len() < 9 {
                                    f.push('0');
                                }
                                e.mtime_nsec = f.parse().unwrap_or(0);
                            }
                        }
                    }
                } else if let Some(n) = key.strip_prefix(b"SCHILY.xattr.") {
                    e.xattrs.push((n.to_vec(), ext.value_bytes().to_vec()));
                }
            }
        }
        match ty {
            tar::EntryType::Link => {
                let target = m
                    .link_name_bytes()
                    .ok_or_else(|| bad(&raw, "hard link without a target"))?;
                let target = tar_path(&target).map_err(|d| bad(&raw, d))?;
                entries.remove(&path);
                hard.push((path, target));
                continue;
            }
            tar::EntryType::Symlink => {
                let target = m
                    .link_name_bytes()
                    .ok_or_else(|| bad(&raw, "symlink without a target"))?
                    .into_owned();
                if target.is_empty() || target.len() > MAX_PATH_LEN {
                    return Err(bad(&raw, "symlink target empty or too long"));
                }
                e.size = target.len() as u64;
                e.link = target;
            }
            _ if kind == EntryKind::File => {
                let size = m.size();
                if size < data.small {
                    let mut bytes = Vec::with_capacity(size as usize);
                    (&mut m).take(size).read_to_end(&mut bytes).map_err(rd)?;
                    e.data_offset = data.small_file(&bytes)?;
                    e.size = bytes.len() as u64;
                } else {
                    let (off, got) = large_file(&mut m, size, data, &mut buf)?;
                    e.data_offset = if got == 0 { 0 } else { off };
                    e.size = got;
                }
            }
            _ => {}
        }
        hard.retain(|(p, _)| *p != path);
        entries.insert(path, e);
    }
    // Hard links: group by final target; the first path in table order holds the data.
    let mut groups: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
    for (link, target) in hard {
        let mut t = target;
        // A link to a link: follow to the file (bounded by the number of links).
        let mut seen = 0;
        while !entries.contains_key(&t) && seen < 64 {
            match groups.iter().find(|(_, v)| v.contains(&t)) {
                Some((k, _)) => t = k.clone(),
                None => break,
            }
            seen += 1;
        }
        match entries.get(&t) {
            Some(te) if te.kind == EntryKind::File && !te.is_hardlink() => {}
            _ => {
                return Err(bad(
                    &link,
                    format!(
                        "hard link to '{}', which is not a regular file in the archive",
                        String::from_utf8_lossy(&t)
                    ),
                ))
            }
        }
        groups.entry(t).or_default().push(link);
    }
    for (target, links) in groups {
        let te = entries[&target].clone();
        let mut all = links;
        all.push(target.clone());
        all.sort_by(|a, b| key_cmp(a, b));
        all.dedup();
        let first = all[0].clone();
        for p in &all {
            let mut e = te.clone();
            e.path = p.clone();
            if *p != first {
                e.flags = ENTRY_FLAG_HARDLINK;
                e.link = first.clone();
            }
            entries.insert(p.clone(), e);
        }
    }
    // Missing parent directories, and the root.
    let paths: Vec<Vec<u8>> = entries.keys().cloned().collect();
    for p in paths {
        let mut q: &[u8] = &p;
        while !q.is_empty() {
            q = split_path(q).0;
            if !entries.contains_key(q) {
                entries.insert(q.to_vec(), TreeEntry::dir(q.to_vec()));
            } else if entries[q].kind != EntryKind::Dir {
                return Err(bad(
                    &p,
                    format!(
                        "its parent '{}' is not a directory",
                        String::from_utf8_lossy(q)
                    ),
                ));
            }
        }
    }
    entries
        .entry(Vec::new())
        .or_insert_with(|| TreeEntry::dir(Vec::new()));
    let mut all: Vec<TreeEntry> = entries.into_values().collect();
    all.sort_by(|a, b| key_cmp(&a.path, &b.path));
    for e in &all {
        table.push(e)?;
    }
    Ok(Produced {
        table,
        dedup_files: 0,
        warnings: Vec::new(),
        warning_count: 0,
    })
}
