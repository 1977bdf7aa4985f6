//! The bodies of fuzz targets `nbd_proto` and `nbd_handshake` (`fuzz/`),
//! replayed over their corpora by `tests/fuzz_corpus.rs`. `nbd_proto`: the
//! sans-IO NBD core.
//!
//! The input is what a client sends after the server's greeting, fed the
//! way the connection layer feeds it:
//!
//! ```text
//! parse_client_flags ─> parse_option* ─> Negotiation::handle ─┬─ Continue: next option
//!                                                              ├─ Close: stop
//!                                                              └─ Transmission
//! parse_request* ─> classify ─> skip the WRITE payload ─> next request
//! ```
//!
//! Two exports are offered ("d": 1 GiB writable, "ro": 1 MiB read-only,
//! and "" selects "d"). Checked invariants besides "no panic": a parser that
//! says Incomplete asks for more bytes than it was given, Done consumes
//! bytes it was given, and a command `classify` lets run stays inside the
//! export and within the payload limit (read-only exports never get a
//! write).
use crate::proto::consts::MAX_PAYLOAD;
use crate::proto::{
    classify, parse_client_flags, parse_option, parse_request, Command, ExportCatalog, ExportInfo,
    Negotiation, OptionOutcome, Parse, TransmissionContext, Verdict,
};

/// Most options or requests handled from one input.
const MAX_MESSAGES: usize = 256;

struct Catalog;

impl ExportCatalog for Catalog {
    fn lookup(&self, name: &str) -> Option<ExportInfo> {
        match name {
            "" | "d" => Some(ExportInfo {
                name: "d".into(),
                description: "fuzz disk".into(),
                size: 1 << 30,
                writable: true,
            }),
            "ro" => Some(ExportInfo {
                name: "ro".into(),
                description: String::new(),
                size: 1 << 20,
                writable: false,
            }),
            _ => None,
        }
    }
    fn list(&self) -> Vec<ExportInfo> {
        ["d", "ro"].iter().filter_map(|n| self.lookup(n)).collect()
    }
}

/// Checks the Parse contract and returns the value and the rest.
fn step<T>(buf: &[u8], p: Parse<T>) -> Option<(T, &[u8])> {
    match p {
        Parse::Incomplete { need } => {
            assert!(need > buf.len(), "Incomplete without asking for more");
            None
        }
        Parse::Done { value, consumed } => {
            assert!(consumed > 0 && consumed <= buf.len(), "bad consumed");
            Some((value, &buf[consumed..]))
        }
    }
}

fn check_command(cmd: &Command, ctx: &TransmissionContext) {
    let inside = |offset: u64, length: u32| {
        assert!(length <= MAX_PAYLOAD, "payload over the limit ran");
        let end = offset
            .checked_add(u64::from(length))
            .expect("range overflow ran");
        assert!(end <= ctx.size, "out-of-range command ran");
    };
    match *cmd {
        Command::Read { offset, length, .. } => inside(offset, length),
        Command::Write { offset, length, .. } => {
            assert!(ctx.writable, "write to a read-only export ran");
            inside(offset, length);
        }
        Command::Trim { offset, length, .. } | Command::WriteZeroes { offset, length, .. } => {
            assert!(ctx.writable, "trim/zero on a read-only export ran");
            let end = offset
                .checked_add(u64::from(length))
                .expect("range overflow ran");
            assert!(end <= ctx.size, "out-of-range command ran");
        }
        _ => {}
    }
}

fn transmission(mut buf: &[u8], ctx: TransmissionContext) {
    for _ in 0..MAX_MESSAGES {
        let Ok(p) = parse_request(buf) else { return };
        let Some((req, rest)) = step(buf, p) else {
            return;
        };
        let _ = req.structured_reply(&ctx);
        if let Verdict::Run(cmd) = classify(&req, &ctx) {
            check_command(&cmd, &ctx);
            if matches!(cmd, Command::Disconnect) {
                return;
            }
        }
        let payload = req.payload_len() as usize;
        let Some(rest) = rest.get(payload..) else {
            return;
        };
        buf = rest;
    }
}

/// Feeds `data` (client flags, then options) through `Negotiation::handle`
/// with `catalog`, handing each answered option, its outcome, the answer's
/// bytes and the input left after it to `on_option`, until an option stops
/// the negotiation or `on_option` returns false.
fn negotiate(
    data: &[u8],
    catalog: &dyn ExportCatalog,
    mut on_option: impl FnMut(u32, bool, &OptionOutcome, &[u8], &[u8]) -> bool,
) {
    let Ok(p) = parse_client_flags(data) else {
        return;
    };
    let Some((flags, mut buf)) = step(data, p) else {
        return;
    };
    let mut neg = Negotiation::new(flags.no_zeroes);
    let mut out = Vec::new();
    for _ in 0..MAX_MESSAGES {
        let Ok(p) = parse_option(buf) else { return };
        let Some((opt, rest)) = step(buf, p) else {
            return;
        };
        buf = rest;
        out.clear();
        let outcome = neg.handle(&opt, catalog, &mut out);
        if !on_option(opt.option, flags.no_zeroes, &outcome, &out, buf)
            || !matches!(outcome, OptionOutcome::Continue)
        {
            return;
        }
    }
}

