//! Instant VM Recovery: the service that ties a repository, the NFSv3
//! datastore (`lifeboat-nfs`) and the NBD server (`lifeboat-nbd`) together,
//! so a hypervisor boots a VM straight from a restore point.
//!
//! # A session
//!
//! ```text
//!  restore point vm@id, per disk:
//!    RestorePointDisk (index + chunk reader, never written)
//!      └─ CachedDisk (block = chunk size, --cache-mem per session, read-ahead)
//!           └─ OverlayDisk (redo log <cache>/sessions/<id>/<disk>.overlay, sparse,
//!                           base id "<repo id>/<vm>@<id>/<disk>")
//!                ├─ NFS: SessionTree::add_session → /lifeboat/<id>/<vm>-<disk>-flat.vmdk
//!                └─ NBD (when asked): export "<id>-<disk>"
//! ```
//!
//! Starting a session copies nothing: it loads the disk indexes and creates
//! sparse overlay files, O(1) in disk size. Writes land in the overlay only;
//! the restore point's chunks and digests never change.
//!
//! # The cache folder
//!
//! ```text
//! <cache>/control.sock                 the control socket (mode 0600), see control.rs
//! <cache>/handle.key                   NFS file-handle key (same handles after a restart)
//! <cache>/sessions/<id>/session.json   the session record (record.rs), written last
//! <cache>/sessions/<id>/<disk>.overlay copy-on-write overlay of each disk
//! <cache>/sessions/<id>/files/         descriptors and files a hypervisor creates
//! ```
//!
//! On start the service re-opens every session that has a `session.json`
//! (same id, same export path, same handles, overlay intact); a session that
//! cannot be re-opened is logged and skipped, its files left alone.
//!
//! # Modules
//!
//! ```text
//! protocol   control-socket requests/responses, line-delimited JSON (sans-IO),
//!            and the ready-to-paste QEMU / ESXi / NBD lines of a session
//! record     session.json and the cache-folder layout
//! service    Service::start, sessions (start, list, stop, migrate), restart
//! cache_size default size of a session's decoded-chunk cache, --cache-mem syntax
//! control    the unix-socket server and the client used by the CLI
//! nbd        NBD server setup: refuses peers not on the allow list at accept,
//!            withholds the exports of sessions whose own list leaves the
//!            peer out, connection limit and timeouts, TLS files
//! ```
//!
//! Access control: the service's allow list gates NFS MOUNT and every
//! handle (in `lifeboat-nfs`) and NBD connections at accept. A session's
//! own `allow` entries (recorded in session.json, so they survive a
//! restart) narrow that for the session: the tree gets them
//! (`SessionTree::add_session_for`: MNT3ERR_ACCES, NFS3ERR_ACCES, hidden
//! from the root listing) and so does the NBD listener (other clients are
//! refused the session's exports with NBD_REP_ERR_POLICY, see nbd.rs).

mod cache_size;
mod control;
mod error;
mod nbd;
pub mod protocol;
mod record;
mod service;
mod sessions;

pub use cache_size::{default_cache_bytes, parse_mem_size, MAX_DEFAULT_CACHE_BYTES};
pub use control::{request, socket_path};
pub use error::{Error, Result};
/// The NFS side's connection limits (defaults of `nfs serve`).
pub use lifeboat_nfs::{
    DEFAULT_IDLE_TIMEOUT as NFS_DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS as NFS_DEFAULT_MAX_CONNECTIONS,
};
pub use nbd::NbdTlsFiles;
pub use protocol::{
    DiskInfo, MigrateInfo, Request, Response, ServiceInfo, SessionInfo, StartRequest,
};
pub use record::{SessionDisk, SessionRecord};
pub use service::{parse_format, Service, ServiceConfig};

pub use lifeboat_nfs::{AllowList, LogHook, ServiceLog};
