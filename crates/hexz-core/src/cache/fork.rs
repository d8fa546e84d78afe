//! [`ForkFresh`]: state that a forked child must not inherit.
//!
//! `fork(2)` copies the memory of every thread but keeps only the calling one, so a mutex
//! that another thread of the parent held at that moment stays locked in the child forever:
//! a child locking a cache shard or the in-flight table that a parent's read-ahead thread
//! was inside would hang. State behind a `ForkFresh` is rebuilt empty the first time a
//! child touches it, and the parent's copy is never locked (or freed) in the child.

use crate::api::process_id;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicPtr, Ordering};

struct Generation<T> {
    pid: u32,
    value: T,
}

/// A value owned by one process: in a forked child the first access replaces it with a fresh
/// one built by the caller's constructor. The parent's copy is leaked in the child (it may
/// hold locks of threads that do not exist there; its pages are the parent's, shared
/// copy-on-write, so leaking costs no new memory).
pub struct ForkFresh<T> {
    current: AtomicPtr<Generation<T>>,
    _owns: PhantomData<Box<Generation<T>>>,
}

impl<T> ForkFresh<T> {
    /// Wraps `value`, owned by the calling process.
    pub fn new(value: T) -> Self {
        let g = Box::new(Generation {
            pid: process_id(),
            value,
        });
        ForkFresh {
            current: AtomicPtr::new(Box::into_raw(g)),
            _owns: PhantomData,
        }
    }

    /// This process's value; in a forked child, the first call builds it with `make`.
    pub fn get(&self, make: impl Fn() -> T) -> &T {
        let pid = process_id();
        loop {
            let p = self.current.load(Ordering::Acquire);
            // SAFETY: a generation is freed only by `Drop` (which has `&mut self`); replaced
            // generations are leaked, so `p` stays valid for the life of `&self`.
            let g = unsafe { &*p };
            if g.pid == pid {
                return &g.value;
            }
            let fresh = Box::into_raw(Box::new(Generation { pid, value: make() }));
            match self
                .current
                .compare_exchange(p, fresh, Ordering::AcqRel, Ordering::Acquire)
            {
                // SAFETY: just stored; valid until `Drop` as above.
                Ok(_) => return unsafe { &(*fresh).value },
                // Another thread of this process replaced it first: use theirs.
                // SAFETY: `fresh` was never shared.
                Err(_) => drop(unsafe { Box::from_raw(fresh) }),
            }
        }
    }
}

impl<T> Drop for ForkFresh<T> {
    fn drop(&mut self) {
        // SAFETY: the current generation came from `Box::into_raw` and nobody else holds it.
        drop(unsafe { Box::from_raw(*self.current.get_mut()) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_process_keeps_its_value() {
        let f = ForkFresh::new(7u32);
        assert_eq!(*f.get(|| 0), 7);
        assert_eq!(*f.get(|| 0), 7);
    }
}
