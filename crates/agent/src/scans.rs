//! Scans on the agent, with the library `lifeboat scan` uses
//! (`lifeboat_scanjob`): the restore point published under a private
//! mount root (or read in userspace with YARA when this host cannot
//! publish), ClamAV (when its database is usable) and the built-in YARA
//! rules, unpublished, the verdict recorded in the restore point. Its
//! sessions, mounts and scan cache live in `<data-dir>/scans`; the
//! repository is opened with the passphrase from the agent's environment.

use crate::AgentConfig;
use lifeboat_repo::Repository;
use lifeboat_scan::{LoadingCache, ScanState};
use lifeboat_scanjob::{
    cache_root, choose_engines, open_cache_dir, scan_and_record, EngineChoice, PointOut,
    PublishPlace, ScanSetup,
};
use lifeboat_server::agents::wire::{OnAgent, ScanResult, Verdict};
use lifeboat_server::Error;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The oldest ClamAV signature database (days) whose "nothing found"
/// counts as clean, as `lifeboat scan` takes it by default.
const CLAMAV_MAX_AGE_DAYS: u32 = 7;

/// The state dir of scan sessions.
pub fn state_dir(config: &AgentConfig) -> PathBuf {
    config.scan_dir().join("state")
}

fn failed(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("{what}: {e}"))
}

/// Scans the restore point of `ask`; blocks until the scan ends.
pub fn scan(config: &AgentConfig, agent: &str, ask: &OnAgent) -> Result<ScanResult, Error> {
    let what = format!("scanning {}", ask.restore_point);
    let dir = config.scan_dir();
    let mount_root = dir.join("mnt");
    std::fs::create_dir_all(&mount_root).map_err(|e| Error::io(&mount_root, e))?;
    let repo_path = PathBuf::from(&ask.repository_path);
    let repo = Repository::open(&repo_path, config.passphrase.as_deref())
        .map(|r| r.with_heal_on_read(true))
        .map_err(|e| failed(&format!("opening repository {}", repo_path.display()), e))?;
    let manifest = repo
        .resolve(&ask.restore_point)
        .map_err(|e| failed(&what, e))?;
    let userspace = match lifeboat_publish::system::preflight() {
        Ok(()) => false,
        Err(e) => {
            tracing::warn!(error = %e, "cannot publish here: reading files in userspace, YARA only");
            true
        }
    };
    let mut notes = Vec::new();
    let choice = EngineChoice {
        clamav_db: config.clamav_db.clone(),
        clamav_max_age_days: CLAMAV_MAX_AGE_DAYS,
        ..EngineChoice::default()
    };
    let engines = choose_engines(&choice, userspace, &mut notes)
        .map_err(|e| failed(&what, format!("{e:#}")))?;
    let cache_dir = cache_root(Some(&dir.join("cache")))
        .map_err(|e| failed(&what, e))?
        .join(repo.id());
    let key = open_cache_dir(&repo, &cache_dir).map_err(|e| failed(&what, format!("{e:#}")))?;
    let mut cache = LoadingCache::start(&cache_dir, key);
    let setup = ScanSetup {
        engines,
        place: PublishPlace {
            repo: repo_path,
            mount_root,
            state_dir: state_dir(config),
            block_store: Some(cache_dir.join("blocks")),
            group: None,
        },
        userspace,
    };
    tracing::info!(restore_point = ask.restore_point, "scanning");
    let cancel = Arc::new(AtomicBool::new(false));
    let mut p = scan_and_record(&repo, &manifest, &setup, &mut cache, &cancel)
        .map_err(|e| failed(&what, format!("{e:#}")))?;
    if let Some(why) = &p.not_recorded {
        tracing::warn!(
            restore_point = ask.restore_point,
            why,
            "scan state not recorded"
        );
    }
    let verdict = match p.report.state {
        ScanState::Clean => Verdict::Clean,
        ScanState::Infected => Verdict::Infected,
        ScanState::Unproven => Verdict::Unproven,
        ScanState::Incomplete | ScanState::NotScanned => Verdict::Incomplete,
    };
    p.notes.extend(notes);
    let report = serde_json::to_value(PointOut::from(p))
        .map_err(|e| failed(&what, format!("the report does not serialize: {e}")))?;
    tracing::info!(
        restore_point = ask.restore_point,
        verdict = verdict.as_str(),
        "scanned"
    );
    Ok(ScanResult {
        agent: agent.to_string(),
        restore_point: ask.restore_point.clone(),
        verdict,
        report,
    })
}
