//! A big-endian cursor over a byte slice: every read is checked, none panics.

/// Reads big-endian integers and byte strings from a slice.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    /// The next `n` bytes, or `None` when fewer remain.
    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N)?.try_into().ok()
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }

    /// A string prefixed by its u32 length, at most `max` bytes, UTF-8.
    pub(crate) fn string32(&mut self, max: u32) -> Option<String> {
        let len = self.u32()?;
        if len > max {
            return None;
        }
        let raw = self.bytes(usize::try_from(len).ok()?)?;
        String::from_utf8(raw.to_vec()).ok()
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_checked_and_strings_bounded() {
        let mut c = Cursor::new(&[0, 0, 0, 3, b'a', b'b', b'c', 0xff]);
        assert_eq!(c.string32(3).as_deref(), Some("abc"));
        assert_eq!(c.remaining(), 1);
        assert_eq!(c.u16(), None);
        let mut c = Cursor::new(&[0, 0, 0, 5, b'a']);
        assert_eq!(c.string32(4), None, "longer than max");
        let mut c = Cursor::new(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(c.string32(u32::MAX), None, "length beyond the buffer");
    }
}
