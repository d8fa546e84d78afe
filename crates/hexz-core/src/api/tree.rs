//! Reading a tree archive by path: [`FileTree`] (format 1.2 file table).
//!
//! This is the core API the CLI (`ls`, `cat`, `extract`, `diff`), the mount and the Python
//! bindings share. It is cheap to clone and `Send + Sync`; every method is safe to call from
//! many threads.
//!
//! * [`FileTree::lookup`] descends the B+tree from its root: one page per level, so a lookup
//!   in a million-entry table reads a few pages (each checked against its BLAKE3 digest).
//! * [`FileTree::read_dir`] reads only the pages that hold one directory's entries (they are
//!   adjacent in table order); [`FileTree::walk`] visits a whole subtree.
//! * [`FileTree::read_file`] reads a byte range of a regular file through [`File::read_at`],
//!   decoding only the data blocks the range spans.
//!
//! Recently used pages are kept in a small cache (bounded in bytes), so walking a directory or
//! looking up neighbouring paths does not reread them.

use crate::algo::compression::compressor_for;
use crate::api::File;
use crate::error::{Error, Result};
use crate::format::section::SECTION_FILE_TABLE;
use crate::format::tree::{
    split_path, ChildRef, TreeEntry, TreeHeader, TreePage, TreePageRef, MAX_PAGE_SIZE,
    TREE_HEADER_SIZE,
};
use crate::format::{Codec, SnapshotStream, MAX_STORED_OVERHEAD};
use std::sync::{Arc, Mutex};

/// Plain bytes of pages the per-tree cache keeps (about 128 pages of the usual 64 KiB). A
/// least recently used page is evicted whenever the total exceeds this, so the cache never
/// holds more (a single page larger than the bound, up to 16 MiB, is not kept at all).
pub const PAGE_CACHE_BYTES: usize = 8 << 20;

pub use crate::format::tree::EntryKind;

/// A tree archive's file table, opened for lookups, listings and file reads.
#[derive(Clone)]
pub struct FileTree {
    file: File,
    header: TreeHeader,
    /// Decoded pages by offset, with the digest and level they were checked against.
    cache: Arc<Mutex<(PageCache, usize)>>,
}

/// Page offset → (digest, level, page, plain length); the total plain length is kept beside.
type PageCache = lru::LruCache<u64, ([u8; 32], u8, Arc<TreePage>, usize)>;

impl std::fmt::Debug for FileTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileTree")
            .field("archive", &self.file.describe())
            .field("entries", &self.header.entries)
            .finish()
    }
}

/// Normalises a user-given path to table form: leading and trailing `/` and `.` components
/// dropped (`""`, `"/"` and `"."` name the root). `..` is refused.
pub fn normalize_path(p: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(p.len());
    for c in p.split(|&c| c == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(Error::InvalidArgument(format!(
                    "path '{}' has a '..' component",
                    String::from_utf8_lossy(p)
                )))
            }
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Ok(out)
}

impl FileTree {
    /// Opens the file table of `file`; `Ok(None)` when the archive holds only streams.
    pub fn open(file: &File) -> Result<Option<FileTree>> {
        let Some(sec) = file.master().section(SECTION_FILE_TABLE) else {
            return Ok(None);
        };
        const NAME: &str = "file table header";
        let bytes = file.read_section_object(sec.offset, sec.len, NAME)?;
        if blake3::hash(&bytes).as_bytes() != &sec.hash {
            return Err(Error::corrupt(
                NAME,
                "BLAKE3 digest does not match the section table",
            ));
        }
        if bytes.len() != TREE_HEADER_SIZE {
            return Err(Error::corrupt(NAME, "wrong length"));
        }
        let header = TreeHeader::decode(&bytes)?;
        if !file.has_stream(SnapshotStream::Disk) && header.file_bytes > 0 {
            return Err(Error::corrupt(NAME, "file bytes but no data stream"));
        }
        Ok(Some(FileTree {
            file: file.clone(),
            header,
            cache: Arc::new(Mutex::new((lru::LruCache::unbounded(), 0))),
        }))
    }

