//! The writable overlay: changed chunks of an archive's streams, kept in one file.
//!
//! Writes are copy-on-write per chunk (4 KiB by default): a write covering a chunk only in
//! part first reads the chunk as it currently reads (archive under overlay). Every change is
//! *appended* to the file as a record (64-byte header with CRC32s, then the chunk), and the
//! newest record of a chunk wins, so a crash can only lose the torn tail of the log, never
//! mix old and new bytes of a chunk: opening scans the log, checks every record written
//! after the last durable point, and cuts the log at the first torn record. An fsync
//! (through the mount or NBD flush) makes everything written before it durable and appends
//! a `Sync` record marking that point. The format is "Overlay format v1.0" in
//! docs/FORMAT.md.
//!
//! The file is locked (`flock`) while a mount, a server or a commit uses it, so it is never
//! used by two at once. Over an encrypted archive the chunks are encrypted (see
//! [`crypto`]).

#[cfg(feature = "encryption")]
pub mod crypto;
pub mod format;

use crate::error::{Error, Result};
use format::{OverlayHeader, RecordHeader, RecordKind, HEADER_SIZE, RECORD_HEADER_SIZE};
use hexz_core::{File, SnapshotStream};
use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

#[cfg(feature = "encryption")]
use crypto::RecordCipher;
#[cfg(not(feature = "encryption"))]
enum RecordCipher {}

/// Where the newest record of a chunk lies in the file.
#[derive(Clone, Copy)]
struct Loc {
    pos: u64,
}

struct WriteState {
    /// File offset where the next record goes.
    end: u64,
    /// Sequence number of the next record.
    seq: u64,
    /// Records were appended since the last sync.
    dirty: bool,
}

/// An open overlay file over one archive.
pub struct Overlay {
    path: PathBuf,
    file: std::fs::File,
    header: OverlayHeader,
    cipher: Option<RecordCipher>,
    map: RwLock<HashMap<(u8, u64), Loc>>,
    w: Mutex<WriteState>,
    writable: bool,
}

impl std::fmt::Debug for Overlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay")
            .field("path", &self.path)
            .field("chunks", &self.changed_chunks())
            .finish()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn lock_err<T>(_: T) -> Error {
    Error::InvalidArgument("overlay lock poisoned by a panicked thread".into())
}

/// Reads the header of the overlay at `path` without opening its base (for `hexz commit`
/// to find the base, and for inspection).
pub fn read_header(path: &Path) -> Result<OverlayHeader> {
    let f = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("opening overlay {}", path.display()), e))?;
    let mut b = vec![0u8; HEADER_SIZE];
    let n = read_full_at(&f, &mut b, 0)
        .map_err(|e| Error::io(format!("reading overlay {}", path.display()), e))?;
    b.truncate(n);
    OverlayHeader::decode(&b).map_err(|d| Error::overlay(path.display(), d))
}

