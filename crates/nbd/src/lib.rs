//! An NBD server (and client) for Lifeboat: exports any [`lifeboat_vdisk::ReadDisk`]
//! (optionally [`lifeboat_vdisk::WriteDisk`]) over TCP, so QEMU, qemu-img,
//! nbdkit clients and the Linux kernel can use a restore point as a disk.
//! Written in-house: no crate offered structured replies and BLOCK_STATUS.
//!
//! # Layers
//!
//! ```text
//! proto/    sans-IO: parse_* (bytes -> message | need more | ProtoError),
//!           encode_* (message -> bytes), Negotiation (option state machine),
//!           classify (request + export -> command | errno). No sockets, no
//!           disks, no panics: this is what a fuzz target feeds.
//! plan      extents -> READ chunks / base:allocation descriptors (pure)
//! export    Export (name, disk, optional writer, description), ExportTable,
//!           AccessPolicy (which client may use which export)
//! conn      one connection: bytes from the socket into proto, disk I/O,
//!           replies back out, time limits
//! transport the connection's byte stream: TCP, or rustls over it after
//!           NBD_OPT_STARTTLS
//! tls       TlsConfig: certificate, key, optional client CA (PEM files)
//! slots     the connection table: limit, activity, eviction of the
//!           longest-idle connection at the limit
//! server    accept loop (admission by policy, then a slot), one std thread
//!           per connection, ServerLimits, ServerHandle
//! client    the other side: NbdClient reads data and block status
//!           (base:allocation, qemu:dirty-bitmap:NAME) from an export
//! export_disk  NbdExportDisk: an export read as a ReadDisk (a pool of
//!           clients), with the ranges a dirty bitmap marks
//! ```
//!
//! # A connection
//!
//! ```text
//!  accept ── peer not admitted by the policy ──> close, nothing sent
//!    │    ── at the connection limit, every connection busy ──> close
//!    │       (otherwise the longest-idle connection makes room)
//!    v
//!  send greeting (NBDMAGIC, IHAVEOPT, FIXED_NEWSTYLE|NO_ZEROES)
//!               │
//!               v
//!  read client flags ── not fixed newstyle / unknown bits ──> close
//!               │
//!               v
//!  ┌──> read option ── bad magic, > 64 KiB, EOF ──> close
//!  │        │
//!  │        ├─ LIST, INFO, STRUCTURED_REPLY, LIST/SET_META_CONTEXT,
//!  │        │  unknown (ERR_UNSUP), malformed (ERR_INVALID) ──> reply ──┐
//!  │        ├─ ABORT ──> ACK, close                                      │
//!  │        ├─ STARTTLS (TLS server) ──> ACK, TLS handshake ────────────┤
//!  │        ├─ anything else before STARTTLS on a TLS server ──>        │
//!  │        │  ERR_TLS_REQD (EXPORT_NAME: close) ───────────────────────┤
//!  │        ├─ EXPORT_NAME unknown or refused by policy ──> close       │
//!  │        └─ GO ok / EXPORT_NAME ok ──> transmission                  │
//!  └────────────────────────────────────────────────────────────────────┘
//!
//!  transmission: read request header ── bad magic ──> close
//!      classify ── reject ──> drop any WRITE payload, error reply, next
//!               └─ run ──> disk I/O ──> reply (disk error: EIO reply), next
//!      DISC or EOF between requests ──> close
//! ```
//!
//! Requests on one connection are served in order, one at a time; clients
//! that want parallelism open several connections (CAN_MULTI_CONN is set:
//! every connection sees the same disk, and FLUSH flushes the whole disk).
//! The whole negotiation (TLS handshake included) must end within the
//! handshake timeout (30 s); a connection in transmission that sends nothing
//! for the idle timeout (off by default) is closed ([`ServerLimits`]).
//!
//! # Supported
//!
//! - Options: EXPORT_NAME, ABORT, LIST, INFO and GO (NBD_INFO_EXPORT always,
//!   NAME, DESCRIPTION, BLOCK_SIZE on request: 1 / 4096 / 32 MiB),
//!   STRUCTURED_REPLY, LIST_META_CONTEXT and SET_META_CONTEXT for
//!   `base:allocation`, STARTTLS on a server with [`TlsConfig`] (TLS-only:
//!   `NbdServer::with_tls`). Not supported (ERR_UNSUP): STARTTLS without
//!   TLS configured, EXTENDED_HEADERS, anything newer. A listener on an
//!   address other than loopback refuses to start without TLS.
//! - Per-client policy ([`AccessPolicy`], `NbdServer::with_policy`): a peer
//!   it does not admit is closed at accept, before the greeting; a
//!   refused export is hidden from LIST, INFO/GO/meta-context answer
//!   NBD_REP_ERR_POLICY, EXPORT_NAME closes the connection.
//! - Commands: READ (structured: holes from `ReadDisk::extents` as
//!   OFFSET_HOLE, data as OFFSET_DATA, then NONE+DONE; DF gives one data
//!   chunk), WRITE (+FUA), FLUSH, DISC, TRIM (advisory: accepted and
//!   ignored), WRITE_ZEROES (writes zeros where the disk is not already
//!   zero), BLOCK_STATUS (base:allocation: zero extents are HOLE|ZERO, data
//!   0; REQ_ONE honoured), CACHE (reads the data extents, warming caches).
//!   RESIZE and extended headers are not supported (EINVAL).
//! - Errors: READ/WRITE beyond 32 MiB → EOVERFLOW/EINVAL without allocating;
//!   out-of-range → EINVAL (ENOSPC for writes); any write to a read-only
//!   export → EPERM; a failing disk → EIO for that request, never partial or
//!   wrong data (a READ is fully read before its first byte is sent). The
//!   connection stays up after any of these; only bytes that break framing
//!   (bad magic, EOF mid-message) end it, and only that connection.

pub mod client;
mod conn;
mod export;
mod export_disk;
/// Fuzz target bodies (`fuzz/`), replayed by `tests/fuzz_corpus.rs`; not an API.
#[doc(hidden)]
pub mod fuzzing;
mod plan;
pub mod proto;
mod server;
mod slots;
mod tls;
mod transport;

pub use client::{ClientError, Extent, NbdClient};
pub use export::{AccessPolicy, Export, ExportTable};
pub use export_disk::NbdExportDisk;
pub use server::{
    serve, spawn, ListenError, LogHook, NbdServer, ServeError, ServerHandle, ServerLimits,
    ServerStats,
};
pub use tls::{TlsConfig, TlsError};
