//! Reproducible test data and a checksum, for programs that verify what they moved (the benchmark, the
//! tests and the programs they launch use them).

#![forbid(unsafe_code)]

/// `len` bytes of deterministic pseudo-random data, a different stream for each `seed`.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0; len];
    fill_pattern(&mut data, seed);
    data
}

/// Fills `data` with the bytes [`pattern`] would return for its length and `seed`.
pub fn fill_pattern(data: &mut [u8], seed: u64) {
    // xorshift64, eight bytes per step.
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
}

/// A 64-bit checksum of `data` (FNV-1a over 8-byte words, then the tail), fast enough for gigabytes.
pub fn checksum(data: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ data.len() as u64;
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        hash = (hash ^ u64::from_le_bytes(word.try_into().expect("8 bytes"))).wrapping_mul(0x100_0000_01b3);
    }
    for &byte in words.remainder() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_differ_by_seed_and_checksums_see_one_bit() {
        assert_eq!(pattern(13, 1), pattern(13, 1));
        assert_ne!(pattern(13, 1), pattern(13, 2));
        assert_eq!(pattern(5, 3)[..], pattern(9, 3)[..5]);
        let mut data = pattern(1001, 4);
        let sum = checksum(&data);
        data[1000] ^= 1;
        assert_ne!(checksum(&data), sum);
        assert_ne!(checksum(&[]), checksum(&[0]));
    }
}
