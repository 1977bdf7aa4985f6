//! Extents: what a range of a disk holds (data or zeros), as reported by
//! [`crate::ReadDisk::extents`].

/// What a byte range of a disk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExtentKind {
    /// Bytes that may be non-zero and must be read.
    Data,
    /// Bytes that read as zeros (a hole, an unallocated cluster, a zero cluster).
    Zero,
}

/// A contiguous byte range of a disk and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub length: u64,
    pub kind: ExtentKind,
}

impl Extent {
    pub fn data(offset: u64, length: u64) -> Self {
        Extent {
            offset,
            length,
            kind: ExtentKind::Data,
        }
    }

    pub fn zero(offset: u64, length: u64) -> Self {
        Extent {
            offset,
            length,
            kind: ExtentKind::Zero,
        }
    }

    /// One past the last byte of the extent.
    pub fn end(&self) -> u64 {
        self.offset + self.length
    }
}

/// Appends `extent` to `list`, merging it with the last entry when both are
/// adjacent and of the same kind. Empty extents are dropped.
pub fn push_merged(list: &mut Vec<Extent>, extent: Extent) {
    if extent.length == 0 {
        return;
    }
    if let Some(last) = list.last_mut() {
        if last.kind == extent.kind && last.end() == extent.offset {
            last.length += extent.length;
            return;
        }
    }
    list.push(extent);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_merged_joins_adjacent_extents_of_one_kind() {
        let mut list = Vec::new();
        push_merged(&mut list, Extent::data(0, 10));
        push_merged(&mut list, Extent::data(10, 5));
        push_merged(&mut list, Extent::zero(15, 5));
        push_merged(&mut list, Extent::zero(20, 0));
        assert_eq!(list, vec![Extent::data(0, 15), Extent::zero(15, 5)]);
    }
}
