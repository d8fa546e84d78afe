//! Header parsing: any 512 bytes (or fewer) with any claimed file length.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for len in [data.len() as u64, 1 << 20, u64::MAX] {
        if let Ok(h) = hexz_core::format::Header::decode(data, len) {
            // A decoded header re-encodes to bytes that decode to the same header.
            let again = hexz_core::format::Header::decode(&h.encode(), len).expect("re-decode");
            assert_eq!(again, h);
        }
    }
    let mut fixed = data.to_vec();
    hexz_fuzz::fix_checksums(&mut fixed);
    let _ = hexz_core::format::Header::decode(&fixed, u64::MAX);
});
