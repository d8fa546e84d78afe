//! Moving whole archives between local disk and remote stores: [`pull`] downloads and
//! verifies, [`push`] uploads (S3 multipart for large archives, so the object appears only
//! when complete), both optionally with the thin snapshot's parent chain beside it.
//!
//! A thin child records its parent by a path relative to itself; both directions keep that
//! layout: each ancestor goes to the location its child names, resolved against the child's
//! own location ([`crate::store::location::sibling_location`]).

use super::atomic::AtomicFile;
use crate::algo::encryption::Password;
use crate::api::{File, OpenOptions};
use crate::error::{Error, Result};
use crate::format::index::META_PARENT_PATH;
use crate::store::location::sibling_location;
use crate::store::{open_location, Location, ReadRequest, RemoteOptions, StorageBackend};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Bytes of one range of a download; several are asked for in one batch.
const RANGE: u64 = 8 << 20;
/// Ranges per batch (the remote backend fetches them in parallel).
const RANGES_PER_BATCH: usize = 4;

/// Progress callback of a transfer: (archive name, bytes done, bytes total).
pub type TransferProgress<'a> = dyn Fn(&str, u64, u64) + Sync + 'a;

/// How to transfer.
#[derive(Default)]
pub struct TransferOptions<'a> {
    /// Remote options (timeouts, restricted addresses). The disk cache is not used.
    pub remote: RemoteOptions,
    /// Also transfer a thin snapshot's ancestors, each to the location its child records.
    pub with_parents: bool,
    /// Password of an encrypted archive: needed to read the parent path of an encrypted thin
    /// child, and by [`pull`] to verify the blocks.
    pub password: Option<Password>,
    /// Called with (bytes done, bytes total) of the archive being transferred.
    pub progress: Option<&'a TransferProgress<'a>>,
    /// Set by the caller (e.g. on Ctrl-C) to stop: the transfer fails cleanly, leaving no
    /// partial file, object or multipart upload behind.
    pub cancel: Option<&'static AtomicBool>,
}

/// One archive moved.
#[derive(Debug, Clone)]
pub struct Transferred {
    /// Where it came from (path or URL).
    pub from: String,
    /// Where it went (path or URL).
    pub to: String,
    /// Its size.
    pub bytes: u64,
}

impl TransferOptions<'_> {
    fn check_cancel(&self) -> Result<()> {
        if self.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(Error::Io {
                context: "transfer cancelled".into(),
                err: std::io::Error::from(std::io::ErrorKind::Interrupted),
            });
        }
        Ok(())
    }

    fn open_options(&self) -> OpenOptions {
        OpenOptions {
            password: self.password.clone(),
            remote: RemoteOptions {
                cache_dir: None,
                ..self.remote.clone()
            },
            cache_bytes: 0,
            read_ahead: 0,
            ..OpenOptions::default()
        }
    }
}

/// The recorded parent path of `f`, if it is a thin snapshot.
fn parent_path(f: &File) -> Result<Option<String>> {
    if f.parent().is_none() {
        return Ok(None);
    }
    let p = f.master().meta(META_PARENT_PATH).ok_or_else(|| {
        Error::corrupt(
            format!("thin snapshot {}", f.describe()),
            "no parent path recorded",
        )
    })?;
    String::from_utf8(p.to_vec())
        .map(Some)
        .map_err(|_| Error::corrupt("master index", "parent path is not UTF-8"))
}

/// `(source, destination)` of `f` and, with `with_parents`, of each ancestor, child first:
/// each ancestor goes where its child's recorded path points from the child's destination.
fn plan(f: &File, dest: &str, with_parents: bool) -> Result<Vec<(String, String)>> {
    let mut out = vec![(f.describe(), dest.to_string())];
    if !with_parents {
        return Ok(out);
    }
    let mut cur = f.clone();
    let mut cur_dest = dest.to_string();
    while let Some(rel) = parent_path(&cur)? {
        let Some(p) = cur.parent().cloned() else {
            break;
        };
        cur_dest = sibling_location(&cur_dest, &rel);
        out.push((p.describe(), cur_dest.clone()));
        cur = p;
    }
    Ok(out)
}