fn read_full_at(f: &std::fs::File, buf: &mut [u8], off: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

fn stream_size(h: &OverlayHeader, stream: u8) -> Option<u64> {
    match stream {
        0 if h.streams & 1 != 0 => Some(h.disk_size),
        1 if h.streams & 2 != 0 => Some(h.memory_size),
        _ => None,
    }
}

fn archive_key(file: &File) -> Option<zeroize::Zeroizing<[u8; 32]>> {
    #[cfg(feature = "encryption")]
    {
        file.derive_key(crypto::ARCHIVE_CONTEXT)
    }
    #[cfg(not(feature = "encryption"))]
    {
        let _ = file;
        None
    }
}

fn make_cipher(file: &File, overlay_id: &[u8; 16]) -> Option<RecordCipher> {
    #[cfg(feature = "encryption")]
    {
        archive_key(file).map(|k| RecordCipher::new(&k, overlay_id))
    }
    #[cfg(not(feature = "encryption"))]
    {
        let _ = (file, overlay_id);
        None
    }
}

impl Overlay {
    /// Opens the overlay at `path` over `base`, creating it when it does not exist.
    /// `location` is where `base` was opened from (recorded for `hexz commit`).
    pub fn open_or_create(path: &Path, base: &File, location: &str) -> Result<Overlay> {
        if path.exists() {
            Self::open(path, base, true)
        } else {
            Self::create(path, base, location)
        }
    }

    /// Creates a new, empty overlay over `base` (crash-safely: temporary file, fsync,
    /// rename; an existing file is an error).
    pub fn create(path: &Path, base: &File, location: &str) -> Result<Overlay> {
        let overlay_id = hexz_core::algo::hash::random_bytes::<16>()?;
        let cipher = make_cipher(base, &overlay_id);
        let mut streams = 0u8;
        for s in base.streams() {
            streams |= 1 << s.id();
        }
        let header = OverlayHeader {
            major: format::MAJOR,
            minor: format::MINOR,
            flags: if cipher.is_some() {
                format::FLAG_ENCRYPTED
            } else {
                0
            },
            chunk_size: format::DEFAULT_CHUNK,
            overlay_id,
            base_id: base.header().archive_id,
            base_digest: base.master().digest,
            disk_size: base.size(SnapshotStream::Disk),
            memory_size: base.size(SnapshotStream::Memory),
            streams,
            key_check: match &cipher {
                #[cfg(feature = "encryption")]
                Some(c) => c.key_check(),
                #[allow(unreachable_patterns)]
                _ => [0; 32],
            },
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            base_location: location.to_string(),
        };
        let bytes = header
            .encode()
            .map_err(|d| Error::overlay(path.display(), d))?;
        let mut tmp = hexz_core::ops::atomic::AtomicFile::create(path)?;
        use std::io::Write;
        tmp.file()
            .write_all(&bytes)
            .map_err(|e| Error::io(format!("writing overlay {}", path.display()), e))?;
        if path.exists() {
            return Err(Error::overlay(path.display(), "already exists"));
        }
        tmp.commit()?;
        Self::open(path, base, true)
    }

    /// Opens an existing overlay over `base`: checks it was made over this very archive (id
    /// and index digest) with the same key, locks it, and replays its log. With `writable`,
    /// a torn tail left by a crash is cut off.
    pub fn open(path: &Path, base: &File, writable: bool) -> Result<Overlay> {
        let name = path.display().to_string();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(|e| Error::io(format!("opening overlay {name}"), e))?;
        // SAFETY: flock on a valid descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(Error::overlay(
                    &name,
                    "is in use (mounted, served or being committed); unmount it first",
                ));
            }
            return Err(Error::io(format!("locking overlay {name}"), e));
        }
        let header = read_header(path)?;
        if header.base_id != base.header().archive_id || header.base_digest != base.master().digest
        {
            return Err(Error::overlay(
                &name,
                format!(
                    "was made over another archive (archive id {}), not over {} (archive id {}); \
                     mount it over the archive it was made on",
                    hex(&header.base_id),
                    base.describe(),
                    hex(&base.header().archive_id)
                ),
            ));
        }
        for s in [SnapshotStream::Disk, SnapshotStream::Memory] {
            let want = if base.has_stream(s) {
                Some(base.size(s))
            } else {
                None
            };
            if stream_size(&header, s.id()) != want {
                return Err(Error::overlay(
                    &name,
                    format!("its {s} stream does not match the archive's"),
                ));
            }
        }
        let cipher = make_cipher(base, &header.overlay_id);
        match (&cipher, header.is_encrypted()) {
            (None, true) => {
                return Err(Error::overlay(
                    &name,
                    "is encrypted but the archive is not (or this build lacks encryption)",
                ))
            }
            (Some(_), false) => {
                return Err(Error::overlay(
                    &name,
                    "is not encrypted but the archive is: refusing to mix plaintext into it",
                ))
            }
            #[cfg(feature = "encryption")]
            (Some(c), true) if c.key_check() != header.key_check => {
                return Err(Error::overlay(
                    &name,
                    "key check failed: wrong key for this overlay",
                ))
            }
            _ => {}
        }
        let mut ov = Overlay {
            path: path.to_path_buf(),
            file,
            header,
            cipher,
            map: RwLock::new(HashMap::new()),
            w: Mutex::new(WriteState {
                end: HEADER_SIZE as u64,
                seq: 1,
                dirty: false,
            }),
            writable,
        };
        ov.replay()?;
        Ok(ov)
    }

    /// Scans the record log: builds the chunk map, checks the data of every record after
    /// the last Sync record, and cuts the log at the first invalid record.
    fn replay(&mut self) -> Result<()> {
        let name = self.path.display().to_string();
        let len = self
            .file
            .metadata()
            .map_err(|e| Error::io(format!("stat overlay {name}"), e))?
            .len();
        let mut rd = BufReader::with_capacity(1 << 20, &self.file);
        use std::io::{Seek, SeekFrom};
        rd.seek(SeekFrom::Start(HEADER_SIZE as u64))
            .map_err(|e| Error::io(format!("reading overlay {name}"), e))?;
        let mut pos = HEADER_SIZE as u64;
        let mut seq = 1u64;
        let mut records: Vec<(u64, RecordHeader)> = Vec::new();
        let mut last_sync = 0usize;
        let cs = self.header.chunk_size as u64;
        loop {
            if pos + RECORD_HEADER_SIZE as u64 > len {
                break;
            }
            let mut hb = [0u8; RECORD_HEADER_SIZE];
            if rd.read_exact(&mut hb).is_err() {
                break;
            }
            let r = match RecordHeader::decode(&hb) {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(d) => return Err(Error::overlay(&name, format!("record at byte {pos}: {d}"))),
            };
            if r.seq != seq {
                break;
            }
            let expect_stored = match r.kind {
                RecordKind::Sync => 0,
                RecordKind::Zero | RecordKind::Data => {
                    let size = stream_size(&self.header, r.stream).ok_or_else(|| {
                        Error::overlay(
                            &name,
                            format!(
                                "record {seq} at byte {pos}: stream {} is not in the archive",
                                r.stream
                            ),
                        )
                    })?;
                    if r.offset % cs != 0 || r.offset >= size {
                        return Err(Error::overlay(
                            &name,
                            format!("record {seq} at byte {pos}: chunk offset {} is misaligned or past the end", r.offset),
                        ));
                    }
                    let want_len = (size - r.offset).min(cs) as u32;
                    if r.length != want_len {
                        return Err(Error::overlay(
                            &name,
                            format!(
                                "record {seq} at byte {pos}: length {} should be {want_len}",
                                r.length
                            ),
                        ));
                    }
                    match (r.kind, &self.cipher) {
                        (RecordKind::Zero, _) => 0,
                        (_, Some(_)) => want_len + format::TAG_LEN,
                        _ => want_len,
                    }
                }
            };
            if r.stored_len != expect_stored {
                return Err(Error::overlay(
                    &name,
                    format!(
                        "record {seq} at byte {pos}: stored length {} should be {expect_stored}",
                        r.stored_len
                    ),
                ));
            }
            let next = pos + RECORD_HEADER_SIZE as u64 + r.stored_len as u64;
            if next > len {
                break;
            }
            if rd.seek_relative(r.stored_len as i64).is_err() {
                break;
            }
            if r.kind == RecordKind::Sync {
                last_sync = records.len() + 1;
            }
            records.push((pos, r));
            pos = next;
            seq += 1;
        }
        drop(rd);
        // Records after the last durable point may be torn: check their data.
        let mut keep = records.len();
        for (i, (p, r)) in records.iter().enumerate().skip(last_sync) {
            if r.kind != RecordKind::Data {
                continue;
            }
            let mut data = vec![0u8; r.stored_len as usize];
            let n = read_full_at(&self.file, &mut data, p + RECORD_HEADER_SIZE as u64)
                .map_err(|e| Error::io(format!("reading overlay {name}"), e))?;
            if n != data.len() || crc32fast::hash(&data) != r.data_crc {
                keep = i;
                break;
            }
        }
        let end = if keep < records.len() {
            records[keep].0
        } else {
            pos
        };
        records.truncate(keep);
        if end < len && self.writable {
            self.file
                .set_len(end)
                .map_err(|e| Error::io(format!("cutting the torn end of overlay {name}"), e))?;
            self.file
                .sync_all()
                .map_err(|e| Error::io(format!("fsync overlay {name}"), e))?;
        }
        let map = self.map.get_mut().map_err(lock_err)?;
        for (p, r) in &records {
            if r.kind != RecordKind::Sync {
                map.insert((r.stream, r.offset / cs), Loc { pos: *p });
            }
        }
        let w = self.w.get_mut().map_err(lock_err)?;
        w.end = end;
        w.seq = records.len() as u64 + 1;
        Ok(())
    }

    /// The overlay header.
    pub fn header(&self) -> &OverlayHeader {
        &self.header
    }

    /// Path of the overlay file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Chunk size (copy-on-write unit).
    pub fn chunk_size(&self) -> u64 {
        self.header.chunk_size as u64
    }

    /// Number of chunks the overlay changes.
    pub fn changed_chunks(&self) -> usize {
        self.map.read().map_or(0, |m| m.len())
    }

    /// Whether chunk `index` of `stream` is changed.
    pub fn has_chunk(&self, stream: SnapshotStream, index: u64) -> bool {
        self.map
            .read()
            .is_ok_and(|m| m.contains_key(&(stream.id(), index)))
    }

    fn size(&self, stream: SnapshotStream) -> u64 {
        stream_size(&self.header, stream.id()).unwrap_or(0)
    }

    /// Reads the newest record of a chunk into `out` (the chunk's bytes).
    fn read_record(
        &self,
        stream: SnapshotStream,
        index: u64,
        loc: Loc,
        out: &mut [u8],
    ) -> Result<()> {
        let name = || self.path.display().to_string();
        let stored = out.len() + if self.cipher.is_some() { 16 } else { 0 };
        let mut buf = vec![0u8; RECORD_HEADER_SIZE + stored];
        let n = read_full_at(&self.file, &mut buf, loc.pos)
            .map_err(|e| Error::io(format!("reading overlay {}", name()), e))?;
        let bad = |d: &str| {
            Error::overlay(
                name(),
                format!(
                    "record at byte {} ({stream} chunk at offset {}): {d}",
                    loc.pos,
                    index * self.chunk_size()
                ),
            )
        };
        let r = RecordHeader::decode(&buf[..n.min(RECORD_HEADER_SIZE)])
            .map_err(|d| bad(&d))?
            .ok_or_else(|| bad("record header is damaged"))?;
        if r.stream != stream.id() || r.offset != index * self.chunk_size() {
            return Err(bad("record header names another chunk"));
        }
        match r.kind {
            RecordKind::Zero => {
                out.fill(0);
                return Ok(());
            }
            RecordKind::Sync => return Err(bad("record is not a data record")),
            RecordKind::Data => {}
        }
        if n != buf.len() || r.stored_len as usize != stored {
            return Err(bad("record is truncated"));
        }
        let mut data = buf.split_off(RECORD_HEADER_SIZE);
        if crc32fast::hash(&data) != r.data_crc {
            return Err(bad("CRC32 mismatch (the chunk is damaged)"));
        }
        match &self.cipher {
            #[cfg(feature = "encryption")]
            Some(c) => {
                if !c.open(r.stream, r.seq, r.offset, &r.nonce, &mut data) {
                    return Err(bad("authentication failed (damaged or moved chunk)"));
                }
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
        if data.len() != out.len() {
            return Err(bad("chunk has the wrong length"));
        }
        out.copy_from_slice(&data);
        Ok(())
    }

    /// Overwrites the parts of `buf` (bytes of `stream` at `offset`) that the overlay
    /// changed. `buf` must lie inside the stream.
    pub fn patch(&self, stream: SnapshotStream, offset: u64, buf: &mut [u8]) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let cs = self.chunk_size();
        let first = offset / cs;
        let last = (offset + buf.len() as u64 - 1) / cs;
        let hits: Vec<(u64, Loc)> = {
            let map = self.map.read().map_err(lock_err)?;
            if map.is_empty() {
                return Ok(());
            }
            (first..=last)
                .filter_map(|c| map.get(&(stream.id(), c)).map(|l| (c, *l)))
                .collect()
        };
        let size = self.size(stream);
        let mut chunk = Vec::new();
        for (c, loc) in hits {
            let cstart = c * cs;
            let clen = (size - cstart).min(cs) as usize;
            chunk.resize(clen, 0);
            self.read_record(stream, c, loc, &mut chunk)?;
            let from = cstart.max(offset);
            let to = (cstart + clen as u64).min(offset + buf.len() as u64);
            buf[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&chunk[(from - cstart) as usize..(to - cstart) as usize]);
        }
        Ok(())
    }

    /// Writes `data` at `offset` of `stream` (zeros when `data` is `None`, for `len` bytes).
    /// Chunks covered only in part are first read through `base` (the archive's bytes) and
    /// the overlay. All records of one call are appended with one write.
    pub fn write(
        &self,
        stream: SnapshotStream,
        offset: u64,
        data: Option<&[u8]>,
        len: u64,
        base: &dyn Fn(SnapshotStream, u64, &mut [u8]) -> Result<()>,
    ) -> Result<()> {
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        let size = self.size(stream);
        if offset.checked_add(len).is_none_or(|e| e > size) {
            return Err(Error::OutOfRange {
                what: "write",
                offset,
                len,
                size,
            });
        }
        if len == 0 {
            return Ok(());
        }
        let cs = self.chunk_size();
        let mut w = self.w.lock().map_err(lock_err)?;
        let first = offset / cs;
        let last = (offset + len - 1) / cs;
        let mut out = Vec::with_capacity(((last - first + 1) * (cs + 80)) as usize);
        let mut placed = Vec::with_capacity((last - first + 1) as usize);
        let mut seq = w.seq;
        let mut pos = w.end;
        for c in first..=last {
            let cstart = c * cs;
            let clen = (size - cstart).min(cs);
            let from = cstart.max(offset);
            let to = (cstart + clen).min(offset + len);
            let whole = from == cstart && to == cstart + clen;
            let rec_start = out.len();
            if whole && data.is_none() {
                let r = RecordHeader {
                    kind: RecordKind::Zero,
                    stream: stream.id(),
                    seq,
                    offset: cstart,
                    length: clen as u32,
                    stored_len: 0,
                    nonce: [0; 12],
                    data_crc: 0,
                };
                out.extend_from_slice(&r.encode());
            } else {
                let mut chunk = vec![0u8; clen as usize];
                if !whole {
                    base(stream, cstart, &mut chunk)?;
                    self.patch(stream, cstart, &mut chunk)?;
                }
                let dst = &mut chunk[(from - cstart) as usize..(to - cstart) as usize];
                match data {
                    Some(d) => {
                        dst.copy_from_slice(&d[(from - offset) as usize..(to - offset) as usize])
                    }
                    None => dst.fill(0),
                }
                let mut nonce = [0u8; 12];
                match &self.cipher {
                    #[cfg(feature = "encryption")]
                    Some(ci) => {
                        nonce = ci
                            .seal(stream.id(), seq, cstart, &mut chunk)
                            .map_err(|e| Error::io("sealing an overlay record", e))?;
                    }
                    #[allow(unreachable_patterns)]
                    _ => {}
                }
                let r = RecordHeader {
                    kind: RecordKind::Data,
                    stream: stream.id(),
                    seq,
                    offset: cstart,
                    length: clen as u32,
                    stored_len: chunk.len() as u32,
                    nonce,
                    data_crc: crc32fast::hash(&chunk),
                };
                out.extend_from_slice(&r.encode());
                out.extend_from_slice(&chunk);
            }
            placed.push((c, Loc { pos }));
            pos += (out.len() - rec_start) as u64;
            seq += 1;
        }
        self.file
            .write_all_at(&out, w.end)
            .map_err(|e| Error::io(format!("writing overlay {}", self.path.display()), e))?;
        w.end = pos;
        w.seq = seq;
        w.dirty = true;
        let mut map = self.map.write().map_err(lock_err)?;
        for (c, loc) in placed {
            map.insert((stream.id(), c), loc);
        }
        Ok(())
    }

    /// Makes every write so far durable: fdatasync, then a Sync record marking the point.
    pub fn sync(&self) -> Result<()> {
        if !self.writable {
            return Ok(());
        }
        let mut w = self.w.lock().map_err(lock_err)?;
        if !w.dirty {
            return Ok(());
        }
        let name = self.path.display().to_string();
        self.file
            .sync_data()
            .map_err(|e| Error::io(format!("fsync overlay {name}"), e))?;
        let r = RecordHeader {
            kind: RecordKind::Sync,
            stream: 0,
            seq: w.seq,
            offset: 0,
            length: 0,
            stored_len: 0,
            nonce: [0; 12],
            data_crc: 0,
        };
        self.file
            .write_all_at(&r.encode(), w.end)
            .map_err(|e| Error::io(format!("writing overlay {name}"), e))?;
        w.end += RECORD_HEADER_SIZE as u64;
        w.seq += 1;
        w.dirty = false;
        Ok(())
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = self.sync();
    }
}
