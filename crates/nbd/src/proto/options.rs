//! The option negotiation as a pure state machine: an option in, reply bytes
//! and an [`OptionOutcome`] out. The server only moves bytes.
//!
//! ```text
//!            greeting sent, client flags read
//!                        |
//!                        v
//!   +-----------> [negotiating] --- NBD_OPT_ABORT -----> ACK, close
//!   | any option      |   |   \---- EXPORT_NAME unknown --> close (no reply possible)
//!   | answered        |   |
//!   |                 |   +-- STARTTLS (TLS offered) --> ACK, TLS handshake,
//!   |                 |          negotiation starts over inside TLS
//!   +-----------------+   +-- GO ok / EXPORT_NAME ok --> [transmission]
//! ```
//!
//! Supported: EXPORT_NAME, LIST, ABORT, INFO and GO (items EXPORT, NAME,
//! DESCRIPTION, BLOCK_SIZE), STRUCTURED_REPLY, LIST/SET_META_CONTEXT with the
//! single context `base:allocation`, and STARTTLS when the server offers
//! TLS. Anything else (EXTENDED_HEADERS, options from the future, STARTTLS
//! on a server without TLS) is answered NBD_REP_ERR_UNSUP and negotiation
//! goes on. Malformed payloads get NBD_REP_ERR_INVALID.
//!
//! TLS-only mode ([`Negotiation::tls_required`], as `qemu-nbd --tls-creds`):
//! until STARTTLS has succeeded, every option but STARTTLS and ABORT is
//! answered NBD_REP_ERR_TLS_REQD, and EXPORT_NAME (which has no error reply)
//! closes the connection, so nothing about the exports (names, sizes) and
//! no data passes in clear. STARTTLS resets what was negotiated before it
//! (structured replies, the meta context): only what is said inside TLS
//! counts.
//!
//! Per-client policy: an export the catalog does not
//! [permit](ExportCatalog::permits) to this client is left out of
//! NBD_OPT_LIST; INFO, GO and LIST/SET_META_CONTEXT naming it are answered
//! NBD_REP_ERR_POLICY (no NBD_REP_INFO first) and negotiation goes on;
//! EXPORT_NAME, which has no error reply, closes the connection. Each such
//! refusal is recorded for [`Negotiation::take_refused`].

use super::consts::*;
use super::handshake::{encode_export_name_reply, encode_option_reply, OptionRequest};
use super::request::TransmissionContext;
use super::wire::Cursor;

/// What the server knows about one export, enough to negotiate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportInfo {
    /// The canonical name.
    pub name: String,
    /// A human description (may be empty).
    pub description: String,
    /// Size in bytes.
    pub size: u64,
    /// Whether writes are accepted.
    pub writable: bool,
}

/// The exports a server offers, as seen by the negotiation.
pub trait ExportCatalog {
    /// The export a client asked for by `name` (the empty name selects the
    /// default export, if there is one).
    fn lookup(&self, name: &str) -> Option<ExportInfo>;
    /// Every export, for NBD_OPT_LIST.
    fn list(&self) -> Vec<ExportInfo>;
    /// Whether this client may use `export` (server policy). Refused
    /// exports are hidden from NBD_OPT_LIST and answered
    /// NBD_REP_ERR_POLICY. Every export is permitted unless overridden.
    fn permits(&self, export: &ExportInfo) -> bool {
        let _ = export;
        true
    }
}

/// What the server does after an option was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionOutcome {
    /// Read the next option.
    Continue,
    /// Send the replies, then close the connection.
    Close,
    /// Send the replies (NBD_REP_ACK to NBD_OPT_STARTTLS), then run the TLS
    /// handshake as the server; read the next option through TLS. Nothing
    /// the client sent after the option may be left unread: bytes sent
    /// before the handshake are not protected by it.
    StartTls,
    /// Send the replies, then serve `export` in transmission mode.
    Transmission {
        export: ExportInfo,
        context: TransmissionContext,
    },
}

/// The negotiation state of one connection.
#[derive(Debug, Clone, Default)]
pub struct Negotiation {
    no_zeroes: bool,
    structured: bool,
    /// The canonical name of the export `base:allocation` was selected for.
    meta_export: Option<String>,
    /// The export of the last option refused by policy, not yet taken.
    refused: Option<String>,
    tls: TlsState,
}

