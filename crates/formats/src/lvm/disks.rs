//! Read-only disks that assemble logical volumes from pieces of PVs:
//! [`ConcatDisk`] (segments one after another, like dm-linear tables) and
//! [`StripedDisk`] (chunks dealt round-robin over equal stripes, like
//! dm-stripe: LV chunk `c` lives on stripe `c % n` at row `c / n`).

use lifeboat_vdisk::{check_depth, check_range, push_merged, Error, Extent, ReadDisk, Result};
use std::sync::Arc;

/// Pieces read one after another.
pub struct ConcatDisk {
    name: String,
    /// Start offset of each piece in this disk, and the piece.
    parts: Vec<(u64, Arc<dyn ReadDisk>)>,
    size: u64,
}

impl ConcatDisk {
    /// Concatenates `parts` in order. Fails when the stack would be too deep.
    pub fn new(name: &str, parts: Vec<Arc<dyn ReadDisk>>) -> Result<Self> {
        let mut placed = Vec::with_capacity(parts.len());
        let mut size = 0u64;
        for p in parts {
            check_depth(name, p.as_ref())?;
            let len = p.size();
            if len == 0 {
                continue;
            }
            placed.push((size, p));
            size = size
                .checked_add(len)
                .ok_or_else(|| Error::invalid(name, "total size overflows"))?;
        }
        Ok(ConcatDisk {
            name: name.to_string(),
            parts: placed,
            size,
        })
    }

    /// Calls `f(piece, offset in piece, offset in this disk, len)` for each
    /// piece of `offset..offset+len` (already range-checked).
    fn walk(&self, offset: u64, len: u64, f: &mut Visit<'_>) -> Result<()> {
        let end = offset + len;
        let first = self
            .parts
            .partition_point(|(s, _)| *s <= offset)
            .saturating_sub(1);
        let mut pos = offset;
        for (start, part) in &self.parts[first..] {
            if pos >= end {
                break;
            }
            let inner = pos - start;
            let n = (part.size() - inner).min(end - pos);
            f(part.as_ref(), inner, pos, n)?;
            pos += n;
        }
        Ok(())
    }
}

impl ReadDisk for ConcatDisk {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(&|| self.describe(), offset, buf.len() as u64, self.size)?;
        read_pieces(&|o, l, f| self.walk(o, l, f), buf, offset)
    }

    fn extents(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        extents_of_pieces(&|o, l, f| self.walk(o, l, f), offset, len, self.size)
    }

    fn describe(&self) -> String {
        format!("{} ({} pieces)", self.name, self.parts.len())
    }

    fn depth(&self) -> u32 {
        self.parts.iter().map(|(_, p)| p.depth()).max().unwrap_or(0) + 1
    }
}

/// Equal stripes read in round-robin chunks.
pub struct StripedDisk {
    name: String,
    stripes: Vec<Arc<dyn ReadDisk>>,
    chunk: u64,
    size: u64,
}

impl StripedDisk {
    /// Stripes `stripes` (all of one size, a multiple of `chunk`) in
    /// `chunk`-byte pieces.
    pub fn new(name: &str, stripes: Vec<Arc<dyn ReadDisk>>, chunk: u64) -> Result<Self> {
        let Some(first) = stripes.first() else {
            return Err(Error::invalid(name, "no stripes"));
        };
        let each = first.size();
        if chunk == 0 || !each.is_multiple_of(chunk) {
            return Err(Error::invalid(
                name,
                format!("stripe of {each} bytes is not a multiple of the chunk size {chunk}"),
            ));
        }
        for s in &stripes {
            check_depth(name, s.as_ref())?;
            if s.size() != each {
                return Err(Error::invalid(
                    name,
                    format!("stripes differ in size ({} and {each})", s.size()),
                ));
            }
        }
        let size = each
            .checked_mul(stripes.len() as u64)
            .ok_or_else(|| Error::invalid(name, "total size overflows"))?;
        Ok(StripedDisk {
            name: name.to_string(),
            stripes,
            chunk,
            size,
        })
    }

    /// Calls `f(stripe, offset in stripe, offset in this disk, len)` for each
    /// chunk piece of `offset..offset+len` (already range-checked).
    fn walk(&self, offset: u64, len: u64, f: &mut Visit<'_>) -> Result<()> {
        let n = self.stripes.len() as u64;
        let end = offset + len;
        let mut pos = offset;
        while pos < end {
            let c = pos / self.chunk;
            let within = pos % self.chunk;
            let take = (self.chunk - within).min(end - pos);
            let stripe = &self.stripes[(c % n) as usize];
            f(stripe.as_ref(), (c / n) * self.chunk + within, pos, take)?;
            pos += take;
        }
        Ok(())
    }
}

