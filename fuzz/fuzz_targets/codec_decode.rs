//! Block decoders of every codec: selector byte (0 none, 1 LZ4, 2 Zstandard), u32 LE
//! expected length (capped at the 16 MiB block limit), then the stored bytes. Decoding either
//! fills exactly the expected length or fails; a successful decode re-encodes and decodes
//! back to the same bytes. Decoding into a new vector (`decompress_vec`, which writes into
//! uninitialised capacity) agrees with decoding into a slice: same success, same bytes.
#![no_main]
use hexz_core::algo::compression::compressor_for;
use hexz_core::format::{Codec, MAX_BLOCK_SIZE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let codec = match data[0] % 3 {
        0 => Codec::None,
        1 => Codec::Lz4,
        _ => Codec::Zstd,
    };
    let want = u32::from_le_bytes(data[1..5].try_into().unwrap()) % (MAX_BLOCK_SIZE + 1);
    // Keep single executions fast: large claims are tried at a smaller size too.
    let want = if want > 1 << 20 {
        want % (1 << 20)
    } else {
        want
    } as usize;
    let c = compressor_for(codec, 3).expect("codec built");
    let mut out = vec![0u8; want];
    let into = c.decompress_into(&data[5..], &mut out);
    let vec = c.decompress_vec(&data[5..], want);
    assert_eq!(into.is_ok(), vec.is_ok(), "decompress_into and decompress_vec disagree");
    if let Ok(v) = &vec {
        assert_eq!(v, &out);
    }
    if into.is_ok() {
        let mut enc = Vec::new();
        c.compress(&out, &mut enc).expect("compress");
        let mut back = vec![0u8; want];
        c.decompress_into(&enc, &mut back).expect("round trip");
        assert_eq!(back, out);
    }
});