/// Where the connection stands with TLS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum TlsState {
    /// The server offers no TLS: STARTTLS is unsupported.
    #[default]
    Unavailable,
    /// TLS-only server, STARTTLS not done yet.
    Required,
    /// STARTTLS succeeded: the rest is inside TLS.
    Active,
}

/// The transmission flags of an export.
pub fn transmission_flags(writable: bool, structured: bool) -> u16 {
    let mut flags =
        NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_CACHE | NBD_FLAG_CAN_MULTI_CONN;
    if writable {
        flags |= NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES;
    } else {
        flags |= NBD_FLAG_READ_ONLY;
    }
    if structured {
        flags |= NBD_FLAG_SEND_DF;
    }
    flags
}

impl Negotiation {
    /// A negotiation with a client that did (or did not) ask to omit the
    /// zero padding after NBD_OPT_EXPORT_NAME.
    pub fn new(no_zeroes: bool) -> Self {
        Negotiation {
            no_zeroes,
            ..Default::default()
        }
    }

    /// A negotiation on a TLS-only server: nothing but NBD_OPT_STARTTLS
    /// and NBD_OPT_ABORT is answered until TLS is up.
    pub fn tls_required(no_zeroes: bool) -> Self {
        Negotiation {
            no_zeroes,
            tls: TlsState::Required,
            ..Default::default()
        }
    }

    /// Whether NBD_OPT_STARTTLS has been accepted on this connection.
    pub fn tls_active(&self) -> bool {
        self.tls == TlsState::Active
    }

    /// Whether structured replies were negotiated.
    pub fn structured(&self) -> bool {
        self.structured
    }

    /// The canonical name of the export the last option was refused by
    /// policy ([`ExportCatalog::permits`]), once: for the server's log.
    pub fn take_refused(&mut self) -> Option<String> {
        self.refused.take()
    }

    /// Answers `opt`, appending the replies to `out`.
    pub fn handle(
        &mut self,
        opt: &OptionRequest,
        catalog: &dyn ExportCatalog,
        out: &mut Vec<u8>,
    ) -> OptionOutcome {
        let code = opt.option;
        if self.tls == TlsState::Required {
            return self.before_tls(opt, out);
        }
        match code {
            // Without TLS on offer, STARTTLS is unsupported like any
            // unknown option (below).
            NBD_OPT_STARTTLS if self.tls == TlsState::Active => {
                invalid(out, code, "TLS is already active on this connection")
            }
            NBD_OPT_EXPORT_NAME => {
                let Some(export) = std::str::from_utf8(&opt.data)
                    .ok()
                    .and_then(|name| catalog.lookup(name))
                else {
                    return OptionOutcome::Close;
                };
                // No error reply exists for EXPORT_NAME: the spec says close.
                if !catalog.permits(&export) {
                    self.refused = Some(export.name);
                    return OptionOutcome::Close;
                }
                let context = self.context(&export);
                let flags = transmission_flags(export.writable, self.structured);
                encode_export_name_reply(out, export.size, flags, self.no_zeroes);
                OptionOutcome::Transmission { export, context }
            }
            NBD_OPT_ABORT => {
                encode_option_reply(out, code, NBD_REP_ACK, &[]);
                OptionOutcome::Close
            }
            NBD_OPT_LIST => {
                if !opt.data.is_empty() {
                    return invalid(out, code, "NBD_OPT_LIST takes no data");
                }
                for e in catalog.list().into_iter().filter(|e| catalog.permits(e)) {
                    let mut data = Vec::new();
                    data.extend_from_slice(&(e.name.len() as u32).to_be_bytes());
                    data.extend_from_slice(e.name.as_bytes());
                    data.extend_from_slice(e.description.as_bytes());
                    encode_option_reply(out, code, NBD_REP_SERVER, &data);
                }
                encode_option_reply(out, code, NBD_REP_ACK, &[]);
                OptionOutcome::Continue
            }
            NBD_OPT_INFO | NBD_OPT_GO => self.info_or_go(opt, catalog, out),
            NBD_OPT_STRUCTURED_REPLY => {
                if !opt.data.is_empty() {
                    return invalid(out, code, "NBD_OPT_STRUCTURED_REPLY takes no data");
                }
                self.structured = true;
                encode_option_reply(out, code, NBD_REP_ACK, &[]);
                OptionOutcome::Continue
            }
            NBD_OPT_LIST_META_CONTEXT | NBD_OPT_SET_META_CONTEXT => {
                self.meta_context(opt, catalog, out)
            }
            _ => {
                let msg = format!("option {code} is not supported");
                encode_option_reply(out, code, NBD_REP_ERR_UNSUP, msg.as_bytes());
                OptionOutcome::Continue
            }
        }
    }