impl ReadDisk for StripedDisk {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(&|| self.describe(), offset, buf.len() as u64, self.size)?;
        read_pieces(&|o, l, f| self.walk(o, l, f), buf, offset)
    }

    fn extents(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        extents_of_pieces(&|o, l, f| self.walk(o, l, f), offset, len, self.size)
    }

    fn describe(&self) -> String {
        format!(
            "{} ({} stripes of {} bytes, chunk {})",
            self.name,
            self.stripes.len(),
            self.size / self.stripes.len() as u64,
            self.chunk
        )
    }

    fn depth(&self) -> u32 {
        self.stripes.iter().map(|s| s.depth()).max().unwrap_or(0) + 1
    }
}

/// A walk over the pieces behind a byte range: calls `f(piece, offset in
/// piece, offset in the whole disk, length)` for each piece in order.
type Walk<'a> = dyn Fn(u64, u64, &mut Visit<'_>) -> Result<()> + 'a;

/// What a walk calls for each piece: `(piece, offset in piece, offset in
/// the whole disk, length)`.
type Visit<'a> = dyn FnMut(&dyn ReadDisk, u64, u64, u64) -> Result<()> + 'a;

/// `read_at` for a disk made of pieces (range already checked).
fn read_pieces(walk: &Walk<'_>, buf: &mut [u8], offset: u64) -> Result<()> {
    walk(offset, buf.len() as u64, &mut |piece, inner, pos, n| {
        let at = (pos - offset) as usize;
        piece.read_at(&mut buf[at..at + n as usize], inner)
    })
}

/// `extents` for a disk of `size` bytes made of pieces: each piece's own
/// extents, moved to where the piece sits, merged.
fn extents_of_pieces(walk: &Walk<'_>, offset: u64, len: u64, size: u64) -> Result<Vec<Extent>> {
    let end = offset.saturating_add(len).min(size);
    let mut list = Vec::new();
    if end <= offset {
        return Ok(list);
    }
    walk(offset, end - offset, &mut |piece, inner, pos, n| {
        for e in piece.extents(inner, n)? {
            push_merged(
                &mut list,
                Extent {
                    offset: e.offset - inner + pos,
                    ..e
                },
            );
        }
        Ok(())
    })?;
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_vdisk::testsuite::{check_read_disk, pattern_with_holes};
    use lifeboat_vdisk::{MemDisk, SliceDisk};

    fn mem(name: &str, bytes: &[u8]) -> Arc<dyn ReadDisk> {
        Arc::new(MemDisk::new(name, bytes.to_vec()))
    }

    #[test]
    fn concat_passes_the_trait_suite() {
        let whole = pattern_with_holes(6 << 20, 1 << 18);
        let lower = mem("pv", &whole);
        // Pieces out of order: 3..5 MiB, then 0..1 MiB + 7, then 1 MiB..2 MiB.
        let pieces: Vec<(u64, u64)> =
            vec![(3 << 20, 2 << 20), (0, (1 << 20) + 7), (1 << 20, 1 << 20)];
        let mut expected = Vec::new();
        let mut parts: Vec<Arc<dyn ReadDisk>> = Vec::new();
        for (s, l) in pieces {
            expected.extend_from_slice(&whole[s as usize..(s + l) as usize]);
            parts.push(Arc::new(
                SliceDisk::new(lower.clone(), s, l, "seg").unwrap(),
            ));
        }
        let disk = ConcatDisk::new("vg-lv", parts).unwrap();
        check_read_disk(&disk, &expected);
        assert_eq!(disk.depth(), 3);
    }

    #[test]
    fn striped_passes_the_trait_suite() {
        let chunk = 64 << 10;
        let stripe_len = 2 << 20;
        let a = pattern_with_holes(stripe_len, 1 << 17);
        let b: Vec<u8> = a.iter().map(|x| x.wrapping_add(1)).collect();
        let c = vec![0u8; stripe_len];
        let mut expected = Vec::new();
        for row in 0..stripe_len / chunk {
            for s in [&a, &b, &c] {
                expected.extend_from_slice(&s[row * chunk..(row + 1) * chunk]);
            }
        }
        let disk = StripedDisk::new(
            "vg-st",
            vec![mem("a", &a), mem("b", &b), mem("c", &c)],
            chunk as u64,
        )
        .unwrap();
        check_read_disk(&disk, &expected);
    }

    #[test]
    fn striped_refuses_unequal_stripes() {
        let e = StripedDisk::new("x", vec![mem("a", &[0; 1024]), mem("b", &[0; 512])], 512);
        assert!(e.is_err());
        assert!(StripedDisk::new("x", vec![mem("a", &[0; 1000])], 512).is_err());
    }
}
