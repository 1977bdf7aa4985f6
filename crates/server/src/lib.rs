//! The Lifeboat backup server (`lifeboat serve`) and the client the CLI
//! talks to it with.
//!
//! ```text
//!  lifeboat --server URL ...  --HTTPS (TLS 1.2+, rustls/ring)-->  serve.rs accept loop
//!     client.rs (ureq)                                              |
//!                                                                   v
//!                              api/ router built from routes::ROUTES (one table)
//!                                 auth.rs: bearer token -> catalog lookup, role check, audit
//!                                 tokens.rs, handlers.rs: JSON in/out, errors as JSON
//!                                   |                         |
//!                                   v                         v
//!                      catalog/ (SQLite, WAL, migrations)   lifeboat-repo (list_report)
//! ```
//!
//! What it has: HTTPS with the server's own CA or the operator's
//! certificate, the catalog, API tokens with roles, the audit log,
//! repositories and their restore points, jobs with cron schedules,
//! retention, sessions run by the server itself (jobs/), webhooks,
//! Prometheus metrics, the OpenAPI document, and proxies enrolled with
//! a one-time secret that pull sessions over mutual TLS with a client
//! certificate from the server's CA and back them up with the runner's
//! own code into uploads to the server's repository (proxies/,
//! api/proxy_work.rs, api/uploads.rs, uploads.rs), and agents enrolled
//! the same way that the server calls to publish and scan restore points
//! on their hosts (agents/, api/publications.rs; the agent process is the
//! `lifeboat-agent` crate).

pub mod agents;
pub mod api;
mod background;
pub mod catalog;
pub mod check;
pub mod client;
mod client_upload;
pub mod error;
mod fsutil;
pub mod jobs;
pub mod listener;
pub mod metrics;
pub mod proxies;
pub mod routes;
pub mod serve;
pub mod state;
pub mod tls;
pub mod token;
pub mod uploads;

pub use background::Background;
pub use client::{Client, ClientError};
pub use error::{Error, ErrorKind, Result};
pub use lifeboat_engine::error_chain;
pub use serve::{run, run_until_signal, ServerConfig, ADMIN_TOKEN_FILE};
pub use tls::TlsFiles;
pub use token::{Role, TokenInfo};
