//! Crate-owned thread pools, created once per process and rebuilt after a `fork`.
//!
//! - The **decode pool** (rayon, one thread per core) checks and decodes blocks. It never
//!   does blocking I/O, so a slow network cannot starve decoding.
//! - The **IO pool** (a few plain threads) runs background fetches: read-ahead issues its
//!   requests there and hands the decoding to the decode pool.
//!
//! Neither is the global rayon pool (an application's own parallel work does not delay
//! reads, and ours does not delay it), and none is created per call.
//!
//! # Fork
//! After `fork` only the forking thread exists in the child: pools inherited from the parent
//! have no threads. (PyTorch's DataLoader forks its workers after the dataset has been
//! read in the parent.) The pools are therefore tagged with the id of the process that built
//! them; a process that finds another id builds its own. The parent's pool objects are leaked
//! in the child on purpose: dropping them would signal threads that do not exist there.

use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

/// Threads of the IO pool: enough requests in flight to fill a link, few enough to stay small.
pub(crate) const IO_THREADS: usize = 6;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The pools of one process.
pub(crate) struct Pools {
    decode: Option<rayon::ThreadPool>,
    io: Option<crossbeam_channel::Sender<Job>>,
}

/// Process id the current pools were built in (0: none yet).
static OWNER: AtomicU32 = AtomicU32::new(0);
/// The current pools (leaked; replaced after a fork).
static CURRENT: AtomicPtr<Pools> = AtomicPtr::new(std::ptr::null_mut());
/// Process id of the thread building pools right now (0: nobody). A value left by another
/// process (the parent forked while building) is stale and taken over.
static BUILDER: AtomicU32 = AtomicU32::new(0);

/// The pools of this process, built on first use (and again in a forked child).
pub(crate) fn pools() -> &'static Pools {
    let pid = std::process::id();
    loop {
        if OWNER.load(Ordering::Acquire) == pid {
            let p = CURRENT.load(Ordering::Acquire);
            // SAFETY: CURRENT is stored before OWNER (Release), and pools are never freed.
            return unsafe { &*p };
        }
        let b = BUILDER.load(Ordering::Acquire);
        if b != pid
            && BUILDER
                .compare_exchange(b, pid, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            if OWNER.load(Ordering::Acquire) != pid {
                let p: &'static mut Pools = Box::leak(Box::new(Pools::build()));
                CURRENT.store(p, Ordering::Release);
                OWNER.store(pid, Ordering::Release);
            }
            BUILDER.store(0, Ordering::Release);
            continue;
        }
        std::thread::yield_now();
    }
}

impl Pools {
    fn build() -> Pools {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        let decode = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("hexz-decode-{i}"))
            .build()
            .ok();
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let mut started = 0;
        for i in 0..IO_THREADS {
            let rx = rx.clone();
            let ok = std::thread::Builder::new()
                .name(format!("hexz-io-{i}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                })
                .is_ok();
            started += ok as usize;
        }
        Pools {
            decode,
            io: (started > 0).then_some(tx),
        }
    }

    /// Runs `f` on the decode pool (on the calling thread when the pool could not be made).
    pub(crate) fn decode<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.decode {
            Some(p) => p.install(f),
            None => f(),
        }
    }

    /// Runs `job` on the IO pool, or on the calling thread when the pool could not be made.
    pub(crate) fn spawn_io(&self, job: impl FnOnce() + Send + 'static) {
        let job: Job = Box::new(job);
        let job = match &self.io {
            Some(tx) => match tx.send(job) {
                Ok(()) => return,
                Err(e) => e.into_inner(),
            },
            None => job,
        };
        job()
    }
}
