//! Pieces shared by the benchmark examples (not an example itself: no `main.rs`).

/// A small deterministic PRNG (xorshift64*), so every run and machine picks the same offsets.
pub struct Rng(pub u64);

impl Rng {
    /// The next pseudo-random value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}
