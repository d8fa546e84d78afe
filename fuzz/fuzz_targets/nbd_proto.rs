//! The NBD server driven by an arbitrary client byte stream (handshake, option negotiation,
//! transmission requests), read-only or writable, over an in-memory pipe: no panic, hang or
//! unbounded allocation, every reply well formed and every read exact. The oracle is in
//! `fuzz/src/nbd.rs`, shared with hexz-mount's corpus replay test.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../src/nbd.rs"]
mod nbd;

fuzz_target!(|data: &[u8]| nbd::check_session(data));
