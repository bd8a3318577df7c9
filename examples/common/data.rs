//! Reproducible data and a checksum, for the examples that check what they moved.
#![allow(dead_code)] // each example uses what it needs

use std::hash::{DefaultHasher, Hasher};

/// Fills `data` with bytes that depend on their position and on `seed` (a different stream per seed).
pub(crate) fn fill_pattern(data: &mut [u8], seed: u64) {
    for (index, byte) in data.iter_mut().enumerate() {
        *byte = ((index as u64).wrapping_add(seed << 32).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8;
    }
}

/// `len` bytes of [`fill_pattern`]'s data for `seed`.
pub(crate) fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0; len];
    fill_pattern(&mut data, seed);
    data
}

/// A checksum to compare copies of data by: the standard library's hasher, the same in every process
/// running one build.
pub(crate) fn checksum(data: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    hasher.write(data);
    hasher.finish()
}