/// Downloads the archive at `url` to `output` (through a temporary file, renamed only once
/// the download is complete and verified), with its parent chain when asked. Ancestors are
/// downloaded and verified first, so no child ever sits without its parents.
pub fn pull(url: &str, output: &Path, opts: &TransferOptions<'_>) -> Result<Vec<Transferred>> {
    if !Location::parse(url)?.is_remote() {
        return Err(Error::InvalidArgument(format!(
            "{url} is not a URL (pull downloads http(s):// and s3:// archives)"
        )));
    }
    let out_str = output.to_str().ok_or_else(|| {
        Error::InvalidArgument(format!("{} is not a UTF-8 path", output.display()))
    })?;
    // Opening the remote archive checks its structure and its whole chain up front.
    let remote = File::open_location(url, opts.open_options())?;
    let steps = plan(&remote, out_str, opts.with_parents)?;
    let mut done = Vec::new();
    for (i, (from, to)) in steps.iter().enumerate().rev() {
        let to_path = PathBuf::from(to);
        let backend = open_location(from, &opts.open_options().remote, false)?;
        let tmp = download(backend.as_ref(), &to_path, opts)?;
        // Verify the temporary copy: with its parent chain already pulled beside it, or,
        // for a child pulled alone, with the remote parent.
        let mut vo = OpenOptions {
            password: opts.password.clone(),
            cache_bytes: 16 << 20,
            ..OpenOptions::default()
        };
        if i == steps.len() - 1 {
            // The deepest archive pulled: its parent (if any) stays remote.
            vo.parent = nth_parent(&remote, i).parent().cloned();
        } else {
            // Its parent was pulled (and verified) just before, beside it: open it by its
            // final path, since the unnamed temporary copy has no directory to look in.
            vo.parent = Some(File::open_with(
                &steps[i + 1].1,
                OpenOptions {
                    password: opts.password.clone(),
                    ..OpenOptions::default()
                },
            )?);
        }
        let f = File::open_with(tmp.temp_path(), vo).map_err(|e| {
            Error::InvalidArgument(format!("the downloaded copy of {from} does not open: {e}"))
        })?;
        if f.header().archive_id != nth_parent(&remote, i).header().archive_id {
            return Err(Error::ArchiveChanged {
                url: from.clone(),
                detail: "the archive downloaded is not the one opened (another archive id)".into(),
            });
        }
        super::verify::verify(&f, None).map_err(|e| match e {
            Error::CorruptBlock { .. } | Error::CorruptStructure { .. } => {
                Error::corrupt(format!("downloaded copy of {from}"), e)
            }
            e => e,
        })?;
        drop(f);
        let bytes = backend.len();
        tmp.commit()?;
        done.push(Transferred {
            from: from.clone(),
            to: to.clone(),
            bytes,
        });
    }
    Ok(done)
}

fn nth_parent(f: &File, n: usize) -> &File {
    let mut cur = f;
    for _ in 0..n {
        match cur.parent() {
            Some(p) => cur = p,
            None => break,
        }
    }
    cur
}

/// Copies every byte of `backend` into a new temporary file beside `dest`.
fn download(
    backend: &dyn StorageBackend,
    dest: &Path,
    opts: &TransferOptions<'_>,
) -> Result<AtomicFile> {
    if let Some(d) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d)
            .map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
    }
    let mut out = AtomicFile::create(dest)?;
    let len = backend.len();
    let what = backend.describe();
    let mut bufs: Vec<Vec<u8>> = vec![Vec::new(); RANGES_PER_BATCH];
    let mut pos = 0u64;
    while pos < len {
        opts.check_cancel()?;
        let mut reqs = Vec::new();
        let mut at = pos;
        for b in bufs.iter_mut() {
            if at >= len {
                break;
            }
            let n = (len - at).min(RANGE) as usize;
            b.resize(n, 0);
            reqs.push(ReadRequest { offset: at, buf: b });
            at += n as u64;
        }
        backend.read_batch(&mut reqs)?;
        let file = out.file();
        for r in &reqs {
            file.write_all_at(r.buf, r.offset)
                .map_err(|e| Error::io(format!("writing {}", dest.display()), e))?;
        }
        pos = at;
        if let Some(p) = opts.progress {
            p(&what, pos, len);
        }
    }
    Ok(out)
}

