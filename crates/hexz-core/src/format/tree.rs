//! The file table of a tree archive (docs/FORMAT.md, "File table"), format 1.2.
//!
//! A tree archive stores the contents of its regular files back to back in the disk stream
//! and describes the files in a *file table*: a B+tree of pages sorted by (parent directory,
//! name), so that a lookup reads one page per level (a few pages for a million entries) and a
//! directory's entries are adjacent. Each page is compressed with the archive's codec,
//! encrypted like index pages when the archive is, and committed to by the BLAKE3 digest in
//! the reference that points at it; the root reference lives in a small *file table header*
//! that the master index's section table points at (and digests), so the index digest and the
//! signature cover every entry.

use super::{le_u16, le_u32, le_u64, Codec};
use crate::error::{Error, Result};
use std::cmp::Ordering;

/// Magic of the file table header.
pub const TREE_HEADER_MAGIC: [u8; 4] = *b"HXFH";
/// Size of the encoded file table header.
pub const TREE_HEADER_SIZE: usize = 128;
/// Magic of a file table page.
pub const TREE_PAGE_MAGIC: [u8; 4] = *b"HXFT";
/// Size of the fixed part of a page.
pub const TREE_PAGE_HEADER_SIZE: usize = 16;
/// Size of the fixed part of a leaf entry.
pub const ENTRY_FIXED_SIZE: usize = 64;
/// Size of the fixed part of an interior entry.
pub const CHILD_FIXED_SIZE: usize = 64;
/// Plain page size at which the writer starts a new page.
pub const TARGET_PAGE_SIZE: usize = 64 * 1024;
/// Largest plain page a reader accepts (bounds the allocation for one page).
pub const MAX_PAGE_SIZE: u32 = 16 * 1024 * 1024;
/// Largest B+tree height a reader accepts (a fan-out of 2 would still hold 2^32 entries).
pub const MAX_DEPTH: u8 = 32;
/// Longest path or link target, in bytes.
pub const MAX_PATH_LEN: usize = 65535;
/// Largest extended-attribute area of one entry.
pub const MAX_XATTR_AREA: usize = 1024 * 1024;
/// Leaf entry flag: a hard link to the entry named by the link field (same inode), which
/// comes earlier in table order; its data fields repeat the target's.
pub const ENTRY_FLAG_HARDLINK: u8 = 1;

/// What kind of filesystem object an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EntryKind {
    /// A regular file; its bytes are in the data stream.
    File = 1,
    /// A directory.
    Dir = 2,
    /// A symbolic link; the target is the link field.
    Symlink = 3,
    /// A character device (rdev).
    CharDevice = 4,
    /// A block device (rdev).
    BlockDevice = 5,
    /// A named pipe.
    Fifo = 6,
    /// A Unix socket.
    Socket = 7,
}

impl EntryKind {
    /// Decodes a kind id.
    pub fn from_u8(v: u8) -> Option<EntryKind> {
        Some(match v {
            1 => EntryKind::File,
            2 => EntryKind::Dir,
            3 => EntryKind::Symlink,
            4 => EntryKind::CharDevice,
            5 => EntryKind::BlockDevice,
            6 => EntryKind::Fifo,
            7 => EntryKind::Socket,
            _ => return None,
        })
    }

    /// Short name used by `ls --json` ("file", "dir", ...).
    pub fn name(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink => "symlink",
            EntryKind::CharDevice => "chardev",
            EntryKind::BlockDevice => "blockdev",
            EntryKind::Fifo => "fifo",
            EntryKind::Socket => "socket",
        }
    }

    /// The `ls -l` type character.
    pub fn ls_char(self) -> char {
        match self {
            EntryKind::File => '-',
            EntryKind::Dir => 'd',
            EntryKind::Symlink => 'l',
            EntryKind::CharDevice => 'c',
            EntryKind::BlockDevice => 'b',
            EntryKind::Fifo => 'p',
            EntryKind::Socket => 's',
        }
    }

    /// The `S_IFMT` bits of this kind.
    pub fn mode_bits(self) -> u32 {
        match self {
            EntryKind::File => 0o100000,
            EntryKind::Dir => 0o040000,
            EntryKind::Symlink => 0o120000,
            EntryKind::CharDevice => 0o020000,
            EntryKind::BlockDevice => 0o060000,
            EntryKind::Fifo => 0o010000,
            EntryKind::Socket => 0o140000,
        }
    }
}

