//! The routes a proxy pulls its work through (mutual TLS, an enrolled
//! proxy's certificate): the long poll for a session, the progress calls
//! that renew its lease, and the result.
//!
//! ```text
//!  POST /api/v1/proxy/work {max_jobs}        held up to WORK_WAIT until a session of
//!                                            a job naming this proxy (or the pool) is
//!                                            due and the proxy runs < max_jobs -> {work}
//!  POST /api/v1/proxy/sessions/{id}/progress {bytes_read, log: [...]}
//!                                            renews the lease -> {keep_going, reason}
//!  POST /api/v1/proxy/sessions/{id}/finish   {restore_point | error, bytes...} -> session
//! ```
//!
//! A session is the proxy's only while its lease holds: once it expired
//! (the runner failed it, and maybe retried it elsewhere) progress answers
//! `keep_going: false` and finish 409.

use super::response::ApiJson;
use crate::catalog::jobs::Job;
use crate::catalog::now_text;
use crate::catalog::sessions::{Ending, Session, SessionState};
use crate::error::{Error, ErrorKind, Result};
use crate::jobs::runner::conclude;
use crate::proxies::auth::ProxyCaller;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// How long a work request is held when there is nothing to do.
pub const WORK_WAIT: Duration = Duration::from_secs(25);
/// How often a held work request looks for a session.
const WORK_POLL: Duration = Duration::from_millis(250);
/// The most sessions a proxy may say it runs at once.
pub const MAX_PROXY_JOBS: u32 = 64;
/// The most log lines in one progress call.
pub const MAX_LOG_LINES: usize = 256;

/// `POST /api/v1/proxy/work` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkRequest {
    /// The proxy's limit (`lifeboat proxy --max-jobs`): it is given no
    /// session while it runs that many.
    pub max_jobs: u32,
}

/// A session for a proxy: what to back up (into the job's repository,
/// through an upload: `api/uploads.rs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Work {
    pub session: Session,
    pub job: Job,
}

/// `POST /api/v1/proxy/work` answer: `work` is `None` after [`WORK_WAIT`]
/// with nothing to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkReply {
    pub work: Option<Work>,
}

/// `POST .../progress` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressReport {
    pub bytes_read: u64,
    /// The sizes of the disks started so far.
    #[serde(default)]
    pub bytes_total: u64,
    /// New log lines since the last call.
    #[serde(default)]
    pub log: Vec<String>,
}

/// `POST .../progress` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProgressReply {
    /// False: the session is no longer this proxy's (its lease expired
    /// and it was failed, maybe retried elsewhere); stop and drop it.
    pub keep_going: bool,
    pub reason: Option<String>,
}

/// `POST .../finish` body: a restore point, or an error.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinishReport {
    pub bytes_read: u64,
    #[serde(default)]
    pub bytes_stored: u64,
    #[serde(default)]
    pub restore_point: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

