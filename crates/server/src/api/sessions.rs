//! The session routes (viewer): the newest sessions (of one job with
//! `?job=NAME`), and one session with its log.

use super::auth::Caller;
use super::jobs::check_job_name;
use crate::catalog::sessions::Session;
use crate::error::{Error, Result};
use crate::state::AppState;
use axum::extract::{Path, RawQuery, State};
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

/// `GET /api/v1/sessions/{id}`: with its log.
pub async fn show(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Session>> {
    let id: i64 = id
        .parse()
        .map_err(|_| Error::bad_request(format!("session id {id:?} is not a number")))?;
    let session = state
        .blocking(move |s| {
            s.catalog.session(id)?.ok_or_else(|| Error::NotFound {
                what: format!("session {id}"),
            })
        })
        .await?;
    Ok(Json(session))
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
