//! A minimal blocking ONC RPC client over TCP: a call as one record, a
//! reply record read whole (bounded), and [`call_tcp`] for probes that ask
//! a remote service one question: the portmapper's GETPORT and a
//! program's NULL procedure (`lifeboat preflight`). Tests build their raw
//! calls with the same [`call_record`] and [`read_record`].
//!
//! Every reply is bounded ([`MAX_REPLY`]) and checked: its xid, that it is
//! a REPLY, accepted, and SUCCESS; anything else is an [`RpcClientError`]
//! that says what the server answered.

use super::msg::{
    decode_reply, encode_call, CallHeader, Credential, ReplyHeader, AUTH_ERROR, RPC_MISMATCH,
};
use super::record::{FragmentHeader, LAST_FRAGMENT};
use crate::xdr::{XdrReader, XdrWrite};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Longest reply record a probe accepts.
pub const MAX_REPLY: usize = 64 * 1024;

/// Why a call got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum RpcClientError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("talking to {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{addr} sent a reply that does not parse: {detail}")]
    Malformed { addr: SocketAddr, detail: String },
    #[error("{addr} refused the call (MSG_DENIED, reject_stat {reject}: {})", if *reject == RPC_MISMATCH { "RPC version mismatch" } else { "authentication error" })]
    Denied { addr: SocketAddr, reject: u32 },
    #[error("{addr} did not run the call (accept_stat {stat}: {})", accept_stat_name(*stat))]
    NotRun { addr: SocketAddr, stat: u32 },
}

fn accept_stat_name(stat: u32) -> &'static str {
    match stat {
        1 => "program unavailable",
        2 => "program version mismatch",
        3 => "procedure unavailable",
        4 => "garbage arguments",
        5 => "system error",
        _ => "unknown",
    }
}

/// One call encoded as a record (a single last fragment).
pub fn call_record(
    xid: u32,
    prog: u32,
    vers: u32,
    proc_: u32,
    cred: Credential,
    args: &[u8],
) -> Vec<u8> {
    let mut rec = Vec::with_capacity(64 + args.len());
    rec.extend_from_slice(&[0; 4]);
    encode_call(
        &mut rec,
        &CallHeader {
            xid,
            prog,
            vers,
            proc_,
            cred,
        },
    );
    rec.extend_from_slice(args);
    let len = (rec.len() - 4) as u32 & !LAST_FRAGMENT;
    rec[..4].copy_from_slice(&(len | LAST_FRAGMENT).to_be_bytes());
    rec
}

/// Reads one whole record (all its fragments) of at most `max` bytes.
pub fn read_record<R: Read>(r: &mut R, max: usize) -> std::io::Result<Vec<u8>> {
    let mut record = Vec::new();
    loop {
        let mut raw = [0u8; 4];
        r.read_exact(&mut raw)?;
        let h = FragmentHeader::decode(raw, record.len(), max)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let start = record.len();
        record.resize(start + h.len, 0);
        r.read_exact(&mut record[start..])?;
        if h.last {
            return Ok(record);
        }
    }
}

/// One call of `prog`/`vers`/`proc_` with `args` to `addr` (AUTH_NONE),
/// on a new TCP connection with `timeout` for the connect and for each
/// read and write; returns the result bytes of a successful reply.
pub fn call_tcp(
    addr: SocketAddr,
    prog: u32,
    vers: u32,
    proc_: u32,
    args: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, RpcClientError> {
    let io = |source| RpcClientError::Io { addr, source };
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|source| RpcClientError::Connect { addr, source })?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let xid = xid();
    stream
        .write_all(&call_record(xid, prog, vers, proc_, Credential::None, args))
        .map_err(io)?;
    let record = read_record(&mut stream, MAX_REPLY).map_err(io)?;
    let malformed = |detail: String| RpcClientError::Malformed { addr, detail };
    let (header, results) = decode_reply(&record).map_err(|e| malformed(e.to_string()))?;
    match header {
        ReplyHeader::Accepted { xid: got, .. } if got != xid => Err(malformed(format!(
            "reply to xid {got:#x}, the call was {xid:#x}"
        ))),
        ReplyHeader::Accepted { stat: 0, .. } => Ok(results.to_vec()),
        ReplyHeader::Accepted { stat, .. } => Err(RpcClientError::NotRun { addr, stat }),
        ReplyHeader::RpcMismatch { .. } => Err(RpcClientError::Denied {
            addr,
            reject: RPC_MISMATCH,
        }),
        ReplyHeader::AuthError { .. } => Err(RpcClientError::Denied {
            addr,
            reject: AUTH_ERROR,
        }),
    }
}

/// A transaction id that differs from call to call.
fn xid() -> u32 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.subsec_nanos() ^ std::process::id().rotate_left(16)
}

/// The portmapper's GETPORT (RFC 1833, version 2, procedure 3) on
/// `portmapper`: the TCP port of `prog`/`vers`, 0 when not registered.
pub fn getport_tcp(
    portmapper: SocketAddr,
    prog: u32,
    vers: u32,
    timeout: Duration,
) -> Result<u32, RpcClientError> {
    let mut args = Vec::with_capacity(16);
    args.put_u32(prog);
    args.put_u32(vers);
    args.put_u32(crate::portmap::IPPROTO_TCP);
    args.put_u32(0);
    let res = call_tcp(
        portmapper,
        crate::portmap::PROGRAM,
        crate::portmap::VERSION,
        3,
        &args,
        timeout,
    )?;
    XdrReader::new(&res)
        .u32("port")
        .map_err(|e| RpcClientError::Malformed {
            addr: portmapper,
            detail: e.to_string(),
        })
}
