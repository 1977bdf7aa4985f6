//! An NBD server for Lifeboat: exports any [`lifeboat_vdisk::ReadDisk`]
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
//!           replies back out
//! server    accept loop, one std thread per connection, ServerHandle
//! ```
//!
//! # A connection
//!
//! ```text
//!  accept ──> send greeting (NBDMAGIC, IHAVEOPT, FIXED_NEWSTYLE|NO_ZEROES)
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
//! A handshake stalled for 30 s is dropped; transmission has no timeout.
//!
//! # Supported
//!
//! - Options: EXPORT_NAME, ABORT, LIST, INFO and GO (NBD_INFO_EXPORT always,
//!   NAME, DESCRIPTION, BLOCK_SIZE on request: 1 / 4096 / 32 MiB),
//!   STRUCTURED_REPLY, LIST_META_CONTEXT and SET_META_CONTEXT for
//!   `base:allocation`. Not supported (ERR_UNSUP): STARTTLS,
//!   EXTENDED_HEADERS, anything newer.
//! - Per-client policy ([`AccessPolicy`], `NbdServer::with_policy`): a
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

mod conn;
mod export;
/// Fuzz target bodies (`fuzz/`), replayed by `tests/fuzz_corpus.rs`; not an API.
#[doc(hidden)]
pub mod fuzzing;
mod plan;
pub mod proto;
mod server;

pub use export::{AccessPolicy, Export, ExportTable};
pub use server::{serve, spawn, NbdServer, ServeError, ServerHandle, ServerStats};
