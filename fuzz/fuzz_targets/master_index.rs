//! Master index parsing. The trailing BLAKE3 digest is recomputed so mutations reach the
//! fields behind it. The oracle lives in `hexz_fuzz::check_master_index` so the committed
//! corpus is replayed by `cargo test` too.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hexz_fuzz::check_master_index(data));