/// One file table entry: a filesystem object and its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// Path relative to the tree root, components joined by `/`; the root itself is empty.
    pub path: Vec<u8>,
    /// Object kind.
    pub kind: EntryKind,
    /// `ENTRY_FLAG_*` bits.
    pub flags: u8,
    /// Permission bits (`mode & 0o7777`: rwx, setuid, setgid, sticky).
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Modification time, seconds since the epoch (may be negative).
    pub mtime: i64,
    /// Nanoseconds part of the modification time (< 10^9).
    pub mtime_nsec: u32,
    /// Regular file: byte length; symlink: target length; otherwise 0.
    pub size: u64,
    /// Regular file: offset of its bytes in the data stream (0 for empty files).
    pub data_offset: u64,
    /// Device number of a device node.
    pub rdev: u64,
    /// Symlink target, or for a hard link the path of the entry it links to.
    pub link: Vec<u8>,
    /// Extended attributes (name, value), in the order read.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl TreeEntry {
    /// A directory entry at `path` with mode 0755, owned by root, all times zero: the starting
    /// point for entries built without a file system (tar input, tests).
    pub fn dir(path: Vec<u8>) -> TreeEntry {
        TreeEntry {
            path,
            kind: EntryKind::Dir,
            flags: 0,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            size: 0,
            data_offset: 0,
            rdev: 0,
            link: Vec::new(),
            xattrs: Vec::new(),
        }
    }

    /// Whether this entry is a hard link to an earlier entry.
    pub fn is_hardlink(&self) -> bool {
        self.flags & ENTRY_FLAG_HARDLINK != 0
    }

    /// `st_mode`: type bits and permission bits.
    pub fn st_mode(&self) -> u32 {
        self.kind.mode_bits() | self.mode
    }

    /// The entry's name (last path component; empty for the root).
    pub fn name(&self) -> &[u8] {
        split_path(&self.path).1
    }

    /// Length of the encoded entry.
    pub fn encoded_len(&self) -> usize {
        ENTRY_FIXED_SIZE
            + self.path.len()
            + self.link.len()
            + self
                .xattrs
                .iter()
                .map(|(n, v)| 8 + n.len() + v.len())
                .sum::<usize>()
    }

    /// Appends the encoding to `out`. Lengths must be within the format's limits (the packer
    /// checks them before building an entry).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let xlen: usize = self.xattrs.iter().map(|(n, v)| 8 + n.len() + v.len()).sum();
        out.push(self.kind as u8);
        out.push(self.flags);
        out.extend_from_slice(&(self.path.len() as u16).to_le_bytes());
        out.extend_from_slice(&self.mode.to_le_bytes());
        out.extend_from_slice(&self.uid.to_le_bytes());
        out.extend_from_slice(&self.gid.to_le_bytes());
        out.extend_from_slice(&self.mtime.to_le_bytes());
        out.extend_from_slice(&self.mtime_nsec.to_le_bytes());
        out.extend_from_slice(&(self.link.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.data_offset.to_le_bytes());
        out.extend_from_slice(&self.rdev.to_le_bytes());
        out.extend_from_slice(&(xlen as u32).to_le_bytes());
        out.extend_from_slice(&[0u8; 4]);
        out.extend_from_slice(&self.path);
        out.extend_from_slice(&self.link);
        for (n, v) in &self.xattrs {
            out.extend_from_slice(&(n.len() as u16).to_le_bytes());
            out.extend_from_slice(&[0u8; 2]);
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(n);
            out.extend_from_slice(v);
        }
    }

    /// Decodes one entry at the start of `b`; returns it and its encoded length.
    fn decode(b: &[u8], what: &dyn Fn() -> String) -> Result<(TreeEntry, usize)> {
        if b.len() < ENTRY_FIXED_SIZE {
            return Err(Error::corrupt(what(), "truncated entry"));
        }
        let kind = EntryKind::from_u8(b[0])
            .ok_or_else(|| Error::corrupt(what(), format!("unknown entry kind {}", b[0])))?;
        let flags = b[1];
        if flags & !ENTRY_FLAG_HARDLINK != 0 {
            return Err(Error::corrupt(
                what(),
                format!("unknown flags {flags:#04x}"),
            ));
        }
        let plen = le_u16(b, 2) as usize;
        let llen = le_u32(b, 28) as usize;
        let xlen = le_u32(b, 56) as usize;
        if llen > MAX_PATH_LEN || xlen > MAX_XATTR_AREA {
            return Err(Error::corrupt(
                what(),
                format!("link length {llen} / xattr area {xlen} out of range"),
            ));
        }
        let total = ENTRY_FIXED_SIZE + plen + llen + xlen;
        if b.len() < total {
            return Err(Error::corrupt(
                what(),
                format!("entry of {total} bytes overruns its page"),
            ));
        }
        let mode = le_u32(b, 4);
        let mtime_nsec = le_u32(b, 24);
        if mode & !0o7777 != 0 || mtime_nsec >= 1_000_000_000 {
            return Err(Error::corrupt(
                what(),
                format!("mode {mode:#o} or nanoseconds {mtime_nsec} out of range"),
            ));
        }
        let path = b[ENTRY_FIXED_SIZE..ENTRY_FIXED_SIZE + plen].to_vec();
        let link = b[ENTRY_FIXED_SIZE + plen..ENTRY_FIXED_SIZE + plen + llen].to_vec();
        let mut xattrs = Vec::new();
        let mut x = &b[ENTRY_FIXED_SIZE + plen + llen..total];
        while !x.is_empty() {
            if x.len() < 8 {
                return Err(Error::corrupt(what(), "truncated extended attribute"));
            }
            let nl = le_u16(x, 0) as usize;
            let vl = le_u32(x, 4) as usize;
            if nl == 0 || x.len() - 8 < nl || x.len() - 8 - nl < vl {
                return Err(Error::corrupt(
                    what(),
                    "extended attribute overruns its area",
                ));
            }
            xattrs.push((x[8..8 + nl].to_vec(), x[8 + nl..8 + nl + vl].to_vec()));
            x = &x[8 + nl + vl..];
        }
        let e = TreeEntry {
            path,
            kind,
            flags,
            mode,
            uid: le_u32(b, 8),
            gid: le_u32(b, 12),
            mtime: le_u64(b, 16) as i64,
            mtime_nsec,
            size: le_u64(b, 32),
            data_offset: le_u64(b, 40),
            rdev: le_u64(b, 48),
            link,
            xattrs,
        };
        let shown = || format!("{}, entry '{}'", what(), String::from_utf8_lossy(&e.path));
        check_path(&e.path).map_err(|d| Error::corrupt(shown(), d))?;
        if e.path.is_empty() && kind != EntryKind::Dir {
            return Err(Error::corrupt(shown(), "the root entry is not a directory"));
        }
        match kind {
            EntryKind::Symlink if e.link.is_empty() || e.size != llen as u64 => {
                return Err(Error::corrupt(shown(), "symlink without a target"));
            }
            EntryKind::File if e.is_hardlink() => {
                check_path(&e.link).map_err(|d| Error::corrupt(shown(), d))?;
                if e.link.is_empty() || key_cmp(&e.link, &e.path) != Ordering::Less {
                    return Err(Error::corrupt(
                        shown(),
                        "hard link target does not come before the link",
                    ));
                }
            }
            EntryKind::Symlink | EntryKind::File => {}
            _ if e.is_hardlink() || !e.link.is_empty() || e.size != 0 => {
                return Err(Error::corrupt(shown(), "unexpected size, link or flags"));
            }
            _ => {}
        }
        if kind == EntryKind::File && !e.is_hardlink() && !e.link.is_empty() {
            return Err(Error::corrupt(shown(), "regular file with a link target"));
        }
        Ok((e, total))
    }
}

