//! ONC RPC (RFC 5531), sans-IO: record marking, call/reply headers, and the
//! dispatcher that routes a decoded call to a program.
//!
//! ```text
//! record    TCP record marking: fragments, last-fragment bit, max size
//! msg       call header + AUTH_SYS/AUTH_NONE credentials, reply encoders
//! (here)    RpcProgram trait, Dispatcher: program/version/auth checks
//! client    a blocking one-call TCP client (portmapper GETPORT, NULL probes)
//! ```
//!
//! [`Dispatcher::handle`] takes one whole message and appends the reply to
//! a buffer (the socket layer may have reserved a record mark in front):
//!
//! - not a call / no xid → nothing to answer, `Err(CallError::NotACall)`
//! - RPC version ≠ 2 → MSG_DENIED RPC_MISMATCH(2, 2)
//! - unparsable header or credential → MSG_DENIED AUTH_ERROR AUTH_BADCRED
//! - a flavor other than AUTH_NONE/AUTH_SYS → AUTH_ERROR AUTH_BADCRED
//! - unknown program → PROG_UNAVAIL; known program, other version →
//!   PROG_MISMATCH(low, high)
//! - the program's answer: SUCCESS + body, PROC_UNAVAIL, GARBAGE_ARGS,
//!   SYSTEM_ERR, or an AUTH_ERROR (e.g. AUTH_TOOWEAK for AUTH_NONE on NFS)

pub mod client;
pub mod msg;
pub mod record;
pub mod reply;

use crate::xdr::XdrError;
use msg::{
    decode_call, encode_accepted, encode_auth_error, encode_prog_mismatch, AcceptStat, AuthStat,
    CallError, CallHeader, Credential,
};
pub use reply::Reply;
use std::net::IpAddr;
use std::sync::Arc;

/// What a program knows about the call it serves.
#[derive(Debug, Clone)]
pub struct CallContext<'a> {
    /// The client's address (the allow list is checked against it).
    pub peer: IpAddr,
    pub header: &'a CallHeader,
}

/// Why a procedure produced no result body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcError {
    ProcUnavail,
    GarbageArgs(XdrError),
    SystemErr,
    Auth(AuthStat),
}

impl From<XdrError> for ProcError {
    fn from(e: XdrError) -> Self {
        ProcError::GarbageArgs(e)
    }
}

/// An RPC program (portmapper, MOUNT, NFS).
pub trait RpcProgram: Send + Sync {
    /// The program number.
    fn program(&self) -> u32;
    /// The lowest and highest version served.
    fn versions(&self) -> (u32, u32);
    /// Runs procedure `ctx.header.proc_` on `args`, appending the result
    /// body to `out` on success.
    fn call(&self, ctx: &CallContext, args: &[u8], out: &mut Reply) -> Result<(), ProcError>;
}

/// Routes calls to a set of programs.
#[derive(Clone, Default)]
pub struct Dispatcher {
    programs: Vec<Arc<dyn RpcProgram>>,
}

impl Dispatcher {
    pub fn new(programs: Vec<Arc<dyn RpcProgram>>) -> Self {
        Dispatcher { programs }
    }

    /// Handles one message from `peer`, appending its reply to `out`.
    /// An error is returned for the log; a reply was appended unless it is
    /// [`CallError::NotACall`].
    pub fn handle(&self, msg: &[u8], peer: IpAddr, out: &mut Reply) -> Result<(), CallError> {
        let (header, args) = match decode_call(msg) {
            Ok(c) => c,
            Err(e) => {
                e.reply(out);
                return Err(e);
            }
        };
        let xid = header.xid;
        if let Credential::Other { .. } = header.cred {
            encode_auth_error(out, xid, AuthStat::BadCred);
            return Ok(());
        }
        let Some(program) = self.programs.iter().find(|p| p.program() == header.prog) else {
            encode_accepted(out, xid, AcceptStat::ProgUnavail);
            return Ok(());
        };
        let (low, high) = program.versions();
        if header.vers < low || header.vers > high {
            encode_prog_mismatch(out, xid, low, high);
            return Ok(());
        }
        let start = out.len();
        encode_accepted(out, xid, AcceptStat::Success);
        let ctx = CallContext {
            peer,
            header: &header,
        };
        let result = program.call(&ctx, args, out);
        if let Err(e) = result {
            out.truncate(start);
            match e {
                ProcError::ProcUnavail => encode_accepted(out, xid, AcceptStat::ProcUnavail),
                ProcError::GarbageArgs(_) => encode_accepted(out, xid, AcceptStat::GarbageArgs),
                ProcError::SystemErr => encode_accepted(out, xid, AcceptStat::SystemErr),
                ProcError::Auth(stat) => encode_auth_error(out, xid, stat),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests;
