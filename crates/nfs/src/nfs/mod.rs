//! NFS version 3 (RFC 1813), sans-IO: decodes arguments, checks access,
//! calls the [`NfsBackend`], encodes results.
//!
//! | proc | name        | here                                                  |
//! |------|-------------|-------------------------------------------------------|
//! | 0    | NULL        | any credential                                        |
//! | 1    | GETATTR     | backend                                               |
//! | 2    | SETATTR     | backend (disk files: size changes → INVAL); guard → NOT_SYNC |
//! | 3    | LOOKUP      | backend                                               |
//! | 4    | ACCESS      | from the mode bits and type                           |
//! | 5    | READLINK    | NOTSUPP (no symlinks)                                 |
//! | 6    | READ        | at most 1 MiB, read straight into the reply buffer    |
//! | 7    | WRITE       | UNSTABLE / DATA_SYNC / FILE_SYNC, instance verifier   |
//! | 8    | CREATE      | UNCHECKED / GUARDED / EXCLUSIVE                       |
//! | 9    | MKDIR       | backend                                               |
//! | 10,11| SYMLINK, MKNOD | NOTSUPP                                            |
//! | 12,13| REMOVE, RMDIR | backend                                             |
//! | 14   | RENAME      | backend                                               |
//! | 15   | LINK        | NOTSUPP                                               |
//! | 16,17| READDIR(PLUS) | paged from the backend's listing (dir.rs)           |
//! | 18   | FSSTAT      | backend                                               |
//! | 19   | FSINFO      | rtmax = wtmax = rtpref = wtpref = 1 MiB, dtpref 64 KiB |
//! | 20   | PATHCONF    | name_max 255, no_trunc, case preserving               |
//! | 21   | COMMIT      | backend flush; same verifier as WRITE                 |
//! | >21  |             | PROC_UNAVAIL                                          |
//!
//! Every procedure but NULL needs AUTH_SYS (AUTH_NONE → AUTH_TOOWEAK) and a
//! client on the allow list (else NFS3ERR_ACCES). The AUTH_SYS uid and
//! gids are then checked against the object's owner and mode (perm.rs:
//! root is honoured, other uids get the owner / group / other bits). The backend then vets
//! the client per object ([`NfsBackend::permits`]): every handle in the
//! arguments (both directories of RENAME and LINK) before the procedure
//! runs, the handle LOOKUP would return, and the entries of a listing
//! (READDIR and READDIRPLUS leave out what the client may not use); a
//! refusal is NFS3ERR_ACCES. A failed procedure
//! answers its status and the failure arm of its result (empty attributes,
//! see [`fail_tail`]); NFS3ERR_IO and NFS3ERR_NOSPC are also logged.
//!
//! The write verifier is drawn when the program is created, so it is stable
//! for the life of a service instance and changes on restart: a client that
//! sees it change re-sends its uncommitted UNSTABLE writes.

mod codec;
mod dir;
mod perm;
mod procs;

pub use codec::FSID;
pub use perm::Caller;

use crate::access::AllowList;
use crate::backend::{NfsBackend, NfsError, Status};
use crate::log::ServiceLog;
use crate::rpc::msg::{AuthStat, Credential};
use crate::rpc::{CallContext, ProcError, Reply, RpcProgram};
use crate::xdr::{XdrError, XdrReader, XdrWrite};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub const PROGRAM: u32 = 100_003;
pub const VERSION: u32 = 3;
/// Largest READ and WRITE.
pub const MAX_IO: u32 = 1 << 20;
/// Preferred READDIR size.
pub const DIR_PREF: u32 = 64 << 10;

/// Who a call comes from: the client's address and its AUTH_SYS identity.
pub(crate) struct Who {
    pub(crate) peer: IpAddr,
    pub(crate) caller: Caller,
}

/// Why a procedure failed.
pub(crate) enum Fail {
    Nfs(NfsError),
    Garbage(XdrError),
}

impl From<NfsError> for Fail {
    fn from(e: NfsError) -> Self {
        Fail::Nfs(e)
    }
}
impl From<XdrError> for Fail {
    fn from(e: XdrError) -> Self {
        Fail::Garbage(e)
    }
}

pub(crate) type ProcResult = Result<(), Fail>;

/// How many FALSE booleans follow the status in the failure arm of a
/// procedure's result: one per post_op_attr, two per wcc_data.
pub fn fail_tail(proc_: u32) -> usize {
    match proc_ {
        1 => 0,
        3..=6 | 16..=20 => 1,
        15 => 3,
        14 => 4,
        _ => 2,
    }
}

/// The NFS program over a backend.
pub struct NfsProgram {
    pub(crate) backend: Arc<dyn NfsBackend>,
    allow: Arc<AllowList>,
    log: Arc<ServiceLog>,
    pub(crate) verifier: [u8; 8],
}

