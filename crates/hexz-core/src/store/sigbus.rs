//! Surviving a mapped archive that shrinks: `SIGBUS` becomes an error, not a crash.
//!
//! When a mapped file is truncated (by another program, or rewritten in place with a
//! shorter length), touching a mapped page past the new end raises `SIGBUS`, which kills
//! the process. [`MmapBackend`](super::local::MmapBackend) registers each mapping here; a
//! process-wide `SIGBUS` handler that finds the faulting address inside a registered
//! mapping replaces that page with an anonymous zero page (`mmap` with `MAP_FIXED`),
//! records the lowest faulted address of the mapping and returns, so the interrupted read finishes on zeros.
//! The reader then reports an error: zeros never pass a stored block's CRC32, and the
//! backend turns further reads into an I/O error naming the archive ("shrank while mapped").
//! Faults outside registered mappings go to the handler that was installed before (Rust's
//! stack-overflow handler, or the default action), so other crashes stay crashes.
//!
//! Everything the handler touches is lock-free (atomics in a fixed table) and it calls only
//! `mmap(2)` and `sigaction(2)`, plain system calls.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Most mappings tracked at once; further ones are mapped without protection (a fault
/// there kills the process, as it would without this module).
const SLOTS: usize = 256;

struct Slot {
    start: AtomicUsize,
    len: AtomicUsize,
    /// Lowest faulted address (`usize::MAX`: none yet).
    first_fault: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    first_fault: AtomicUsize::new(usize::MAX),
};
static TABLE: [Slot; SLOTS] = [EMPTY; SLOTS];
static PAGE: AtomicUsize = AtomicUsize::new(4096);

/// The `SIGBUS` action in place before ours (to chain to).
struct Prev(libc::sigaction);
// SAFETY: a plain C struct of function pointers and flags, written once before use.
unsafe impl Sync for Prev {}
unsafe impl Send for Prev {}
static PREVIOUS: OnceLock<Option<Prev>> = OnceLock::new();

/// A registered mapping; unregisters on drop (drop it before unmapping).
#[derive(Debug)]
pub(crate) struct Guard {
    slot: Option<usize>,
}

impl Guard {
    /// Whether a page of this mapping faulted (the file shrank under it).
    pub(crate) fn faulted(&self) -> bool {
        self.first_fault() != usize::MAX
    }

    /// Whether a page at or below byte `end` of the mapping faulted: bytes read from below
    /// the first faulted page are the file's own.
    pub(crate) fn faulted_before(&self, end: usize) -> bool {
        let Some(i) = self.slot else {
            return false;
        };
        let start = TABLE[i].start.load(Ordering::SeqCst);
        self.first_fault() < start.saturating_add(end)
    }

    fn first_fault(&self) -> usize {
        self.slot
            .map_or(usize::MAX, |i| TABLE[i].first_fault.load(Ordering::SeqCst))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            TABLE[i].len.store(0, Ordering::SeqCst);
            TABLE[i].start.store(0, Ordering::SeqCst);
        }
    }
}

/// Registers the mapping `[ptr, ptr + len)`, installing the handler on first use.
pub(crate) fn register(ptr: *const u8, len: usize) -> Guard {
    let installed = PREVIOUS.get_or_init(install).is_some();
    if !installed || len == 0 {
        return Guard { slot: None };
    }
    for (i, s) in TABLE.iter().enumerate() {
        if s.start
            .compare_exchange(0, ptr as usize, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            s.first_fault.store(usize::MAX, Ordering::SeqCst);
            s.len.store(len, Ordering::SeqCst);
            return Guard { slot: Some(i) };
        }
    }
    Guard { slot: None }
}

fn install() -> Option<Prev> {
    // SAFETY: sysconf and sigaction with valid pointers; the handler only uses atomics and
    // async-signal-safe system calls.
    unsafe {
        let page = libc::sysconf(libc::_SC_PAGESIZE);
        if page > 0 {
            PAGE.store(page as usize, Ordering::SeqCst);
        }
        let mut new: libc::sigaction = std::mem::zeroed();
        new.sa_sigaction = handler as *const () as usize;
        new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
        libc::sigemptyset(&mut new.sa_mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGBUS, &new, &mut old) != 0 {
            return None;
        }
        Some(Prev(old))
    }
}

extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: called by the kernel with a valid siginfo for SIGBUS.
    let addr = unsafe { (*info).si_addr() } as usize;
    let page = PAGE.load(Ordering::Relaxed);
    for s in TABLE.iter() {
        let start = s.start.load(Ordering::SeqCst);
        let len = s.len.load(Ordering::SeqCst);
        if start != 0 && addr >= start && addr < start + len {
            let at = addr & !(page - 1);
            // SAFETY: replaces one page of a mapping we registered (still mapped: the guard
            // is dropped before the unmap) with zeros.
            let r = unsafe {
                libc::mmap(
                    at as *mut libc::c_void,
                    page,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if r != libc::MAP_FAILED {
                s.first_fault.fetch_min(at, Ordering::SeqCst);
                return;
            }
        }
    }
    // Not ours: hand over to the previous action.
    let prev = PREVIOUS.get().and_then(|p| p.as_ref());
    // SAFETY: the previous action as the kernel gave it to us.
    unsafe {
        match prev {
            Some(Prev(p)) if p.sa_sigaction == libc::SIG_IGN => {}
            Some(Prev(p)) if p.sa_sigaction != libc::SIG_DFL => {
                if p.sa_flags & libc::SA_SIGINFO != 0 {
                    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                        std::mem::transmute(p.sa_sigaction);
                    f(sig, info, ctx);
                } else {
                    let f: extern "C" fn(libc::c_int) = std::mem::transmute(p.sa_sigaction);
                    f(sig);
                }
            }
            _ => {
                // Default action: restore it; returning re-runs the access, which faults
                // again and terminates the process as it would have without us.
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(libc::SIGBUS, &dfl, std::ptr::null_mut());
            }
        }
    }
}
