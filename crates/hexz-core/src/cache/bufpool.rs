//! Recycled buffers for the stored bytes of blocks.
//!
//! A read that fetches stored blocks (a remote archive, the disk cache, a local archive read
//! without a mapping) needs one initialised buffer per block, tens of thousands per GiB. A
//! fresh `vec![0; n]` zeroes it first, and once the allocator has handed back memory it also
//! faults the pages in again: together about 5% of the CPU of a full remote read. Buffers
//! whose block was decoded, or evicted from the block cache, come back here and are handed
//! out again, truncated to the size asked for (their bytes are overwritten by the fetch;
//! nothing reads them before).
//!
//! Buffers are kept in classes of 4 KiB of length; a request looks in its own class (for a
//! buffer at least as long), then in the next [`SPARE_CLASSES`] above, so a buffer handed out
//! is at most that much longer than asked (the block cache weighs buffers by capacity). At
//! most a fixed number of bytes is kept; what does not fit is freed.

use std::sync::Mutex;

/// Width of a length class.
const CLASS: usize = 4 << 10;

/// Number of classes; longer buffers all share the last one.
const CLASSES: usize = 64;

/// Classes above its own that a request may take a buffer from.
const SPARE_CLASSES: usize = 2;

/// A bounded pool of byte buffers.
#[derive(Debug)]
pub struct BufPool {
    inner: Mutex<Classes>,
    max_bytes: usize,
}

#[derive(Debug)]
struct Classes {
    bufs: Vec<Vec<Vec<u8>>>,
    bytes: usize,
}

fn class_of(len: usize) -> usize {
    (len / CLASS).min(CLASSES - 1)
}

impl BufPool {
    /// An empty pool keeping at most `max_bytes` of buffers (by length).
    pub fn new(max_bytes: usize) -> Self {
        BufPool {
            inner: Mutex::new(Classes {
                bufs: (0..CLASSES).map(|_| Vec::new()).collect(),
                bytes: 0,
            }),
            max_bytes,
        }
    }

    /// A buffer of exactly `n` initialised bytes whose contents are unspecified (a recycled
    /// one when the pool has one at least that long, else a fresh zeroed one).
    pub fn take(&self, n: usize) -> Vec<u8> {
        if n > 0 {
            let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let c = class_of(n);
            // Own class: a buffer there may be shorter than n; take one that is not.
            let own = g.bufs[c].iter().rposition(|b| b.len() >= n);
            let found = match own {
                Some(i) => Some(g.bufs[c].swap_remove(i)),
                None => (c + 1..CLASSES.min(c + 1 + SPARE_CLASSES)).find_map(|k| g.bufs[k].pop()),
            };
            if let Some(mut b) = found {
                g.bytes -= b.len();
                drop(g);
                b.truncate(n);
                return b;
            }
        }
        vec![0u8; n]
    }

    /// Gives `buf` back for reuse; freed instead when the pool is full or `buf` is empty.
    pub fn give(&self, buf: Vec<u8>) {
        let n = buf.len();
        if n == 0 {
            return;
        }
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.bytes + n > self.max_bytes {
            drop(g);
            return; // `buf` is freed outside the lock
        }
        g.bytes += n;
        g.bufs[class_of(n)].push(buf);
    }

    /// Bytes of buffers kept (by length).
    pub fn bytes(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_long_enough_buffers_and_stays_bounded() {
        let p = BufPool::new(100 << 10);
        let a = p.take(10_000);
        assert_eq!(a.len(), 10_000);
        let ptr = a.as_ptr();
        p.give(a);
        assert_eq!(p.bytes(), 10_000);
        // A shorter request of the same class gets the same allocation, truncated.
        let b = p.take(9_000);
        assert_eq!((b.len(), b.as_ptr()), (9_000, ptr));
        assert_eq!(p.bytes(), 0);
        p.give(b);
        // A longer request of the same class cannot use it: a fresh, zeroed buffer.
        let c = p.take(9_500);
        assert_ne!(c.as_ptr(), ptr);
        assert!(c.iter().all(|&x| x == 0));
        // A request up to SPARE_CLASSES classes lower takes it from the class above ...
        let d = p.take(100);
        assert_eq!((d.len(), d.as_ptr()), (100, ptr));
        // ... one further below does not: 20,000 bytes (class 4) are not handed out for 100
        // (class 0), but are for 12,300 (class 3).
        let big = vec![3u8; 20_000];
        let bp = big.as_ptr();
        p.give(big);
        let small = p.take(100);
        assert_ne!(small.as_ptr(), bp);
        let e = p.take(12_300);
        assert_eq!(e.as_ptr(), bp);
        assert_eq!(p.bytes(), 0);
        // The pool keeps at most its budget.
        for _ in 0..20 {
            p.give(vec![7u8; 10_000]);
        }
        assert_eq!(p.bytes(), 100_000);
        p.give(vec![1u8; 8_000]);
        assert_eq!(p.bytes(), 100_000, "a full pool frees what it is given");
        assert!(p.take(0).is_empty());
        p.give(Vec::new());
        assert_eq!(p.bytes(), 100_000);
    }
}
