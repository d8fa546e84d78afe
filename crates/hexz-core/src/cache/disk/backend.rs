//! [`CachedBackend`]: a remote backend seen through the disk cache, with a few verified
//! chunks in memory; and [`open_cached`], which puts a URL behind it.

use super::*;
use crate::store::ReadRequest;
use std::sync::{Mutex, OnceLock};

/// A remote backend seen through the disk cache: reads are served in whole chunks from
/// memory, then disk, then the remote (fetching every missing chunk of a batch in one
/// batched call, which the remote backend merges and parallelises).
pub struct CachedBackend {
    cache: Arc<DiskCache>,
    url: String,
    key: String,
    len: u64,
    identity: String,
    remote: OnceLock<Arc<dyn StorageBackend>>,
    open_lock: Mutex<()>,
    opener: Opener,
    /// Chunks in memory, each with the cache's write count when its disk entry was last
    /// marked used.
    memory: Mutex<::lru::LruCache<u64, MemoryChunk>>,
}

/// A chunk held in memory and the cache's write count when its disk entry was last marked
/// used.
type MemoryChunk = (Arc<Vec<u8>>, u64);

impl std::fmt::Debug for CachedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedBackend")
            .field("url", &self.url)
            .field("identity", &self.identity)
            .finish()
    }
}

impl CachedBackend {
    /// Opens `url` through `cache`. With a manifest for `url` in the cache, no request is
    /// made now (see the module docs); otherwise `opener` opens the remote backend and its
    /// identity is recorded. A backend without an identity cannot be cached safely and is
    /// returned as it is.
    pub fn open(
        cache: Arc<DiskCache>,
        url: &str,
        opener: Opener,
    ) -> Result<Arc<dyn StorageBackend>> {
        if let Some((len, identity)) = cache.read_manifest(url) {
            return Ok(Arc::new(Self::build(
                cache, url, len, identity, None, opener,
            )));
        }
        let remote = opener(url)?;
        let Some(identity) = remote.identity().filter(|i| !i.is_empty()) else {
            return Ok(remote);
        };
        let len = remote.len();
        cache.write_manifest(url, len, &identity);
        Ok(Arc::new(Self::build(
            cache,
            url,
            len,
            identity,
            Some(remote),
            opener,
        )))
    }

    fn build(
        cache: Arc<DiskCache>,
        url: &str,
        len: u64,
        identity: String,
        remote: Option<Arc<dyn StorageBackend>>,
        opener: Opener,
    ) -> CachedBackend {
        let cell = OnceLock::new();
        if let Some(r) = remote {
            let _ = cell.set(r);
        }
        CachedBackend {
            key: DiskCache::archive_key(url, &identity, len),
            cache,
            url: url.to_string(),
            len,
            identity,
            remote: cell,
            open_lock: Mutex::new(()),
            opener,
            memory: Mutex::new(::lru::LruCache::new(
                std::num::NonZeroUsize::new(MEMORY_CHUNKS).unwrap_or(std::num::NonZeroUsize::MIN),
            )),
        }
    }

    /// The remote backend, opened on first use and checked against the cached identity.
    fn remote(&self) -> Result<&Arc<dyn StorageBackend>> {
        if let Some(r) = self.remote.get() {
            return Ok(r);
        }
        let _g = self.open_lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = self.remote.get() {
            return Ok(r);
        }
        let r = (self.opener)(&self.url)?;
        let now = r.identity();
        if now.as_deref() != Some(self.identity.as_str()) || r.len() != self.len {
            self.cache.forget(&self.url, &self.key);
            return Err(Error::ArchiveChanged {
                url: self.url.clone(),
                detail: format!(
                    "the disk cache holds the version with identity {} ({} bytes), the server \
                     now has {} ({} bytes); the cached copy was dropped, open it again",
                    self.identity,
                    self.len,
                    now.as_deref().unwrap_or("(none)"),
                    r.len()
                ),
            });
        }
        Ok(self.remote.get_or_init(|| r))
    }

