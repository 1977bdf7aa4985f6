//! XDR (RFC 4506) encoding and decoding, sans-IO.
//!
//! [`XdrReader`] is a checked big-endian cursor: every read returns an
//! [`XdrError`] instead of panicking, variable-length items carry a maximum
//! that is checked *before* anything is allocated, and padding bytes of
//! opaque data are skipped (not required to be zero, as most servers do).
//! [`XdrWrite`] adds the matching encoders to `Vec<u8>`, so replies are built
//! in one buffer that the socket layer sends as is.

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XdrError {
    /// The input ends in the middle of `what`.
    #[error("XDR input ends inside {what} (needs {need} more bytes)")]
    Truncated { what: &'static str, need: usize },
    /// A variable-length item is longer than its protocol maximum.
    #[error("XDR {what} of {len} bytes exceeds the maximum of {max}")]
    TooLong {
        what: &'static str,
        len: u32,
        max: u32,
    },
    /// A boolean or enum holds a value outside its range.
    #[error("XDR {what} has invalid value {value}")]
    BadValue { what: &'static str, value: u32 },
    /// A string is not valid UTF-8.
    #[error("XDR {what} is not valid UTF-8")]
    BadUtf8 { what: &'static str },
}

/// Result alias of the decoders.
pub type XdrResult<T> = Result<T, XdrError>;

/// Rounds `n` up to a multiple of 4 (XDR's unit), saturating.
pub fn padded(n: usize) -> usize {
    n.saturating_add(3) & !3
}

/// A checked big-endian cursor over a message.
#[derive(Debug, Clone)]
pub struct XdrReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> XdrReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        XdrReader { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The unread rest of the input.
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    fn take(&mut self, n: usize, what: &'static str) -> XdrResult<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(XdrError::Truncated {
            what,
            need: usize::MAX,
        })?;
        match self.buf.get(self.pos..end) {
            Some(s) => {
                self.pos = end;
                Ok(s)
            }
            None => Err(XdrError::Truncated {
                what,
                need: end - self.buf.len().max(self.pos),
            }),
        }
    }

    pub fn u32(&mut self, what: &'static str) -> XdrResult<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self, what: &'static str) -> XdrResult<u64> {
        let hi = self.u32(what)? as u64;
        let lo = self.u32(what)? as u64;
        Ok(hi << 32 | lo)
    }

    pub fn bool(&mut self, what: &'static str) -> XdrResult<bool> {
        match self.u32(what)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(XdrError::BadValue { what, value }),
        }
    }

    /// Fixed-length opaque data of `n` bytes plus its padding.
    pub fn opaque_fixed(&mut self, n: usize, what: &'static str) -> XdrResult<&'a [u8]> {
        let data = self.take(n, what)?;
        self.take(padded(n) - n, what)?;
        Ok(data)
    }

    /// Variable-length opaque data of at most `max` bytes.
    pub fn opaque(&mut self, max: u32, what: &'static str) -> XdrResult<&'a [u8]> {
        let len = self.u32(what)?;
        if len > max {
            return Err(XdrError::TooLong { what, len, max });
        }
        self.opaque_fixed(len as usize, what)
    }

    /// A string of at most `max` bytes, UTF-8.
    pub fn string(&mut self, max: u32, what: &'static str) -> XdrResult<&'a str> {
        let raw = self.opaque(max, what)?;
        std::str::from_utf8(raw).map_err(|_| XdrError::BadUtf8 { what })
    }

    /// An array of u32 of at most `max` elements.
    pub fn u32_array(&mut self, max: u32, what: &'static str) -> XdrResult<Vec<u32>> {
        let len = self.u32(what)?;
        if len > max {
            return Err(XdrError::TooLong { what, len, max });
        }
        (0..len).map(|_| self.u32(what)).collect()
    }
}

/// XDR encoders, appended to a byte buffer.
pub trait XdrWrite {
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn put_bool(&mut self, v: bool);
    /// Fixed-length opaque data plus padding.
    fn put_opaque_fixed(&mut self, data: &[u8]);
    /// Length, data, padding. Data longer than `u32::MAX` is a caller bug;
    /// the encoders here are only given bounded protocol items.
    fn put_opaque(&mut self, data: &[u8]);
    fn put_string(&mut self, s: &str);
}

impl XdrWrite for Vec<u8> {
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_bool(&mut self, v: bool) {
        self.put_u32(v as u32);
    }
    fn put_opaque_fixed(&mut self, data: &[u8]) {
        self.extend_from_slice(data);
        let pad = padded(data.len()) - data.len();
        self.extend_from_slice(&[0u8; 3][..pad]);
    }
    fn put_opaque(&mut self, data: &[u8]) {
        self.put_u32(u32::try_from(data.len()).unwrap_or(u32::MAX));
        self.put_opaque_fixed(data);
    }
    fn put_string(&mut self, s: &str) {
        self.put_opaque(s.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_of_every_type() {
        let mut b = Vec::new();
        b.put_u32(7);
        b.put_u64(0x0102_0304_0506_0708);
        b.put_bool(true);
        b.put_opaque(b"abcde");
        b.put_string("xy");
        b.put_opaque_fixed(b"123");
        assert_eq!(b.len(), 4 + 8 + 4 + 4 + 8 + 4 + 4 + 4);
        let mut r = XdrReader::new(&b);
        assert_eq!(r.u32("a"), Ok(7));
        assert_eq!(r.u64("b"), Ok(0x0102_0304_0506_0708));
        assert_eq!(r.bool("c"), Ok(true));
        assert_eq!(r.opaque(5, "d"), Ok(&b"abcde"[..]));
        assert_eq!(r.string(2, "e"), Ok("xy"));
        assert_eq!(r.opaque_fixed(3, "f"), Ok(&b"123"[..]));
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut r = XdrReader::new(&[0, 0, 0, 9, 1, 2]);
        assert!(matches!(
            r.clone().opaque(8, "x"),
            Err(XdrError::TooLong { len: 9, max: 8, .. })
        ));
        assert!(matches!(
            r.opaque(100, "x"),
            Err(XdrError::Truncated { .. })
        ));
        let mut r = XdrReader::new(&[0, 0, 0, 2]);
        assert!(matches!(
            r.bool("b"),
            Err(XdrError::BadValue { value: 2, .. })
        ));
        let mut r = XdrReader::new(&[0, 0, 0, 1, 0xff, 0, 0, 0]);
        assert!(matches!(r.string(4, "s"), Err(XdrError::BadUtf8 { .. })));
        let mut r = XdrReader::new(&[0xff, 0xff, 0xff, 0xff]);
        assert!(r.u32_array(16, "gids").is_err());
        assert!(XdrReader::new(&[1, 2, 3]).u32("short").is_err());
    }
}
