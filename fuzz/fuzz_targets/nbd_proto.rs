//! Fuzz target `nbd_proto`: the sans-IO NBD core of `lifeboat-nbd`.
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
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeboat_nbd::proto::consts::MAX_PAYLOAD;
use lifeboat_nbd::proto::{
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

fuzz_target!(|data: &[u8]| {
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
        match neg.handle(&opt, &Catalog, &mut out) {
            OptionOutcome::Continue => {}
            OptionOutcome::Close => return,
            OptionOutcome::Transmission { export, context } => {
                assert_eq!(context.size, export.size);
                assert!(!context.writable || export.writable);
                transmission(buf, context);
                return;
            }
        }
    }
});
