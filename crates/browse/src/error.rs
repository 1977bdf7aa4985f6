//! The browse error type: every variant names the volume and, where there
//! is one, the path inside the filesystem.

/// Result of the browse crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while browsing a filesystem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{volume}: {path}: no such file or directory")]
    NotFound { volume: String, path: String },
    #[error("{volume}: {path}: not a directory")]
    NotADirectory { volume: String, path: String },
    #[error("{volume}: {path}: is a directory")]
    IsADirectory { volume: String, path: String },
    #[error("{volume}: {path}: not a regular file")]
    NotAFile { volume: String, path: String },
    #[error("{volume}: {path}: invalid path: {detail}")]
    BadPath {
        volume: String,
        path: String,
        detail: String,
    },
    /// The volume (a disk read) failed: a missing or corrupt chunk lands here.
    #[error("{volume}: {path}: read error: {detail}")]
    Io {
        volume: String,
        path: String,
        detail: String,
        /// True when the cause is a missing or corrupt repository chunk.
        damaged: bool,
    },
    #[error("{volume}: {path}: corrupt {fs} filesystem: {detail}")]
    Corrupt {
        volume: String,
        path: String,
        fs: &'static str,
        detail: String,
    },
    /// A filesystem was recognised but cannot be read by this build.
    #[error("{volume}: {detail}")]
    Unsupported { volume: String, detail: String },
    /// No known filesystem signature on the volume.
    #[error("{volume}: no known filesystem found (type hint {type_hint})")]
    NoFilesystem { volume: String, type_hint: String },
    /// Restore point, disk or volume selection failed.
    #[error("{0}")]
    Select(String),
    #[error(transparent)]
    Repo(#[from] lifeboat_repo::Error),
    #[error(transparent)]
    Disk(#[from] lifeboat_vdisk::Error),
}

impl Error {
    /// True when the error comes from a missing or corrupt chunk of the
    /// repository (the restore point is damaged).
    pub fn is_damage(&self) -> bool {
        match self {
            Error::Io { damaged, .. } => *damaged,
            Error::Repo(r) => is_damage_error(r),
            Error::Disk(d) => repo_damage(d),
            _ => false,
        }
    }
}

fn is_damage_error(r: &lifeboat_repo::Error) -> bool {
    matches!(
        r,
        lifeboat_repo::Error::CorruptChunk { .. } | lifeboat_repo::Error::MissingChunk { .. }
    )
}

/// Walks `err`'s source chain for a missing or corrupt chunk.
pub(crate) fn repo_damage(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<lifeboat_repo::Error>() {
            return is_damage_error(r);
        }
        // io::Error::source skips its own payload: look inside it.
        cur = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    false
}