/// Uploads the local archive `archive` to `url` (an `s3://` URL), with its parent chain
/// beside it when asked. Ancestors go first, so a child never appears without its parents;
/// each object appears only once completely uploaded.
pub fn push(archive: &Path, url: &str, opts: &TransferOptions<'_>) -> Result<Vec<Transferred>> {
    let loc = Location::parse(url)?;
    if !matches!(loc, Location::S3 { .. }) {
        return Err(Error::InvalidArgument(format!(
            "{url}: push uploads to s3://BUCKET/KEY URLs"
        )));
    }
    // Check the archive (and with --with-parents its chain) before anything is uploaded.
    let steps = if opts.with_parents {
        let f = File::open_with(
            archive,
            OpenOptions {
                password: opts.password.clone(),
                cache_bytes: 0,
                read_ahead: 0,
                ..OpenOptions::default()
            },
        )?;
        plan(&f, url, true)?
    } else {
        crate::api::open::read_header(&crate::store::local::FileBackend::new(archive)?)?;
        vec![(archive.to_string_lossy().into_owned(), url.to_string())]
    };
    let mut done = Vec::new();
    for (from, to) in steps.iter().rev() {
        opts.check_cancel()?;
        let bytes = upload_file(Path::new(from), to, opts)?;
        done.push(Transferred {
            from: from.clone(),
            to: to.clone(),
            bytes,
        });
    }
    Ok(done)
}

/// Uploads one local file to an `s3://` URL; returns its size.
#[cfg(not(feature = "s3"))]
fn upload_file(path: &Path, url: &str, opts: &TransferOptions<'_>) -> Result<u64> {
    let _ = (path, opts);
    Err(Error::Unsupported(format!(
        "{url}: this build of hexz has no S3 support (cargo feature `s3`)"
    )))
}

/// Uploads one local file to an `s3://` URL; returns its size. Small files go up in one PUT;
/// larger ones as a multipart upload with a few parts in flight, completed only when every
/// part is stored (dropping the upload on any error or cancel aborts it).
#[cfg(feature = "s3")]
fn upload_file(path: &Path, url: &str, opts: &TransferOptions<'_>) -> Result<u64> {
    use std::sync::atomic::AtomicU64;
    let (client, key) = s3::client_for(url, opts)?;
    let file = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))?
        .len();
    let read = |off: u64, n: usize| -> Result<Vec<u8>> {
        let mut b = vec![0u8; n];
        file.read_exact_at(&mut b, off)
            .map_err(|e| Error::io(format!("reading {} at {off}", path.display()), e))?;
        Ok(b)
    };
    let what = path.display().to_string();
    if len <= s3::PART_SIZE {
        let data = read(0, len as usize)?;
        opts.check_cancel()?;
        client.put_object(&key, &data)?;
        if let Some(p) = opts.progress {
            p(&what, len, len);
        }
        return Ok(len);
    }
    let part = s3::PART_SIZE.max(len.div_ceil(u64::from(crate::store::s3::MAX_PARTS)));
    let parts = len.div_ceil(part);
    let upload = client.create_multipart_upload(&key)?;
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let first_err = std::sync::Mutex::new(None::<Error>);
    std::thread::scope(|sc| {
        for _ in 0..s3::UPLOAD_THREADS {
            sc.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= parts || failed.load(Ordering::SeqCst) {
                    return;
                }
                let off = i * part;
                let n = (len - off).min(part) as usize;
                let r = opts
                    .check_cancel()
                    .and_then(|_| read(off, n))
                    .and_then(|b| upload.upload_part((i + 1) as u16, &b));
                if let Err(e) = r {
                    failed.store(true, Ordering::SeqCst);
                    first_err
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e);
                    return;
                }
                let d = done.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
                if let Some(p) = opts.progress {
                    p(&what, d, len);
                }
            });
        }
    });
    if let Some(e) = first_err.into_inner().unwrap_or_else(|p| p.into_inner()) {
        drop(upload); // aborts
        return Err(e);
    }
    opts.check_cancel()?;
    upload.complete()?;
    Ok(len)
}

/// Packs `input` straight into the object at `url` (`s3://`), holding a bounded buffer: the
/// archive streams up as a multipart upload whose part 1, holding the header that is known
/// only at the end, is uploaded last (docs/FORMAT.md, "Streaming upload"). A failure or
/// cancel aborts the upload: no object, no orphaned parts.
pub fn pack_to_url(
    input: super::PackInput,
    url: &str,
    opts: &super::PackOptions,
    topts: &TransferOptions<'_>,
    progress: Option<&(dyn Fn(&super::PackProgress) + Sync)>,
) -> Result<(super::PackStats, Transferred)> {
    let stats = upload_packed(url, topts, |sink| {
        super::pack::pack_to(input, sink, opts, progress)
    })?;
    let t = Transferred {
        from: "pack".into(),
        to: url.to_string(),
        bytes: stats.archive_bytes,
    };
    Ok((stats, t))
}

