//! Pure helpers between the disk's extent list and the NBD replies: clamp
//! whatever a disk reports to the requested range (a buggy layer must not
//! make the server send bytes outside it), then turn it into READ chunks or
//! base:allocation descriptors.

use crate::proto::consts::{MAX_STATUS_DESCRIPTORS, NBD_STATE_HOLE, NBD_STATE_ZERO};
use crate::proto::StatusDescriptor;
use lifeboat_vdisk::{Extent, ExtentKind};

/// A piece of a requested range: `zero` pieces read as zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Piece {
    pub offset: u64,
    pub length: u64,
    pub zero: bool,
}

/// Covers `offset..end` exactly with pieces from `extents`: parts the disk
/// did not describe, or described outside the range, count as data; adjacent
/// pieces of one kind are merged.
pub(crate) fn clamp(extents: &[Extent], offset: u64, end: u64) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::new();
    let mut push = |offset: u64, length: u64, zero: bool| {
        if length == 0 {
            return;
        }
        if let Some(last) = out.last_mut() {
            if last.zero == zero && last.offset + last.length == offset {
                last.length += length;
                return;
            }
        }
        out.push(Piece {
            offset,
            length,
            zero,
        });
    };
    let mut pos = offset;
    for e in extents {
        let start = e.offset.max(pos);
        let stop = e.offset.saturating_add(e.length).min(end);
        if stop <= start {
            continue;
        }
        push(pos, start - pos, false);
        push(start, stop - start, e.kind == ExtentKind::Zero);
        pos = stop;
    }
    push(pos, end.saturating_sub(pos), false);
    out
}

/// base:allocation descriptors for `pieces` (zero → HOLE|ZERO, data → 0),
/// at most `MAX_STATUS_DESCRIPTORS`, or one when `req_one`.
pub(crate) fn status_descriptors(pieces: &[Piece], req_one: bool) -> Vec<StatusDescriptor> {
    let max = if req_one { 1 } else { MAX_STATUS_DESCRIPTORS };
    pieces
        .iter()
        .take(max)
        .map(|p| StatusDescriptor {
            // Pieces lie inside a request whose length is a u32.
            length: u32::try_from(p.length).unwrap_or(u32::MAX),
            flags: if p.zero {
                NBD_STATE_HOLE | NBD_STATE_ZERO
            } else {
                0
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamp_covers_the_range_whatever_the_disk_says() {
        let p = |offset, length, zero| Piece {
            offset,
            length,
            zero,
        };
        // A well-behaved list, cut to the range.
        let list = [
            Extent::zero(0, 100),
            Extent::data(100, 100),
            Extent::zero(200, 100),
        ];
        assert_eq!(
            clamp(&list, 50, 250),
            [p(50, 50, true), p(100, 100, false), p(200, 50, true)]
        );
        // Gaps, overlaps, overflow and an empty list.
        let bad = [
            Extent::zero(10, 5),
            Extent::zero(12, 10),
            Extent::zero(u64::MAX - 1, 9),
        ];
        assert_eq!(
            clamp(&bad, 0, 30),
            [p(0, 10, false), p(10, 12, true), p(22, 8, false)]
        );
        assert_eq!(clamp(&[], 5, 9), [p(5, 4, false)]);
        assert!(clamp(&[], 5, 5).is_empty());
    }

    #[test]
    fn descriptors_flag_zero_pieces_as_holes() {
        let pieces = clamp(&[Extent::zero(0, 8), Extent::data(8, 8)], 0, 16);
        let d = status_descriptors(&pieces, false);
        assert_eq!(
            d,
            [
                StatusDescriptor {
                    length: 8,
                    flags: NBD_STATE_HOLE | NBD_STATE_ZERO
                },
                StatusDescriptor {
                    length: 8,
                    flags: 0
                }
            ]
        );
        assert_eq!(status_descriptors(&pieces, true).len(), 1);
    }
}
