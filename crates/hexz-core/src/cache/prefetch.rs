//! Sequential-access detection for read-ahead.
//!
//! Each stream remembers where its last read ended. A read that starts there continues a
//! sequential run: the read-ahead window doubles with each prefetch it issues (up to a maximum)
//! and collapses after a random read, so random workloads pay nothing. The detector also
//! remembers how far ahead it has already asked for data, so a run of small reads issues one
//! prefetch per half window rather than one per read.

use std::sync::atomic::{AtomicU64, Ordering};

/// Reads at least this large are not followed by read-ahead: they are already decoded in
/// parallel, and prefetching behind them would only decode the same blocks twice.
pub const LARGE_READ: u64 = 1 << 20;

/// Per-stream read-ahead state; lock-free, shared by all readers of a `File`.
#[derive(Debug)]
pub struct ReadAhead {
    next_expected: AtomicU64,
    window: AtomicU64,
    issued_until: AtomicU64,
    max_window: u64,
}

impl ReadAhead {
    /// Creates a detector whose window grows up to `max_window` bytes (0 disables read-ahead).
    pub fn new(max_window: u64) -> Self {
        ReadAhead {
            next_expected: AtomicU64::new(u64::MAX),
            window: AtomicU64::new(0),
            issued_until: AtomicU64::new(0),
            max_window,
        }
    }

    /// Records a read of `[offset, offset+len)` and returns the byte range that should be
    /// fetched ahead now, if any.
    pub fn on_read(&self, offset: u64, len: u64) -> Option<(u64, u64)> {
        let end = offset.saturating_add(len);
        let prev = self.next_expected.swap(end, Ordering::Relaxed);
        if self.max_window == 0 || len == 0 || len >= LARGE_READ {
            return None;
        }
        if prev != offset {
            self.window.store(0, Ordering::Relaxed);
            self.issued_until.store(end, Ordering::Relaxed);
            return None;
        }
        // Keep at least half a window fetched ahead of the reader; each time more is needed,
        // double the window (up to the maximum), so a long run issues few, growing fetches.
        let w = self.window.load(Ordering::Relaxed);
        let issued = self.issued_until.load(Ordering::Relaxed).max(end);
        if w != 0 && issued - end >= w / 2 {
            return None;
        }
        let w = if w == 0 {
            // (max then min, not clamp: a maximum below 128 KiB is allowed and wins)
            len.saturating_mul(2).max(128 * 1024).min(self.max_window)
        } else {
            w.saturating_mul(2).min(self.max_window)
        };
        self.window.store(w, Ordering::Relaxed);
        let target = end.saturating_add(w);
        self.issued_until.store(target, Ordering::Relaxed);
        Some((issued, target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_on_sequential_and_resets_on_random() {
        let r = ReadAhead::new(8 << 20);
        assert_eq!(r.on_read(0, 4096), None);
        let (s, e) = r
            .on_read(4096, 4096)
            .expect("second sequential read prefetches");
        assert_eq!(s, 8192);
        assert!(e - s >= 128 * 1024);
        // The next few reads are covered by what was already issued.
        assert_eq!(r.on_read(8192, 4096), None);
        assert_eq!(r.on_read(1 << 30, 4096), None, "random read: no read-ahead");
        let mut issued = 0;
        for i in 0..4096u64 {
            if let Some((s, e)) = r.on_read((1 << 30) + (i + 1) * 4096, 4096) {
                assert!(e - s <= 8 << 20);
                issued += 1;
            }
        }
        assert!(
            issued > 2 && issued < 200,
            "{issued} prefetches for 16 MiB of 4 KiB reads"
        );
        assert_eq!(r.on_read(0, 4 << 20), None, "large reads are not followed");
    }

    #[test]
    fn small_maximum_windows_work() {
        // Regression (found by tests/stress.rs): a maximum below 128 KiB panicked in clamp.
        let r = ReadAhead::new(64 * 1024);
        r.on_read(0, 4096);
        assert_eq!(r.on_read(4096, 4096), Some((8192, 8192 + 64 * 1024)));
    }
}