/// Runs `pack` with a sink that streams the archive into the object at `url` (`s3://`),
/// as [`pack_to_url`] does: for the tree packer ([`super::tree::pack_tree_to`]) and any
/// other writer of a whole archive. `pack` must finish the sink (every packer does); if it
/// fails, or `topts.cancel` is set, the upload is aborted and no object appears.
#[cfg(feature = "s3")]
pub fn upload_packed<T>(
    url: &str,
    topts: &TransferOptions<'_>,
    pack: impl FnOnce(&mut dyn super::pack::PackSink) -> Result<T>,
) -> Result<T> {
    let (client, key) = s3::client_for(url, topts)?;
    let mut sink = s3::StreamingUpload::new(client, key, topts.cancel);
    pack(&mut sink)
}

/// Without the `s3` feature there is nowhere to stream to.
#[cfg(not(feature = "s3"))]
pub fn upload_packed<T>(
    url: &str,
    _topts: &TransferOptions<'_>,
    _pack: impl FnOnce(&mut dyn super::pack::PackSink) -> Result<T>,
) -> Result<T> {
    Err(Error::Unsupported(format!(
        "{url}: this build of hexz has no S3 support (cargo feature `s3`)"
    )))
}

#[cfg(feature = "s3")]
mod s3 {
    use super::TransferOptions;
    use crate::error::{Error, Result};
    use crate::store::s3::{MultipartUpload, S3Client, S3Config, MAX_PARTS, MIN_PART_SIZE};
    use crate::store::Location;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    /// Size of an upload part (and the largest archive sent with one PUT): the grid remote
    /// readers align their requests to.
    pub const PART_SIZE: u64 = crate::store::REMOTE_ALIGN;
    /// Parts in flight at once.
    pub const UPLOAD_THREADS: usize = 4;
    const _: () = assert!(PART_SIZE >= MIN_PART_SIZE as u64);

    /// The client and key of an `s3://` URL.
    pub fn client_for(url: &str, opts: &TransferOptions<'_>) -> Result<(Arc<S3Client>, String)> {
        match Location::parse(url)? {
            Location::S3 { bucket, key } => {
                let config = S3Config::from_env()?;
                Ok((
                    Arc::new(S3Client::new(&bucket, &config, &opts.remote)?),
                    key,
                ))
            }
            _ => Err(Error::InvalidArgument(format!(
                "{url}: uploads go to s3://BUCKET/KEY URLs"
            ))),
        }
    }

    /// Size of part `n` (1-based): 8 MiB, doubling every 2,000 parts so that the 10,000
    /// parts S3 allows hold about 500 GB.
    fn part_size(n: u16) -> usize {
        (PART_SIZE as usize) << (usize::from(n.saturating_sub(1)) / 2000).min(6)
    }

    /// A [`PackSink`](crate::ops::pack::PackSink) streaming into one S3 object: part 1 (which
    /// holds the header) is kept in memory and uploaded last, every later part is uploaded
    /// as soon as it fills by two uploader threads (one more part may wait for them), so
    /// memory stays bounded whatever the archive size. Dropped unfinished, it aborts the
    /// multipart upload.
    pub struct StreamingUpload {
        client: Arc<S3Client>,
        key: String,
        cancel: Option<&'static AtomicBool>,
        /// Part 1, held until the header is known.
        first: Vec<u8>,
        /// The part being filled (number `next`, 2 or more once `first` is full).
        cur: Vec<u8>,
        next: u16,
        upload: Option<Arc<MultipartUpload>>,
        tx: Option<crossbeam_channel::Sender<(u16, Vec<u8>)>>,
        workers: Vec<std::thread::JoinHandle<()>>,
        error: Arc<Mutex<Option<Error>>>,
    }

    impl StreamingUpload {
        /// A sink for `key` through `client`; `cancel` stops it (the upload is aborted).
        pub fn new(
            client: Arc<S3Client>,
            key: String,
            cancel: Option<&'static AtomicBool>,
        ) -> StreamingUpload {
            StreamingUpload {
                client,
                key,
                cancel,
                first: Vec::new(),
                cur: Vec::new(),
                next: 1,
                upload: None,
                tx: None,
                workers: Vec::new(),
                error: Arc::new(Mutex::new(None)),
            }
        }