    /// TLS-only mode before STARTTLS: only STARTTLS and ABORT are served.
    fn before_tls(&mut self, opt: &OptionRequest, out: &mut Vec<u8>) -> OptionOutcome {
        let code = opt.option;
        match code {
            NBD_OPT_STARTTLS if !opt.data.is_empty() => {
                invalid(out, code, "NBD_OPT_STARTTLS takes no data")
            }
            NBD_OPT_STARTTLS => {
                encode_option_reply(out, code, NBD_REP_ACK, &[]);
                // What was negotiated in clear does not carry over.
                *self = Negotiation {
                    no_zeroes: self.no_zeroes,
                    tls: TlsState::Active,
                    ..Default::default()
                };
                OptionOutcome::StartTls
            }
            NBD_OPT_ABORT => {
                encode_option_reply(out, code, NBD_REP_ACK, &[]);
                OptionOutcome::Close
            }
            // No error reply exists for EXPORT_NAME.
            NBD_OPT_EXPORT_NAME => OptionOutcome::Close,
            _ => {
                let msg = "this server requires TLS: send NBD_OPT_STARTTLS first";
                encode_option_reply(out, code, NBD_REP_ERR_TLS_REQD, msg.as_bytes());
                OptionOutcome::Continue
            }
        }
    }

    fn context(&self, export: &ExportInfo) -> TransmissionContext {
        TransmissionContext {
            size: export.size,
            writable: export.writable,
            structured: self.structured,
            base_allocation: self.structured
                && self.meta_export.as_deref() == Some(export.name.as_str()),
        }
    }

    fn info_or_go(
        &mut self,
        opt: &OptionRequest,
        catalog: &dyn ExportCatalog,
        out: &mut Vec<u8>,
    ) -> OptionOutcome {
        let code = opt.option;
        let mut c = Cursor::new(&opt.data);
        let Some(name) = c.string32(MAX_STRING_LEN) else {
            return invalid(out, code, "bad export name");
        };
        let Some(count) = c.u16() else {
            return invalid(out, code, "missing information request count");
        };
        let mut wanted = Vec::new();
        for _ in 0..count {
            match c.u16() {
                Some(item) => wanted.push(item),
                None => return invalid(out, code, "truncated information requests"),
            }
        }
        if c.remaining() != 0 {
            return invalid(out, code, "trailing bytes after information requests");
        }
        let Some(export) = self.select(code, &name, catalog, out) else {
            return OptionOutcome::Continue;
        };
        let flags = transmission_flags(export.writable, self.structured);
        let mut item = Vec::with_capacity(12);
        item.extend_from_slice(&NBD_INFO_EXPORT.to_be_bytes());
        item.extend_from_slice(&export.size.to_be_bytes());
        item.extend_from_slice(&flags.to_be_bytes());
        encode_option_reply(out, code, NBD_REP_INFO, &item);
        for w in dedup(wanted) {
            item.clear();
            item.extend_from_slice(&w.to_be_bytes());
            match w {
                NBD_INFO_NAME => item.extend_from_slice(export.name.as_bytes()),
                NBD_INFO_DESCRIPTION if !export.description.is_empty() => {
                    item.extend_from_slice(export.description.as_bytes())
                }
                NBD_INFO_BLOCK_SIZE => {
                    item.extend_from_slice(&1u32.to_be_bytes());
                    item.extend_from_slice(&PREFERRED_BLOCK.to_be_bytes());
                    item.extend_from_slice(&MAX_PAYLOAD.to_be_bytes());
                }
                _ => continue, // unknown items are ignored, as the spec asks
            }
            encode_option_reply(out, code, NBD_REP_INFO, &item);
        }
        encode_option_reply(out, code, NBD_REP_ACK, &[]);
        if code == NBD_OPT_GO {
            let context = self.context(&export);
            OptionOutcome::Transmission { export, context }
        } else {
            OptionOutcome::Continue
        }
    }

