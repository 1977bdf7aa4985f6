//! The job routes: list and show (viewer), create and run (operator),
//! delete (admin). Everything is validated before it is stored: the name
//! by the repository's name rules (it is the VM's name there), the
//! repository among those served, the sources ([`parse_sources`]), the
//! schedule ([`Schedule::parse`]). Changes and runs are audited.

use super::auth::Caller;
use super::response::ApiJson;
use crate::catalog::audit::{Action, NewAudit};
use crate::catalog::jobs::{Job, JobDeletion, Retention, RunsOn};
use crate::catalog::sessions::{Queued, Session, Trigger};
use crate::error::{Error, ErrorKind, Result};
use crate::jobs::runner::queue;
use crate::jobs::schedule::Schedule;
use crate::jobs::source::parse_sources;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `POST /api/v1/jobs` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    pub name: String,
    pub repository: String,
    pub sources: Vec<String>,
    #[serde(default)]
    pub schedule: Option<String>,
    #[serde(default)]
    pub retention: Retention,
    /// Run by this proxy only.
    #[serde(default)]
    pub proxy: Option<String>,
    /// Run by any enrolled proxy.
    #[serde(default)]
    pub pool: bool,
}

/// `DELETE /api/v1/jobs/{name}` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeletedJob {
    pub deleted: String,
}

/// A 400 unless `name` is a valid job (and VM) name.
pub fn check_job_name(name: &str) -> Result<()> {
    lifeboat_repo::check_name(name).map_err(|e| Error::bad_request(format!("job name: {e}")))
}

fn not_found(name: &str) -> Error {
    Error::NotFound {
        what: format!("job {name:?}"),
    }
}

/// Where a job runs, checked: one proxy (a valid name) or the pool.
fn checked_runs_on(proxy: Option<String>, pool: bool) -> Result<RunsOn> {
    if let Some(p) = &proxy {
        if pool {
            return Err(Error::bad_request(
                "give proxy (one proxy) or pool (any proxy), not both",
            ));
        }
        crate::proxies::check_name(p).map_err(Error::bad_request)?;
    }
    Ok(RunsOn { proxy, pool })
}

/// A job's sources, checked; a job on this server against its source
/// roots too (a proxy checks its own when it runs the job).
fn check_sources(state: &AppState, sources: &[String], runs_on: &RunsOn) -> Result<()> {
    let here = runs_on.server().then_some(&state.inner.jobs.source_roots);
    parse_sources(sources, here).map_err(Error::bad_request)?;
    Ok(())
}

/// A cron expression, parsed and normalized.
fn checked_schedule(expr: Option<&str>) -> Result<Option<String>> {
    expr.map(|e| {
        Schedule::parse(e)
            .map(|s| s.expr().to_string())
            .map_err(|e| Error::bad_request(e.to_string()))
    })
    .transpose()
}

/// `PATCH /api/v1/jobs/{name}` body: the fields to change, the others
/// stay. `schedule: ""` removes the schedule (on demand only); `proxy:
/// ""` has the server run the job itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateJob {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// A disabled job runs neither on its schedule nor on demand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<bool>,
}

/// `PATCH /api/v1/jobs/{name}`: validated like a new job; a changed
/// schedule or a re-enabled job counts its schedule from now (nothing
/// missed). Audited with the job as it is after.
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<UpdateJob>,
) -> Result<Json<Job>> {
    let old = {
        let name = name.clone();
        state
            .blocking(move |s| s.catalog.job(&name)?.ok_or_else(|| not_found(&name)))
            .await?
    };
    let mut job = old.clone();
    if let Some(sources) = body.sources {
        job.sources = sources;
    }
    if let Some(expr) = &body.schedule {
        job.schedule = checked_schedule(Some(expr.as_str()).filter(|e| !e.is_empty()))?;
    }
    if let Some(retention) = body.retention {
        job.retention = retention;
    }
    if let Some(enabled) = body.enabled {
        job.enabled = enabled;
    }
    if body.proxy.is_some() || body.pool.is_some() {
        let proxy = match body.proxy {
            Some(p) if p.is_empty() => None,
            Some(p) => Some(p),
            None => job
                .runs_on
                .proxy
                .clone()
                .filter(|_| body.pool != Some(true)),
        };
        job.runs_on = checked_runs_on(proxy, body.pool.unwrap_or(false))?;
    }
    check_sources(&state, &job.sources, &job.runs_on)?;
    let reschedule = job.schedule != old.schedule || (job.enabled && !old.enabled);
    let job = state
        .blocking(move |s| {
            let job = s
                .catalog
                .update_job(&job, reschedule)?
                .ok_or_else(|| not_found(&job.name))?;
            audit_job(s, &caller, Action::JobUpdate, &job)?;
            Ok(job)
        })
        .await?;
    tracing::info!(job = job.name, "job updated");
    Ok(Json(job))
}