    /// The archive the tree belongs to.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Counts and the root reference.
    pub fn header(&self) -> &TreeHeader {
        &self.header
    }

    /// Plain bytes of the decoded pages the cache holds now (at most [`PAGE_CACHE_BYTES`]
    /// once a read returns); for tests and diagnostics.
    pub fn page_cache_bytes(&self) -> usize {
        self.cache.lock().map_or(0, |g| g.1)
    }

    fn page(&self, r: &TreePageRef, level: u8) -> Result<Arc<TreePage>> {
        // A hit counts only for the same digest and level: a hostile reference to an
        // already-loaded page (a page naming itself or an ancestor as its child) must not
        // skip the checks, or a cursor would descend forever.
        if let Some((h, l, p, _)) = self.cache.lock().map_err(|_| poisoned())?.0.get(&r.offset) {
            if *h == r.hash && *l == level {
                return Ok(p.clone());
            }
        }
        let name = format!("file table page at offset {}", r.offset);
        if r.plain_len > MAX_PAGE_SIZE || r.stored_len > r.plain_len + MAX_STORED_OVERHEAD {
            return Err(Error::corrupt(
                &name,
                format!(
                    "stored length {} / plain length {} out of range",
                    r.stored_len, r.plain_len
                ),
            ));
        }
        let stored = self
            .file
            .read_section_object(r.offset, r.stored_len as u64, &name)?;
        let plain = if r.codec == Codec::None {
            stored
        } else {
            let mut out = vec![0u8; r.plain_len as usize];
            compressor_for(r.codec, 3)?
                .decompress_into(&stored, &mut out)
                .map_err(|e| Error::corrupt(&name, e))?;
            out
        };
        if plain.len() != r.plain_len as usize || blake3::hash(&plain).as_bytes() != &r.hash {
            return Err(Error::corrupt(
                &name,
                "BLAKE3 digest does not match its reference",
            ));
        }
        let page = Arc::new(TreePage::decode(&plain, level, &name)?);
        let size = plain.len();
        let mut guard = self.cache.lock().map_err(|_| poisoned())?;
        let (cache, bytes) = &mut *guard;
        if let Some(old) = cache.put(r.offset, (r.hash, level, page.clone(), size)) {
            *bytes -= old.3;
        }
        *bytes += size;
        while *bytes > PAGE_CACHE_BYTES {
            match cache.pop_lru() {
                Some((_, old)) => *bytes -= old.3,
                None => break,
            }
        }
        Ok(page)
    }

    /// The page `c` (an entry of an interior page at `level`) refers to, checked to start
    /// with the key `c` gives for it: lookups descend by the keys and iteration by the pages,
    /// so a key that disagrees with its child (in a hostile table) would hide listed entries
    /// from lookups.
    fn child(&self, c: &ChildRef, level: u8) -> Result<Arc<TreePage>> {
        let page = self.page(&c.page, level - 1)?;
        let first = match &*page {
            TreePage::Leaf(entries) => &entries[0].path,
            TreePage::Interior { children, .. } => &children[0].first_path,
        };
        if *first != c.first_path {
            return Err(Error::corrupt(
                format!("file table page at offset {}", c.page.offset),
                format!(
                    "first path '{}' differs from its key '{}' in the parent page",
                    String::from_utf8_lossy(first),
                    String::from_utf8_lossy(&c.first_path)
                ),
            ));
        }
        Ok(page)
    }

    fn root(&self) -> Result<Arc<TreePage>> {
        self.page(&self.header.root, self.header.depth - 1)
    }