    fn chunk_len(&self, idx: u64) -> usize {
        (self.len - idx * CHUNK_SIZE).min(CHUNK_SIZE) as usize
    }

    /// The chunks `idxs` (sorted, distinct), from memory, disk or the remote.
    fn chunks(&self, idxs: &[u64]) -> Result<Vec<Arc<Vec<u8>>>> {
        // A chunk read from memory does not pass through the disk tier, so its entry's
        // recency is refreshed here; only after other entries were added since the last
        // refresh (otherwise the order cannot have changed), so hot chunks cost no syscall.
        let writes = self.cache.writes.load(std::sync::atomic::Ordering::Relaxed);
        let mut stale = Vec::new();
        let mut out: Vec<Option<Arc<Vec<u8>>>> = {
            let mut m = self.memory.lock().unwrap_or_else(|p| p.into_inner());
            idxs.iter()
                .map(|i| {
                    m.get_mut(i).map(|(c, seen)| {
                        if *seen != writes {
                            *seen = writes;
                            stale.push(*i);
                        }
                        c.clone()
                    })
                })
                .collect()
        };
        for i in stale {
            self.cache.touch_entry(&self.key, i);
        }
        let missing: Vec<usize> = (0..idxs.len()).filter(|&i| out[i].is_none()).collect();
        if missing.is_empty() {
            return Ok(out.into_iter().flatten().collect());
        }
        let from_disk = |i: &usize| {
            self.cache
                .read_entry(&self.key, idxs[*i], self.chunk_len(idxs[*i]))
                .map(Arc::new)
        };
        let found: Vec<Option<Arc<Vec<u8>>>> = if missing.len() > 1 {
            missing.par_iter().map(from_disk).collect()
        } else {
            missing.iter().map(from_disk).collect()
        };
        let mut still = Vec::new();
        for (i, f) in missing.into_iter().zip(found) {
            match f {
                Some(c) => out[i] = Some(c),
                None => still.push(i),
            }
        }
        if !still.is_empty() {
            self.fetch(idxs, &still, &mut out, false)?;
        }
        // Every chunk is present now; a gap would shift chunks onto the wrong offsets.
        let out = out
            .into_iter()
            .zip(idxs)
            .map(|(c, i)| {
                c.ok_or_else(|| Error::Remote {
                    backend: "cache",
                    url: self.url.clone(),
                    detail: format!("chunk {i} was neither cached nor fetched"),
                    transient: false,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let writes = self.cache.writes.load(std::sync::atomic::Ordering::Relaxed);
        let mut m = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        for (i, c) in idxs.iter().zip(&out) {
            m.put(*i, (c.clone(), writes));
        }
        Ok(out)
    }

    /// Fetches the chunks `idxs[still]` from the remote, holding their stripe locks so that
    /// other processes wait for this download instead of repeating it. `fresh`: with
    /// [`StorageBackend::refetch`], past anything the remote backend keeps itself.
    fn fetch(
        &self,
        idxs: &[u64],
        still: &[usize],
        out: &mut [Option<Arc<Vec<u8>>>],
        fresh: bool,
    ) -> Result<()> {
        let mut stripes: Vec<(u64, PathBuf)> = still
            .iter()
            .map(|&i| self.cache.stripe_path(&self.key, idxs[i]))
            .collect();
        stripes.sort_by_key(|s| s.0);
        stripes.dedup_by_key(|s| s.0);
        let mut locks = Vec::with_capacity(stripes.len());
        for (_, p) in &stripes {
            locks.push(FileLock::acquire(p)?);
        }
        // Someone else may have fetched them while we waited.
        let mut todo = Vec::new();
        for &i in still {
            match self
                .cache
                .read_entry(&self.key, idxs[i], self.chunk_len(idxs[i]))
            {
                Some(c) => out[i] = Some(Arc::new(c)),
                None => todo.push(i),
            }
        }
        if todo.is_empty() {
            return Ok(());
        }
        let remote = self.remote()?;
        let mut bufs: Vec<Vec<u8>> = todo
            .iter()
            .map(|&i| vec![0u8; self.chunk_len(idxs[i])])
            .collect();
        let mut reqs: Vec<ReadRequest<'_>> = todo
            .iter()
            .zip(bufs.iter_mut())
            .map(|(&i, b)| ReadRequest {
                offset: idxs[i] * CHUNK_SIZE,
                buf: b,
            })
            .collect();
        let fetched = if fresh {
            reqs.iter_mut()
                .try_for_each(|r| remote.refetch(r.offset, r.buf))
        } else {
            remote.read_batch(&mut reqs)
        };
        if let Err(e) = fetched {
            if matches!(e, Error::ArchiveChanged { .. }) {
                self.cache.forget(&self.url, &self.key);
            }
            return Err(e);
        }
        drop(reqs);
        for (&i, b) in todo.iter().zip(bufs) {
            self.cache.write_entry(&self.key, idxs[i], &b);
            out[i] = Some(Arc::new(b));
        }
        drop(locks);
        Ok(())
    }

    /// Reads chunk `idx` from disk straight into the parts of `reqs` that cover it, when
    /// they tile it exactly (no gap, no overlap) and it is not in memory already. `false`
    /// when it was not read that way (the parts may then hold anything: the caller fills
    /// them again).
    fn read_direct(&self, idx: u64, reqs: &mut [ReadRequest<'_>]) -> bool {
        let len = self.chunk_len(idx);
        let (cs, ce) = (idx * CHUNK_SIZE, idx * CHUNK_SIZE + len as u64);
        let mut parts: Vec<(u64, &mut [u8])> = reqs
            .iter_mut()
            .filter_map(|r| {
                let (s, e) = (r.offset.max(cs), (r.offset + r.buf.len() as u64).min(ce));
                (s < e).then(|| {
                    let b = &mut r.buf[(s - r.offset) as usize..(e - r.offset) as usize];
                    (s, b)
                })
            })
            .collect();
        parts.sort_by_key(|p| p.0);
        let mut pos = cs;
        for (o, b) in &parts {
            if *o != pos {
                return false;
            }
            pos += b.len() as u64;
        }
        if pos != ce
            || self
                .memory
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&idx)
        {
            return false;
        }
        let mut bufs: Vec<&mut [u8]> = parts.into_iter().map(|(_, b)| b).collect();
        self.cache.read_entry_into(&self.key, idx, len, &mut bufs)
    }

    fn check_range(&self, offset: u64, len: usize) -> Result<()> {
        if offset
            .checked_add(len as u64)
            .is_none_or(|end| end > self.len)
        {
            return Err(Error::Remote {
                backend: "cache",
                url: self.url.clone(),
                detail: format!(
                    "read of {len} bytes at offset {offset} is past the end of the {}-byte archive",
                    self.len
                ),
                transient: false,
            });
        }
        Ok(())
    }
}

impl StorageBackend for CachedBackend {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.read_batch(&mut [ReadRequest { offset, buf }])
    }

    fn read_batch(&self, reqs: &mut [ReadRequest<'_>]) -> Result<()> {
        let mut idxs = Vec::new();
        for r in reqs.iter() {
            self.check_range(r.offset, r.buf.len())?;
            if r.buf.is_empty() {
                continue;
            }
            let first = r.offset / CHUNK_SIZE;
            let last = (r.offset + r.buf.len() as u64 - 1) / CHUNK_SIZE;
            idxs.extend(first..=last);
        }
        idxs.sort_unstable();
        idxs.dedup();
        // Chunks on disk that the requests tile exactly (a sequential pass: consecutive
        // blocks) are read straight into them; the rest go through memory.
        idxs.retain(|&idx| !self.read_direct(idx, reqs));
        for group in idxs.chunks(GROUP) {
            let chunks = self.chunks(group)?;
            copy_out(group, &chunks, reqs);
        }
        Ok(())
    }

    /// Drops the chunks holding the range from memory and disk, then reads it through the
    /// cache again: the chunks are fetched afresh (once, whichever process gets there first)
    /// and stored again.
    fn refetch(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check_range(offset, buf.len())?;
        if buf.is_empty() {
            return Ok(());
        }
        let (first, last) = (
            offset / CHUNK_SIZE,
            (offset + buf.len() as u64 - 1) / CHUNK_SIZE,
        );
        let idxs: Vec<u64> = (first..=last).collect();
        {
            let mut m = self.memory.lock().unwrap_or_else(|p| p.into_inner());
            for i in &idxs {
                m.pop(i);
            }
        }
        for &i in &idxs {
            self.cache
                .remove_entry(&self.cache.entry_path(&self.key, i))?;
        }
        let still: Vec<usize> = (0..idxs.len()).collect();
        let mut out = vec![None; idxs.len()];
        self.fetch(&idxs, &still, &mut out, true)?;
        let chunks: Vec<Arc<Vec<u8>>> = out.into_iter().flatten().collect();
        if chunks.len() != idxs.len() {
            return Err(Error::Remote {
                backend: "cache",
                url: self.url.clone(),
                detail: format!("chunks {first}-{last} were not fetched again"),
                transient: false,
            });
        }
        copy_out(&idxs, &chunks, &mut [ReadRequest { offset, buf }]);
        Ok(())
    }

    fn identity(&self) -> Option<String> {
        Some(self.identity.clone())
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        self.url.clone()
    }

    fn open_relative(&self, path: &str) -> Result<Arc<dyn StorageBackend>> {
        let url = crate::store::location::sibling_location(&self.url, path);
        CachedBackend::open(self.cache.clone(), &url, self.opener.clone())
    }
}

/// Copies the parts of `chunks` (numbered `idxs`, sorted) that the requests cover into them.
fn copy_out(idxs: &[u64], chunks: &[Arc<Vec<u8>>], reqs: &mut [ReadRequest<'_>]) {
    let (lo, hi) = (
        idxs[0] * CHUNK_SIZE,
        (idxs[idxs.len() - 1] + 1) * CHUNK_SIZE,
    );
    for r in reqs.iter_mut() {
        let (start, end) = (r.offset, r.offset + r.buf.len() as u64);
        if end <= lo || start >= hi {
            continue;
        }
        for (idx, c) in idxs.iter().zip(chunks) {
            let (cs, ce) = (idx * CHUNK_SIZE, idx * CHUNK_SIZE + c.len() as u64);
            let (s, e) = (start.max(cs), end.min(ce));
            if s < e {
                r.buf[(s - start) as usize..(e - start) as usize]
                    .copy_from_slice(&c[(s - cs) as usize..(e - cs) as usize]);
            }
        }
    }
}

/// Opens `location` through the disk cache when it is a URL and `options` name a cache
/// directory; `None` otherwise (the caller opens it directly).
pub fn open_cached(
    location: &str,
    options: &crate::store::RemoteOptions,
    mmap: bool,
) -> Result<Option<Arc<dyn StorageBackend>>> {
    let Some(dir) = &options.cache_dir else {
        return Ok(None);
    };
    if !crate::store::Location::parse(location)?.is_remote() {
        return Ok(None);
    }
    let cache = DiskCache::open(dir, options.cache_size)?;
    let direct = crate::store::RemoteOptions {
        cache_dir: None,
        ..options.clone()
    };
    let opener: Opener = Arc::new(move |l: &str| crate::store::open_location(l, &direct, mmap));
    CachedBackend::open(cache, location, opener).map(Some)
}
