//! The error type of publishing: every variant names the thing (path,
//! device, command, session) it is about.

use std::path::{Path, PathBuf};

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The target lacks something publishing needs (root, /dev/fuse, a tool,
    /// a free loop device).
    #[error("cannot publish on this machine: {0}")]
    Missing(String),
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("state file {path}: {detail}")]
    State { path: PathBuf, detail: String },
    #[error("no published session named {0}")]
    NoSession(String),
    #[error("repository: {0}")]
    Repo(#[from] lifeboat_repo::Error),
    #[error("{0}")]
    Disk(#[from] lifeboat_vdisk::Error),
    #[error("publisher: {0}")]
    Daemon(String),
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}