    /// A cursor at the first entry whose (parent, name) is `>= (parent, name)`.
    fn seek(&self, parent: &[u8], name: &[u8]) -> Result<Cursor<'_>> {
        let mut stack = Vec::with_capacity(self.header.depth as usize);
        let mut page = self.root()?;
        loop {
            let next = match &*page {
                TreePage::Interior { level, children } => {
                    let i = children
                        .partition_point(|c| split_path(&c.first_path) <= (parent, name))
                        .saturating_sub(1);
                    let child = self.child(&children[i], *level)?;
                    stack.push((page.clone(), i));
                    child
                }
                TreePage::Leaf(entries) => {
                    let i = entries.partition_point(|e| split_path(&e.path) < (parent, name));
                    stack.push((page.clone(), i));
                    break;
                }
            };
            page = next;
        }
        Ok(Cursor {
            tree: self,
            stack,
            prev: None,
        })
    }

    /// Every entry, in table order (the root first).
    pub fn iter(&self) -> Result<Cursor<'_>> {
        self.seek(b"", b"")
    }

    /// The entry at `path` (any form [`normalize_path`] accepts), or `None`.
    pub fn lookup(&self, path: impl AsRef<[u8]>) -> Result<Option<TreeEntry>> {
        let p = normalize_path(path.as_ref())?;
        let (parent, name) = split_path(&p);
        let mut c = self.seek(parent, name)?;
        match c.next().transpose()? {
            Some(e) if e.path == p => Ok(Some(e)),
            _ => Ok(None),
        }
    }

    /// The entries of directory `dir` (not recursive), in name order. An error when `dir` is
    /// missing or not a directory.
    pub fn read_dir(&self, dir: impl AsRef<[u8]>) -> Result<Vec<TreeEntry>> {
        let d = normalize_path(dir.as_ref())?;
        match self.lookup(&d)? {
            Some(e) if e.kind == EntryKind::Dir => {}
            Some(_) => return Err(not_dir(&d)),
            None => return Err(not_found(&d)),
        }
        let mut out = Vec::new();
        for e in self.seek(&d, b"")? {
            let e = e?;
            if split_path(&e.path).0 != d.as_slice() {
                break;
            }
            if !e.path.is_empty() {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Calls `f` for `path` itself and, when it is a directory, every entry below it: the
    /// directory's own entries first, then those of its subdirectories grouped by directory.
    pub fn walk(
        &self,
        path: impl AsRef<[u8]>,
        f: &mut dyn FnMut(TreeEntry) -> Result<()>,
    ) -> Result<()> {
        let p = normalize_path(path.as_ref())?;
        let top = self.lookup(&p)?.ok_or_else(|| not_found(&p))?;
        if top.kind != EntryKind::Dir {
            return f(top);
        }
        if p.is_empty() {
            for e in self.iter()? {
                f(e?)?;
            }
            return Ok(());
        }
        f(top)?;
        for e in self.seek(&p, b"")? {
            let e = e?;
            if split_path(&e.path).0 != p.as_slice() {
                break;
            }
            f(e)?;
        }
        let mut below = p.clone();
        below.push(b'/');
        for e in self.seek(&below, b"")? {
            let e = e?;
            if !split_path(&e.path).0.starts_with(&below) {
                break;
            }
            f(e)?;
        }
        Ok(())
    }

    /// Where regular file `e`'s bytes lie in the data (disk) stream: `(offset, size)`. An
    /// error when `e` is not a regular file, or (corrupt) when the range lies outside the
    /// stream. Readers that keep a file open (a Python file object, a mount handle) check
    /// once here and then read the stream directly.
    pub fn data_range(&self, e: &TreeEntry) -> Result<(u64, u64)> {
        if e.kind != EntryKind::File {
            return Err(Error::InvalidArgument(format!(
                "'{}' is a {}, not a regular file",
                String::from_utf8_lossy(&e.path),
                e.kind.name()
            )));
        }
        let end = e.data_offset.checked_add(e.size);
        if end.is_none_or(|end| e.size > 0 && end > self.file.size(SnapshotStream::Disk)) {
            return Err(Error::corrupt(
                format!("file table entry '{}'", String::from_utf8_lossy(&e.path)),
                format!(
                    "data at offset {} length {} lies outside the data stream",
                    e.data_offset, e.size
                ),
            ));
        }
        Ok((e.data_offset, e.size))
    }

    /// Reads up to `len` bytes of regular file `e` from byte `offset` of the file; a read
    /// past the end is truncated (empty at or after the end).
    pub fn read_file(&self, e: &TreeEntry, offset: u64, len: usize) -> Result<Vec<u8>> {
        let (_, size) = self.data_range(e)?;
        let n = size.saturating_sub(offset).min(len as u64) as usize;
        let mut buf = vec![0u8; n];
        let got = self.read_file_into(e, offset, &mut buf)?;
        debug_assert_eq!(got, n);
        Ok(buf)
    }

    /// Fills `buf` with the bytes of regular file `e` from byte `offset` of the file and
    /// returns how many were read: `buf.len()` unless the file ends first (0 at or after the
    /// end). Decodes only the blocks the range spans, straight into `buf` when covered whole.
    pub fn read_file_into(&self, e: &TreeEntry, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let (start, size) = self.data_range(e)?;
        if offset >= size || buf.is_empty() {
            return Ok(0);
        }
        let n = (size - offset).min(buf.len() as u64) as usize;
        self.file
            .read_at_into(SnapshotStream::Disk, start + offset, &mut buf[..n])
    }
}

fn poisoned() -> Error {
    Error::InvalidArgument("file table cache lock poisoned by a panic".into())
}

fn not_found(p: &[u8]) -> Error {
    Error::InvalidArgument(format!(
        "no such file or directory in the archive: '{}'",
        String::from_utf8_lossy(p)
    ))
}

fn not_dir(p: &[u8]) -> Error {
    Error::InvalidArgument(format!(
        "not a directory in the archive: '{}'",
        String::from_utf8_lossy(p)
    ))
}

/// Iterator over file table entries in table order, from a seek position to the end.
/// Checks that consecutive entries are strictly increasing across pages too (a duplicate
/// or misplaced entry in a damaged or hostile table is an error naming it).
pub struct Cursor<'a> {
    tree: &'a FileTree,
    /// Root-to-leaf path: each page and the index of the next child / entry.
    stack: Vec<(Arc<TreePage>, usize)>,
    prev: Option<Vec<u8>>,
}

impl Cursor<'_> {
    fn advance(&mut self) -> Result<Option<TreeEntry>> {
        loop {
            let Some((page, i)) = self.stack.last_mut() else {
                return Ok(None);
            };
            let (c, level) = match &**page {
                TreePage::Leaf(entries) => {
                    if let Some(e) = entries.get(*i) {
                        *i += 1;
                        return Ok(Some(e.clone()));
                    }
                    self.stack.pop();
                    continue;
                }
                // An interior frame holds the child currently descended into: move on.
                TreePage::Interior { level, children } => {
                    *i += 1;
                    match children.get(*i) {
                        Some(c) => (c.clone(), *level),
                        None => {
                            self.stack.pop();
                            continue;
                        }
                    }
                }
            };
            let child = self.tree.child(&c, level)?;
            self.descend_leftmost(child)?;
        }
    }

    fn descend_leftmost(&mut self, mut page: Arc<TreePage>) -> Result<()> {
        loop {
            let next = match &*page {
                TreePage::Interior { level, children } => {
                    Some(self.tree.child(&children[0], *level)?)
                }
                TreePage::Leaf(_) => None,
            };
            self.stack.push((page, 0));
            match next {
                Some(c) => page = c,
                None => return Ok(()),
            }
        }
    }
}

impl Iterator for Cursor<'_> {
    type Item = Result<TreeEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.advance() {
            Ok(Some(e)) => {
                if let Some(prev) = &self.prev {
                    if crate::format::tree::key_cmp(prev, &e.path) != std::cmp::Ordering::Less {
                        self.stack.clear();
                        return Some(Err(Error::corrupt(
                            "file table",
                            format!(
                                "entry '{}' is a duplicate or out of order",
                                String::from_utf8_lossy(&e.path)
                            ),
                        )));
                    }
                }
                self.prev = Some(e.path.clone());
                Some(Ok(e))
            }
            Ok(None) => None,
            Err(e) => {
                self.stack.clear();
                Some(Err(e))
            }
        }
    }
}
