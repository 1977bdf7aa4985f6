//! The NFSv3 service of Instant VM Recovery: a hypervisor mounts a
//! datastore served by Lifeboat and boots a VM straight from a restore
//! point; writes go to a copy-on-write overlay. ONC RPC and XDR are
//! written in-house (no crate), sockets are served by one epoll reactor
//! thread and a fixed pool of workers.
//!
//! # Layers
//!
//! ```text
//! xdr        checked XDR reader, encoders on Vec<u8>            (sans-IO)
//! rpc/       record marking, call/reply headers, Dispatcher       (sans-IO)
//! portmap    RFC 1833 v2 registry and program                    (sans-IO)
//! mount      MOUNT v3 program, allow-list checked                (sans-IO)
//! nfs/       NFS v3 program: codec, procedures, READDIR paging   (sans-IO)
//! backend    NfsBackend trait: what the tree must answer
//! tree/      SessionTree: root → session folders → flat disk files,
//!            descriptors and cache-folder files; keyed file handles
//! access     allow list of addresses / CIDR networks
//! log        ServiceLog: counters and recent lines (no logging crate)
//! server/    NfsService::start: listeners, an epoll reactor for every
//!            connection, a worker pool running calls, UDP; limits
//! ```
//!
//! A hypervisor sees, for an export path `/lifeboat`:
//!
//! ```text
//! /lifeboat/<session>/<vm>-<disk>-flat.vmdk   raw disk bytes (QEMU: format=raw)
//! /lifeboat/<session>/<vm>-<disk>.vmdk        VMDK descriptor (ESXi pair)
//! /lifeboat/<session>/...                     files it creates, kept in the cache folder
//! ```

pub mod access;
pub mod backend;
/// Fuzz target bodies (`fuzz/`), replayed by `tests/fuzz_corpus.rs`; not an API.
#[doc(hidden)]
pub mod fuzzing;
pub mod log;
pub mod mount;
pub mod nfs;
pub mod portmap;
pub mod rpc;
mod server;
pub mod tree;
pub mod xdr;

pub use access::{AllowEntry, AllowList, AllowParseError};
pub use backend::{NfsBackend, NfsError, Status};
pub use log::{LogHook, ServiceLog};
pub use server::{
    NfsConfig, NfsService, NfsServiceHandle, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_WORKERS,
};
pub use tree::{HandleKey, SessionError, SessionTree};
