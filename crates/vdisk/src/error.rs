//! The error type every virtual disk returns.
//!
//! An error always names the disk it came from (`what`, usually the result of
//! [`crate::ReadDisk::describe`]) and, where it makes sense, the byte offset.
//! Callers can tell the kinds apart by matching on the variant; errors from a
//! lower layer (for example a repository's "missing chunk") travel in
//! [`Error::Source`] and can be recovered with `downcast_ref`.

use std::fmt;

/// Result alias used across the virtual-disk crates.
pub type Result<T> = std::result::Result<T, Error>;

/// What went wrong while using a virtual disk.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operating system refused an I/O operation.
    #[error("{what}: I/O error at offset {offset}: {source}")]
    Io {
        what: String,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    /// The on-disk structure is damaged or inconsistent.
    #[error("{what}: corrupt: {detail}")]
    Corrupt { what: String, detail: String },
    /// A valid structure uses a feature this code does not implement.
    #[error("{what}: unsupported: {detail}")]
    Unsupported { what: String, detail: String },
    /// A request reaches past the end of the disk.
    #[error(
        "{what}: {len} bytes at offset {offset} reach past the end of the disk ({size} bytes)"
    )]
    OutOfRange {
        what: String,
        offset: u64,
        len: u64,
        size: u64,
    },
    /// A write was attempted on a disk opened read-only.
    #[error("{what}: the disk is read-only")]
    ReadOnly { what: String },
    /// A configuration problem: a loop in a backing chain, a stack too deep, a bad argument.
    #[error("{what}: {detail}")]
    Invalid { what: String, detail: String },
    /// An error from a lower layer (for example the repository), kept whole.
    #[error("{what}: {source}")]
    Source {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// An I/O error at `offset` of `what`.
    pub fn io(what: impl fmt::Display, offset: u64, source: std::io::Error) -> Self {
        Error::Io {
            what: what.to_string(),
            offset,
            source,
        }
    }

    /// A corruption of `what`, described by `detail`.
    pub fn corrupt(what: impl fmt::Display, detail: impl fmt::Display) -> Self {
        Error::Corrupt {
            what: what.to_string(),
            detail: detail.to_string(),
        }
    }

    /// A feature of `what` that is not implemented.
    pub fn unsupported(what: impl fmt::Display, detail: impl fmt::Display) -> Self {
        Error::Unsupported {
            what: what.to_string(),
            detail: detail.to_string(),
        }
    }

    /// A bad request or configuration around `what`.
    pub fn invalid(what: impl fmt::Display, detail: impl fmt::Display) -> Self {
        Error::Invalid {
            what: what.to_string(),
            detail: detail.to_string(),
        }
    }

    /// Wraps an error of a lower layer.
    pub fn source(
        what: impl fmt::Display,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Source {
            what: what.to_string(),
            source: source.into(),
        }
    }
}
