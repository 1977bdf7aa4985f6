//! Transmission requests: the 28-byte header and its validation against the
//! export ([`classify`]), both pure.
//!
//! ```text
//! magic u32 (0x25609513) | flags u16 | type u16 | cookie u64 | offset u64 | length u32
//! NBD_CMD_WRITE: then `length` bytes of payload
//! ```
//!
//! The header parser never looks at the payload: the socket layer reads it
//! (at most [`MAX_PAYLOAD`] bytes) only when [`classify`] accepted the
//! write, and otherwise discards it in small pieces before the error reply,
//! so an oversized or refused write never becomes an allocation.

use super::consts::*;
use super::wire::Cursor;
use super::{Parse, ProtoError};

/// A request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// `NBD_CMD_FLAG_*` bits.
    pub flags: u16,
    /// `NBD_CMD_*`, possibly unknown.
    pub kind: u16,
    /// Opaque value echoed in the reply.
    pub cookie: u64,
    pub offset: u64,
    pub length: u32,
}

impl Request {
    /// Bytes of payload that follow the header on the wire.
    pub fn payload_len(&self) -> u32 {
        if self.kind == NBD_CMD_WRITE {
            self.length
        } else {
            0
        }
    }

    /// Whether the reply to this request must be structured (and its errors
    /// sent as NBD_REPLY_TYPE_ERROR chunks): READ and BLOCK_STATUS once
    /// structured replies were negotiated.
    pub fn structured_reply(&self, ctx: &TransmissionContext) -> bool {
        ctx.structured && matches!(self.kind, NBD_CMD_READ | NBD_CMD_BLOCK_STATUS)
    }
}

/// What transmission mode knows about the export and the negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransmissionContext {
    pub size: u64,
    pub writable: bool,
    /// Structured replies were negotiated.
    pub structured: bool,
    /// `base:allocation` was selected for this export.
    pub base_allocation: bool,
}

/// A validated command, ready to run against the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Read; `df` forbids splitting the reply into several chunks.
    Read {
        offset: u64,
        length: u32,
        df: bool,
    },
    /// Write the payload that follows; `fua` flushes before the reply.
    Write {
        offset: u64,
        length: u32,
        fua: bool,
    },
    /// Close the connection without a reply.
    Disconnect,
    Flush,
    /// An advisory discard of a range.
    Trim {
        offset: u64,
        length: u32,
        fua: bool,
    },
    WriteZeroes {
        offset: u64,
        length: u32,
        fua: bool,
    },
    /// Report base:allocation; `req_one` asks for a single descriptor.
    BlockStatus {
        offset: u64,
        length: u32,
        req_one: bool,
    },
    /// Prefetch a range.
    Cache {
        offset: u64,
        length: u32,
    },
}

/// The decision on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Run the command.
    Run(Command),
    /// Reply with `errno` (after discarding the request's payload, if any).
    Reject { errno: u32 },
}

/// Parses one request header.
pub fn parse_request(buf: &[u8]) -> Result<Parse<Request>, ProtoError> {
    let mut c = Cursor::new(buf);
    let (Some(magic), Some(flags), Some(kind), Some(cookie), Some(offset), Some(length)) =
        (c.u32(), c.u16(), c.u16(), c.u64(), c.u64(), c.u32())
    else {
        return Ok(Parse::Incomplete {
            need: REQUEST_HEADER_LEN,
        });
    };
    if magic != NBD_REQUEST_MAGIC {
        return Err(ProtoError::BadMagic {
            what: "request",
            found: u64::from(magic),
        });
    }
    Ok(Parse::Done {
        value: Request {
            flags,
            kind,
            cookie,
            offset,
            length,
        },
        consumed: REQUEST_HEADER_LEN,
    })
}

