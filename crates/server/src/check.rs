//! The catalog against the repositories (`lifeboat catalog check
//! [--repair]`, `POST /api/v1/check`): what the catalog says about restore
//! points and what the served repositories hold can drift apart, and this
//! finds it.
//!
//! | finding | how it happens | repair |
//! |---|---|---|
//! | `unrecorded_restore_point` | the server (or a proxy's lease) died after the repository committed a restore point and before the catalog recorded it: the session is failed "interrupted" although its restore point exists | the session is marked succeeded with that restore point, and a log line says so |
//! | `missing_restore_point` | a succeeded session's restore point is not in its repository: removed by the job's retention (said when a later session of the job logged it), or removed or lost outside the server | none: reported |
//! | `damaged_restore_point` | the repository lists the session's restore point as damaged | none: `lifeboat verify` / `repair` on the repository |
//! | `unserved_repository` | a job names a repository the server no longer serves | none: serve it again or delete the job |
//!
//! An interrupted session owns a restore point of its job's VM whose time
//! (the backup's start) falls between the session's start and its end
//! (the restart that marked it), when no other session records it.

use crate::catalog::sessions::{Session, SessionState, CANCELLED, INTERRUPTED};
use crate::error::{Error, Result};
use crate::state::Shared;
use chrono::{DateTime, Utc};
use lifeboat_repo::Manifest;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// What a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    UnrecordedRestorePoint,
    MissingRestorePoint,
    DamagedRestorePoint,
    UnservedRepository,
}

/// One difference between the catalog and a repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub job: String,
    pub session: Option<i64>,
    pub repository: String,
    pub restore_point: Option<String>,
    pub detail: String,
    /// The catalog was changed to match the repository.
    pub repaired: bool,
}

/// The result of a check.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CheckReport {
    pub sessions_checked: usize,
    pub repositories_checked: usize,
    pub findings: Vec<Finding>,
}

/// `POST /api/v1/check` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// Repair what can be repaired (the catalog only; the repositories
    /// are never written).
    #[serde(default)]
    pub repair: bool,
}

/// What one repository holds, by restore point name.
struct Held {
    intact: BTreeMap<String, Manifest>,
    damaged: BTreeSet<String>,
}

fn held(shared: &Shared, name: &str) -> Result<Option<Held>> {
    let Some(served) = shared.repositories.get(name) else {
        return Ok(None);
    };
    let listing = served
        .repo
        .list_all(None)
        .map_err(|source| Error::Repository {
            name: name.to_string(),
            source,
        })?;
    Ok(Some(Held {
        intact: listing.points.into_iter().map(|m| (m.name(), m)).collect(),
        damaged: listing
            .damaged
            .iter()
            .flat_map(|d| d.restore_points.iter().cloned())
            .collect(),
    }))
}

fn time(text: &Option<String>) -> Option<DateTime<Utc>> {
    text.as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Checks every session of every job (and, with `repair`, fixes the
/// catalog where it can).
pub fn check(shared: &Shared, repair: bool) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    let jobs = shared.catalog.list_jobs()?;
    let sessions = shared.catalog.all_sessions()?;
    let removals = shared.catalog.retention_removals()?;
    report.sessions_checked = sessions.len();
    let recorded: BTreeSet<String> = sessions
        .iter()
        .filter_map(|s| s.restore_point.clone())
        .collect();
    let mut repositories: BTreeMap<String, Option<Held>> = BTreeMap::new();
    for job in &jobs {
        if !repositories.contains_key(&job.repository) {
            repositories.insert(job.repository.clone(), held(shared, &job.repository)?);
        }
    }
    report.repositories_checked = repositories.values().filter(|h| h.is_some()).count();
    let mut claimed: BTreeSet<String> = BTreeSet::new();
    for job in &jobs {
        let Some(Some(repo)) = repositories.get(&job.repository) else {
            report.findings.push(Finding {
                kind: FindingKind::UnservedRepository,
                job: job.name.clone(),
                session: None,
                repository: job.repository.clone(),
                restore_point: None,
                detail: format!(
                    "job {} names repository {:?}, which this server does not serve: its runs fail (serve --repo {}=PATH, or delete the job)",
                    job.name, job.repository, job.repository
                ),
                repaired: false,
            });
            continue;
        };
        let own: Vec<&Session> = sessions.iter().filter(|s| s.job == job.name).collect();
        for s in &own {
            let finding = |kind, point: &str, detail: String| Finding {
                kind,
                job: job.name.clone(),
                session: Some(s.id),
                repository: job.repository.clone(),
                restore_point: Some(point.to_string()),
                detail,
                repaired: false,
            };
            match (&s.state, &s.restore_point) {
                (SessionState::Succeeded, Some(point)) if repo.damaged.contains(point) => {
                    report.findings.push(finding(
                        FindingKind::DamagedRestorePoint,
                        point,
                        format!("session {} made {point}; the repository lists it as damaged (lifeboat verify / repair)", s.id),
                    ));
                }
                (SessionState::Succeeded, Some(point)) if !repo.intact.contains_key(point) => {
                    let by_retention = removals
                        .iter()
                        .find(|(id, job_name, line)| {
                            *id > s.id && *job_name == job.name && line.contains(point.as_str())
                        })
                        .map(|(id, _, _)| *id);
                    let detail = match by_retention {
                        Some(later) => format!(
                            "session {} made {point}; the job's retention removed it in session {later}",
                            s.id
                        ),
                        None => format!(
                            "session {} made {point}; it is not in repository {:?}: removed outside the server (lifeboat forget / prune) or lost",
                            s.id, job.repository
                        ),
                    };
                    report
                        .findings
                        .push(finding(FindingKind::MissingRestorePoint, point, detail));
                }
                (SessionState::Failed, None)
                    if matches!(s.error.as_deref(), Some(INTERRUPTED | CANCELLED)) =>
                {
                    let cancelled = s.error.as_deref() == Some(CANCELLED);
                    let (Some(from), Some(to)) = (time(&s.started_at), time(&s.ended_at)) else {
                        continue;
                    };
                    // The catalog's times are whole seconds.
                    let slack = chrono::Duration::seconds(1);
                    let found = repo.intact.values().find(|m| {
                        m.vm == job.name
                            && m.time >= from - slack
                            && m.time <= to + slack
                            && !recorded.contains(&m.name())
                            && !claimed.contains(&m.name())
                    });
                    let Some(m) = found else { continue };
                    let point = m.name();
                    claimed.insert(point.clone());
                    let how = if cancelled {
                        "cancelled"
                    } else {
                        "interrupted"
                    };
                    let mut f = finding(
                        FindingKind::UnrecordedRestorePoint,
                        &point,
                        format!(
                            "session {} was marked {how}, but repository {:?} holds {point}, committed while it ran",
                            s.id, job.repository
                        ),
                    );
                    if repair {
                        f.repaired = shared.catalog.record_committed(
                            s.id,
                            &point,
                            !cancelled,
                            &format!(
                                "catalog check: {point} was committed before the session was {how}{}",
                                if cancelled { "; recorded, the session stays cancelled" } else { "; marked succeeded" }
                            ),
                        )?;
                    }
                    report.findings.push(f);
                }
                _ => {}
            }
        }
    }
    Ok(report)
}
