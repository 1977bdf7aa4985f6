//! The bytes of a volume as the lister reads them: a window of a file (the
//! publisher's FUSE file of a restore-point disk) at an offset, read with
//! positioned reads by a few threads at once; or bytes already in memory
//! (the fuzz target `ext4list`), read on the calling thread.
//!
//! The file is read without readahead (`POSIX_FADV_RANDOM`): the lister
//! asks for exactly the metadata blocks it needs, in pieces of at most
//! [`MAX_READ`] bytes, which the publisher keeps in its block store (its
//! `MAX_STORED_READ`), so the next scan of a related restore point is
//! served them without decoding a chunk.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::parallel::run_in_order;

/// Largest single read: the publisher stores and serves reads up to this
/// size from its block store.
pub const MAX_READ: u64 = 128 << 10;

/// Reads in flight at once: each is a FUSE request whose answer may need
/// a repository chunk, so the reads are latency-bound.
const READ_THREADS: usize = 8;

/// `length` bytes of a file from `offset`, or bytes in memory: one volume.
pub struct VolumeBytes {
    source: Source,
    name: String,
    offset: u64,
    length: u64,
}

/// Where the bytes of a volume are.
enum Source {
    File(File),
    Memory(Vec<u8>),
}

impl VolumeBytes {
    /// Opens the volume at `[offset, offset + length)` of the file `path`.
    pub fn open(path: &Path, offset: u64, length: u64) -> io::Result<VolumeBytes> {
        let file = File::open(path)?;
        // Advice only: without it reads still work, with readahead.
        let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::Random);
        Ok(VolumeBytes {
            source: Source::File(file),
            name: path.display().to_string(),
            offset,
            length,
        })
    }

    /// The volume `bytes`, named `name` in errors.
    pub fn from_memory(name: &str, bytes: Vec<u8>) -> VolumeBytes {
        VolumeBytes {
            name: name.to_string(),
            offset: 0,
            length: bytes.len() as u64,
            source: Source::Memory(bytes),
        }
    }

    /// The volume's length in bytes.
    pub fn size(&self) -> u64 {
        self.length
    }

    /// Fills `buf` from volume byte `pos`; a range past the volume's end
    /// is an error.
    pub fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        let end = pos.checked_add(buf.len() as u64);
        match end {
            Some(e) if e <= self.length => match &self.source {
                Source::File(f) => f.read_exact_at(buf, self.offset + pos),
                Source::Memory(m) => {
                    // In range: `e <= length`, the length of `m`.
                    buf.copy_from_slice(&m[pos as usize..e as usize]);
                    Ok(())
                }
            },
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: {} bytes at volume byte {pos} lie past the volume's {} bytes",
                    self.name,
                    buf.len(),
                    self.length
                ),
            )),
        }
    }

    /// Reads each of `ranges` (volume bytes, none longer than [`MAX_READ`]
    /// is assumed but not required) with a few threads (one for bytes in
    /// memory: nothing to wait for) and hands the bytes to `f`; the results
    /// come back in the order of `ranges`.
    pub fn read_ranges<T: Send>(
        &self,
        ranges: &[Range<u64>],
        f: impl Fn(usize, &[u8]) -> T + Sync,
    ) -> Vec<io::Result<T>> {
        let threads = match self.source {
            Source::File(_) => READ_THREADS,
            Source::Memory(_) => 1,
        };
        let read = run_in_order(ranges, threads, None, Vec::new, |buf, i, r| {
            let len = usize::try_from(r.end.saturating_sub(r.start)).unwrap_or(0);
            buf.resize(len, 0);
            self.read_exact_at(buf, r.start).map(|()| f(i, buf))
        });
        // Without a cancel flag every range is taken.
        read.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(io::Error::other("range not read"))))
            .collect()
    }
}

