//! RPC record marking for TCP (RFC 5531 section 11).
//!
//! A record is one or more fragments; each fragment starts with a 4-byte
//! big-endian header whose top bit marks the last fragment and whose low 31
//! bits give the fragment's length. A record longer than the configured
//! maximum is refused as soon as a fragment header announces it, before
//! anything is allocated: the stream cannot be resynchronised, so the
//! connection ends.
//!
//! [`parse_record`] assembles a record from whatever bytes have arrived;
//! [`FragmentHeader::decode`] is the incremental form the socket layer uses;
//! [`begin_record`] / [`finish_record`] frame a reply in place (one fragment).

use super::Reply;

/// The last-fragment bit of a fragment header.
pub const LAST_FRAGMENT: u32 = 0x8000_0000;

/// The default maximum record: a 1 MiB WRITE plus room for its arguments.
pub const DEFAULT_MAX_RECORD: usize = (1 << 20) + 4096;

/// A record that breaks the framing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The record announced more than `max` bytes.
    #[error("RPC record of at least {len} bytes exceeds the maximum of {max}")]
    TooLong { len: usize, max: usize },
}

/// One fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentHeader {
    pub len: usize,
    pub last: bool,
}

impl FragmentHeader {
    /// Decodes a header arriving after `so_far` bytes of the record,
    /// refusing a record longer than `max`.
    pub fn decode(raw: [u8; 4], so_far: usize, max: usize) -> Result<Self, RecordError> {
        let v = u32::from_be_bytes(raw);
        let len = (v & !LAST_FRAGMENT) as usize;
        let total = so_far.saturating_add(len);
        if total > max {
            return Err(RecordError::TooLong { len: total, max });
        }
        Ok(FragmentHeader {
            len,
            last: v & LAST_FRAGMENT != 0,
        })
    }
}

/// The outcome of [`parse_record`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse<T> {
    /// At least `need` bytes in total are needed.
    Incomplete { need: usize },
    /// A whole record, which used the first `consumed` bytes.
    Done { value: T, consumed: usize },
}

/// Assembles one record from the start of `buf`.
pub fn parse_record(buf: &[u8], max: usize) -> Result<Parse<Vec<u8>>, RecordError> {
    let mut pos = 0usize;
    let mut out = Vec::new();
    loop {
        let Some(raw) = buf.get(pos..pos.saturating_add(4)) else {
            return Ok(Parse::Incomplete {
                need: pos.saturating_add(4),
            });
        };
        let raw = [raw[0], raw[1], raw[2], raw[3]];
        let h = FragmentHeader::decode(raw, out.len(), max)?;
        let start = pos + 4;
        let end = start.saturating_add(h.len);
        let Some(body) = buf.get(start..end) else {
            return Ok(Parse::Incomplete { need: end });
        };
        out.extend_from_slice(body);
        pos = end;
        if h.last {
            return Ok(Parse::Done {
                value: out,
                consumed: pos,
            });
        }
    }
}

/// Reserves the fragment header of a reply at the end of `out`; returns
/// where it starts, for [`finish_record`].
pub fn begin_record(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    start
}

/// Writes the header reserved at `start`: one last fragment holding
/// everything after it, spliced views included (replies are far below
/// 2 GiB).
pub fn finish_record(out: &mut Reply, start: usize) {
    let len = out.total_len().saturating_sub(start + 4) as u32 & !LAST_FRAGMENT;
    if let Some(h) = out.get_mut(start..start + 4) {
        h.copy_from_slice(&(len | LAST_FRAGMENT).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_join_and_the_maximum_is_enforced() {
        let mut b = vec![0, 0, 0, 2, b'a', b'b'];
        b.extend_from_slice(&[0x80, 0, 0, 1, b'c', 9]);
        assert_eq!(
            parse_record(&b, 16),
            Ok(Parse::Done {
                value: b"abc".to_vec(),
                consumed: 11
            })
        );
        assert_eq!(
            parse_record(&b[..7], 16),
            Ok(Parse::Incomplete { need: 10 })
        );
        assert_eq!(parse_record(&b[..3], 16), Ok(Parse::Incomplete { need: 4 }));
        assert!(matches!(
            parse_record(&b, 2),
            Err(RecordError::TooLong { len: 3, max: 2 })
        ));
        assert!(FragmentHeader::decode([0xff; 4], 0, DEFAULT_MAX_RECORD).is_err());
    }

    #[test]
    fn a_reply_is_framed_in_place() {
        let mut out = Reply::new();
        let start = begin_record(&mut out);
        out.extend_from_slice(b"hello");
        out.splice(lifeboat_vdisk::SharedBytes::owned(b"!!".to_vec()));
        finish_record(&mut out, start);
        assert_eq!(&out[..4], &[0x80, 0, 0, 7]);
    }
}