        fn take_error(&self) -> Result<()> {
            match self.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
                Some(e) => Err(e),
                None => Ok(()),
            }
        }

        /// Hands part `n` to the uploaders (starting the upload and its threads on first use).
        fn send(&mut self, n: u16, part: Vec<u8>) -> Result<()> {
            self.take_error()?;
            if self.upload.is_none() {
                let up = Arc::new(self.client.create_multipart_upload(&self.key)?);
                let (tx, rx) = crossbeam_channel::bounded::<(u16, Vec<u8>)>(1);
                for _ in 0..2 {
                    let (rx, up, err) = (rx.clone(), up.clone(), self.error.clone());
                    self.workers.push(std::thread::spawn(move || {
                        for (n, data) in rx {
                            if err.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
                                continue;
                            }
                            if let Err(e) = up.upload_part(n, &data) {
                                err.lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .get_or_insert(e);
                            }
                        }
                    }));
                }
                self.upload = Some(up);
                self.tx = Some(tx);
            }
            let tx = self
                .tx
                .as_ref()
                .ok_or_else(|| Error::InvalidArgument("upload already finished".into()))?;
            tx.send((n, part)).map_err(|_| {
                Error::InvalidArgument(format!(
                    "{}: the upload threads stopped",
                    self.client.display(&self.key)
                ))
            })
        }

        /// Closes the channel and waits for the uploaders.
        fn join(&mut self) {
            drop(self.tx.take());
            for w in std::mem::take(&mut self.workers) {
                let _ = w.join();
            }
        }
    }

    impl crate::ops::pack::PackSink for StreamingUpload {
        fn append(&mut self, mut buf: &[u8]) -> Result<()> {
            if self.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(Error::Io {
                    context: format!("uploading {}", self.client.display(&self.key)),
                    err: std::io::Error::new(std::io::ErrorKind::Interrupted, "cancelled"),
                });
            }
            while !buf.is_empty() {
                if self.next == 1 {
                    let take = (part_size(1) - self.first.len()).min(buf.len());
                    self.first.extend_from_slice(&buf[..take]);
                    buf = &buf[take..];
                    if self.first.len() == part_size(1) {
                        self.next = 2;
                    }
                    continue;
                }
                let size = part_size(self.next);
                let take = (size - self.cur.len()).min(buf.len());
                self.cur.extend_from_slice(&buf[..take]);
                buf = &buf[take..];
                if self.cur.len() == size {
                    let n = self.next;
                    if n >= MAX_PARTS {
                        return Err(Error::InvalidArgument(format!(
                            "{}: the archive needs more than {MAX_PARTS} upload parts",
                            self.client.display(&self.key)
                        )));
                    }
                    let part = std::mem::take(&mut self.cur);
                    self.send(n, part)?;
                    self.next = n + 1;
                }
            }
            Ok(())
        }

        fn write_header(&mut self, header: &[u8]) -> Result<()> {
            if self.first.len() < header.len() {
                return Err(Error::InvalidArgument(
                    "the header was written before the archive's first bytes".into(),
                ));
            }
            self.first[..header.len()].copy_from_slice(header);
            Ok(())
        }

        fn finish(&mut self) -> Result<()> {
            if self.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(Error::Io {
                    context: format!("uploading {}", self.client.display(&self.key)),
                    err: std::io::Error::new(std::io::ErrorKind::Interrupted, "cancelled"),
                });
            }
            if self.upload.is_none() && self.cur.is_empty() {
                // Small enough for one PUT: the object appears whole or not at all.
                self.client.put_object(&self.key, &self.first)?;
                self.first = Vec::new();
                return Ok(());
            }
            if !self.cur.is_empty() {
                let (n, part) = (self.next, std::mem::take(&mut self.cur));
                self.send(n, part)?;
            }
            self.join();
            self.take_error()?;
            let upload = self
                .upload
                .take()
                .ok_or_else(|| Error::InvalidArgument("upload already finished".into()))?;
            upload.upload_part(1, &self.first)?;
            let upload = Arc::try_unwrap(upload).map_err(|_| {
                Error::InvalidArgument("the upload is still in use at completion".into())
            })?;
            upload.complete()?;
            Ok(())
        }
    }

    impl Drop for StreamingUpload {
        fn drop(&mut self) {
            // Unfinished: stop the uploaders; dropping the last handle aborts the upload.
            self.join();
            self.upload = None;
        }
    }
}