/// Splits a table path into (parent directory, name). The root `""` is `("", "")`.
pub fn split_path(p: &[u8]) -> (&[u8], &[u8]) {
    match p.iter().rposition(|&c| c == b'/') {
        Some(i) => (&p[..i], &p[i + 1..]),
        None => (&[], p),
    }
}

/// The table order: by parent directory path (bytewise), then by name (bytewise). All entries
/// of one directory are adjacent, and every entry comes after its ancestors.
pub fn key_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let (pa, na) = split_path(a);
    let (pb, nb) = split_path(b);
    pa.cmp(pb).then_with(|| na.cmp(nb))
}

/// Checks that `p` is a table path: relative, `/`-separated, no empty, `.` or `..`
/// components, no NUL byte, at most [`MAX_PATH_LEN`] bytes. The root is `""`.
pub fn check_path(p: &[u8]) -> std::result::Result<(), String> {
    if p.len() > MAX_PATH_LEN {
        return Err(format!("path of {} bytes is too long", p.len()));
    }
    if p.is_empty() {
        return Ok(());
    }
    if p[0] == b'/' {
        return Err("absolute path".into());
    }
    if p.contains(&0) {
        return Err("path contains a NUL byte".into());
    }
    for c in p.split(|&c| c == b'/') {
        match c {
            b"" => return Err("path has an empty component".into()),
            b"." | b".." => return Err("path has a '.' or '..' component".into()),
            _ => {}
        }
    }
    Ok(())
}