    /// The export option `code` names, or `None` after answering
    /// NBD_REP_ERR_UNKNOWN (no such export) or NBD_REP_ERR_POLICY (not
    /// permitted to this client).
    fn select(
        &mut self,
        code: u32,
        name: &str,
        catalog: &dyn ExportCatalog,
        out: &mut Vec<u8>,
    ) -> Option<ExportInfo> {
        let Some(export) = catalog.lookup(name) else {
            let msg = format!("no export named {name:?}");
            encode_option_reply(out, code, NBD_REP_ERR_UNKNOWN, msg.as_bytes());
            return None;
        };
        if !catalog.permits(&export) {
            let msg = format!(
                "access to export {:?} is not permitted to this client by server policy",
                export.name
            );
            encode_option_reply(out, code, NBD_REP_ERR_POLICY, msg.as_bytes());
            self.refused = Some(export.name);
            return None;
        }
        Some(export)
    }

    fn meta_context(
        &mut self,
        opt: &OptionRequest,
        catalog: &dyn ExportCatalog,
        out: &mut Vec<u8>,
    ) -> OptionOutcome {
        let code = opt.option;
        let set = code == NBD_OPT_SET_META_CONTEXT;
        if set && !self.structured {
            return invalid(
                out,
                code,
                "NBD_OPT_SET_META_CONTEXT needs structured replies first",
            );
        }
        let mut c = Cursor::new(&opt.data);
        let Some(name) = c.string32(MAX_STRING_LEN) else {
            return invalid(out, code, "bad export name");
        };
        let Some(count) = c.u32() else {
            return invalid(out, code, "missing query count");
        };
        let mut queries = Vec::new();
        for _ in 0..count {
            match c.string32(MAX_STRING_LEN) {
                Some(q) => queries.push(q),
                None => return invalid(out, code, "truncated or oversized query"),
            }
        }
        if c.remaining() != 0 {
            return invalid(out, code, "trailing bytes after queries");
        }
        let Some(export) = self.select(code, &name, catalog, out) else {
            if set {
                // A failed SET replaces the selection too.
                self.meta_export = None;
            }
            return OptionOutcome::Continue;
        };
        // LIST with no query lists everything; "base:" lists the namespace.
        // SET only selects exact names.
        let matches = queries
            .iter()
            .any(|q| q == BASE_ALLOCATION || (!set && q == "base:"))
            || (!set && queries.is_empty());
        if set {
            self.meta_export = matches.then(|| export.name.clone());
        }
        if matches {
            let mut data = Vec::new();
            data.extend_from_slice(&BASE_ALLOCATION_ID.to_be_bytes());
            data.extend_from_slice(BASE_ALLOCATION.as_bytes());
            encode_option_reply(out, code, NBD_REP_META_CONTEXT, &data);
        }
        encode_option_reply(out, code, NBD_REP_ACK, &[]);
        OptionOutcome::Continue
    }
}

fn invalid(out: &mut Vec<u8>, option: u32, msg: &str) -> OptionOutcome {
    encode_option_reply(out, option, NBD_REP_ERR_INVALID, msg.as_bytes());
    OptionOutcome::Continue
}

