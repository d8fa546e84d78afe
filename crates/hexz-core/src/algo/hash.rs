//! Checksums and content hashes used by the format, and fast all-zero detection.

/// CRC32 (IEEE) of stored block bytes: cheap corruption detection before decoding.
#[inline]
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// The *bound CRC* of a block entry (format 1.1, flag BOUND_CRC): CRC32 (IEEE) of the
/// block's 32-byte content hash followed by its stored bytes. It fails when the stored bytes
/// are damaged and when they belong to a block with another content hash (a wrong reference).
#[inline]
pub fn bound_crc32(content_hash: &[u8; 32], stored: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(content_hash);
    h.update(stored);
    h.finalize()
}

/// The CRC32 a block entry carries: [`bound_crc32`] when `bound`, else [`crc32`] of the
/// stored bytes alone (format 1.0).
#[inline]
pub fn entry_crc32(bound: bool, content_hash: &[u8; 32], stored: &[u8]) -> u32 {
    if bound {
        bound_crc32(content_hash, stored)
    } else {
        crc32(stored)
    }
}

/// BLAKE3 of uncompressed block content: the block's identity for dedup and signatures.
#[inline]
pub fn blake3(data: &[u8]) -> [u8; 32] {
    *blake3::hash(data).as_bytes()
}

/// `N` random bytes from the operating system (archive ids, temporary names, salts).
pub fn random_bytes<const N: usize>() -> crate::error::Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| {
        crate::error::Error::io("getting random bytes", std::io::Error::other(e.to_string()))
    })?;
    Ok(b)
}

/// Whether every byte of `data` is zero. Reads 8 words per step; stops at the first non-zero.
pub fn is_all_zero(data: &[u8]) -> bool {
    let (head, words, tail) = {
        // SAFETY: every bit pattern is a valid u64; align_to only splits at alignment boundaries.
        unsafe { data.align_to::<u64>() }
    };
    if head.iter().any(|&b| b != 0) || tail.iter().any(|&b| b != 0) {
        return false;
    }
    let mut chunks = words.chunks_exact(8);
    for c in &mut chunks {
        if (c[0] | c[1] | c[2] | c[3] | c[4] | c[5] | c[6] | c[7]) != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&w| w == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_detection_finds_any_nonzero_byte() {
        let mut v = vec![0u8; 1000];
        assert!(is_all_zero(&v));
        assert!(is_all_zero(&v[3..997]));
        for i in [0, 1, 7, 63, 64, 500, 998, 999] {
            v[i] = 1;
            assert!(!is_all_zero(&v), "byte {i}");
            assert!(!is_all_zero(&v[i..]), "byte {i} at start of slice");
            v[i] = 0;
        }
        assert!(is_all_zero(&[]));
    }
}
