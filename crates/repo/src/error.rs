//! The repository's error type. Every variant names the thing it is about
//! (a path, a digest, a restore point) so a caller can tell "missing chunk"
//! from "corrupt chunk" from "wrong key" by matching, and a user can act on
//! the message.

use crate::Digest;
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};

/// Result alias of the repository crate.
pub type Result<T> = std::result::Result<T, Error>;

/// What went wrong in a repository operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operating system refused an operation on `path` (ENOSPC included).
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The passphrase (or key) does not unwrap the repository's master key.
    #[error("wrong passphrase or key for repository {path}")]
    WrongKey { path: PathBuf },
    /// The config does not authenticate under the key it wraps (its MAC is
    /// missing or wrong): someone without the key changed it.
    #[error("repository config {path} fails authentication ({detail}): it was changed by someone without the key; restore it from a copy you trust")]
    ConfigTampered { path: PathBuf, detail: String },
    /// No copy of the repository key (the config, the key slots) is
    /// readable: every one is missing, damaged or fails authentication.
    /// `detail` names each file and what is wrong with it.
    #[error("repository {path}: no intact copy of its key and parameters is left ({detail}); restore the config or a key slot from a copy you trust")]
    KeysDamaged { path: PathBuf, detail: String },
    /// Argon2id parameters of a config (or of an init) outside the bounds
    /// of `layout.rs`, refused before Argon2id runs with them.
    #[error("{path}: {detail}")]
    KdfRefused { path: PathBuf, detail: String },
    /// A passphrase was given for a repository whose config says it is not
    /// encrypted: a config replaced by an unencrypted one would otherwise
    /// make backups go out in plaintext.
    #[error("repository {path} is not encrypted, but a passphrase was given: refusing it (if the repository was created encrypted, its config was replaced; otherwise open it without a passphrase)")]
    NotEncrypted { path: PathBuf },
    /// Another process holds a repository lock (`locks/*.lock`).
    #[error("repository {path} is busy: {holder} holds {lock}; try again when it has finished")]
    Busy {
        path: PathBuf,
        lock: String,
        holder: String,
    },
    /// The repository is encrypted and no passphrase was given.
    #[error("repository {path} is encrypted: a passphrase is required")]
    PassphraseRequired { path: PathBuf },
    /// The repository (or a manifest) has a format version this code does not know.
    #[error("{path}: format version {found} is not supported (this build supports {supported})")]
    UnknownVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// The directory holds no repository config.
    #[error("{path} is not a Lifeboat repository (no config file)")]
    NotARepository { path: PathBuf },
    /// `init` on a path that exists and is not an empty directory.
    #[error("{path} already exists and is not an empty directory")]
    AlreadyExists { path: PathBuf },
    /// A chunk referenced by an index is not in the repository.
    #[error("chunk {digest} is missing from the repository")]
    MissingChunk { digest: Digest },
    /// A chunk file exists but fails authentication, decompression or the digest check.
    #[error("chunk {digest} is corrupt: {detail}")]
    CorruptChunk { digest: Digest, detail: String },
    /// A manifest, index or config file is damaged.
    #[error("{path} is corrupt: {detail}")]
    CorruptFile { path: PathBuf, detail: String },
    /// An operation that cannot proceed safely past damaged files (gc with
    /// an index it cannot read: that index may reference any chunk).
    #[error("{operation} refused: {}; run `lifeboat repo repair` to quarantine {} (the restore points they belong to are lost), or put back intact copies", list_damage(files), if files.len() == 1 { "it" } else { "them" })]
    Damaged {
        operation: String,
        files: Vec<crate::FileDamage>,
    },
    /// A restore point (or disk) spec that matches nothing.
    #[error("not found: {what}")]
    NotFound { what: String },
    /// The restore point is under a retention lock.
    #[error("restore point {restore_point} is locked until {until}")]
    Locked {
        restore_point: String,
        until: DateTime<Utc>,
    },
    /// A lock may only be extended.
    #[error("restore point {restore_point} is locked until {current}; a lock cannot be shortened to {requested}")]
    LockShortening {
        restore_point: String,
        current: DateTime<Utc>,
        requested: DateTime<Utc>,
    },
    /// A VM or disk name outside `[A-Za-z0-9._-]{1,64}` (or starting with '.').
    #[error("invalid name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    /// A bad argument: chunk size out of range, an empty keep policy, a spec
    /// matching several restore points.
    #[error("{what}: {detail}")]
    Invalid { what: String, detail: String },
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// A damaged file.
    pub fn corrupt_file(path: impl AsRef<Path>, detail: impl std::fmt::Display) -> Self {
        Error::CorruptFile {
            path: path.as_ref().to_path_buf(),
            detail: detail.to_string(),
        }
    }

    /// A bad argument.
    pub fn invalid(what: impl std::fmt::Display, detail: impl std::fmt::Display) -> Self {
        Error::Invalid {
            what: what.to_string(),
            detail: detail.to_string(),
        }
    }
}

/// `a; b; c` of the damage entries.
fn list_damage(files: &[crate::FileDamage]) -> String {
    files
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Attaches a path to `std::io::Result`s.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
