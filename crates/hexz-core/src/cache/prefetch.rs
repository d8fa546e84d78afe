//! Sequential-access detection for read-ahead, one detector per reader.
//!
//! A detector remembers where its reader's last read ended. A read that starts there, or a
//! little past it (at most [`MAX_SKIP`] bytes: positional readers walking records in index
//! order skip headers, padding or unwanted records), continues a sequential run: the
//! read-ahead window starts at about 1 MiB and doubles with each prefetch it issues, up to a
//! maximum (tens of MiB for remote archives, where a window must cover the bandwidth-delay
//! product and several requests are kept in flight); any other read (backwards, or further
//! ahead) is random and collapses the window, so random workloads pay nothing. The detector
//! also remembers how far ahead it has already asked, so a run of small reads issues one
//! prefetch per half window rather than one per read.
//!
//! The state belongs to a reader (a [`StreamReader`](crate::StreamReader), a mount's file
//! handle), not to the archive: two readers walking different parts of one archive, even
//! interleaved, are each recognised as sequential.

/// On local archives, reads at least this large are not followed by read-ahead: they are
/// already decoded in parallel, and the page cache makes the next fetch cheap.
pub const LARGE_READ: u64 = 1 << 20;

/// Largest forward gap between the end of one read and the start of the next that still
/// counts as sequential. Small enough that random reads (which land anywhere in the stream)
/// essentially never fall inside it; a read inside the range already fetched ahead counts
/// as sequential whatever the gap.
pub const MAX_SKIP: u64 = 256 << 10;

/// First window of a sequential run (smaller if the maximum is smaller).
pub const INITIAL_WINDOW: u64 = 1 << 20;

/// One reader's read-ahead state.
#[derive(Debug, Clone)]
pub struct ReadAhead {
    next_expected: u64,
    window: u64,
    issued_until: u64,
    max_window: u64,
    follow_large: bool,
}

impl ReadAhead {
    /// A detector whose window grows up to `max_window` bytes (0 disables read-ahead).
    /// `remote` readers also read ahead of large reads (each request costs a round trip).
    pub fn new(max_window: u64, remote: bool) -> Self {
        ReadAhead {
            next_expected: u64::MAX,
            window: 0,
            issued_until: 0,
            max_window,
            follow_large: remote,
        }
    }

    /// Records a read of `[offset, offset+len)` and returns the byte range that should be
    /// fetched ahead now, if any.
    pub fn on_read(&mut self, offset: u64, len: u64) -> Option<(u64, u64)> {
        let end = offset.saturating_add(len);
        let prev = std::mem::replace(&mut self.next_expected, end);
        if self.max_window == 0 || len == 0 || (len >= LARGE_READ && !self.follow_large) {
            return None;
        }
        let continues = prev != u64::MAX
            && offset >= prev
            && (offset - prev <= MAX_SKIP || (self.window != 0 && offset < self.issued_until));
        if !continues {
            self.window = 0;
            self.issued_until = end;
            return None;
        }
        // Keep at least half a window fetched ahead of the reader; each time more is needed,
        // double the window (up to the maximum), so a long run issues few, growing fetches.
        let issued = self.issued_until.max(end);
        if self.window != 0 && issued - end >= self.window / 2 {
            return None;
        }
        self.window = if self.window == 0 {
            len.saturating_mul(2)
                .max(INITIAL_WINDOW)
                .min(self.max_window)
        } else {
            self.window.saturating_mul(2).min(self.max_window)
        };
        let target = end.saturating_add(self.window);
        self.issued_until = target;
        Some((issued, target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_on_sequential_and_resets_on_random() {
        let mut r = ReadAhead::new(8 << 20, false);
        assert_eq!(r.on_read(0, 4096), None);
        let (s, e) = r
            .on_read(4096, 4096)
            .expect("second sequential read prefetches");
        assert_eq!(s, 8192);
        assert_eq!(e - s, INITIAL_WINDOW);
        // The next few reads are covered by what was already issued.
        assert_eq!(r.on_read(8192, 4096), None);
        assert_eq!(r.on_read(1 << 30, 4096), None, "random read: no read-ahead");
        let mut issued = 0;
        let mut widest = 0;
        for i in 0..4096u64 {
            if let Some((s, e)) = r.on_read((1 << 30) + (i + 1) * 4096, 4096) {
                assert!(e - s <= 8 << 20);
                widest = widest.max(e - s);
                issued += 1;
            }
        }
        assert!(
            issued > 2 && issued < 200,
            "{issued} prefetches for 16 MiB of 4 KiB reads"
        );
        assert!(widest > 4 << 20, "the window grows ({widest})");
        assert_eq!(
            r.on_read(0, 4 << 20),
            None,
            "large local reads are not followed"
        );
        // Index-order reads with small gaps between them are a run; a larger jump is not.
        let mut g = ReadAhead::new(8 << 20, false);
        assert_eq!(g.on_read(0, 4096), None);
        assert!(
            g.on_read(4096 + MAX_SKIP, 4096).is_some(),
            "a small gap continues"
        );
        assert_eq!(g.on_read(100 << 20, 4096), None, "a large jump is random");
        assert_eq!(g.on_read((100 << 20) + 4096 + MAX_SKIP + 1, 4096), None);
        assert_eq!(g.on_read(0, 4096), None, "backwards is random");
        let mut remote = ReadAhead::new(64 << 20, true);
        assert_eq!(remote.on_read(0, 4 << 20), None);
        assert!(
            remote.on_read(4 << 20, 4 << 20).is_some(),
            "remote: followed"
        );
    }
}