/// One fuzz input (see the module doc). Panics on a broken invariant.
pub fn nbd_proto(data: &[u8]) {
    negotiate(data, &Catalog, |_, _, outcome, _, rest| {
        // STARTTLS ends the run: the TLS handshake is the socket layer's.
        if let OptionOutcome::Transmission { export, context } = outcome {
            assert_eq!(context.size, export.size);
            assert!(!context.writable || export.writable);
            transmission(rest, *context);
        }
        true
    });
}

/// The description of the refused export, which must never be sent.
const SECRET_DESCRIPTION: &[u8] = b"refused by policy";

/// A catalog whose policy refuses the export "secret" (listed by
/// `list`, refused by `permits`), so the policy paths are fuzzed too.
struct PolicyCatalog;

impl ExportCatalog for PolicyCatalog {
    fn lookup(&self, name: &str) -> Option<ExportInfo> {
        match name {
            "secret" => Some(ExportInfo {
                name: "secret".into(),
                description: String::from_utf8_lossy(SECRET_DESCRIPTION).into(),
                size: 4096,
                writable: false,
            }),
            other => Catalog.lookup(other),
        }
    }
    fn list(&self) -> Vec<ExportInfo> {
        ["d", "ro", "secret"]
            .iter()
            .filter_map(|n| self.lookup(n))
            .collect()
    }
    fn permits(&self, export: &ExportInfo) -> bool {
        export.name != "secret"
    }
}

/// Checks that `out` is a sequence of well-framed option replies to
/// `option` (magic, the option echoed, a length that matches), and that
/// nothing about the refused export leaks into them (unless `quoted`: the
/// client sent those bytes itself, and an error may quote its request).
fn check_replies(out: &[u8], option: u32, quoted: bool) {
    use crate::proto::consts::REPLY_MAGIC;
    let mut rest = out;
    while !rest.is_empty() {
        assert!(rest.len() >= 20, "truncated option reply header: {out:?}");
        let magic = u64::from_be_bytes(rest[0..8].try_into().expect("8 bytes"));
        let echoed = u32::from_be_bytes(rest[8..12].try_into().expect("4 bytes"));
        let len = u32::from_be_bytes(rest[16..20].try_into().expect("4 bytes")) as usize;
        assert_eq!(magic, REPLY_MAGIC, "option reply without its magic");
        assert_eq!(echoed, option, "option reply for another option");
        let body = rest
            .get(20..20 + len)
            .expect("option reply shorter than its length");
        assert!(
            quoted || !contains(body, SECRET_DESCRIPTION),
            "the description of a refused export was sent"
        );
        rest = &rest[20 + len..];
    }
}

/// True when `needle` occurs in `hay`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Fuzz target `nbd_handshake`: option negotiation only, with the framing
/// of every answer checked.
///
/// ```text
/// client flags u32 | ("IHAVEOPT" | option u32 | length u32 | data)*
/// ```
///
/// The options go through `parse_option` and `Negotiation::handle` with a
/// catalog of three exports, one of them ("secret") refused by policy.
/// Checked besides "no panic": every answer is a sequence of option
/// replies (`REPLY_MAGIC`, the option echoed, a length covering the body)
/// except the `NBD_OPT_EXPORT_NAME` answer (size u64, flags u16, 124 zeros
/// unless the client asked to omit them); transmission is never granted
/// for the refused export, a read-only export never gets a writable
/// context, and the refused export's description never leaves (unless the
/// input holds it: an error reply may quote the client's own request).
pub fn nbd_handshake(data: &[u8]) {
    use crate::proto::consts::NBD_OPT_EXPORT_NAME;
    let quoted = contains(data, SECRET_DESCRIPTION);
    negotiate(
        data,
        &PolicyCatalog,
        |option, no_zeroes, outcome, out, _| {
            if let OptionOutcome::Transmission { export, context } = outcome {
                assert_ne!(export.name, "secret", "transmission on a refused export");
                assert!(
                    !context.writable || export.writable,
                    "read-only export made writable"
                );
                assert_eq!(context.size, export.size);
                if option == NBD_OPT_EXPORT_NAME {
                    let want = if no_zeroes { 10 } else { 134 };
                    assert_eq!(out.len(), want, "EXPORT_NAME answer of the wrong length");
                    assert_eq!(out[..8], export.size.to_be_bytes(), "EXPORT_NAME size");
                    assert!(out[10..].iter().all(|&b| b == 0), "EXPORT_NAME padding");
                    return false;
                }
            }
            check_replies(out, option, quoted);
            true
        },
    );
}
