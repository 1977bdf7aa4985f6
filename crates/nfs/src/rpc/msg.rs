//! RPC call and reply messages (RFC 5531 section 9), sans-IO.
//!
//! ```text
//! call:  xid, CALL(0), rpcvers(2), prog, vers, proc, cred(flavor, body<400>),
//!        verf(flavor, body<400>), procedure arguments...
//! reply: xid, REPLY(1), MSG_ACCEPTED(0), verf(AUTH_NONE), accept_stat, ...
//!        xid, REPLY(1), MSG_DENIED(1), RPC_MISMATCH(0) low high
//!                                     | AUTH_ERROR(1) auth_stat
//! ```
//!
//! [`decode_call`] turns a record into a [`CallHeader`] plus the argument
//! bytes, or a [`CallError`] that knows whether (and how) to answer: a
//! record without an xid or that is not a CALL is dropped; a wrong RPC
//! version is denied with RPC_MISMATCH; a credential that does not parse is
//! denied with AUTH_BADCRED. AUTH_SYS bodies are decoded into [`AuthSys`];
//! other flavors are kept as [`Credential::Other`] for the program to refuse.

use crate::xdr::{XdrError, XdrReader, XdrWrite};

pub const CALL: u32 = 0;
pub const REPLY: u32 = 1;
pub const RPC_VERSION: u32 = 2;
pub const MSG_ACCEPTED: u32 = 0;
pub const MSG_DENIED: u32 = 1;
pub const RPC_MISMATCH: u32 = 0;
pub const AUTH_ERROR: u32 = 1;

pub const AUTH_NONE: u32 = 0;
pub const AUTH_SYS: u32 = 1;
/// Longest credential or verifier body (RFC 5531).
pub const MAX_AUTH_BYTES: u32 = 400;
/// Longest AUTH_SYS machine name.
pub const MAX_MACHINE_NAME: u32 = 255;
/// Most supplementary groups in AUTH_SYS.
pub const MAX_GIDS: u32 = 16;

/// accept_stat of an accepted reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptStat {
    Success = 0,
    ProgUnavail = 1,
    /// Carries the supported low/high versions.
    ProgMismatch = 2,
    ProcUnavail = 3,
    GarbageArgs = 4,
    SystemErr = 5,
}

/// auth_stat of an AUTH_ERROR denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStat {
    BadCred = 1,
    RejectedCred = 2,
    BadVerf = 3,
    RejectedVerf = 4,
    TooWeak = 5,
}

/// AUTH_SYS credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSys {
    pub stamp: u32,
    pub machine: String,
    pub uid: u32,
    pub gid: u32,
    pub gids: Vec<u32>,
}

/// The credential of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    None,
    Sys(AuthSys),
    /// A flavor this server does not implement (AUTH_DH, RPCSEC_GSS, ...).
    Other {
        flavor: u32,
    },
}

/// The header of a decoded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallHeader {
    pub xid: u32,
    pub prog: u32,
    pub vers: u32,
    pub proc_: u32,
    pub cred: Credential,
}

/// A record that is not a usable call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No xid, or not a CALL: nothing can be answered.
    #[error("not an RPC call: {0}")]
    NotACall(String),
    /// RPC version other than 2: deny with RPC_MISMATCH.
    #[error("RPC version {found} (xid {xid:#x}), only 2 is spoken")]
    RpcMismatch { xid: u32, found: u32 },
    /// The header or credential does not parse: deny with AUTH_BADCRED.
    #[error("malformed call header (xid {xid:#x}): {source}")]
    BadHeader { xid: u32, source: XdrError },
}

impl CallError {
    /// The reply this error deserves, if any.
    pub fn reply(&self, out: &mut Vec<u8>) -> bool {
        match *self {
            CallError::NotACall(_) => return false,
            CallError::RpcMismatch { xid, .. } => {
                out.put_u32(xid);
                out.put_u32(REPLY);
                out.put_u32(MSG_DENIED);
                out.put_u32(RPC_MISMATCH);
                out.put_u32(RPC_VERSION);
                out.put_u32(RPC_VERSION);
            }
            CallError::BadHeader { xid, .. } => encode_auth_error(out, xid, AuthStat::BadCred),
        }
        true
    }
}

