//! The session routes: the newest sessions (of one job with `?job=NAME`)
//! and one session with its log (viewer); cancel (operator).
//!
//! Cancel: a queued session fails at once; one the server runs stops at
//! its next chunk (its backup writes no restore point) and fails; one a
//! proxy runs fails at once and the proxy, told `keep_going: false` at its
//! next progress call (every 2 s), stops its backup the same way.
//! Cancelled sessions are not retried.

use super::auth::Caller;
use super::jobs::check_job_name;
use crate::catalog::audit::{Action, NewAudit};
use crate::catalog::sessions::{Ending, Session, SessionState, CANCELLED};
use crate::error::{Error, ErrorKind, Result};
use crate::jobs::runner::{cancel_running, conclude};
use crate::state::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;

/// How many sessions `GET /api/v1/sessions` returns (the newest).
pub const LIST_LIMIT: u32 = 1000;

/// The `job` parameter of a query string (names need no decoding: the
/// name rules allow only `[A-Za-z0-9._-]`).
fn job_param(query: Option<&str>) -> Result<Option<String>> {
    let Some(q) = query else { return Ok(None) };
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "job" {
            check_job_name(value)?;
            return Ok(Some(value.to_string()));
        }
    }
    Ok(None)
}

/// `GET /api/v1/sessions[?job=NAME]`: newest first.
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<Session>>> {
    let job = job_param(query.as_deref())?;
    let sessions = state
        .blocking(move |s| s.catalog.list_sessions(job.as_deref(), LIST_LIMIT))
        .await?;
    Ok(Json(sessions))
}

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cancel {
    /// The session failed here and now (queued, or run by a proxy).
    EndedHere,
    /// The server's own worker stops it at its next chunk.
    Stopping,
    /// It had ended: nothing to cancel.
    Nothing,
}

fn session_id(id: &str) -> Result<i64> {
    id.parse()
        .map_err(|_| Error::bad_request(format!("session id {id:?} is not a number")))
}

fn not_found(id: i64) -> Error {
    Error::NotFound {
        what: format!("session {id}"),
    }
}

/// `GET /api/v1/sessions/{id}`: with its log.
pub async fn show(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Session>> {
    let id = session_id(&id)?;
    let session = state
        .blocking(move |s| s.catalog.session(id)?.ok_or_else(|| not_found(id)))
        .await?;
    Ok(Json(session))
}

/// `POST /api/v1/sessions/{id}/cancel`: 202 with the session (still
/// running when the server's own backup has yet to reach its next chunk);
/// 409 when it has ended.
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Session>)> {
    let id = session_id(&id)?;
    let session = state
        .blocking(move |s| {
            let session = s.catalog.session(id)?.ok_or_else(|| not_found(id))?;
            let who = format!("{CANCELLED} by token {}", caller.token.id);
            let ending = Ending {
                state: SessionState::Failed,
                bytes_read: session.bytes_read,
                bytes_stored: 0,
                restore_point: None,
                error: Some(CANCELLED.to_string()),
            };
            let queued = session.state == SessionState::Queued;
            let outcome = if queued && s.catalog.cancel_queued(id, CANCELLED)? {
                Cancel::EndedHere
            } else {
                // Running, or started since it was read: as it is now.
                let now = s.catalog.session(id)?.ok_or_else(|| not_found(id))?;
                match (&now.state, &now.proxy) {
                    (SessionState::Running, None) if cancel_running(s, id) => Cancel::Stopping,
                    (SessionState::Running, Some(proxy))
                        if s.catalog.end_proxy_session(id, proxy, &ending)? =>
                    {
                        Cancel::EndedHere
                    }
                    _ => Cancel::Nothing,
                }
            };
            if outcome == Cancel::Nothing {
                let now = s.catalog.session(id)?.ok_or_else(|| not_found(id))?;
                return Err(Error::Request {
                    kind: ErrorKind::Conflict,
                    message: format!("session {id} is {}: nothing to cancel", now.state.as_str()),
                });
            }
            s.catalog.log_line(id, &who)?;
            s.catalog.audit(&NewAudit {
                actor: Some(caller.token.id),
                action: Action::SessionCancel,
                target: Some(format!("session {id} of job {}", session.job)),
                success: true,
                remote: caller.peer,
                detail: None,
            })?;
            if outcome == Cancel::EndedHere {
                // Ended here: its last line, audit and webhooks now (the
                // server's own running session ends in its worker).
                conclude(s, &session, &ending);
            }
            s.catalog.session(id)?.ok_or_else(|| not_found(id))
        })
        .await?;
    state.inner.wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(session)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_parameter_is_checked() {
        assert_eq!(job_param(None).unwrap(), None);
        assert_eq!(
            job_param(Some("x=1&job=web01")).unwrap().as_deref(),
            Some("web01")
        );
        assert!(job_param(Some("job=..%2F")).is_err());
    }
}
