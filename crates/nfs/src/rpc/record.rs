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
//! [`RecordReader`] is the incremental form the socket layer uses: it holds
//! only the bytes that have arrived (a fragment header announcing 1 MiB
//! allocates nothing until the bytes come; the buffer then grows
//! geometrically, never past what the fragments announced), so an idle or
//! slow client costs no buffer; [`begin_record`] / [`finish_record`] frame a
//! reply in place (one fragment).

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

/// Smallest buffer a record starts with once body bytes arrive.
const FIRST_GROWTH: usize = 4096;

/// Assembles records from a byte stream that arrives in pieces.
///
/// Memory: the record buffer holds the bytes received so far, grown
/// geometrically up to what the fragment headers have announced, which
/// [`FragmentHeader::decode`] keeps within the maximum. Between records
/// it holds nothing.
#[derive(Debug)]
pub struct RecordReader {
    max: usize,
    head: [u8; 4],
    head_len: usize,
    /// Bytes still to come in the current fragment.
    left: usize,
    /// Whether the current fragment is the record's last.
    last: bool,
    /// Whether a header has been read for the current fragment.
    in_body: bool,
    /// The record so far: `msg[..have]`; the rest is zeroed room handed
    /// out by [`RecordReader::room`] and not filled yet.
    msg: Vec<u8>,
    have: usize,
}

impl RecordReader {
    /// A reader refusing records longer than `max`.
    pub fn new(max: usize) -> Self {
        RecordReader {
            max,
            head: [0; 4],
            head_len: 0,
            left: 0,
            last: false,
            in_body: false,
            msg: Vec::new(),
            have: 0,
        }
    }

    /// Whether no byte of a record has arrived (a clean place to close).
    pub fn is_idle(&self) -> bool {
        self.head_len == 0 && !self.in_body && self.have == 0
    }

    /// Bytes of the record received so far.
    pub fn received(&self) -> usize {
        self.have
    }

    /// Bytes the buffer holds now (tests and accounting).
    pub fn buffered(&self) -> usize {
        self.msg.capacity()
    }

    /// Bytes still expected in the current fragment's body (0 when a
    /// header comes next): the socket layer reads that many straight into
    /// [`RecordReader::room`] instead of through a scratch buffer.
    pub fn body_left(&self) -> usize {
        if self.in_body {
            self.left
        } else {
            0
        }
    }

    /// Room for up to `want` more body bytes (at most
    /// [`RecordReader::body_left`]), to read into; then call
    /// [`RecordReader::filled`] with the count. Room handed out and not
    /// filled is kept for the next call (zeroed once).
    pub fn room(&mut self, want: usize) -> &mut [u8] {
        let n = want.min(self.body_left());
        self.grow(n);
        if self.msg.len() < self.have + n {
            self.msg.resize(self.have + n, 0);
        }
        &mut self.msg[self.have..self.have + n]
    }

    /// Keeps `n` bytes read into [`RecordReader::room`]; returns the record
    /// if it is complete.
    pub fn filled(&mut self, n: usize) -> Option<Vec<u8>> {
        let n = n.min(self.left).min(self.msg.len() - self.have);
        self.have += n;
        self.left -= n;
        self.end_of_fragment()
    }

    fn grow(&mut self, n: usize) {
        let need = self.have + n;
        if need > self.msg.capacity() {
            // Geometric, but never past what the fragment announced.
            let announced = self.have + self.left;
            let target = need
                .max(self.msg.capacity().saturating_mul(2))
                .max(FIRST_GROWTH)
                .min(announced.max(need));
            self.msg.reserve_exact(target - self.msg.len());
        }
    }

    fn end_of_fragment(&mut self) -> Option<Vec<u8>> {
        if !self.in_body || self.left > 0 {
            return None;
        }
        self.in_body = false;
        if self.last {
            self.last = false;
            self.msg.truncate(std::mem::take(&mut self.have));
            return Some(std::mem::take(&mut self.msg));
        }
        None
    }

    /// Takes bytes from `data`; returns how many were used and the record
    /// they completed, if any (the caller feeds the rest afterwards). A
    /// header announcing a record past the maximum is an error: the stream
    /// cannot be resynchronised.
    pub fn feed(&mut self, data: &[u8]) -> Result<(usize, Option<Vec<u8>>), RecordError> {
        let mut used = 0;
        while used < data.len() {
            if !self.in_body {
                let take = (4 - self.head_len).min(data.len() - used);
                self.head[self.head_len..self.head_len + take]
                    .copy_from_slice(&data[used..used + take]);
                self.head_len += take;
                used += take;
                if self.head_len < 4 {
                    break;
                }
                self.head_len = 0;
                let h = FragmentHeader::decode(self.head, self.have, self.max)?;
                self.in_body = true;
                self.left = h.len;
                self.last = h.last;
            } else {
                let take = self.left.min(data.len() - used);
                self.room(take).copy_from_slice(&data[used..used + take]);
                self.have += take;
                self.left -= take;
                used += take;
            }
            if let Some(rec) = self.end_of_fragment() {
                return Ok((used, Some(rec)));
            }
        }
        Ok((used, None))
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
    fn the_reader_assembles_byte_by_byte_and_allocates_only_what_arrived() {
        let mut b = vec![0, 0, 0, 2, b'a', b'b'];
        b.extend_from_slice(&[0x80, 0, 0, 1, b'c']);
        b.extend_from_slice(&[0x80, 0, 0, 0]);
        let mut r = RecordReader::new(16);
        let mut got = Vec::new();
        for byte in &b {
            let (used, rec) = r.feed(std::slice::from_ref(byte)).unwrap();
            assert_eq!(used, 1);
            got.extend(rec);
        }
        assert_eq!(got, vec![b"abc".to_vec(), vec![]]);
        assert!(r.is_idle());

        // A header announcing 1 MiB: nothing allocated until bytes come,
        // then only about what arrived.
        let mut r = RecordReader::new(DEFAULT_MAX_RECORD);
        assert_eq!(r.feed(&0x8010_0000u32.to_be_bytes()).unwrap(), (4, None));
        assert_eq!(r.buffered(), 0);
        assert_eq!(r.body_left(), 1 << 20);
        r.feed(&[7; 100]).unwrap();
        assert!(r.buffered() <= FIRST_GROWTH, "{}", r.buffered());
        let room = r.room(1 << 20).len();
        assert_eq!(room, (1 << 20) - 100);
        assert_eq!(r.filled(1000), None, "a short read");
        assert_eq!(r.room(1 << 20).len(), room - 1000);
        let rec = r.filled(room - 1000).unwrap();
        assert_eq!(rec.len(), 1 << 20);
        assert!(rec.capacity() <= 1 << 20, "grew past the announced size");
        assert_eq!(r.buffered(), 0, "nothing kept between records");

        // Fragments adding up past the maximum.
        let mut r = RecordReader::new(8);
        assert_eq!(r.feed(&[0, 0, 0, 5, 1, 2, 3, 4, 5]).unwrap(), (9, None));
        assert!(matches!(
            r.feed(&[0x80, 0, 0, 4]),
            Err(RecordError::TooLong { len: 9, max: 8 })
        ));
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