fn decode_auth_sys(body: &[u8]) -> Result<AuthSys, XdrError> {
    let mut r = XdrReader::new(body);
    let stamp = r.u32("auth_sys stamp")?;
    let machine = r
        .string(MAX_MACHINE_NAME, "auth_sys machine name")?
        .to_owned();
    let uid = r.u32("auth_sys uid")?;
    let gid = r.u32("auth_sys gid")?;
    let gids = r.u32_array(MAX_GIDS, "auth_sys gids")?;
    Ok(AuthSys {
        stamp,
        machine,
        uid,
        gid,
        gids,
    })
}

/// Decodes the call header at the start of `msg`; returns it with the
/// argument bytes that follow.
pub fn decode_call(msg: &[u8]) -> Result<(CallHeader, &[u8]), CallError> {
    let mut r = XdrReader::new(msg);
    let xid = r
        .u32("xid")
        .map_err(|e| CallError::NotACall(e.to_string()))?;
    match r.u32("msg_type") {
        Ok(CALL) => {}
        Ok(t) => return Err(CallError::NotACall(format!("message type {t}"))),
        Err(e) => return Err(CallError::NotACall(e.to_string())),
    }
    let bad = |source| CallError::BadHeader { xid, source };
    let rpcvers = r.u32("rpcvers").map_err(bad)?;
    if rpcvers != RPC_VERSION {
        return Err(CallError::RpcMismatch {
            xid,
            found: rpcvers,
        });
    }
    let prog = r.u32("prog").map_err(bad)?;
    let vers = r.u32("vers").map_err(bad)?;
    let proc_ = r.u32("proc").map_err(bad)?;
    let flavor = r.u32("cred flavor").map_err(bad)?;
    let body = r.opaque(MAX_AUTH_BYTES, "cred body").map_err(bad)?;
    let cred = match flavor {
        AUTH_NONE => Credential::None,
        AUTH_SYS => Credential::Sys(decode_auth_sys(body).map_err(bad)?),
        flavor => Credential::Other { flavor },
    };
    r.u32("verf flavor").map_err(bad)?;
    r.opaque(MAX_AUTH_BYTES, "verf body").map_err(bad)?;
    let header = CallHeader {
        xid,
        prog,
        vers,
        proc_,
        cred,
    };
    Ok((header, r.rest()))
}

/// Encodes a call header (for clients and tests).
pub fn encode_call(out: &mut Vec<u8>, h: &CallHeader) {
    out.put_u32(h.xid);
    out.put_u32(CALL);
    out.put_u32(RPC_VERSION);
    out.put_u32(h.prog);
    out.put_u32(h.vers);
    out.put_u32(h.proc_);
    match &h.cred {
        Credential::None => {
            out.put_u32(AUTH_NONE);
            out.put_u32(0);
        }
        Credential::Sys(a) => {
            let mut body = Vec::new();
            body.put_u32(a.stamp);
            body.put_string(&a.machine);
            body.put_u32(a.uid);
            body.put_u32(a.gid);
            body.put_u32(a.gids.len() as u32);
            for g in &a.gids {
                body.put_u32(*g);
            }
            out.put_u32(AUTH_SYS);
            out.put_opaque(&body);
        }
        Credential::Other { flavor } => {
            out.put_u32(*flavor);
            out.put_u32(0);
        }
    }
    out.put_u32(AUTH_NONE);
    out.put_u32(0);
}

/// Appends an accepted reply header with `stat` (the caller appends the
/// result body after a SUCCESS).
pub fn encode_accepted(out: &mut Vec<u8>, xid: u32, stat: AcceptStat) {
    out.put_u32(xid);
    out.put_u32(REPLY);
    out.put_u32(MSG_ACCEPTED);
    out.put_u32(AUTH_NONE);
    out.put_u32(0);
    out.put_u32(stat as u32);
}

/// Appends a PROG_MISMATCH reply naming the supported versions.
pub fn encode_prog_mismatch(out: &mut Vec<u8>, xid: u32, low: u32, high: u32) {
    encode_accepted(out, xid, AcceptStat::ProgMismatch);
    out.put_u32(low);
    out.put_u32(high);
}

/// Appends an AUTH_ERROR denial.
pub fn encode_auth_error(out: &mut Vec<u8>, xid: u32, stat: AuthStat) {
    out.put_u32(xid);
    out.put_u32(REPLY);
    out.put_u32(MSG_DENIED);
    out.put_u32(AUTH_ERROR);
    out.put_u32(stat as u32);
}

