//! Signature checking: archives opened requiring the corpus's signing key (fixed seed
//! [7; 32]), and raw Ed25519 verification of fuzzed messages, signatures and keys. A
//! mutated signed archive must never pass the check with bytes that differ from what was
//! signed: if the check passes, header and index are unchanged (the fix-up only touches
//! checksums, which the signature covers indirectly through the index digest).
#![no_main]
use hexz_core::algo::signing;
use hexz_core::OpenOptions;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let public = signing::public_of(&[7; 32]);
    let opts = OpenOptions {
        require_signer: Some(public),
        ..hexz_fuzz::options()
    };
    if let Ok(f) = hexz_fuzz::open(data.to_vec(), opts) {
        hexz_fuzz::exercise(&f, &data[data.len().saturating_sub(32)..]);
    }
    if data.len() >= 96 {
        let pk: [u8; 32] = data[..32].try_into().unwrap();
        let sig: [u8; 64] = data[32..96].try_into().unwrap();
        let _ = signing::verify(&pk, &data[96..], &sig);
        let _ = signing::parse_public_key(&String::from_utf8_lossy(&data[96..]));
        let _ = signing::parse_secret_key(&String::from_utf8_lossy(&data[96..]), None);
    }
});
