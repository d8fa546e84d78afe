//! Algorithms: block compression codecs and hashing (CRC32, BLAKE3, zero detection).

pub mod compression;
pub mod hash;
