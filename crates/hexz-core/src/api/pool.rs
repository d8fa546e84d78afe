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

use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};
use std::sync::Once;

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

thread_local! {
    /// Set while [`decode_on_this_thread`] runs: reads decode on the calling thread.
    static ON_CALLER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Batches this thread has handed to the decode pool.
    static HANDOFFS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many batches of blocks the calling thread has handed to the decode pool so far: a
/// diagnostic (and what tests check [`decode_on_this_thread`] with).
pub fn decode_pool_handoffs() -> u64 {
    HANDOFFS.with(|c| c.get())
}

/// Runs `f` with every read it makes decoded on the calling thread, never handed to the
/// decode pool. For callers that are themselves one of several threads reading ahead in
/// parallel (a mount's read-ahead workers): each hand-off to the pool costs two wake-ups,
/// and those threads already keep the cores busy.
pub fn decode_on_this_thread<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            ON_CALLER.with(|c| c.set(self.0));
        }
    }
    let _reset = Reset(ON_CALLER.with(|c| c.replace(true)));
    f()
}

/// Whether the calling thread is inside [`decode_on_this_thread`].
pub(crate) fn decodes_on_caller() -> bool {
    ON_CALLER.with(|c| c.get())
}

/// Decode threads of pools built from now on in this process (0: one per core).
static DECODE_THREADS: AtomicUsize = AtomicUsize::new(0);
/// IO threads of pools built from now on in this process (0: [`IO_THREADS`]).
static IO_THREAD_COUNT: AtomicUsize = AtomicUsize::new(0);

/// Sizes the pools this process builds from now on: `decode` threads (0: one per core) and
/// `io` threads (0: the default of 6). Pools already built in this process keep their size,
/// so call it before the first read; a forked child builds its own pools and so follows a
/// call made in the child. The Python bindings call it in DataLoader worker processes, where
/// N workers each starting a thread per core would oversubscribe the machine.
pub fn set_process_threads(decode: usize, io: usize) {
    DECODE_THREADS.store(decode, Ordering::Release);
    IO_THREAD_COUNT.store(io, Ordering::Release);
}

/// This process's id, cached (0: not known yet, or cleared in a forked child).
static PID: AtomicU32 = AtomicU32::new(0);

extern "C" fn forget_pid() {
    PID.store(0, Ordering::Relaxed);
}

/// The id of the calling process, as `std::process::id()`, without a system call per use:
/// glibc no longer caches `getpid`, and the read path asks per call and per block (to tell a
/// forked child from its parent), which cost ~5% of a batched read of cached data. The id is
/// cached on first use and cleared in a child by a `pthread_atfork` handler registered then,
/// so after `fork(2)` (including Python's `os.fork` and multiprocessing's fork and
/// forkserver) the child sees its own id. A child made by a raw `clone` that skips the fork
/// handlers and then goes on without `exec` is not supported.
pub fn process_id() -> u32 {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: registers a handler that only stores to an atomic (async-signal-safe).
        // If registration fails the cache is never used (see below).
        if unsafe { libc::pthread_atfork(None, None, Some(forget_pid)) } != 0 {
            PID.store(u32::MAX, Ordering::Relaxed);
        }
    });
    match PID.load(Ordering::Relaxed) {
        0 => {
            let p = std::process::id();
            // Stored only if still unset, so a concurrent fork's clearing is not undone
            // with a stale id by this thread in the parent (whose id it is anyway).
            let _ = PID.compare_exchange(0, p, Ordering::Relaxed, Ordering::Relaxed);
            p
        }
        u32::MAX => std::process::id(),
        p => p,
    }
}

/// The pools of this process, built on first use (and again in a forked child).
pub(crate) fn pools() -> &'static Pools {
    let pid = process_id();
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
        let n = match DECODE_THREADS.load(Ordering::Acquire) {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let io_threads = match IO_THREAD_COUNT.load(Ordering::Acquire) {
            0 => IO_THREADS,
            n => n,
        };
        let decode = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("hexz-decode-{i}"))
            .build()
            .ok();
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let mut started = 0;
        for i in 0..io_threads {
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

    /// Threads of the decode pool (1 when it could not be made).
    pub(crate) fn decode_threads(&self) -> usize {
        self.decode
            .as_ref()
            .map_or(1, rayon::ThreadPool::current_num_threads)
    }

    /// Runs `f` on the decode pool (on the calling thread when the pool could not be made).
    pub(crate) fn decode<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        HANDOFFS.with(|c| c.set(c.get() + 1));
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