fn dedup(mut items: Vec<u16>) -> Vec<u16> {
    items.sort_unstable();
    items.dedup();
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    struct One;
    impl ExportCatalog for One {
        fn lookup(&self, name: &str) -> Option<ExportInfo> {
            (name == "disk" || name.is_empty()).then(|| ExportInfo {
                name: "disk".into(),
                description: "a test disk".into(),
                size: 1 << 20,
                writable: false,
            })
        }
        fn list(&self) -> Vec<ExportInfo> {
            self.lookup("disk").into_iter().collect()
        }
    }

    /// Two exports, "open" and "secret"; the client may only use "open".
    struct Guarded;
    impl ExportCatalog for Guarded {
        fn lookup(&self, name: &str) -> Option<ExportInfo> {
            ["open", "secret"].contains(&name).then(|| ExportInfo {
                name: name.into(),
                description: String::new(),
                size: 4096,
                writable: true,
            })
        }
        fn list(&self) -> Vec<ExportInfo> {
            ["open", "secret"]
                .iter()
                .filter_map(|n| self.lookup(n))
                .collect()
        }
        fn permits(&self, export: &ExportInfo) -> bool {
            export.name == "open"
        }
    }

    /// (option, reply type, data) triples from encoded option replies.
    fn replies(mut b: &[u8]) -> Vec<(u32, u32, Vec<u8>)> {
        let mut v = Vec::new();
        while !b.is_empty() {
            assert_eq!(b[..8], REPLY_MAGIC.to_be_bytes());
            let opt = u32::from_be_bytes(b[8..12].try_into().unwrap());
            let ty = u32::from_be_bytes(b[12..16].try_into().unwrap());
            let len = u32::from_be_bytes(b[16..20].try_into().unwrap()) as usize;
            v.push((opt, ty, b[20..20 + len].to_vec()));
            b = &b[20 + len..];
        }
        v
    }

    fn opt(option: u32, data: Vec<u8>) -> OptionRequest {
        OptionRequest { option, data }
    }

    fn go_data(name: &str, items: &[u16]) -> Vec<u8> {
        let mut d = (name.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(name.as_bytes());
        d.extend_from_slice(&(items.len() as u16).to_be_bytes());
        for i in items {
            d.extend_from_slice(&i.to_be_bytes());
        }
        d
    }

    fn meta_data(name: &str, queries: &[&str]) -> Vec<u8> {
        let mut d = (name.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(name.as_bytes());
        d.extend_from_slice(&(queries.len() as u32).to_be_bytes());
        for q in queries {
            d.extend_from_slice(&(q.len() as u32).to_be_bytes());
            d.extend_from_slice(q.as_bytes());
        }
        d
    }

    #[test]
    fn go_sends_requested_info_then_ack_and_enters_transmission() {
        let mut n = Negotiation::new(true);
        let mut out = Vec::new();
        let r = n.handle(
            &opt(
                NBD_OPT_GO,
                go_data("disk", &[NBD_INFO_NAME, NBD_INFO_BLOCK_SIZE, 99]),
            ),
            &One,
            &mut out,
        );
        assert!(
            matches!(r, OptionOutcome::Transmission { ref context, .. } if !context.structured)
        );
        let rs = replies(&out);
        let types: Vec<u32> = rs.iter().map(|r| r.1).collect();
        assert_eq!(
            types,
            [NBD_REP_INFO, NBD_REP_INFO, NBD_REP_INFO, NBD_REP_ACK]
        );
        // NBD_INFO_EXPORT: type, size, flags (read-only).
        assert_eq!(rs[0].2[..10], [0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0]);
        let flags = u16::from_be_bytes([rs[0].2[10], rs[0].2[11]]);
        assert_ne!(flags & NBD_FLAG_READ_ONLY, 0);
        assert_eq!(&rs[1].2[2..], b"disk");
    }

    #[test]
    fn errors_keep_the_negotiation_going() {
        let mut n = Negotiation::new(false);
        let mut out = Vec::new();
        assert_eq!(
            n.handle(&opt(4242, vec![1, 2]), &One, &mut out),
            OptionOutcome::Continue
        );
        assert_eq!(
            n.handle(&opt(NBD_OPT_GO, go_data("nope", &[])), &One, &mut out),
            OptionOutcome::Continue
        );
        assert_eq!(
            n.handle(&opt(NBD_OPT_GO, vec![0, 0, 0, 9, b'x']), &One, &mut out),
            OptionOutcome::Continue
        );
        assert_eq!(
            n.handle(&opt(NBD_OPT_LIST, vec![1]), &One, &mut out),
            OptionOutcome::Continue
        );
        let types: Vec<u32> = replies(&out).iter().map(|r| r.1).collect();
        assert_eq!(
            types,
            [
                NBD_REP_ERR_UNSUP,
                NBD_REP_ERR_UNKNOWN,
                NBD_REP_ERR_INVALID,
                NBD_REP_ERR_INVALID
            ]
        );
        assert_eq!(
            n.handle(&opt(NBD_OPT_EXPORT_NAME, b"nope".to_vec()), &One, &mut out),
            OptionOutcome::Close
        );
    }

    #[test]
    fn base_allocation_needs_structured_replies_and_the_same_export() {
        let mut n = Negotiation::new(true);
        let mut out = Vec::new();
        n.handle(
            &opt(
                NBD_OPT_SET_META_CONTEXT,
                meta_data("disk", &[BASE_ALLOCATION]),
            ),
            &One,
            &mut out,
        );
        assert_eq!(replies(&out)[0].1, NBD_REP_ERR_INVALID);

        out.clear();
        n.handle(&opt(NBD_OPT_STRUCTURED_REPLY, vec![]), &One, &mut out);
        n.handle(
            &opt(NBD_OPT_LIST_META_CONTEXT, meta_data("disk", &[])),
            &One,
            &mut out,
        );
        n.handle(
            &opt(
                NBD_OPT_SET_META_CONTEXT,
                meta_data("", &["qemu:dirty", BASE_ALLOCATION]),
            ),
            &One,
            &mut out,
        );
        let rs = replies(&out);
        let types: Vec<u32> = rs.iter().map(|r| r.1).collect();
        assert_eq!(
            types,
            [
                NBD_REP_ACK,
                NBD_REP_META_CONTEXT,
                NBD_REP_ACK,
                NBD_REP_META_CONTEXT,
                NBD_REP_ACK
            ]
        );
        assert_eq!(&rs[3].2[4..], BASE_ALLOCATION.as_bytes());

        let r = n.handle(&opt(NBD_OPT_EXPORT_NAME, b"disk".to_vec()), &One, &mut out);
        let OptionOutcome::Transmission { context, .. } = r else {
            panic!("no transmission")
        };
        assert!(context.structured && context.base_allocation);
    }

    #[test]
    fn a_tls_only_server_answers_nothing_but_starttls_and_abort_in_clear() {
        let mut n = Negotiation::tls_required(true);
        let mut out = Vec::new();
        for (option, data) in [
            (NBD_OPT_LIST, vec![]),
            (NBD_OPT_INFO, go_data("disk", &[NBD_INFO_NAME])),
            (NBD_OPT_GO, go_data("disk", &[])),
            (NBD_OPT_STRUCTURED_REPLY, vec![]),
            (NBD_OPT_LIST_META_CONTEXT, meta_data("disk", &[])),
            (4242, vec![1]),
        ] {
            out.clear();
            assert_eq!(
                n.handle(&opt(option, data), &One, &mut out),
                OptionOutcome::Continue,
                "option {option}"
            );
            let rs = replies(&out);
            assert_eq!(rs.len(), 1, "option {option}");
            assert_eq!((rs[0].0, rs[0].1), (option, NBD_REP_ERR_TLS_REQD));
            assert!(
                !String::from_utf8_lossy(&out).contains("disk"),
                "leaks the export"
            );
        }
        out.clear();
        assert_eq!(
            n.handle(&opt(NBD_OPT_EXPORT_NAME, b"disk".to_vec()), &One, &mut out),
            OptionOutcome::Close
        );
        assert!(out.is_empty(), "EXPORT_NAME in clear gets no answer");
        assert_eq!(
            n.handle(&opt(NBD_OPT_STARTTLS, vec![1]), &One, &mut out),
            OptionOutcome::Continue
        );
        assert_eq!(replies(&out)[0].1, NBD_REP_ERR_INVALID);
        assert!(!n.tls_active());

        out.clear();
        assert_eq!(
            n.handle(&opt(NBD_OPT_STARTTLS, vec![]), &One, &mut out),
            OptionOutcome::StartTls
        );
        assert_eq!(replies(&out)[0].1, NBD_REP_ACK);
        assert!(n.tls_active());
        // Inside TLS: everything is served, a second STARTTLS is invalid.
        out.clear();
        n.handle(&opt(NBD_OPT_STARTTLS, vec![]), &One, &mut out);
        assert_eq!(replies(&out)[0].1, NBD_REP_ERR_INVALID);
        let r = n.handle(&opt(NBD_OPT_GO, go_data("disk", &[])), &One, &mut out);
        assert!(matches!(r, OptionOutcome::Transmission { .. }));

        // ABORT in clear is acknowledged.
        let mut n = Negotiation::tls_required(false);
        out.clear();
        assert_eq!(
            n.handle(&opt(NBD_OPT_ABORT, vec![]), &One, &mut out),
            OptionOutcome::Close
        );
        assert_eq!(replies(&out)[0].1, NBD_REP_ACK);
    }

    #[test]
    fn starttls_forgets_what_was_negotiated_in_clear_and_is_unsupported_without_tls() {
        let mut out = Vec::new();
        let mut plain = Negotiation::new(false);
        plain.handle(&opt(NBD_OPT_STARTTLS, vec![]), &One, &mut out);
        assert_eq!(replies(&out)[0].1, NBD_REP_ERR_UNSUP);

        let mut n = Negotiation::tls_required(false);
        out.clear();
        n.handle(&opt(NBD_OPT_STRUCTURED_REPLY, vec![]), &One, &mut out);
        assert!(!n.structured(), "refused in clear");
        n.handle(&opt(NBD_OPT_STARTTLS, vec![]), &One, &mut out);
        let r = n.handle(&opt(NBD_OPT_EXPORT_NAME, b"disk".to_vec()), &One, &mut out);
        assert!(
            matches!(r, OptionOutcome::Transmission { ref context, .. } if !context.structured)
        );
    }

    #[test]
    fn refused_exports_get_err_policy_and_are_hidden_from_list() {
        let mut n = Negotiation::new(true);
        let mut out = Vec::new();
        assert_eq!(
            n.handle(&opt(NBD_OPT_LIST, vec![]), &Guarded, &mut out),
            OptionOutcome::Continue
        );
        let rs = replies(&out);
        assert_eq!(rs.len(), 2, "only the permitted export is listed");
        assert_eq!((rs[0].1, &rs[0].2[4..]), (NBD_REP_SERVER, &b"open"[..]));
        assert_eq!(rs[1].1, NBD_REP_ACK);
        assert_eq!(n.take_refused(), None, "LIST is not a refusal");

        n.handle(&opt(NBD_OPT_STRUCTURED_REPLY, vec![]), &Guarded, &mut out);
        for option in [NBD_OPT_INFO, NBD_OPT_GO] {
            out.clear();
            let data = go_data("secret", &[NBD_INFO_NAME]);
            assert_eq!(
                n.handle(&opt(option, data), &Guarded, &mut out),
                OptionOutcome::Continue,
                "option {option}"
            );
            let rs = replies(&out);
            assert_eq!(rs.len(), 1, "no NBD_REP_INFO before the error");
            assert_eq!((rs[0].0, rs[0].1), (option, NBD_REP_ERR_POLICY));
            let msg = String::from_utf8(rs[0].2.clone()).unwrap();
            assert!(msg.contains("\"secret\" is not permitted"), "{msg}");
            assert_eq!(n.take_refused().as_deref(), Some("secret"));
            assert_eq!(n.take_refused(), None, "taken once");
        }
        for option in [NBD_OPT_LIST_META_CONTEXT, NBD_OPT_SET_META_CONTEXT] {
            out.clear();
            let data = meta_data("secret", &[BASE_ALLOCATION]);
            n.handle(&opt(option, data), &Guarded, &mut out);
            let types: Vec<u32> = replies(&out).iter().map(|r| r.1).collect();
            assert_eq!(types, [NBD_REP_ERR_POLICY], "option {option}");
            assert_eq!(n.take_refused().as_deref(), Some("secret"));
        }

        // A name that does not exist is still NBD_REP_ERR_UNKNOWN.
        out.clear();
        n.handle(&opt(NBD_OPT_GO, go_data("nope", &[])), &Guarded, &mut out);
        assert_eq!(replies(&out)[0].1, NBD_REP_ERR_UNKNOWN);
        assert_eq!(n.take_refused(), None);

        // EXPORT_NAME cannot carry an error: the connection is closed
        // without a reply.
        out.clear();
        assert_eq!(
            n.handle(
                &opt(NBD_OPT_EXPORT_NAME, b"secret".to_vec()),
                &Guarded,
                &mut out
            ),
            OptionOutcome::Close
        );
        assert!(out.is_empty());
        assert_eq!(n.take_refused().as_deref(), Some("secret"));

        // The permitted export is served as before.
        let r = n.handle(&opt(NBD_OPT_GO, go_data("open", &[])), &Guarded, &mut out);
        assert!(
            matches!(r, OptionOutcome::Transmission { ref export, .. } if export.name == "open")
        );
    }
}