/// Audits `action` on `job`, with the job as it is now.
fn audit_job(s: &crate::state::Shared, caller: &Caller, action: Action, job: &Job) -> Result<()> {
    s.catalog.audit(&NewAudit {
        actor: Some(caller.token.id),
        action,
        target: Some(format!("job {}", job.name)),
        success: true,
        remote: caller.peer.clone(),
        detail: Some(format!(
            "repository {}, sources {:?}, schedule {:?}, retention {:?}, enabled {}, runs on {:?}",
            job.repository, job.sources, job.schedule, job.retention, job.enabled, job.runs_on
        )),
    })
}

/// `GET /api/v1/jobs`.
pub async fn list(State(state): State<AppState>, _caller: Caller) -> Result<Json<Vec<Job>>> {
    Ok(Json(state.blocking(|s| s.catalog.list_jobs()).await?))
}

/// `GET /api/v1/jobs/{name}`.
pub async fn show(
    State(state): State<AppState>,
    _caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Job>> {
    let job = state
        .blocking(move |s| s.catalog.job(&name)?.ok_or_else(|| not_found(&name)))
        .await?;
    Ok(Json(job))
}

/// `POST /api/v1/jobs`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateJob>,
) -> Result<(StatusCode, Json<Job>)> {
    check_job_name(&body.name)?;
    if !state.inner.repositories.contains_key(&body.repository) {
        return Err(Error::NotFound {
            what: format!(
                "repository {:?} (not served by this server; GET /api/v1/repositories lists them)",
                body.repository
            ),
        });
    }
    let runs_on = checked_runs_on(body.proxy.clone(), body.pool)?;
    check_sources(&state, &body.sources, &runs_on)?;
    let schedule = checked_schedule(body.schedule.as_deref())?;
    let job = state
        .blocking(move |s| {
            let job = s
                .catalog
                .create_job(
                    &body.name,
                    &body.repository,
                    &body.sources,
                    schedule.as_deref(),
                    body.retention,
                    &runs_on,
                )?
                .ok_or_else(|| Error::Request {
                    kind: ErrorKind::Conflict,
                    message: format!("job {:?} exists already", body.name),
                })?;
            audit_job(s, &caller, Action::JobCreate, &job)?;
            Ok(job)
        })
        .await?;
    tracing::info!(job = job.name, "job created");
    Ok((StatusCode::CREATED, Json(job)))
}

/// `DELETE /api/v1/jobs/{name}`: refused (409) while a session of it is
/// queued or running; its sessions stay as history.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<DeletedJob>> {
    let deleted = state
        .blocking(move |s| {
            match s.catalog.delete_job(&name)? {
                JobDeletion::Deleted => {}
                JobDeletion::NotFound => return Err(not_found(&name)),
                JobDeletion::Active(id) => {
                    return Err(Error::Request {
                        kind: ErrorKind::Conflict,
                        message: format!(
                            "job {name:?} has session {id} queued or running: wait for it to end"
                        ),
                    })
                }
            }
            s.catalog.audit(&NewAudit {
                actor: Some(caller.token.id),
                action: Action::JobDelete,
                target: Some(format!("job {name}")),
                success: true,
                remote: caller.peer,
                detail: None,
            })?;
            Ok(name)
        })
        .await?;
    tracing::info!(job = deleted, "job deleted");
    Ok(Json(DeletedJob { deleted }))
}

/// `POST /api/v1/jobs/{name}/run`: 202 with the queued session; 409 when
/// the job already has one queued or running.
pub async fn run(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Session>)> {
    let session = state
        .blocking(move |s| {
            let job = s.catalog.job(&name)?.ok_or_else(|| not_found(&name))?;
            if !job.enabled {
                return Err(Error::Request {
                    kind: ErrorKind::Conflict,
                    message: format!(
                        "job {name:?} is disabled: enable it first (job update {name} --enable)"
                    ),
                });
            }
            match queue(
                s,
                &name,
                Trigger::Manual,
                1,
                Duration::ZERO,
                Some(caller.token.id),
                caller.peer,
            )? {
                Queued::Queued(session) => Ok(session),
                Queued::Busy(b) => Err(Error::Request {
                    kind: ErrorKind::Conflict,
                    message: format!(
                        "job {name:?} is already {} (session {}): not started twice",
                        b.state.as_str(),
                        b.id
                    ),
                }),
            }
        })
        .await?;
    state.inner.wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(session)))
}
