//! The in-memory allocation bitmap of an overlay: one bit per block, bit
//! `i % 8` of byte `i / 8` (least significant first), plus the set of bitmap
//! pages changed since the last flush so a flush writes only those.
//!
//! Bits only ever go from 0 to 1 during a session. That is what makes the
//! bitmap safe to rewrite in place without a checksum: a write torn at any
//! sector leaves every bit either at its old or its new value, and a block
//! whose bit is 1 on disk had its data made durable first.

/// Bytes of bitmap written per dirty unit (one page).
pub const MAP_PAGE: usize = 4096;

/// One bit per block, with dirty-page tracking.
pub struct Bitmap {
    bits: Vec<u8>,
    blocks: u64,
    dirty: Vec<bool>,
}

impl Bitmap {
    /// An all-clear bitmap of `blocks` bits held in `bytes` bytes.
    pub fn new(blocks: u64, bytes: usize) -> Self {
        Self::from_bytes(blocks, vec![0u8; bytes])
    }

    /// A bitmap loaded from disk; bits past `blocks` are ignored.
    pub fn from_bytes(blocks: u64, bits: Vec<u8>) -> Self {
        let pages = bits.len().div_ceil(MAP_PAGE);
        Bitmap {
            bits,
            blocks,
            dirty: vec![false; pages],
        }
    }

    /// Whether block `i` is allocated in the overlay.
    pub fn get(&self, i: u64) -> bool {
        if i >= self.blocks {
            return false;
        }
        let Ok(byte) = usize::try_from(i / 8) else {
            return false;
        };
        self.bits.get(byte).is_some_and(|b| b & (1 << (i % 8)) != 0)
    }

    /// Marks block `i` allocated and its bitmap page dirty.
    pub fn set(&mut self, i: u64) {
        if i >= self.blocks {
            return;
        }
        let Ok(byte) = usize::try_from(i / 8) else {
            return;
        };
        if let Some(b) = self.bits.get_mut(byte) {
            *b |= 1 << (i % 8);
            if let Some(d) = self.dirty.get_mut(byte / MAP_PAGE) {
                *d = true;
            }
        }
    }

    /// Takes the dirty pages as `(byte offset in the bitmap, contents)` and
    /// marks them clean.
    pub fn take_dirty(&mut self) -> Vec<(usize, Vec<u8>)> {
        let mut out = Vec::new();
        for (page, d) in self.dirty.iter_mut().enumerate() {
            if *d {
                *d = false;
                let start = page * MAP_PAGE;
                let end = (start + MAP_PAGE).min(self.bits.len());
                out.push((start, self.bits[start..end].to_vec()));
            }
        }
        out
    }

    /// Marks the pages starting at these byte offsets dirty again (after a
    /// failed flush).
    pub fn redirty(&mut self, offsets: impl IntoIterator<Item = usize>) {
        for off in offsets {
            if let Some(d) = self.dirty.get_mut(off / MAP_PAGE) {
                *d = true;
            }
        }
    }

    /// Runs of blocks `first..last` (exclusive) with the same state, as
    /// `(run start, run end, allocated)`.
    pub fn runs(&self, first: u64, last: u64) -> Vec<(u64, u64, bool)> {
        let mut out = Vec::new();
        let mut i = first;
        while i < last {
            // Skip whole bytes of one state quickly.
            let state = self.get(i);
            let mut j = i + 1;
            while j < last {
                if j.is_multiple_of(8) && j + 8 <= last {
                    let whole = match usize::try_from(j / 8).ok().and_then(|b| self.bits.get(b)) {
                        Some(&b) => (state && b == 0xFF) || (!state && b == 0),
                        None => !state,
                    };
                    if whole && j + 8 <= self.blocks {
                        j += 8;
                        continue;
                    }
                }
                if self.get(j) != state {
                    break;
                }
                j += 1;
            }
            out.push((i, j, state));
            i = j;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_sets_tracks_dirty_pages_and_finds_runs() {
        let blocks = 40_000u64;
        let mut m = Bitmap::new(blocks, blocks.div_ceil(8) as usize);
        assert!(m.take_dirty().is_empty());
        for i in [3u64, 4, 5, 100, 39_999] {
            m.set(i);
        }
        m.set(blocks + 5); // ignored, out of range
        assert!(m.get(4) && !m.get(6) && m.get(39_999) && !m.get(blocks + 5));
        assert_eq!(
            m.runs(0, 200),
            vec![
                (0, 3, false),
                (3, 6, true),
                (6, 100, false),
                (100, 101, true),
                (101, 200, false)
            ]
        );
        assert_eq!(
            m.runs(39_990, blocks),
            vec![(39_990, 39_999, false), (39_999, 40_000, true)]
        );
        let dirty = m.take_dirty();
        assert_eq!(dirty.iter().map(|d| d.0).collect::<Vec<_>>(), vec![0, 4096]);
        assert_eq!(dirty[1].1.len(), 5000 - 4096);
        assert!(m.take_dirty().is_empty());
        m.redirty([4096]);
        assert_eq!(m.take_dirty().len(), 1);
        for i in 0..64 {
            m.set(i);
        }
        assert_eq!(
            m.runs(0, 200),
            vec![
                (0, 64, true),
                (64, 100, false),
                (100, 101, true),
                (101, 200, false)
            ]
        );
    }
}
