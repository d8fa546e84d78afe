//! Clean shutdown on SIGINT/SIGTERM/SIGHUP for the foreground mount and the NBD server:
//! the signals are blocked in every thread (call [`block_termination`] before starting
//! threads, which inherit the mask) and collected by the main thread with [`wait`].

/// The set of termination signals handled.
pub struct Signals(libc::sigset_t);

/// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread (and threads it starts later).
pub fn block_termination() -> Signals {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset/pthread_sigmask only write it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        Signals(set)
    }
}

impl Signals {
    /// Waits up to `timeout` for one of the signals; returns its number.
    pub fn wait(&self, timeout: std::time::Duration) -> Option<i32> {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: valid set and timespec; a null siginfo pointer is allowed.
        let rc = unsafe { libc::sigtimedwait(&self.0, std::ptr::null_mut(), &ts) };
        (rc > 0).then_some(rc)
    }
}
