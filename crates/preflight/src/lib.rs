//! What a Lifeboat deployment needs from the network, and whether it has it.
//!
//! ```text
//! ports      the port table of a configuration (from, to, port, protocol,
//!            why, whether it is built), as `lifeboat ports` prints it
//! check      one probe's verdict: pass / warn / fail, what was proven and
//!            how, and the fix when it failed
//! tcp        resolve and connect, with a timeout
//! tls        a TLS 1.2+ handshake (rustls) and the certificate's trust
//! rpc_probe  the portmapper's GETPORT, then NULL to MOUNT v3 and NFS v3
//! qmp_probe  QMP greeting and query-version of a hypervisor's QEMU
//! sntp       an SNTP (RFC 4330) query: the clock offset against a server
//! preflight  runs the probes a set of options asks for
//! ```
//!
//! A probe says "pass" only for what it proved: a TCP connect proves the
//! port is open, not that the right service answers; a TLS handshake
//! without a CA to check against is a warning, not a pass.

pub mod check;
pub mod ports;
pub mod preflight;
pub mod qmp_probe;
pub mod rpc_probe;
pub mod sntp;
pub mod tcp;
pub mod tls;

pub use check::{Check, Outcome};
pub use ports::{port_table, PortConfig, PortRow, PortStatus};
pub use preflight::{run_preflight, PreflightOptions};
pub use sntp::{sntp_offset, SntpError, SntpReading};
