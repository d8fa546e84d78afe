//! Ctrl-C during an upload or download: instead of dying mid-transfer (which would leave an
//! orphaned multipart upload on the server), the first SIGINT/SIGTERM sets a flag the
//! transfer checks; it then cleans up and fails. A second signal exits at once.

use std::sync::atomic::{AtomicBool, Ordering};

static CANCELLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    if CANCELLED.swap(true, Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(128 + sig) };
    }
}

/// Installs the handlers and returns the flag they set.
pub fn install() -> &'static AtomicBool {
    let handler: extern "C" fn(libc::c_int) = on_signal;
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installing a handler that only touches an atomic (async-signal-safe).
        unsafe { libc::signal(sig, handler as libc::sighandler_t) };
    }
    &CANCELLED
}
