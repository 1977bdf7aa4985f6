//! Instant VM Recovery: the service that ties a repository, the NFSv3
//! datastore (`lifeboat-nfs`) and the NBD server (`lifeboat-nbd`) together,
//! so a hypervisor boots a VM straight from a restore point.
//!
//! # A session
//!
//! ```text
//!  restore point vm@id, per disk:
//!    RestorePointDisk (index + chunk reader, never written)
//!      └─ CachedDisk (block = chunk size, SESSION_CACHE_BYTES per session, read-ahead)
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
//! control    the unix-socket server and the client used by the CLI
//! nbd        NBD accept loop that refuses peers not on the allow list
//! ```
//!
//! Access control is service-wide: the service's allow list gates NFS
//! MOUNT and every handle (in `lifeboat-nfs`) and NBD connections at
//! accept. A session's own `allow` entries are recorded and reported, but
//! the NFS layer has no per-session list yet (it does not tell the backend
//! who is asking), so they do not narrow access further.

mod control;
mod error;
mod nbd;
pub mod protocol;
mod record;
mod service;
mod sessions;

pub use control::{request, socket_path};
pub use error::{Error, Result};
pub use protocol::{
    DiskInfo, MigrateInfo, Request, Response, ServiceInfo, SessionInfo, StartRequest,
};
pub use record::{SessionDisk, SessionRecord};
pub use service::{parse_format, Service, ServiceConfig, SESSION_CACHE_BYTES};

pub use lifeboat_nfs::{AllowList, LogHook, ServiceLog};
