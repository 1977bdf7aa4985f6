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
    // A job on this server is checked against its source roots now; a
    // proxy checks its own when it runs the job.
    let here = (body.proxy.is_none() && !body.pool).then_some(&state.inner.jobs.source_roots);
    parse_sources(&body.sources, here).map_err(Error::bad_request)?;
    if let Some(p) = &body.proxy {
        if body.pool {
            return Err(Error::bad_request(
                "give proxy (one proxy) or pool (any proxy), not both",
            ));
        }
        crate::proxies::check_name(p).map_err(Error::bad_request)?;
    }
    let runs_on = RunsOn {
        proxy: body.proxy.clone(),
        pool: body.pool,
    };
    let schedule = match &body.schedule {
        Some(expr) => Some(
            Schedule::parse(expr)
                .map_err(|e| Error::bad_request(e.to_string()))?
                .expr()
                .to_string(),
        ),
        None => None,
    };
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
            s.catalog.audit(&NewAudit {
                actor: Some(caller.token.id),
                action: Action::JobCreate,
                target: Some(format!("job {}", job.name)),
                success: true,
                remote: caller.peer,
                detail: Some(format!(
                    "repository {}, sources {:?}, schedule {:?}, retention {:?}, runs on {:?}",
                    job.repository, job.sources, job.schedule, job.retention, job.runs_on
                )),
            })?;
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
            s.catalog.job(&name)?.ok_or_else(|| not_found(&name))?;
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
