//! Agents: `lifeboat agent` on a publish target. An agent enrolls like a
//! proxy (a one-time secret of kind agent, [`crate::proxies::identity`]),
//! gets a certificate from the server's CA that is both its listener's
//! certificate and its client certificate, listens on 8082 (a free port
//! when taken) and reports where to the server; the server calls it there
//! to publish, unpublish and scan restore points.
//!
//! ```text
//!  agent -> server  POST /api/v1/agent/hello {port, host}   (agent certificate)
//!                   <- the agent's row, the server's client fingerprint
//!  server -> agent  https://NAME:PORT/agent/v1/...           (server's client certificate,
//!                   connected to the reported address; the agent's certificate
//!                   must name NAME and chain to the CA)
//! ```
//!
//! This module is the server's side: the wire types both sides share
//! ([`wire`]) and the calls ([`call`]). The agent process is the
//! `lifeboat-agent` crate.

pub mod call;
pub mod wire;
