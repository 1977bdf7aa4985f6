//! Maps errors to the documented exit codes.

use lifeboat_repo::Error as RepoError;

pub const OK: i32 = 0;
pub const ERROR: i32 = 1;
pub const DAMAGE: i32 = 3;
pub const KEY: i32 = 4;
pub const NOT_FOUND: i32 = 5;
pub const LOCKED: i32 = 6;

/// The exit code for an error that ended a command.
pub fn code_for(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        let repo = cause.downcast_ref::<RepoError>().or_else(|| {
            cause
                .downcast_ref::<lifeboat_engine::Error>()
                .and_then(|e| e.repo_error())
        });
        if let Some(e) = repo {
            return match e {
                RepoError::WrongKey { .. } | RepoError::PassphraseRequired { .. } => KEY,
                RepoError::NotFound { .. } | RepoError::NotARepository { .. } => NOT_FOUND,
                RepoError::Locked { .. } | RepoError::LockShortening { .. } => LOCKED,
                RepoError::MissingChunk { .. } | RepoError::CorruptChunk { .. } => DAMAGE,
                _ => ERROR,
            };
        }
    }
    ERROR
}
