//! MOUNT version 3 (RFC 1813 appendix I), sans-IO.
//!
//! | proc | name    | what it does here                                       |
//! |------|---------|---------------------------------------------------------|
//! | 0    | NULL    | nothing                                                 |
//! | 1    | MNT     | peer not on the allow list, or not let in by the backend ([`NfsBackend::permits`], e.g. a session's own client list) → MNT3ERR_ACCES; a path equal to the export path (or below it, naming a directory of the tree) → its handle and the one flavor AUTH_SYS |
//! | 2    | DUMP    | the paths the calling client has mounted (only its own entries) |
//! | 3    | UMNT    | forgets the (client, path) pair                         |
//! | 4    | UMNTALL | forgets every pair of the client                        |
//! | 5    | EXPORT  | the export path, with the allow-list entries that contain the caller as groups; nothing for a client off the allow list |
//!
//! The mount list is advisory (as in every server): handles keep working
//! without a MNT, as long as the client is allowed. What DUMP and EXPORT
//! tell a client is limited to what it already knows: its own mounts, and
//! the entries it matched (never the other clients' addresses or the rest
//! of the allow list). The socket layer closes peers off the allow list
//! before they can call anything; these answers are the second line.

use crate::access::AllowList;
use crate::backend::{NfsBackend, Status};
use crate::rpc::msg::AUTH_SYS;
use crate::rpc::{CallContext, ProcError, Reply, RpcProgram};
use crate::xdr::{XdrReader, XdrWrite};
use std::sync::{Arc, Mutex};

pub const PROGRAM: u32 = 100_005;
pub const VERSION: u32 = 3;
/// Longest path MNT accepts (MNTPATHLEN).
pub const MAX_PATH: u32 = 1024;

const MNT3_OK: u32 = 0;
const MNT3ERR_NOENT: u32 = 2;
const MNT3ERR_IO: u32 = 5;
const MNT3ERR_ACCES: u32 = 13;
const MNT3ERR_NOTDIR: u32 = 20;
const MNT3ERR_INVAL: u32 = 22;

/// The MOUNT program over a backend.
pub struct MountProgram {
    backend: Arc<dyn NfsBackend>,
    allow: Arc<AllowList>,
    export: String,
    mounts: Mutex<Vec<(String, String)>>,
}

impl MountProgram {
    /// `export` is the path clients mount, e.g. `/lifeboat`.
    pub fn new(backend: Arc<dyn NfsBackend>, allow: Arc<AllowList>, export: &str) -> Self {
        let export = format!("/{}", export.trim_matches('/'));
        MountProgram {
            backend,
            allow,
            export,
            mounts: Mutex::default(),
        }
    }

    /// The path below the export that `path` names, if it is inside it.
    fn relative<'a>(&self, path: &'a str) -> Option<&'a str> {
        let path = path.trim_end_matches('/');
        let export = self.export.trim_end_matches('/');
        let rest = path.strip_prefix(export)?;
        if rest.is_empty() {
            Some("")
        } else {
            rest.strip_prefix('/')
        }
    }

    fn mnt(&self, ctx: &CallContext, path: &str, out: &mut Vec<u8>) {
        if !self.allow.allows(ctx.peer) {
            out.put_u32(MNT3ERR_ACCES);
            return;
        }
        let Some(rel) = self.relative(path) else {
            out.put_u32(MNT3ERR_NOENT);
            return;
        };
        match self.backend.mount(rel) {
            Ok(fh) if !self.backend.permits(ctx.peer, &fh) => out.put_u32(MNT3ERR_ACCES),
            Ok(fh) => {
                out.put_u32(MNT3_OK);
                out.put_opaque(&fh);
                out.put_u32(1);
                out.put_u32(AUTH_SYS);
                let mut m = self.mounts.lock().unwrap_or_else(|e| e.into_inner());
                let pair = (ctx.peer.to_string(), path.to_owned());
                if !m.contains(&pair) {
                    m.push(pair);
                }
            }
            Err(e) => out.put_u32(match e.status {
                Status::NoEnt | Status::Stale => MNT3ERR_NOENT,
                Status::NotDir => MNT3ERR_NOTDIR,
                Status::Acces | Status::Perm => MNT3ERR_ACCES,
                Status::Inval | Status::NameTooLong => MNT3ERR_INVAL,
                _ => MNT3ERR_IO,
            }),
        }
    }
}

impl RpcProgram for MountProgram {
    fn program(&self) -> u32 {
        PROGRAM
    }
    fn versions(&self) -> (u32, u32) {
        (VERSION, VERSION)
    }
    fn call(&self, ctx: &CallContext, args: &[u8], out: &mut Reply) -> Result<(), ProcError> {
        let mut r = XdrReader::new(args);
        let host = ctx.peer.to_string();
        match ctx.header.proc_ {
            0 => {}
            1 => {
                let path = r.string(MAX_PATH, "dirpath")?;
                self.mnt(ctx, path, out);
            }
            2 => {
                let mounts = self.mounts.lock().unwrap_or_else(|e| e.into_inner());
                for (h, d) in mounts.iter().filter(|(h, _)| *h == host) {
                    out.put_bool(true);
                    out.put_string(h);
                    out.put_string(d);
                }
                out.put_bool(false);
            }
            3 => {
                let path = r.string(MAX_PATH, "dirpath")?;
                self.mounts
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|(h, d)| !(h == &host && d == path));
            }
            4 => self
                .mounts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|(h, _)| h != &host),
            5 => {
                if self.allow.allows(ctx.peer) {
                    out.put_bool(true);
                    out.put_string(&self.export);
                    for g in self.allow.entries().iter().filter(|g| g.contains(ctx.peer)) {
                        out.put_bool(true);
                        out.put_string(&g.to_string());
                    }
                    out.put_bool(false);
                }
                out.put_bool(false);
            }
            _ => return Err(ProcError::ProcUnavail),
        }
        Ok(())
    }
}
