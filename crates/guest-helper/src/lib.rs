//! lifeboat-guest-helper: what runs inside a guest for application-aware
//! backup, and the pieces of it the proxy shares.
//!
//! - [`wire`]: the framed request/reply protocol between the proxy and the
//!   helper (sans-IO encoding, bounded frames, typed errors).
//! - [`pin`]: TLS configurations in which each side accepts exactly one
//!   certificate, compared byte for byte (no CA, no names, no dates).
//! - [`layout`]: the names of the files the proxy puts beside the helper in
//!   its guest directory, and the defaults both sides agree on.
//!
//! The binary (`src/main.rs`) listens in the guest, serves one pinned proxy
//! connection, runs the scripts, and removes its own directory when it exits.
//! docs/live-backup.md describes the protocol and the lifetimes.

pub mod layout;
pub mod pin;
pub mod wire;
