//! Encrypted archives with damaged headers, key wraps, indexes and blocks, opened with the
//! right password, a wrong one and none: every outcome is a clean error or correct reads.
//! Key-derivation costs are read from the (fuzzed) header; inputs asking for more than a
//! cheap derivation are skipped here (the caps themselves are unit-tested), so one
//! execution stays fast.
#![no_main]
use hexz_core::algo::encryption::{Kdf, Password};
use hexz_core::OpenOptions;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut a = data.to_vec();
    hexz_fuzz::fix_checksums(&mut a);
    if a.len() >= 160 {
        let p = |o: usize| u32::from_le_bytes(a[o..o + 4].try_into().unwrap());
        match Kdf::from_params(a[144], p(148), p(152), p(156)) {
            Ok(Kdf::Pbkdf2 { iterations }) if iterations > 2000 => return,
            Ok(Kdf::Argon2id { m_kib, t, .. }) if m_kib > 256 || t > 2 => return,
            _ => {}
        }
    }
    for pw in [Some(&b"fuzz"[..]), Some(&b"wrong"[..]), None] {
        let opts = OpenOptions {
            password: pw.map(Password::new),
            ..hexz_fuzz::options()
        };
        match hexz_fuzz::open(a.clone(), opts) {
            Ok(f) => hexz_fuzz::exercise(&f, &data[data.len().saturating_sub(32)..]),
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
