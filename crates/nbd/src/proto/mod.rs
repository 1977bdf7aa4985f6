//! The sans-IO NBD protocol core: bytes in, bytes out, no sockets.
//!
//! Parsers take `&[u8]` (whatever has arrived so far) and answer with
//! [`Parse::Incomplete`] (how many bytes in total they need), a decoded
//! message with the number of bytes it used ([`Parse::Done`]), or a
//! [`ProtoError`] when the bytes can never become a valid message. They never
//! panic and never allocate more than the bounded sizes of [`consts`], so
//! any input can be fed to them (a fuzz target only needs `parse_*`).
//!
//! Encoders append to a `Vec<u8>`. The decisions of the protocol (which
//! option reply to send, whether a request is valid for an export) are pure
//! functions too: [`options::Negotiation`] and [`request::classify`].
//!
//! ```text
//! consts     every number of the spec, with a comment
//! wire       big-endian cursor used by the parsers
//! handshake  greeting, client flags, option framing, option replies
//! options    the option negotiation state machine (pure)
//! request    request headers and their validation against an export
//! reply      simple replies and structured reply chunks
//! ```

pub mod consts;
pub mod handshake;
pub mod options;
pub mod reply;
pub mod request;
mod wire;

pub use handshake::{
    encode_export_name_reply, encode_greeting, encode_option_reply, parse_client_flags,
    parse_option, ClientFlags, OptionRequest,
};
pub use options::{ExportCatalog, ExportInfo, Negotiation, OptionOutcome};
pub use reply::{
    encode_block_status, encode_error_chunk, encode_none_chunk, encode_offset_data_header,
    encode_offset_hole, encode_simple_reply, StatusDescriptor,
};
pub use request::{classify, parse_request, Command, Request, TransmissionContext, Verdict};

/// The result of feeding bytes to a parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse<T> {
    /// Not enough bytes yet: the message needs at least `need` bytes in
    /// total (counted from the start of the buffer given).
    Incomplete { need: usize },
    /// A whole message, which used the first `consumed` bytes.
    Done { value: T, consumed: usize },
}

/// Bytes that can never become a valid message. Every one ends the
/// connection: the stream cannot be resynchronised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// A magic number is wrong (`what` names the message).
    #[error("bad {what} magic {found:#x}")]
    BadMagic { what: &'static str, found: u64 },
    /// An option's payload exceeds [`consts::MAX_OPTION_LEN`].
    #[error("option {option} carries {length} bytes, more than the {max} accepted")]
    OptionTooLong { option: u32, length: u32, max: u32 },
    /// The client does not speak the fixed newstyle protocol.
    #[error("client flags {flags:#x} lack NBD_FLAG_C_FIXED_NEWSTYLE or set unknown bits")]
    BadClientFlags { flags: u32 },
}

#[cfg(test)]
mod tests {
    use super::consts::*;
    use super::*;

    struct Catalog;
    impl ExportCatalog for Catalog {
        fn lookup(&self, name: &str) -> Option<ExportInfo> {
            (name == "d").then(|| ExportInfo {
                name: "d".into(),
                description: String::new(),
                size: 1 << 30,
                writable: true,
            })
        }
        fn list(&self) -> Vec<ExportInfo> {
            self.lookup("d").into_iter().collect()
        }
    }

    /// A poor man's fuzz run: random and mutated inputs through every parser
    /// and the negotiation; none may panic, and `need` must grow.
    #[test]
    fn parsers_survive_random_input() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let seeds: [&[u8]; 3] = [
            b"IHAVEOPT\0\0\0\x07\0\0\0\x07\0\0\0\x01d\0\0",
            b"IHAVEOPT\0\0\0\x0a\0\0\0\x0c\0\0\0\x01d\0\0\0\x01\0\0\0\x00",
            &[
                0x25, 0x60, 0x95, 0x13, 0, 1, 0, 7, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0,
                0, 0, 1, 0,
            ],
        ];
        let mut neg = Negotiation::new(false);
        let mut out = Vec::new();
        for round in 0..20_000 {
            let mut buf = seeds[round % seeds.len()].to_vec();
            let flips = next() % 4;
            for _ in 0..flips {
                let i = (next() as usize) % buf.len();
                buf[i] = next() as u8;
            }
            buf.truncate((next() as usize) % (buf.len() + 1));
            if round % 5 == 0 {
                buf = (0..next() % 64).map(|_| next() as u8).collect();
            }
            for parsed in [
                parse_option(&buf)
                    .map(|p| matches!(p, Parse::Incomplete { need } if need <= buf.len())),
                parse_request(&buf)
                    .map(|p| matches!(p, Parse::Incomplete { need } if need <= buf.len())),
                parse_client_flags(&buf)
                    .map(|p| matches!(p, Parse::Incomplete { need } if need <= buf.len())),
            ] {
                assert_ne!(
                    parsed,
                    Ok(true),
                    "Incomplete without asking for more: {buf:?}"
                );
            }
            if let Ok(Parse::Done { value, .. }) = parse_request(&buf) {
                let ctx = TransmissionContext {
                    size: 1 << 20,
                    writable: round % 2 == 0,
                    structured: round % 3 == 0,
                    base_allocation: round % 3 == 0,
                };
                let _ = classify(&value, &ctx);
            }
            let option = [
                NBD_OPT_GO,
                NBD_OPT_INFO,
                NBD_OPT_LIST_META_CONTEXT,
                NBD_OPT_SET_META_CONTEXT,
                NBD_OPT_STRUCTURED_REPLY,
                NBD_OPT_LIST,
                99,
            ][round % 7];
            out.clear();
            let data = buf.get(16..).unwrap_or(&[]).to_vec();
            let _ = neg.handle(&OptionRequest { option, data }, &Catalog, &mut out);
            assert!(out.len() >= 20, "option {option} got no reply");
        }
    }
}
