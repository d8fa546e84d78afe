//! Algorithms: block compression codecs, hashing (CRC32, BLAKE3, zero detection),
//! encryption (AES-256-GCM, key derivation) and signatures (Ed25519).

pub mod compression;
pub mod encryption;
pub mod hash;
pub mod signing;
