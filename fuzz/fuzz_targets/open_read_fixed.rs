//! As `open_read`, after recomputing the header CRC, the index page digests and the master
//! index digest, so mutations of index fields (offsets, lengths, counts, codecs, sources)
//! are interpreted instead of being caught by a checksum.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut a = data.to_vec();
    hexz_fuzz::fix_checksums(&mut a);
    if let Ok(f) = hexz_fuzz::open(a, hexz_fuzz::options()) {
        hexz_fuzz::exercise(&f, data.get(data.len().saturating_sub(32)..).unwrap_or(&[]));
    }
});