fn lease_until(state: &AppState) -> String {
    let lease = chrono::Duration::from_std(state.inner.jobs.proxy_lease).unwrap_or_default();
    (chrono::Utc::now() + lease).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `POST /api/v1/proxy/work`.
pub async fn work(
    State(state): State<AppState>,
    caller: ProxyCaller,
    ApiJson(body): ApiJson<WorkRequest>,
) -> Result<Json<WorkReply>> {
    if body.max_jobs == 0 || body.max_jobs > MAX_PROXY_JOBS {
        return Err(Error::bad_request(format!(
            "max_jobs must be 1 to {MAX_PROXY_JOBS}"
        )));
    }
    let deadline = Instant::now() + WORK_WAIT;
    loop {
        let name = caller.proxy.name.clone();
        let until = lease_until(&state);
        let taken = state
            .blocking(move |s| {
                let Some(session) =
                    s.catalog
                        .take_session(&name, body.max_jobs, &now_text(), &until)?
                else {
                    return Ok(None);
                };
                s.catalog.log_line(
                    session.id,
                    &format!(
                        "started ({}, attempt {}) on proxy {name}",
                        session.trigger.as_str(),
                        session.attempt
                    ),
                )?;
                let job = s
                    .catalog
                    .job(&session.job)?
                    .filter(|j| s.repositories.contains_key(&j.repository));
                Ok(Some((session, job)))
            })
            .await?;
        match taken {
            Some((session, Some(job))) => {
                tracing::info!(
                    session = session.id,
                    job = job.name,
                    proxy = caller.proxy.name,
                    "session given to a proxy"
                );
                return Ok(Json(WorkReply {
                    work: Some(Work { session, job }),
                }));
            }
            // Its job was deleted or names a repository no longer served:
            // fail it here and look again.
            Some((session, None)) => {
                let ending = Ending {
                    state: SessionState::Failed,
                    bytes_read: 0,
                    bytes_stored: 0,
                    restore_point: None,
                    error: Some(format!("job {:?} or its repository is gone", session.job)),
                };
                let proxy = caller.proxy.name.clone();
                state
                    .blocking(move |s| {
                        if s.catalog.end_proxy_session(session.id, &proxy, &ending)? {
                            conclude(s, &session, &ending);
                        }
                        Ok(())
                    })
                    .await?;
            }
            None if Instant::now() >= deadline => return Ok(Json(WorkReply { work: None })),
            None => tokio::time::sleep(WORK_POLL).await,
        }
    }
}

/// The id of a session path parameter.
pub(crate) fn session_id(id: &str) -> Result<i64> {
    id.parse()
        .map_err(|_| Error::bad_request(format!("session id {id:?} is not a number")))
}

/// `POST /api/v1/proxy/sessions/{id}/progress`.
pub async fn progress(
    State(state): State<AppState>,
    caller: ProxyCaller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ProgressReport>,
) -> Result<Json<ProgressReply>> {
    let id = session_id(&id)?;
    if body.log.len() > MAX_LOG_LINES {
        return Err(Error::bad_request(format!(
            "at most {MAX_LOG_LINES} log lines per call"
        )));
    }
    let until = lease_until(&state);
    let proxy = caller.proxy.name;
    let reply = state
        .blocking(move |s| {
            if !s
                .catalog
                .renew_lease(id, &proxy, &until, body.bytes_read, body.bytes_total)?
            {
                let reason = match s.catalog.session(id)? {
                    None => format!("session {id} does not exist"),
                    Some(x) => format!(
                        "session {id} is {} and not running on proxy {proxy}{}",
                        x.state.as_str(),
                        x.error.map(|e| format!(": {e}")).unwrap_or_default()
                    ),
                };
                return Ok(ProgressReply {
                    keep_going: false,
                    reason: Some(reason),
                });
            }
            for line in &body.log {
                s.catalog.log_line(id, line)?;
            }
            Ok(ProgressReply {
                keep_going: true,
                reason: None,
            })
        })
        .await?;
    Ok(Json(reply))
}

/// `POST /api/v1/proxy/sessions/{id}/finish`.
pub async fn finish(
    State(state): State<AppState>,
    caller: ProxyCaller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<FinishReport>,
) -> Result<Json<Session>> {
    let id = session_id(&id)?;
    let ending = match (&body.restore_point, &body.error) {
        (Some(point), None) => Ending {
            state: SessionState::Succeeded,
            bytes_read: body.bytes_read,
            bytes_stored: body.bytes_stored,
            restore_point: Some(point.clone()),
            error: None,
        },
        (None, Some(error)) => Ending {
            state: SessionState::Failed,
            bytes_read: body.bytes_read,
            bytes_stored: 0,
            restore_point: None,
            error: Some(error.clone()),
        },
        _ => {
            return Err(Error::bad_request(
                "give restore_point (succeeded) or error (failed), one of them",
            ))
        }
    };
    let proxy = caller.proxy.name;
    let ended = state
        .blocking(move |s| {
            let Some(session) = s.catalog.session(id)? else {
                return Err(Error::NotFound {
                    what: format!("session {id}"),
                });
            };
            if !s.catalog.end_proxy_session(id, &proxy, &ending)? {
                return Err(Error::Request {
                    kind: ErrorKind::Conflict,
                    message: format!(
                        "session {id} is not running on proxy {proxy} (its lease expired?)"
                    ),
                });
            }
            if let Some(e) = &ending.error {
                s.catalog.log_line(id, &format!("failed: {e}"))?;
            }
            conclude(s, &session, &ending);
            s.catalog.session(id)?.ok_or_else(|| Error::NotFound {
                what: format!("session {id}"),
            })
        })
        .await?;
    state.inner.wake.notify_one();
    Ok(Json(ended))
}
