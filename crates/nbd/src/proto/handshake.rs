//! The newstyle fixed handshake: the server greeting, the client flags, the
//! framing of options (client → server) and of option replies.
//!
//! ```text
//! server: "NBDMAGIC" u64 | "IHAVEOPT" u64 | handshake flags u16
//! client: client flags u32
//! client: "IHAVEOPT" u64 | option u32 | length u32 | data[length]      (repeated)
//! server: REPLY_MAGIC u64 | option u32 | reply type u32 | length u32 | data
//! NBD_OPT_EXPORT_NAME answer: size u64 | transmission flags u16 | 124 zeros
//!                             (the zeros omitted when both sides agreed)
//! ```

use super::consts::*;
use super::wire::Cursor;
use super::{Parse, ProtoError};

/// What the client announced in its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientFlags {
    /// Omit the 124 zero bytes after NBD_OPT_EXPORT_NAME.
    pub no_zeroes: bool,
}

/// One option sent by the client during negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionRequest {
    /// The option number (`NBD_OPT_*`), possibly one this server does not know.
    pub option: u32,
    /// Its payload, at most [`MAX_OPTION_LEN`] bytes.
    pub data: Vec<u8>,
}

/// The 18-byte greeting the server sends first.
pub fn encode_greeting(out: &mut Vec<u8>) {
    out.extend_from_slice(&NBDMAGIC.to_be_bytes());
    out.extend_from_slice(&IHAVEOPT.to_be_bytes());
    out.extend_from_slice(&(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES).to_be_bytes());
}

/// Parses the client's 4-byte flags. A client that does not speak the fixed
/// newstyle protocol, or sets bits this server does not know, is refused.
pub fn parse_client_flags(buf: &[u8]) -> Result<Parse<ClientFlags>, ProtoError> {
    let Some(flags) = Cursor::new(buf).u32() else {
        return Ok(Parse::Incomplete { need: 4 });
    };
    let known = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES;
    if flags & NBD_FLAG_C_FIXED_NEWSTYLE == 0 || flags & !known != 0 {
        return Err(ProtoError::BadClientFlags { flags });
    }
    Ok(Parse::Done {
        value: ClientFlags {
            no_zeroes: flags & NBD_FLAG_C_NO_ZEROES != 0,
        },
        consumed: 4,
    })
}

/// Parses one option. Its length is checked against [`MAX_OPTION_LEN`]
/// before the payload is waited for, so a huge length costs nothing.
pub fn parse_option(buf: &[u8]) -> Result<Parse<OptionRequest>, ProtoError> {
    const HEADER: usize = 16;
    let mut c = Cursor::new(buf);
    let (Some(magic), Some(option), Some(length)) = (c.u64(), c.u32(), c.u32()) else {
        return Ok(Parse::Incomplete { need: HEADER });
    };
    if magic != IHAVEOPT {
        return Err(ProtoError::BadMagic {
            what: "option",
            found: magic,
        });
    }
    if length > MAX_OPTION_LEN {
        return Err(ProtoError::OptionTooLong {
            option,
            length,
            max: MAX_OPTION_LEN,
        });
    }
    // length <= 64 KiB: the sum cannot overflow.
    let total = HEADER + length as usize;
    match c.bytes(length as usize) {
        None => Ok(Parse::Incomplete { need: total }),
        Some(data) => Ok(Parse::Done {
            value: OptionRequest {
                option,
                data: data.to_vec(),
            },
            consumed: total,
        }),
    }
}

/// Appends one option reply. `data` is at most a few KiB (names, info
/// items), far below the u32 limit; longer data is truncated to it rather
/// than panicking.
pub fn encode_option_reply(out: &mut Vec<u8>, option: u32, reply: u32, data: &[u8]) {
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&reply.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data.get(..len as usize).unwrap_or(data));
}

/// Appends the answer to a successful NBD_OPT_EXPORT_NAME.
pub fn encode_export_name_reply(out: &mut Vec<u8>, size: u64, flags: u16, no_zeroes: bool) {
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    if !no_zeroes {
        out.extend_from_slice(&[0u8; 124]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_is_nbdmagic_ihaveopt_and_flags() {
        let mut out = Vec::new();
        encode_greeting(&mut out);
        assert_eq!(&out[..16], b"NBDMAGICIHAVEOPT");
        assert_eq!(out[16..], [0, 3]);
    }

    #[test]
    fn client_flags_need_fixed_newstyle_and_no_unknown_bits() {
        assert_eq!(
            parse_client_flags(&[0, 0]).unwrap(),
            Parse::Incomplete { need: 4 }
        );
        assert_eq!(
            parse_client_flags(&[0, 0, 0, 3]).unwrap(),
            Parse::Done {
                value: ClientFlags { no_zeroes: true },
                consumed: 4
            }
        );
        assert!(parse_client_flags(&[0, 0, 0, 0]).is_err());
        assert!(parse_client_flags(&[0, 0, 1, 1]).is_err());
    }

    #[test]
    fn option_framing_waits_for_the_payload_and_bounds_it() {
        let mut opt = Vec::new();
        opt.extend_from_slice(b"IHAVEOPT");
        opt.extend_from_slice(&NBD_OPT_LIST.to_be_bytes());
        opt.extend_from_slice(&3u32.to_be_bytes());
        opt.extend_from_slice(b"abcXX");
        assert_eq!(
            parse_option(&opt[..10]).unwrap(),
            Parse::Incomplete { need: 16 }
        );
        assert_eq!(
            parse_option(&opt[..17]).unwrap(),
            Parse::Incomplete { need: 19 }
        );
        let Parse::Done { value, consumed } = parse_option(&opt).unwrap() else {
            panic!("complete option not parsed");
        };
        assert_eq!(
            (value.option, value.data.as_slice(), consumed),
            (3, &b"abc"[..], 19)
        );

        opt[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            parse_option(&opt),
            Err(ProtoError::OptionTooLong { .. })
        ));
        opt[0] = b'X';
        assert!(matches!(
            parse_option(&opt),
            Err(ProtoError::BadMagic { .. })
        ));
    }

    #[test]
    fn export_name_reply_honours_no_zeroes() {
        let mut a = Vec::new();
        encode_export_name_reply(&mut a, 1 << 20, 1, false);
        assert_eq!(a.len(), 8 + 2 + 124);
        let mut b = Vec::new();
        encode_export_name_reply(&mut b, 1 << 20, 1, true);
        assert_eq!(b, [0, 0, 0, 0, 0, 0x10, 0, 0, 0, 1]);
    }
}
