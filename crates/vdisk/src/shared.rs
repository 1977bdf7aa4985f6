//! [`SharedBytes`]: a read-only view of part of a reference-counted buffer,
//! so a disk that holds blocks in memory (a cache) can hand them out
//! without copying them ([`crate::ReadDisk::read_shared`]); the NFS server
//! writes READ replies straight from such views.

use std::ops::{Deref, Range};
use std::sync::Arc;

/// Bytes `start..end` of a shared buffer.
#[derive(Clone)]
pub struct SharedBytes {
    buf: Arc<Vec<u8>>,
    start: usize,
    end: usize,
}

impl SharedBytes {
    /// The bytes `range` of `buf`; `None` when the range is not inside it.
    pub fn new(buf: Arc<Vec<u8>>, range: Range<usize>) -> Option<Self> {
        (range.start <= range.end && range.end <= buf.len()).then_some(SharedBytes {
            buf,
            start: range.start,
            end: range.end,
        })
    }

    /// All of an owned buffer.
    pub fn owned(buf: Vec<u8>) -> Self {
        let end = buf.len();
        SharedBytes {
            buf: Arc::new(buf),
            start: 0,
            end,
        }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // `new` and `owned` keep start <= end <= buf.len().
        &self.buf[self.start..self.end]
    }
}

impl Deref for SharedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedBytes({} bytes)", self.end - self.start)
    }
}

/// Copies the bytes of `parts` into one vector.
pub fn concat_shared(parts: &[SharedBytes]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_stay_inside_their_buffer() {
        let buf = Arc::new(vec![1u8, 2, 3, 4]);
        let v = SharedBytes::new(buf.clone(), 1..3).unwrap();
        assert_eq!(&*v, &[2, 3]);
        assert!(SharedBytes::new(buf.clone(), 2..5).is_none());
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = 3..2;
        assert!(SharedBytes::new(buf, backwards).is_none());
        assert_eq!(
            concat_shared(&[v, SharedBytes::owned(vec![9])]),
            vec![2, 3, 9]
        );
    }
}