/// A decoded reply header (for clients and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyHeader {
    Accepted {
        xid: u32,
        stat: u32,
        /// low/high for PROG_MISMATCH.
        mismatch: Option<(u32, u32)>,
    },
    RpcMismatch {
        xid: u32,
        low: u32,
        high: u32,
    },
    AuthError {
        xid: u32,
        stat: u32,
    },
}

/// Decodes a reply header; returns it with the result bytes that follow.
pub fn decode_reply(msg: &[u8]) -> Result<(ReplyHeader, &[u8]), XdrError> {
    let mut r = XdrReader::new(msg);
    let xid = r.u32("xid")?;
    let t = r.u32("msg_type")?;
    if t != REPLY {
        return Err(XdrError::BadValue {
            what: "msg_type",
            value: t,
        });
    }
    let h = match r.u32("reply_stat")? {
        MSG_ACCEPTED => {
            r.u32("verf flavor")?;
            r.opaque(MAX_AUTH_BYTES, "verf body")?;
            let stat = r.u32("accept_stat")?;
            let mismatch = if stat == AcceptStat::ProgMismatch as u32 {
                Some((r.u32("low")?, r.u32("high")?))
            } else {
                None
            };
            ReplyHeader::Accepted {
                xid,
                stat,
                mismatch,
            }
        }
        MSG_DENIED => match r.u32("reject_stat")? {
            RPC_MISMATCH => ReplyHeader::RpcMismatch {
                xid,
                low: r.u32("low")?,
                high: r.u32("high")?,
            },
            AUTH_ERROR => ReplyHeader::AuthError {
                xid,
                stat: r.u32("auth_stat")?,
            },
            value => {
                return Err(XdrError::BadValue {
                    what: "reject_stat",
                    value,
                })
            }
        },
        value => {
            return Err(XdrError::BadValue {
                what: "reply_stat",
                value,
            })
        }
    };
    Ok((h, r.rest()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sys_call() -> CallHeader {
        CallHeader {
            xid: 0x1234,
            prog: 100003,
            vers: 3,
            proc_: 1,
            cred: Credential::Sys(AuthSys {
                stamp: 9,
                machine: "esx01".into(),
                uid: 0,
                gid: 0,
                gids: vec![0, 10],
            }),
        }
    }

    #[test]
    fn a_call_round_trips_with_auth_sys() {
        let mut b = Vec::new();
        encode_call(&mut b, &sys_call());
        b.extend_from_slice(&[1, 2, 3, 4]);
        let (h, args) = decode_call(&b).unwrap();
        assert_eq!(h, sys_call());
        assert_eq!(args, &[1, 2, 3, 4]);
    }

    #[test]
    fn wrong_version_and_bad_credentials_are_denied() {
        let mut b = Vec::new();
        encode_call(&mut b, &sys_call());
        b[8..12].copy_from_slice(&3u32.to_be_bytes());
        let e = decode_call(&b).unwrap_err();
        assert_eq!(
            e,
            CallError::RpcMismatch {
                xid: 0x1234,
                found: 3
            }
        );
        let mut out = Vec::new();
        assert!(e.reply(&mut out));
        let (h, _) = decode_reply(&out).unwrap();
        assert_eq!(
            h,
            ReplyHeader::RpcMismatch {
                xid: 0x1234,
                low: 2,
                high: 2
            }
        );

        // An AUTH_SYS body with 17 gids.
        let mut b = Vec::new();
        let mut call = sys_call();
        if let Credential::Sys(a) = &mut call.cred {
            a.gids = vec![1; 17];
        }
        encode_call(&mut b, &call);
        let e = decode_call(&b).unwrap_err();
        assert!(matches!(e, CallError::BadHeader { xid: 0x1234, .. }));
        let mut out = Vec::new();
        e.reply(&mut out);
        let (h, _) = decode_reply(&out).unwrap();
        assert_eq!(
            h,
            ReplyHeader::AuthError {
                xid: 0x1234,
                stat: AuthStat::BadCred as u32
            }
        );

        assert!(matches!(
            decode_call(&[0, 0, 0, 1, 0, 0, 0, 1]),
            Err(CallError::NotACall(_))
        ));
        assert!(matches!(decode_call(&[0, 0]), Err(CallError::NotACall(_))));
    }
}
