//! The portmapper (RFC 1833, program 100000 version 2), sans-IO.
//!
//! | proc | name    | args → result                                            |
//! |------|---------|----------------------------------------------------------|
//! | 0    | NULL    | void → void                                              |
//! | 1    | SET     | mapping → bool (false if (prog, vers, prot) is taken or the caller is not on loopback) |
//! | 2    | UNSET   | mapping → bool (drops every prot of (prog, vers); loopback callers only) |
//! | 3    | GETPORT | mapping → port (0: not registered)                       |
//! | 4    | DUMP    | void → list of mappings                                  |
//! | 5    | CALLIT  | not served (PROC_UNAVAIL): it amplifies UDP traffic      |
//!
//! Versions 3 and 4 (rpcbind) get PROG_MISMATCH(2, 2): clients such as
//! rpcinfo and libnfs then fall back to version 2. The service registers its
//! own MOUNT and NFS ports at start ([`Portmap::set`]).

use crate::rpc::{CallContext, ProcError, Reply, RpcProgram};
use crate::xdr::{XdrReader, XdrWrite};
use std::sync::Mutex;

pub const PROGRAM: u32 = 100_000;
pub const VERSION: u32 = 2;
pub const IPPROTO_TCP: u32 = 6;
pub const IPPROTO_UDP: u32 = 17;

/// One registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    pub prog: u32,
    pub vers: u32,
    pub prot: u32,
    pub port: u32,
}

impl Mapping {
    pub fn decode(r: &mut XdrReader) -> Result<Self, crate::xdr::XdrError> {
        Ok(Mapping {
            prog: r.u32("mapping prog")?,
            vers: r.u32("mapping vers")?,
            prot: r.u32("mapping prot")?,
            port: r.u32("mapping port")?,
        })
    }
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.prog);
        out.put_u32(self.vers);
        out.put_u32(self.prot);
        out.put_u32(self.port);
    }
}

/// The registry and its RPC program.
#[derive(Debug, Default)]
pub struct Portmap {
    map: Mutex<Vec<Mapping>>,
}

impl Portmap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `m`; false when (prog, vers, prot) is already registered.
    pub fn set(&self, m: Mapping) -> bool {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map
            .iter()
            .any(|x| x.prog == m.prog && x.vers == m.vers && x.prot == m.prot)
        {
            return false;
        }
        map.push(m);
        true
    }

    /// Drops every registration of (prog, vers); true if there was one.
    pub fn unset(&self, prog: u32, vers: u32) -> bool {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let before = map.len();
        map.retain(|x| !(x.prog == prog && x.vers == vers));
        map.len() != before
    }

    /// The port of (prog, vers, prot), 0 when not registered.
    pub fn getport(&self, prog: u32, vers: u32, prot: u32) -> u32 {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .find(|x| x.prog == prog && x.vers == vers && x.prot == prot)
            .map_or(0, |x| x.port)
    }

    /// Every registration.
    pub fn dump(&self) -> Vec<Mapping> {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl RpcProgram for Portmap {
    fn program(&self) -> u32 {
        PROGRAM
    }
    fn versions(&self) -> (u32, u32) {
        (VERSION, VERSION)
    }
    fn call(&self, ctx: &CallContext, args: &[u8], out: &mut Reply) -> Result<(), ProcError> {
        let mut r = XdrReader::new(args);
        match ctx.header.proc_ {
            0 => {}
            1 => {
                let m = Mapping::decode(&mut r)?;
                out.put_bool(ctx.peer.is_loopback() && self.set(m));
            }
            2 => {
                let m = Mapping::decode(&mut r)?;
                out.put_bool(ctx.peer.is_loopback() && self.unset(m.prog, m.vers));
            }
            3 => {
                let m = Mapping::decode(&mut r)?;
                out.put_u32(self.getport(m.prog, m.vers, m.prot));
            }
            4 => {
                for m in self.dump() {
                    out.put_bool(true);
                    m.encode(out);
                }
                out.put_bool(false);
            }
            _ => return Err(ProcError::ProcUnavail),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::msg::{CallHeader, Credential};

    fn run(pm: &Portmap, peer: &str, proc_: u32, m: Option<Mapping>) -> Vec<u8> {
        let header = CallHeader {
            xid: 1,
            prog: PROGRAM,
            vers: VERSION,
            proc_,
            cred: Credential::None,
        };
        let ctx = CallContext {
            peer: peer.parse().unwrap(),
            header: &header,
        };
        let mut args = Vec::new();
        if let Some(m) = m {
            m.encode(&mut args);
        }
        let mut out = Reply::new();
        pm.call(&ctx, &args, &mut out).unwrap();
        out.to_vec_from(0)
    }

    #[test]
    fn set_getport_unset_dump() {
        let pm = Portmap::new();
        let m = Mapping {
            prog: 100_003,
            vers: 3,
            prot: IPPROTO_TCP,
            port: 2049,
        };
        assert_eq!(
            run(&pm, "10.0.0.1", 1, Some(m)),
            [0, 0, 0, 0],
            "remote SET refused"
        );
        assert_eq!(run(&pm, "127.0.0.1", 1, Some(m)), [0, 0, 0, 1]);
        assert_eq!(run(&pm, "127.0.0.1", 1, Some(m)), [0, 0, 0, 0], "taken");
        assert_eq!(run(&pm, "10.0.0.1", 3, Some(m)), 2049u32.to_be_bytes());
        let dump = run(&pm, "10.0.0.1", 4, None);
        assert_eq!(dump.len(), 4 + 16 + 4);
        assert_eq!(
            run(&pm, "10.0.0.1", 2, Some(m)),
            [0, 0, 0, 0],
            "remote UNSET refused"
        );
        assert_eq!(run(&pm, "127.0.0.1", 2, Some(m)), [0, 0, 0, 1]);
        assert_eq!(run(&pm, "10.0.0.1", 3, Some(m)), [0, 0, 0, 0]);
    }
}