impl VolumeBytes {
    /// Reads the `unit`-aligned pieces that hold `items` (sorted by their
    /// volume position `pos`), adjacent pieces in one read (see
    /// [`coalesce`]), and calls `f` on each item with the bytes from its
    /// position to the end of its read. One entry per read: the items it
    /// holds and their results, or the read's error.
    pub fn read_items<I, T>(
        &self,
        items: &[I],
        unit: u64,
        pos: impl Fn(&I) -> u64 + Sync,
        f: impl Fn(&I, &[u8]) -> T + Sync,
    ) -> Vec<(Vec<I>, io::Result<Vec<T>>)>
    where
        I: Copy + Sync,
        T: Send,
    {
        let mut pieces: Vec<u64> = items.iter().map(|i| pos(i) / unit * unit).collect();
        pieces.dedup();
        let ranges = coalesce(&pieces, unit);
        let groups = group_by_range(&ranges, items, &pos);
        let read = self.read_ranges(&ranges, |r, bytes| {
            groups[r]
                .iter()
                .map(|item| {
                    let at = usize::try_from(pos(item) - ranges[r].start).unwrap_or(usize::MAX);
                    f(item, bytes.get(at..).unwrap_or(&[]))
                })
                .collect()
        });
        groups.into_iter().zip(read).collect()
    }
}

/// Sorted, distinct `positions` of `unit`-byte pieces, gathered into
/// ranges of adjacent pieces of at most [`MAX_READ`] bytes (or one piece
/// when a unit is bigger).
fn coalesce(positions: &[u64], unit: u64) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    for &p in positions {
        let end = p.saturating_add(unit);
        match out.last_mut() {
            Some(r) if r.end == p && end - r.start <= MAX_READ => r.end = end,
            _ => out.push(p..end),
        }
    }
    out
}

/// `items`, sorted by their volume position `pos`, grouped by the range of
/// `ranges` (sorted, as [`coalesce`] makes them) that holds that position:
/// one list per range. An item in no range is in no list.
fn group_by_range<T: Copy>(
    ranges: &[Range<u64>],
    items: &[T],
    pos: impl Fn(&T) -> u64,
) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = vec![Vec::new(); ranges.len()];
    let mut r = 0usize;
    for item in items {
        let p = pos(item);
        while ranges.get(r).is_some_and(|x| x.end <= p) {
            r += 1;
        }
        match (ranges.get(r), out.get_mut(r)) {
            (Some(range), Some(list)) if range.start <= p => list.push(*item),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacent_pieces_join_up_to_the_read_limit() {
        let unit = 4096;
        let mut pos: Vec<u64> = (0..40).map(|i| i * unit).collect();
        pos.push(100 * unit);
        let r = coalesce(&pos, unit);
        assert_eq!(
            r,
            vec![0..MAX_READ, MAX_READ..40 * unit, 100 * unit..101 * unit]
        );
    }

    #[test]
    fn items_go_to_the_range_that_holds_them() {
        let ranges = vec![0..8192, 16384..20480];
        let items = [
            (0u64, 'a'),
            (4096, 'b'),
            (12288, 'x'),
            (16384, 'c'),
            (30000, 'y'),
        ];
        let got = group_by_range(&ranges, &items, |i| i.0);
        assert_eq!(got, vec![vec![items[0], items[1]], vec![items[3]]]);
    }

    #[test]
    fn reads_past_the_end_are_refused_and_ranges_keep_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        let bytes: Vec<u8> = (0..=255u8).cycle().take(64 << 10).collect();
        std::fs::write(&path, &bytes).unwrap();
        let window = bytes[4096..4096 + (32 << 10)].to_vec();
        for vol in [
            VolumeBytes::open(&path, 4096, 32 << 10).unwrap(),
            VolumeBytes::from_memory("window", window),
        ] {
            let mut b = [0u8; 16];
            vol.read_exact_at(&mut b, 0).unwrap();
            assert_eq!(&b[..], &bytes[4096..4112]);
            let err = vol.read_exact_at(&mut b, (32 << 10) - 8).unwrap_err();
            assert!(err.to_string().contains("past the volume"), "{err}");
            let ranges: Vec<Range<u64>> =
                (0..20u64).rev().map(|i| i * 1000..i * 1000 + 10).collect();
            let got = vol.read_ranges(&ranges, |i, b| (i, b[0]));
            for (k, g) in got.into_iter().enumerate() {
                let (i, first) = g.unwrap();
                assert_eq!(i, k);
                assert_eq!(first, bytes[4096 + ranges[k].start as usize]);
            }
        }
    }
}
