//! Errors of backup and restore jobs: which disk, and the error of the
//! layer below (the virtual disk or the repository), kept whole.

/// Result alias of the engine.
pub type Result<T> = std::result::Result<T, Error>;

/// What stopped a job.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a virtual disk failed.
    #[error("disk {disk}: {source}")]
    Disk {
        disk: String,
        #[source]
        source: lifeboat_vdisk::Error,
    },
    /// The repository refused or failed.
    #[error(transparent)]
    Repo(#[from] lifeboat_repo::Error),
    /// A proxy's upload to the server's repository failed or was refused.
    #[error("upload to the server: {0}")]
    Upload(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Bad arguments: duplicate disk names, a format that cannot be written.
    #[error("{0}")]
    Invalid(String),
    /// The caller's [`crate::Progress::cancelled`] said stop: the backup
    /// ended without a restore point.
    #[error("cancelled")]
    Cancelled,
    /// Writing the restored image failed.
    #[error("restore target {path}: {source}")]
    Target {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The repository error under this one, if any (a missing or corrupt
    /// chunk met while reading a restore point arrives wrapped in a disk error).
    pub fn repo_error(&self) -> Option<&lifeboat_repo::Error> {
        match self {
            Error::Repo(e) => Some(e),
            Error::Disk {
                source: lifeboat_vdisk::Error::Source { source, .. },
                ..
            } => source.downcast_ref::<lifeboat_repo::Error>(),
            _ => None,
        }
    }
}

/// An error and its causes on one line, `a: b: c` (a cause whose text the
/// message already holds is not repeated).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        cur = c.source();
    }
    out
}
