//! Master index parsing. The trailing BLAKE3 digest is recomputed so mutations reach the
//! fields behind it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = hexz_core::format::MasterIndex::decode(data, u64::MAX, 0);
    if data.len() >= 48 {
        let mut b = data.to_vec();
        let n = b.len() - 32;
        let h = hexz_core::algo::hash::blake3(&b[..n]);
        b[n..].copy_from_slice(&h);
        for (len, overhead) in [(u64::MAX, 0), (1 << 20, 16), (b.len() as u64, 0)] {
            if let Ok(m) = hexz_core::format::MasterIndex::decode(&b, len, overhead) {
                let (enc, digest) = hexz_core::format::MasterIndex::encode(&m.streams, &m.metadata);
                assert_eq!(digest, m.digest);
                assert_eq!(enc, b);
            }
        }
    }
});
