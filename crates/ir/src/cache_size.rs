//! How much memory the service's decoded-chunk cache gets: the default
//! (a quarter of the machine's memory, capped) and the `--cache-mem` size
//! syntax.
//!
//! The cache (`lifeboat_vdisk::CachedDisk`, one per disk, all of them
//! drawing on one `CacheBudget` of the service) holds decompressed chunks,
//! so a re-read of what fits is a memory copy instead of a decompression;
//! blocks are allocated as chunks are read and freed when their session
//! stops. A booting VM reads a small part of its disk, so sessions rarely
//! come near the budget; a full copy of a disk (nfs-cp, a migration by the
//! hypervisor) takes what it needs. A sequential re-read of a disk larger
//! than the cache is served from the cache only in part (the cache is
//! scan-resistant, see `lifeboat_vdisk`), so the default should hold the
//! data of a typical disk.

use crate::error::{Error, Result};

/// Most the service's decoded-chunk cache gets by default.
pub const MAX_DEFAULT_CACHE_BYTES: u64 = 16 << 30;
/// The default when the machine's memory cannot be read.
const FALLBACK_CACHE_BYTES: u64 = 256 << 20;

/// The default decoded-chunk cache of the service: a quarter of the
/// machine's memory, at most [`MAX_DEFAULT_CACHE_BYTES`] (256 MiB when
/// `/proc/meminfo` cannot be read). Memory is taken as chunks are read,
/// not up front, and given back when the session stops.
pub fn default_cache_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| mem_total(&m))
        .map_or(FALLBACK_CACHE_BYTES, |total| {
            (total / 4).clamp(64 << 20, MAX_DEFAULT_CACHE_BYTES)
        })
}

/// `MemTotal` of a /proc/meminfo text, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line
        .trim_start_matches("MemTotal:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// Parses a memory size: bytes, or a number with a binary suffix `K`, `M`,
/// `G` or `T` (optionally followed by `iB` or `B`, any case): `512M`,
/// `2G`, `1.5GiB`.
pub fn parse_mem_size(text: &str) -> Result<u64> {
    let bad = |why: &str| Error::Invalid(format!("memory size {text:?}: {why}"));
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    let digits = lower.trim_end_matches("ib").trim_end_matches('b');
    let (number, shift) = match digits.chars().last() {
        Some('k') => (&digits[..digits.len() - 1], 10),
        Some('m') => (&digits[..digits.len() - 1], 20),
        Some('g') => (&digits[..digits.len() - 1], 30),
        Some('t') => (&digits[..digits.len() - 1], 40),
        _ => (digits, 0),
    };
    let number = number.trim();
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(bad(
            "expected a number with an optional K, M, G or T suffix",
        ));
    }
    let value: f64 = number.parse().map_err(|_| bad("not a number"))?;
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(bad("too large"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_mem_size("4096").unwrap(), 4096);
        assert_eq!(parse_mem_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_mem_size("2g").unwrap(), 2 << 30);
        assert_eq!(parse_mem_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_mem_size(" 64 MB ").unwrap(), 64 << 20);
        for bad in ["", "G", "-1G", "2X", "1e30", "99999999999T"] {
            assert!(parse_mem_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_default_cache_is_a_quarter_of_memory_capped() {
        let meminfo = "MemTotal:       24000000 kB\nMemFree: 1 kB\n";
        assert_eq!(mem_total(meminfo), Some(24_000_000 * 1024));
        assert_eq!(mem_total("nothing"), None);
        let d = default_cache_bytes();
        assert!((64 << 20..=MAX_DEFAULT_CACHE_BYTES).contains(&d), "{d}");
    }
}