/// Reference to a stored file table page: location, codec and digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreePageRef {
    /// Absolute offset of the stored page.
    pub offset: u64,
    /// Stored length (compressed, plus the tag when encrypted).
    pub stored_len: u32,
    /// Length of the plain (decoded) page.
    pub plain_len: u32,
    /// Codec of the stored page.
    pub codec: Codec,
    /// BLAKE3 of the plain page.
    pub hash: [u8; 32],
}

/// One entry of an interior page: the first path of a child subtree and the child page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildRef {
    /// Smallest path (in table order) in the child's subtree.
    pub first_path: Vec<u8>,
    /// The child page.
    pub page: TreePageRef,
}

/// A decoded file table page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreePage {
    /// Level 0: entries, in table order.
    Leaf(Vec<TreeEntry>),
    /// Level > 0: child pages, in table order.
    Interior {
        /// Height of the page above the leaves (1 = its children are leaves).
        level: u8,
        /// Children, by their first path.
        children: Vec<ChildRef>,
    },
}

fn page_header(out: &mut Vec<u8>, level: u8, count: usize) {
    out.extend_from_slice(&TREE_PAGE_MAGIC);
    out.push(level);
    out.extend_from_slice(&[0u8; 3]);
    out.extend_from_slice(&(count as u32).to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
}

/// Encodes a leaf page from already encoded entries.
pub fn encode_leaf(count: usize, entries: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(TREE_PAGE_HEADER_SIZE + entries.len());
    page_header(&mut out, 0, count);
    out.extend_from_slice(entries);
    out
}

/// Encodes an interior page at `level` (>= 1).
pub fn encode_interior(level: u8, children: &[ChildRef]) -> Vec<u8> {
    let mut out = Vec::new();
    page_header(&mut out, level, children.len());
    for c in children {
        encode_child(c, &mut out);
    }
    out
}

/// Length of an encoded interior entry.
pub fn child_encoded_len(c: &ChildRef) -> usize {
    CHILD_FIXED_SIZE + c.first_path.len()
}

fn encode_child(c: &ChildRef, out: &mut Vec<u8>) {
    out.extend_from_slice(&(c.first_path.len() as u16).to_le_bytes());
    out.push(c.page.codec as u8);
    out.push(0);
    out.extend_from_slice(&c.page.stored_len.to_le_bytes());
    out.extend_from_slice(&c.page.offset.to_le_bytes());
    out.extend_from_slice(&c.page.plain_len.to_le_bytes());
    out.extend_from_slice(&[0u8; 12]);
    out.extend_from_slice(&c.page.hash);
    out.extend_from_slice(&c.first_path);
}

impl TreePage {
    /// Decodes a plain page (its digest already checked by the caller); `level` is the level
    /// the referring page expects; `name` describes the page in errors. Checks that entries
    /// are strictly increasing in table order.
    pub fn decode(b: &[u8], level: u8, name: &str) -> Result<TreePage> {
        if b.len() < TREE_PAGE_HEADER_SIZE || b[0..4] != TREE_PAGE_MAGIC {
            return Err(Error::corrupt(name, "bad file table page magic"));
        }
        if b[4] != level {
            return Err(Error::corrupt(
                name,
                format!("page level {} where level {level} was expected", b[4]),
            ));
        }
        let count = le_u32(b, 8) as usize;
        // Every entry takes at least 64 bytes: bounds the count before allocating.
        if count == 0 || count > (b.len() - TREE_PAGE_HEADER_SIZE) / 64 {
            return Err(Error::corrupt(
                name,
                format!("entry count {count} does not fit the {}-byte page", b.len()),
            ));
        }
        let mut pos = TREE_PAGE_HEADER_SIZE;
        let page = if level == 0 {
            let mut entries: Vec<TreeEntry> = Vec::with_capacity(count);
            for i in 0..count {
                let what = || format!("{name}, entry {i}");
                let (e, n) = TreeEntry::decode(&b[pos..], &what)?;
                if let Some(prev) = entries.last() {
                    if key_cmp(&prev.path, &e.path) != Ordering::Less {
                        return Err(Error::corrupt(
                            what(),
                            format!(
                                "'{}' is a duplicate or out of order",
                                String::from_utf8_lossy(&e.path)
                            ),
                        ));
                    }
                }
                pos += n;
                entries.push(e);
            }
            TreePage::Leaf(entries)
        } else {
            let mut children: Vec<ChildRef> = Vec::with_capacity(count);
            for i in 0..count {
                let what = || format!("{name}, child {i}");
                let c = &b[pos..];
                if c.len() < CHILD_FIXED_SIZE {
                    return Err(Error::corrupt(what(), "truncated child reference"));
                }
                let klen = le_u16(c, 0) as usize;
                if c.len() < CHILD_FIXED_SIZE + klen {
                    return Err(Error::corrupt(what(), "child key overruns the page"));
                }
                let codec = Codec::from_u8(c[2])
                    .ok_or_else(|| Error::corrupt(what(), format!("unknown codec id {}", c[2])))?;
                let child = ChildRef {
                    first_path: c[CHILD_FIXED_SIZE..CHILD_FIXED_SIZE + klen].to_vec(),
                    page: TreePageRef {
                        offset: le_u64(c, 8),
                        stored_len: le_u32(c, 4),
                        plain_len: le_u32(c, 16),
                        codec,
                        hash: c[32..64].try_into().expect("32 bytes"),
                    },
                };
                check_path(&child.first_path).map_err(|d| Error::corrupt(what(), d))?;
                if let Some(prev) = children.last() {
                    if key_cmp(&prev.first_path, &child.first_path) != Ordering::Less {
                        return Err(Error::corrupt(what(), "child keys out of order"));
                    }
                }
                pos += CHILD_FIXED_SIZE + klen;
                children.push(child);
            }
            TreePage::Interior { level, children }
        };
        if pos != b.len() {
            return Err(Error::corrupt(
                name,
                format!("{} trailing bytes after the last entry", b.len() - pos),
            ));
        }
        Ok(page)
    }
}

/// The file table header: counts, and the root page of the B+tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeHeader {
    /// Stream that holds the file contents (0, the disk stream).
    pub data_stream: u8,
    /// Height of the B+tree: 1 when the root is a leaf.
    pub depth: u8,
    /// Number of entries (the root directory included).
    pub entries: u64,
    /// Regular files (hard links included).
    pub files: u64,
    /// Directories (the root included).
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Devices, FIFOs and sockets.
    pub specials: u64,
    /// Sum of regular file sizes, each hard-linked inode counted once.
    pub file_bytes: u64,
    /// The root page.
    pub root: TreePageRef,
}

