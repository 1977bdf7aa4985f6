//! ext4's metadata checksums: CRC32C as the kernel's `crc32c_le` computes
//! it (no inversion before or after; ext4 seeds it with `~0` and keeps the
//! raw value), and the per-inode seed that inode, extent-block and
//! directory-block checksums start from.

/// The kernel's `crc32c(seed, data)`: the `crc32c` crate inverts the value
/// on the way in and out, so the raw one is that inverted back.
pub fn crc32c_raw(seed: u32, data: &[u8]) -> u32 {
    !crc32c::crc32c_append(!seed, data)
}

/// The seed of inode `ino` with generation `generation`:
/// crc(crc(fs seed, ino), generation).
pub fn inode_seed(fs_seed: u32, ino: u32, generation: u32) -> u32 {
    crc32c_raw(
        crc32c_raw(fs_seed, &ino.to_le_bytes()),
        &generation.to_le_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raw_crc_is_the_standard_one_without_its_inversions() {
        // CRC-32C("123456789") = 0xE3069283 (init ~0, final xor ~0).
        assert_eq!(!crc32c_raw(!0, b"123456789"), 0xE306_9283);
        // Chaining equals one pass, as ext4 relies on.
        let one = crc32c_raw(7, b"abcdef");
        assert_eq!(crc32c_raw(crc32c_raw(7, b"abc"), b"def"), one);
    }
}