/// Decides what to do with `req` on an export described by `ctx`.
pub fn classify(req: &Request, ctx: &TransmissionContext) -> Verdict {
    let reject = |errno| Verdict::Reject { errno };
    let (offset, length) = (req.offset, req.length);
    let fua = req.flags & NBD_CMD_FLAG_FUA != 0;
    let in_range = offset
        .checked_add(u64::from(length))
        .is_some_and(|end| end <= ctx.size);

    let allowed = NBD_CMD_FLAG_FUA
        | match req.kind {
            NBD_CMD_READ if ctx.structured => NBD_CMD_FLAG_DF,
            NBD_CMD_WRITE_ZEROES => NBD_CMD_FLAG_NO_HOLE,
            NBD_CMD_BLOCK_STATUS => NBD_CMD_FLAG_REQ_ONE,
            _ => 0,
        };
    if req.flags & !allowed != 0 {
        return reject(NBD_EINVAL);
    }

    let writing = matches!(
        req.kind,
        NBD_CMD_WRITE | NBD_CMD_TRIM | NBD_CMD_WRITE_ZEROES
    );
    if writing && !ctx.writable {
        return reject(NBD_EPERM);
    }

    match req.kind {
        NBD_CMD_READ => {
            if length > MAX_PAYLOAD {
                reject(if ctx.structured {
                    NBD_EOVERFLOW
                } else {
                    NBD_EINVAL
                })
            } else if !in_range {
                reject(NBD_EINVAL)
            } else {
                Verdict::Run(Command::Read {
                    offset,
                    length,
                    df: req.flags & NBD_CMD_FLAG_DF != 0,
                })
            }
        }
        NBD_CMD_WRITE => {
            if length > MAX_PAYLOAD {
                reject(NBD_EINVAL)
            } else if !in_range {
                reject(NBD_ENOSPC)
            } else {
                Verdict::Run(Command::Write {
                    offset,
                    length,
                    fua,
                })
            }
        }
        NBD_CMD_DISC => Verdict::Run(Command::Disconnect),
        NBD_CMD_FLUSH => Verdict::Run(Command::Flush),
        NBD_CMD_TRIM if in_range => Verdict::Run(Command::Trim {
            offset,
            length,
            fua,
        }),
        NBD_CMD_WRITE_ZEROES if in_range => Verdict::Run(Command::WriteZeroes {
            offset,
            length,
            fua,
        }),
        NBD_CMD_WRITE_ZEROES => reject(NBD_ENOSPC),
        NBD_CMD_BLOCK_STATUS if ctx.base_allocation && length > 0 && in_range => {
            Verdict::Run(Command::BlockStatus {
                offset,
                length,
                req_one: req.flags & NBD_CMD_FLAG_REQ_ONE != 0,
            })
        }
        NBD_CMD_CACHE if in_range => Verdict::Run(Command::Cache { offset, length }),
        // Out of range TRIM/CACHE/BLOCK_STATUS, BLOCK_STATUS without a
        // selected context, unknown commands.
        _ => reject(NBD_EINVAL),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(flags: u16, kind: u16, offset: u64, length: u32) -> Vec<u8> {
        let mut b = NBD_REQUEST_MAGIC.to_be_bytes().to_vec();
        b.extend_from_slice(&flags.to_be_bytes());
        b.extend_from_slice(&kind.to_be_bytes());
        b.extend_from_slice(&7u64.to_be_bytes());
        b.extend_from_slice(&offset.to_be_bytes());
        b.extend_from_slice(&length.to_be_bytes());
        b
    }

    fn req(flags: u16, kind: u16, offset: u64, length: u32) -> Request {
        match parse_request(&header(flags, kind, offset, length)).unwrap() {
            Parse::Done {
                value,
                consumed: 28,
            } => value,
            other => panic!("header not parsed: {other:?}"),
        }
    }

    const RO: TransmissionContext = TransmissionContext {
        size: 1 << 20,
        writable: false,
        structured: true,
        base_allocation: true,
    };
    const RW: TransmissionContext = TransmissionContext {
        writable: true,
        structured: false,
        base_allocation: false,
        ..RO
    };

    #[test]
    fn header_parsing_waits_and_checks_magic() {
        let h = header(0, NBD_CMD_READ, 0, 512);
        for cut in 0..28 {
            assert_eq!(
                parse_request(&h[..cut]).unwrap(),
                Parse::Incomplete { need: 28 }
            );
        }
        let mut bad = h.clone();
        bad[0] ^= 1;
        assert!(matches!(
            parse_request(&bad),
            Err(ProtoError::BadMagic { .. })
        ));
        assert_eq!(req(0, NBD_CMD_WRITE, 0, 9).payload_len(), 9);
        assert_eq!(req(0, NBD_CMD_READ, 0, 9).payload_len(), 0);
    }

    #[test]
    fn reads_are_bounded_by_the_disk_and_the_payload_limit() {
        let v = |r: Request, c| classify(&r, &c);
        assert!(matches!(
            v(req(0, NBD_CMD_READ, 0, 4096), RO),
            Verdict::Run(_)
        ));
        assert_eq!(
            v(req(0, NBD_CMD_READ, (1 << 20) - 1, 2), RO),
            Verdict::Reject { errno: NBD_EINVAL }
        );
        assert_eq!(
            v(req(0, NBD_CMD_READ, u64::MAX, 2), RO),
            Verdict::Reject { errno: NBD_EINVAL }
        );
        assert_eq!(
            v(req(0, NBD_CMD_READ, 0, u32::MAX), RO),
            Verdict::Reject {
                errno: NBD_EOVERFLOW
            }
        );
        assert_eq!(
            v(req(0, NBD_CMD_READ, 0, u32::MAX), RW),
            Verdict::Reject { errno: NBD_EINVAL }
        );
        assert_eq!(
            v(req(NBD_CMD_FLAG_DF, NBD_CMD_READ, 0, 1), RW),
            Verdict::Reject { errno: NBD_EINVAL }
        );
        assert_eq!(
            v(req(1 << 9, NBD_CMD_READ, 0, 1), RO),
            Verdict::Reject { errno: NBD_EINVAL }
        );
    }

    #[test]
    fn writes_need_a_writable_export_and_room() {
        let v = |r: Request, c| classify(&r, &c);
        for kind in [NBD_CMD_WRITE, NBD_CMD_TRIM, NBD_CMD_WRITE_ZEROES] {
            assert_eq!(
                v(req(0, kind, 0, 512), RO),
                Verdict::Reject { errno: NBD_EPERM }
            );
            assert!(matches!(
                v(req(NBD_CMD_FLAG_FUA, kind, 0, 512), RW),
                Verdict::Run(_)
            ));
        }
        assert_eq!(
            v(req(0, NBD_CMD_WRITE, 1 << 20, 1), RW),
            Verdict::Reject { errno: NBD_ENOSPC }
        );
        assert_eq!(
            v(req(0, NBD_CMD_WRITE, 0, MAX_PAYLOAD + 1), RW),
            Verdict::Reject { errno: NBD_EINVAL }
        );
    }

    #[test]
    fn block_status_needs_the_context_and_a_length() {
        let v = |r: Request, c| classify(&r, &c);
        assert!(matches!(
            v(req(NBD_CMD_FLAG_REQ_ONE, NBD_CMD_BLOCK_STATUS, 0, 1), RO),
            Verdict::Run(Command::BlockStatus { req_one: true, .. })
        ));
        assert_eq!(
            v(req(0, NBD_CMD_BLOCK_STATUS, 0, 0), RO),
            Verdict::Reject { errno: NBD_EINVAL }
        );
        assert_eq!(
            v(req(0, NBD_CMD_BLOCK_STATUS, 0, 1), RW),
            Verdict::Reject { errno: NBD_EINVAL }
        );
        assert_eq!(
            v(req(0, 99, 0, 1), RW),
            Verdict::Reject { errno: NBD_EINVAL }
        );
        assert_eq!(
            v(req(0, NBD_CMD_DISC, 0, 0), RO),
            Verdict::Run(Command::Disconnect)
        );
    }
}