impl TreeHeader {
    /// Encodes the 128-byte header.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(TREE_HEADER_SIZE);
        out.extend_from_slice(&TREE_HEADER_MAGIC);
        out.push(self.data_stream);
        out.push(self.depth);
        out.push(self.root.codec as u8);
        out.push(0);
        for v in [
            self.entries,
            self.files,
            self.dirs,
            self.symlinks,
            self.specials,
            self.file_bytes,
            self.root.offset,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.root.stored_len.to_le_bytes());
        out.extend_from_slice(&self.root.plain_len.to_le_bytes());
        out.extend_from_slice(&self.root.hash);
        out.resize(TREE_HEADER_SIZE, 0);
        out
    }

    /// Decodes and validates the plain header (its digest checked by the caller).
    pub fn decode(b: &[u8]) -> Result<TreeHeader> {
        const NAME: &str = "file table header";
        if b.len() != TREE_HEADER_SIZE || b[0..4] != TREE_HEADER_MAGIC {
            return Err(Error::corrupt(NAME, "bad magic or length"));
        }
        let codec = Codec::from_u8(b[6])
            .ok_or_else(|| Error::corrupt(NAME, format!("unknown codec id {}", b[6])))?;
        let h = TreeHeader {
            data_stream: b[4],
            depth: b[5],
            entries: le_u64(b, 8),
            files: le_u64(b, 16),
            dirs: le_u64(b, 24),
            symlinks: le_u64(b, 32),
            specials: le_u64(b, 40),
            file_bytes: le_u64(b, 48),
            root: TreePageRef {
                offset: le_u64(b, 56),
                stored_len: le_u32(b, 64),
                plain_len: le_u32(b, 68),
                codec,
                hash: b[72..104].try_into().expect("32 bytes"),
            },
        };
        if h.data_stream != 0 || h.depth == 0 || h.depth > MAX_DEPTH || h.entries == 0 {
            return Err(Error::corrupt(
                NAME,
                format!(
                    "data stream {} / depth {} / {} entries out of range",
                    h.data_stream, h.depth, h.entries
                ),
            ));
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: EntryKind) -> TreeEntry {
        TreeEntry {
            path: path.as_bytes().to_vec(),
            kind,
            flags: 0,
            mode: 0o644,
            uid: 1,
            gid: 2,
            mtime: -5,
            mtime_nsec: 999_999_999,
            size: if kind == EntryKind::Symlink { 3 } else { 0 },
            data_offset: 0,
            rdev: 0,
            link: if kind == EntryKind::Symlink {
                b"x/y".to_vec()
            } else {
                Vec::new()
            },
            xattrs: vec![(b"user.a".to_vec(), b"\0v".to_vec())],
        }
    }

    #[test]
    fn order_groups_directories() {
        let mut v = vec!["a-c", "a/b", "a", "", "a/b/c", "b", "a/z"];
        v.sort_by(|a, b| key_cmp(a.as_bytes(), b.as_bytes()));
        assert_eq!(v, ["", "a", "a-c", "b", "a/b", "a/z", "a/b/c"]);
    }

    #[test]
    fn leaf_round_trip_and_order_check() {
        let es = [
            entry("", EntryKind::Dir),
            entry("a", EntryKind::Symlink),
            entry("b", EntryKind::File),
        ];
        let mut body = Vec::new();
        for e in &es {
            e.encode_into(&mut body);
        }
        let page = encode_leaf(es.len(), &body);
        assert_eq!(
            TreePage::decode(&page, 0, "p").unwrap(),
            TreePage::Leaf(es.to_vec())
        );
        let mut body = Vec::new();
        es[2].encode_into(&mut body);
        es[1].encode_into(&mut body);
        let err = TreePage::decode(&encode_leaf(2, &body), 0, "p")
            .unwrap_err()
            .to_string();
        assert!(err.contains("'a' is a duplicate or out of order"), "{err}");
    }

    #[test]
    fn hostile_paths_refused() {
        for p in ["/etc", "a/../b", "a//b", "./a", "a/"] {
            let mut body = Vec::new();
            entry(p, EntryKind::File).encode_into(&mut body);
            let err = TreePage::decode(&encode_leaf(1, &body), 0, "p")
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("entry '{p}'")), "{p}: {err}");
        }
    }

    #[test]
    fn header_round_trip() {
        let h = TreeHeader {
            data_stream: 0,
            depth: 2,
            entries: 10,
            files: 5,
            dirs: 3,
            symlinks: 1,
            specials: 1,
            file_bytes: 99,
            root: TreePageRef {
                offset: 1000,
                stored_len: 50,
                plain_len: 80,
                codec: Codec::Zstd,
                hash: [3; 32],
            },
        };
        assert_eq!(TreeHeader::decode(&h.encode()).unwrap(), h);
    }
}
