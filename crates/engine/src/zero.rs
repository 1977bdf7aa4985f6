//! Fast all-zero test for chunk buffers (zero chunks are never stored).

/// True when every byte of `buf` is zero. ORs 256-byte blocks together,
/// which the compiler turns into wide vector instructions.
pub fn is_zero(buf: &[u8]) -> bool {
    let blocks = buf.chunks_exact(256);
    let rest = blocks.remainder();
    for block in blocks {
        if block.iter().fold(0u8, |acc, &b| acc | b) != 0 {
            return false;
        }
    }
    rest.iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_single_non_zero_byte_anywhere() {
        let mut v = vec![0u8; 4099];
        assert!(is_zero(&v));
        for pos in [0, 15, 16, 63, 64, 4095, 4098] {
            v[pos] = 1;
            assert!(!is_zero(&v), "missed byte at {pos}");
            v[pos] = 0;
        }
        assert!(is_zero(&[]));
    }
}
