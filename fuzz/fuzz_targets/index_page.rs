//! Index page parsing: first byte the stream id the page is expected to belong to, the rest
//! the page. The oracle lives in `hexz_fuzz::check_index_page` so the committed corpus is
//! replayed by `cargo test` too.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hexz_fuzz::check_index_page(data));
