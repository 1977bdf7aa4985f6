//! The error type of the Instant VM Recovery service: every variant names
//! the session, file or restore point it is about.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the service or talking to it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The repository could not be opened or read.
    #[error("repository {path}: {source}")]
    Repo {
        path: PathBuf,
        #[source]
        source: lifeboat_repo::Error,
    },
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// Building a session's disk stack failed.
    #[error("session {session}: {source}")]
    Disk {
        session: String,
        #[source]
        source: lifeboat_vdisk::Error,
    },
    /// The NFS tree refused a session.
    #[error(transparent)]
    Export(#[from] lifeboat_nfs::SessionError),
    /// No session with that id.
    #[error("no session {0:?}")]
    NoSession(String),
    /// A request that cannot be carried out as given.
    #[error("{0}")]
    Invalid(String),
    /// A session record that cannot be read.
    #[error("session record {path}: {reason}")]
    Record { path: PathBuf, reason: String },
    /// Migrating a session failed (no partial image is left behind).
    #[error("migrate of session {session} to {path}: {source}")]
    Migrate {
        session: String,
        path: PathBuf,
        #[source]
        source: Box<lifeboat_engine::Error>,
    },
    /// The NBD server could not start (bind, TLS required but not given).
    #[error(transparent)]
    NbdListen(#[from] lifeboat_nbd::ListenError),
    /// The NBD TLS certificate, key or client CA could not be loaded.
    #[error(transparent)]
    NbdTls(#[from] lifeboat_nbd::TlsError),
    /// A bad allow-list entry.
    #[error(transparent)]
    Allow(#[from] lifeboat_nfs::AllowParseError),
    /// The control socket could not be used.
    #[error("control socket {path}: {reason}")]
    Control { path: PathBuf, reason: String },
    /// The service answered with an error.
    #[error("service: {0}")]
    Remote(String),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}
