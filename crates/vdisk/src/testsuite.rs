//! One test suite written against the traits, run for every implementation
//! (file, memory, slice, overlay, cache here; every image format and the
//! restore-point disk in their own crates).
//!
//! The checks panic with a message naming the disk and the failed property,
//! which is what a `#[test]` wants.

use crate::{Error, ExtentKind, ReadDisk, WriteDisk};

/// A deterministic test pattern of `size` bytes: every `block`-sized block
/// whose index is a multiple of 3 is zero, the others hold a counter pattern
/// that differs per block and per byte.
pub fn pattern_with_holes(size: usize, block: usize) -> Vec<u8> {
    let mut v = vec![0u8; size];
    for (i, chunk) in v.chunks_mut(block).enumerate() {
        if i % 3 == 0 {
            continue;
        }
        let mut x = (i as u32).wrapping_mul(2_654_435_761) | 1;
        for b in chunk.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
    }
    v
}

/// Offsets and lengths that exercise alignment and boundaries of `size`.
fn probes(size: u64) -> Vec<(u64, u64)> {
    let mut out = vec![(0, size.min(1)), (0, size.min(512)), (0, size.min(65536))];
    for &(o, l) in &[
        (1u64, 4095u64),
        (511, 1025),
        (4096, 8192),
        (65535, 70000),
        (1 << 20, 4096),
        ((1 << 20) - 7, 14),
        (size / 2, 100_000),
        (size / 3 + 13, 3 << 20),
    ] {
        if o < size {
            out.push((o, l.min(size - o)));
        }
    }
    if size > 0 {
        out.push((size - 1, 1));
        out.push((size.saturating_sub(5000), size.min(5000)));
    }
    out.push((size, 0));
    out
}

/// Checks every property of [`ReadDisk`] against the bytes the disk must hold.
pub fn check_read_disk(disk: &dyn ReadDisk, expected: &[u8]) {
    let name = disk.describe();
    let size = expected.len() as u64;
    assert_eq!(disk.size(), size, "{name}: size");

    // Whole content, in 1 MiB reads.
    let mut pos = 0u64;
    while pos < size {
        let len = (size - pos).min(1 << 20) as usize;
        let mut buf = vec![0xA5u8; len];
        disk.read_at(&mut buf, pos)
            .unwrap_or_else(|e| panic!("{name}: read of {len} at {pos}: {e}"));
        assert!(
            buf == expected[pos as usize..pos as usize + len],
            "{name}: bytes differ in the {len} bytes at {pos}"
        );
        pos += len as u64;
    }

    // Unaligned and boundary reads.
    for (o, l) in probes(size) {
        let mut buf = vec![0x5Au8; l as usize];
        disk.read_at(&mut buf, o)
            .unwrap_or_else(|e| panic!("{name}: read of {l} at {o}: {e}"));
        assert!(
            buf == expected[o as usize..(o + l) as usize],
            "{name}: bytes differ in the {l} bytes at {o}"
        );
        let shared = disk
            .read_shared(o, l as usize)
            .unwrap_or_else(|e| panic!("{name}: shared read of {l} at {o}: {e}"));
        assert!(
            crate::concat_shared(&shared) == expected[o as usize..(o + l) as usize],
            "{name}: shared views differ from the {l} bytes at {o}"
        );
    }
    match disk.read_shared(size.saturating_sub(1), 2) {
        Err(Error::OutOfRange { .. }) => {}
        other => panic!("{name}: shared read across the end gave {other:?}, expected OutOfRange"),
    }

    // Reads past the end are refused with OutOfRange, not truncated.
    let mut buf = [0u8; 2];
    match disk.read_at(&mut buf, size.saturating_sub(1)) {
        Err(Error::OutOfRange { .. }) => {}
        other => panic!("{name}: read across the end gave {other:?}, expected OutOfRange"),
    }
    match disk.read_at(&mut buf, u64::MAX - 1) {
        Err(Error::OutOfRange { .. }) => {}
        other => panic!("{name}: read at u64::MAX-1 gave {other:?}, expected OutOfRange"),
    }

    // Extents cover the range exactly, in order, and Zero extents read zeros.
    for (o, l) in [(0, size), (size / 3 + 1, size / 2)] {
        let extents = disk
            .extents(o, l)
            .unwrap_or_else(|e| panic!("{name}: extents({o}, {l}): {e}"));
        let mut pos = o;
        for e in &extents {
            assert_eq!(
                e.offset, pos,
                "{name}: extents have a gap or overlap at {pos}"
            );
            assert!(e.length > 0, "{name}: empty extent at {pos}");
            if e.kind == ExtentKind::Zero {
                let s = e.offset as usize;
                assert!(
                    expected[s..s + e.length as usize].iter().all(|&b| b == 0),
                    "{name}: extent {e:?} says zero but the disk holds data there"
                );
            }
            pos = e.end();
        }
        assert_eq!(pos, (o + l).min(size), "{name}: extents stop short");
    }
    let past = disk
        .extents(size, 100)
        .unwrap_or_else(|e| panic!("{name}: extents past the end: {e}"));
    assert!(past.is_empty(), "{name}: extents past the end: {past:?}");
}

/// Checks [`WriteDisk`]: `make` builds a fresh writable disk holding `content`.
/// Writes at unaligned offsets are read back, the untouched bytes keep their
/// content, and writes past the end are refused.
pub fn check_write_disk(make: &dyn Fn(&[u8]) -> Box<dyn WriteDisk>) {
    let content = pattern_with_holes(3 << 20, 1 << 18);
    let disk = make(&content);
    let name = disk.describe();
    let mut expected = content.clone();
    let writes: [(u64, usize, u8); 5] = [
        (0, 512, 1),
        (4095, 2, 2),
        (700_000, 300_000, 3),
        ((1 << 20) - 100, 200, 4),
        ((3 << 20) - 1, 1, 5),
    ];
    for (o, l, v) in writes {
        let buf = vec![v; l];
        disk.write_at(&buf, o)
            .unwrap_or_else(|e| panic!("{name}: write of {l} at {o}: {e}"));
        expected[o as usize..o as usize + l].fill(v);
    }
    // A write of zeros over data must read back as zeros.
    disk.write_at(&[0u8; 5000], 300_000).unwrap();
    expected[300_000..305_000].fill(0);
    disk.flush()
        .unwrap_or_else(|e| panic!("{name}: flush: {e}"));
    check_read_disk(disk.as_ref(), &expected);
    match disk.write_at(&[1, 2], (3 << 20) - 1) {
        Err(Error::OutOfRange { .. }) => {}
        other => panic!("{name}: write across the end gave {other:?}, expected OutOfRange"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemDisk;

    #[test]
    fn mem_disk_passes_the_suites() {
        let expected = pattern_with_holes(5 << 20, 1 << 20);
        check_read_disk(&MemDisk::new("m", expected.clone()), &expected);
        check_write_disk(&|c: &[u8]| Box::new(MemDisk::new("w", c.to_vec())) as Box<dyn WriteDisk>);
    }
}
