//! Maps errors to the documented exit codes (docs/cli.md): 0 success,
//! 1 error, 2 bad usage, 3 damage (verify, restore, or a scan that could
//! not read everything), 4 passphrase, 5 not found (also `scan
//! --find-clean` without a clean point), 6 locked, 7 `scan` found malware,
//! 8 `scan` found nothing but proved nothing (unproven), 9 busy (another
//! process holds a repository lock, or backs up the same VM live), 10
//! `preflight` found a failing check, 11 the server refused the token (none,
//! unknown, deleted, or without the role), 130 `scan` interrupted.

use lifeboat_repo::Error as RepoError;
use lifeboat_server::ErrorKind as ServerKind;

pub const OK: i32 = 0;
pub const ERROR: i32 = 1;
pub const DAMAGE: i32 = 3;
pub const KEY: i32 = 4;
pub const NOT_FOUND: i32 = 5;
pub const LOCKED: i32 = 6;
/// `scan`: at least one detection.
pub const INFECTED: i32 = 7;
/// `scan`: nothing found, but ClamAV did not scan with a usable signature
/// database: not proven clean.
pub const UNPROVEN: i32 = 8;
/// Another process holds a repository lock, or backs up the same VM live.
pub const BUSY: i32 = 9;
/// `preflight`: at least one check failed.
pub const PREFLIGHT_FAILED: i32 = 10;
/// The server refused the request's token: none, unknown or deleted
/// (HTTP 401), or its role does not allow the request (403).
pub const AUTH_REFUSED: i32 = 11;
/// `scan` stopped by SIGINT/SIGTERM (after unpublishing).
pub const INTERRUPTED: i32 = 130;

/// The exit code for an error that ended a command.
pub fn code_for(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if let Some(lifeboat_scan::ScanError::Cancelled { .. }) = cause.downcast_ref() {
            return INTERRUPTED;
        }
        let live = cause.downcast_ref::<lifeboat_hypervisor::LiveBackupError>();
        let hypervisor = cause
            .downcast_ref::<lifeboat_hypervisor::HypervisorError>()
            .or_else(|| live.and_then(|e| e.hypervisor_error()));
        if let Some(lifeboat_hypervisor::HypervisorError::Busy { .. }) = hypervisor {
            return BUSY;
        }
        if let Some(e) = cause.downcast_ref::<lifeboat_server::ClientError>() {
            return match e.kind() {
                Some(ServerKind::Unauthorized | ServerKind::Forbidden) => AUTH_REFUSED,
                Some(ServerKind::NotFound) => NOT_FOUND,
                Some(ServerKind::Conflict) => BUSY,
                _ => ERROR,
            };
        }
        let repo = cause
            .downcast_ref::<RepoError>()
            .or_else(|| {
                cause
                    .downcast_ref::<lifeboat_engine::Error>()
                    .and_then(|e| e.repo_error())
            })
            .or_else(|| live.and_then(|e| e.repo_error()));
        if let Some(e) = repo {
            return match e {
                RepoError::WrongKey { .. } | RepoError::PassphraseRequired { .. } => KEY,
                RepoError::NotFound { .. } | RepoError::NotARepository { .. } => NOT_FOUND,
                RepoError::Locked { .. } | RepoError::LockShortening { .. } => LOCKED,
                RepoError::MissingChunk { .. }
                | RepoError::CorruptChunk { .. }
                | RepoError::CorruptFile { .. }
                | RepoError::Damaged { .. }
                | RepoError::KeysDamaged { .. }
                | RepoError::ConfigTampered { .. } => DAMAGE,
                RepoError::Busy { .. } => BUSY,
                _ => ERROR,
            };
        }
    }
    ERROR
}