impl NfsProgram {
    pub fn new(backend: Arc<dyn NfsBackend>, allow: Arc<AllowList>, log: Arc<ServiceLog>) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let v = (now.as_nanos() as u64) ^ ((std::process::id() as u64) << 32);
        NfsProgram {
            backend,
            allow,
            log,
            verifier: v.to_be_bytes(),
        }
    }

    /// The write verifier of this instance.
    pub fn write_verifier(&self) -> [u8; 8] {
        self.verifier
    }

    /// Refuses the call when the backend does not let `peer` use a handle
    /// of its arguments. Arguments that do not decode are left to the
    /// procedure (GARBAGE_ARGS).
    fn vet_handles(&self, peer: IpAddr, proc_: u32, args: &[u8]) -> ProcResult {
        let mut r = XdrReader::new(args);
        let mut handles = Vec::with_capacity(2);
        if let Ok(fh) = codec::get_fh(&mut r) {
            handles.push(fh);
            let second = match proc_ {
                14 => r.string(crate::backend::MAX_NAME, "filename3").is_ok(),
                15 => true,
                _ => false,
            };
            if second {
                if let Ok(fh) = codec::get_fh(&mut r) {
                    handles.push(fh);
                }
            }
        }
        for fh in handles {
            if !self.backend.permits(peer, fh) {
                return Err(self.refused(peer).into());
            }
        }
        Ok(())
    }

    /// NFS3ERR_ACCES for a client the backend does not let in.
    pub(crate) fn refused(&self, peer: IpAddr) -> NfsError {
        ServiceLog::bump(&self.log.refused);
        NfsError::new(
            Status::Acces,
            format!("client {peer} may not use this object"),
        )
    }

    fn run(&self, who: &Who, proc_: u32, r: &mut XdrReader, out: &mut Reply) -> ProcResult {
        self.vet_handles(who.peer, proc_, r.rest())?;
        match proc_ {
            1 => self.getattr(r, out),
            2 => self.setattr(r, out, who),
            3 => self.lookup(r, out, who),
            4 => self.access(r, out, who),
            6 => self.read(r, out, who),
            7 => self.write(r, out, who),
            8 => self.create(r, out, who),
            9 => self.mkdir(r, out, who),
            12 => self.remove(r, out, false, who),
            13 => self.remove(r, out, true, who),
            14 => self.rename(r, out, who),
            16 => self.list(r, out, false, who),
            17 => self.list(r, out, true, who),
            18 => self.fsstat(r, out),
            19 => self.fsinfo(r, out),
            20 => self.pathconf(r, out),
            21 => self.commit(r, out, who),
            _ => Err(NfsError::new(Status::NotSupp, format!("procedure {proc_}")).into()),
        }
    }
}

impl RpcProgram for NfsProgram {
    fn program(&self) -> u32 {
        PROGRAM
    }
    fn versions(&self) -> (u32, u32) {
        (VERSION, VERSION)
    }
    fn call(&self, ctx: &CallContext, args: &[u8], out: &mut Reply) -> Result<(), ProcError> {
        let proc_ = ctx.header.proc_;
        if proc_ == 0 {
            return Ok(());
        }
        if proc_ > 21 {
            return Err(ProcError::ProcUnavail);
        }
        let Credential::Sys(cred) = &ctx.header.cred else {
            return Err(ProcError::Auth(AuthStat::TooWeak));
        };
        let who = Who {
            peer: ctx.peer,
            caller: Caller::from_auth_sys(cred),
        };
        let start = out.len();
        let result = if self.allow.allows(ctx.peer) {
            self.run(&who, proc_, &mut XdrReader::new(args), out)
        } else {
            ServiceLog::bump(&self.log.refused);
            Err(NfsError::new(Status::Acces, format!("client {} not allowed", ctx.peer)).into())
        };
        match result {
            Ok(()) => Ok(()),
            Err(Fail::Garbage(e)) => Err(ProcError::GarbageArgs(e)),
            Err(Fail::Nfs(e)) => {
                out.truncate(start);
                match e.status {
                    Status::Io => {
                        ServiceLog::bump(&self.log.io_errors);
                        self.log
                            .line(format!("nfs: I/O error for {}: {}", ctx.peer, e.detail));
                    }
                    Status::NoSpc => {
                        ServiceLog::bump(&self.log.nospc_errors);
                        self.log.line(format!(
                            "nfs: no space left for a write from {}: {}",
                            ctx.peer, e.detail
                        ));
                    }
                    _ => {}
                }
                out.put_u32(e.status as u32);
                for _ in 0..fail_tail(proc_) {
                    out.put_bool(false);
                }
                Ok(())
            }
        }
    }
}
