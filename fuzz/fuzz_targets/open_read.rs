//! Any byte string opened as an archive and read: open fails cleanly or every read either
//! fails or agrees with a whole-stream read; verify never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = hexz_fuzz::open(data.to_vec(), hexz_fuzz::options()) {
        hexz_fuzz::exercise(&f, data.get(data.len().saturating_sub(32)..).unwrap_or(&[]));
    }
});
