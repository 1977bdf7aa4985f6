//! [`Reply`]: an RPC reply being built: its bytes, plus views of data
//! spliced in without copying (an NFS READ's data, straight from the
//! blocks of the read cache), written with vectored I/O.
//!
//! A reply dereferences to its `Vec<u8>` of bytes, so XDR encoders write
//! to it as to any buffer; [`Reply::splice`] puts a view at the current
//! end of the bytes. [`Reply::truncate`] drops bytes and the views spliced
//! at or after the cut (a procedure that failed half-way).

use lifeboat_vdisk::SharedBytes;
use std::io::{self, IoSlice, Write};
use std::ops::{Deref, DerefMut};

/// Bytes and spliced views of one reply record.
#[derive(Debug, Default)]
pub struct Reply {
    bytes: Vec<u8>,
    /// (position in `bytes` the view comes before, the view), in order.
    splices: Vec<(usize, SharedBytes)>,
}

impl Reply {
    pub fn new() -> Self {
        Self::default()
    }

    /// Empties the reply (keeps the buffer's capacity).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.splices.clear();
    }

    /// Appends `data` without copying it.
    pub fn splice(&mut self, data: SharedBytes) {
        if !data.is_empty() {
            self.splices.push((self.bytes.len(), data));
        }
    }

    /// Keeps the first `len` bytes and the views spliced before them.
    pub fn truncate(&mut self, len: usize) {
        self.bytes.truncate(len);
        self.splices.retain(|(at, _)| *at < len);
    }

    /// Length of the reply: bytes and views.
    pub fn total_len(&self) -> usize {
        self.bytes.len() + self.splices.iter().map(|(_, s)| s.len()).sum::<usize>()
    }

    /// The bytes from `start` on (views included) in one buffer (UDP
    /// replies and tests).
    pub fn to_vec_from(&self, start: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.total_len().saturating_sub(start));
        for part in self.parts() {
            out.extend_from_slice(part);
        }
        out.split_off(start.min(out.len()))
    }

    /// The pieces in order: bytes between views, and the views.
    fn parts(&self) -> Vec<&[u8]> {
        let mut parts = Vec::with_capacity(self.splices.len() * 2 + 1);
        let mut from = 0;
        for (at, view) in &self.splices {
            parts.push(&self.bytes[from..*at]);
            parts.push(view.as_slice());
            from = *at;
        }
        parts.push(&self.bytes[from..]);
        parts.retain(|p| !p.is_empty());
        parts
    }

    /// Writes the whole reply to `w` (vectored: the views are not copied
    /// into a buffer first).
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        let done = self.write_from(w, 0)?;
        if done < self.total_len() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(())
    }

    /// Writes the reply from byte `start` on (vectored) until it is all
    /// written or `w` would block (a non-blocking socket); returns the
    /// position reached, [`Reply::total_len`] when done.
    pub fn write_from(&self, w: &mut impl Write, start: usize) -> io::Result<usize> {
        let parts = self.parts();
        let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        let mut rest = &mut slices[..];
        IoSlice::advance_slices(&mut rest, start.min(self.total_len()));
        let mut at = start;
        while !rest.is_empty() {
            match w.write_vectored(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    IoSlice::advance_slices(&mut rest, n);
                    at += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(at),
                Err(e) => return Err(e),
            }
        }
        Ok(at)
    }
}

impl Deref for Reply {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.bytes
    }
}

impl DerefMut for Reply {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn view(bytes: &[u8]) -> SharedBytes {
        SharedBytes::new(Arc::new(bytes.to_vec()), 0..bytes.len()).unwrap()
    }

    #[test]
    fn views_land_between_the_bytes_written_around_them() {
        let mut r = Reply::new();
        r.extend_from_slice(b"head:");
        r.splice(view(b"DATA"));
        r.extend_from_slice(b":pad");
        r.splice(view(b"MORE"));
        assert_eq!(r.total_len(), 17);
        assert_eq!(r.to_vec_from(0), b"head:DATA:padMORE");
        assert_eq!(r.to_vec_from(5), b"DATA:padMORE");
        let mut written = Vec::new();
        r.write_to(&mut written).unwrap();
        assert_eq!(written, b"head:DATA:padMORE");
        r.truncate(5);
        assert_eq!(r.to_vec_from(0), b"head:");
        r.clear();
        assert_eq!(r.total_len(), 0);
    }

    /// A writer taking at most 3 bytes per call: the vectored loop must
    /// resume mid-slice.
    struct Trickle(Vec<u8>);
    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(3);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn short_writes_resume_where_they_stopped() {
        let mut r = Reply::new();
        r.extend_from_slice(b"0123456");
        r.splice(view(b"abcdefgh"));
        r.extend_from_slice(b"XY");
        let mut t = Trickle(Vec::new());
        r.write_to(&mut t).unwrap();
        assert_eq!(t.0, b"0123456abcdefghXY");
        let mut t = Trickle(Vec::new());
        assert_eq!(r.write_from(&mut t, 9).unwrap(), 17);
        assert_eq!(t.0, b"cdefghXY");
    }
}
