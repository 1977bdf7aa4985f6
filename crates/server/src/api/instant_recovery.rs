//! Instant recovery through the API: list (viewer), start and stop
//! (operator) the sessions of a served repository. The sessions run in the
//! repository's NFS service (`lifeboat nfs serve --repo PATH --cache-dir
//! DIR` on this host, named to the server with `serve --nfs NAME=DIR`):
//! each request is one request on that service's control socket
//! ([`lifeboat_ir::request`]), the same the local `instant-recovery`
//! commands send, so sessions started either way are one list, stopped
//! and cleaned up by the service. The answers carry what the service
//! answered (its `SessionInfo`, the NFS export, the NBD URLs).
//!
//! Errors: a repository the server does not serve or a session the
//! service does not know is 404; a repository without `--nfs`, a service
//! bound to another repository or a refusal of the service (e.g. an
//! unknown restore point) is 409 with the service's message; a service
//! that does not answer is 503.

use super::auth::Caller;
use super::response::ApiJson;
use crate::catalog::audit::{Action, NewAudit};
use crate::error::{Error, ErrorKind, Result};
use crate::state::{AppState, ServedRepository, Shared};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use lifeboat_ir::{Request, Response, ServiceInfo, SessionInfo, StartRequest};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The longest restore point reference or allow entry taken.
const MAX_FIELD: usize = 256;
/// The most allow entries of one session.
const MAX_ALLOW: usize = 64;

/// `POST /api/v1/repositories/{name}/instant-recoveries` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRecovery {
    /// `VM@ID`, `VM@latest` or a unique id prefix.
    pub restore_point: String,
    /// Client addresses or CIDR networks that may use the session
    /// (narrows the service's allow list; empty: the service's).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Also export the disks over NBD.
    #[serde(default)]
    pub nbd: bool,
}

/// A session started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartedRecovery {
    pub session: SessionInfo,
    /// Time from the request to the exports being ready.
    pub start_ms: u64,
}

/// The service of a repository and its sessions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoveryList {
    pub service: ServiceInfo,
    pub sessions: Vec<SessionInfo>,
}

/// A session stopped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoppedRecovery {
    pub session: String,
    pub overlay_kept: bool,
}

fn conflict(message: impl Into<String>) -> Error {
    Error::Request {
        kind: ErrorKind::Conflict,
        message: message.into(),
    }
}

/// The served repository `name` and the cache folder of its NFS service.
fn service_of(s: &Shared, name: &str) -> Result<(PathBuf, PathBuf)> {
    let served: &ServedRepository = s.repositories.get(name).ok_or_else(|| Error::NotFound {
        what: format!("repository {name:?}"),
    })?;
    let cache = served.nfs_cache.clone().ok_or_else(|| {
        conflict(format!(
            "repository {name:?} has no NFS service: run `lifeboat nfs serve --repo {} --cache-dir DIR` and start the server with --nfs {name}=DIR",
            served.path.display()
        ))
    })?;
    Ok((served.path.clone(), cache))
}

/// Sends `req` to the service in `cache`; its refusal becomes an error.
fn ask(cache: &std::path::Path, req: &Request) -> Result<Response> {
    let response = lifeboat_ir::request(cache, req).map_err(|e| Error::Request {
        kind: ErrorKind::Unavailable,
        message: format!("the NFS service of {}: {e}", cache.display()),
    })?;
    match response {
        Response::Error { message } => {
            if message.starts_with("no session") || message.contains("not found") {
                Err(Error::NotFound { what: message })
            } else {
                Err(conflict(message))
            }
        }
        other => Ok(other),
    }
}

/// Refuses a service bound to another repository than `repo` (the one
/// the server serves under that name).
fn check_bound(name: &str, repo: &std::path::Path, service: &ServiceInfo) -> Result<()> {
    let same = |a: &std::path::Path, b: &std::path::Path| match (a.canonicalize(), b.canonicalize())
    {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    if same(repo, &service.repo) {
        Ok(())
    } else {
        Err(conflict(format!(
            "the NFS service of {} serves {}, not repository {name:?} ({})",
            service.cache_dir.display(),
            service.repo.display(),
            repo.display()
        )))
    }
}

fn unexpected(response: &Response) -> Error {
    Error::Internal(format!(
        "the NFS service answered with an unexpected message: {response:?}"
    ))
}

fn audit(s: &Shared, caller: &Caller, action: Action, target: String) -> Result<()> {
    s.catalog.audit(&NewAudit {
        actor: Some(caller.token.id),
        action,
        target: Some(target),
        success: true,
        remote: caller.peer.clone(),
        detail: None,
    })
}

/// `GET /api/v1/repositories/{name}/instant-recoveries`.
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<RecoveryList>> {
    let list = state
        .blocking(move |s| {
            let (repo, cache) = service_of(s, &name)?;
            match ask(&cache, &Request::List)? {
                Response::Sessions { service, sessions } => {
                    check_bound(&name, &repo, &service)?;
                    Ok(RecoveryList { service, sessions })
                }
                other => Err(unexpected(&other)),
            }
        })
        .await?;
    Ok(Json(list))
}

/// `POST /api/v1/repositories/{name}/instant-recoveries`.
pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<StartRecovery>,
) -> Result<(StatusCode, Json<StartedRecovery>)> {
    if body.restore_point.is_empty() || body.restore_point.len() > MAX_FIELD {
        return Err(Error::bad_request(format!(
            "restore_point: 1 to {MAX_FIELD} characters (VM@ID or VM@latest)"
        )));
    }
    if body.allow.len() > MAX_ALLOW || body.allow.iter().any(|a| a.len() > MAX_FIELD) {
        return Err(Error::bad_request(format!(
            "allow: at most {MAX_ALLOW} addresses or networks of at most {MAX_FIELD} characters"
        )));
    }
    let started = state
        .blocking(move |s| {
            let (repo, cache) = service_of(s, &name)?;
            let req = Request::Start(StartRequest {
                restore_point: body.restore_point.clone(),
                // The service refuses when it serves another repository.
                repo: Some(repo),
                allow: body.allow.clone(),
                nbd: body.nbd,
            });
            match ask(&cache, &req)? {
                Response::Started { session, start_ms } => {
                    audit(
                        s,
                        &caller,
                        Action::RecoveryStart,
                        format!("{name}: {} ({})", session.restore_point, session.id),
                    )?;
                    Ok(StartedRecovery { session, start_ms })
                }
                other => Err(unexpected(&other)),
            }
        })
        .await?;
    Ok((StatusCode::CREATED, Json(started)))
}

/// `keep_overlay=true` in a query string.
fn keep_overlay(query: Option<&str>) -> Result<bool> {
    let Some(q) = query else { return Ok(false) };
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        if let Some(("keep_overlay", value)) = pair.split_once('=') {
            return match value {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(Error::bad_request("keep_overlay: true or false")),
            };
        }
    }
    Ok(false)
}

/// `DELETE /api/v1/repositories/{name}/instant-recoveries/{id}[?keep_overlay=true]`.
pub async fn stop(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<StoppedRecovery>> {
    let keep = keep_overlay(query.as_deref())?;
    if id.is_empty() || id.len() > MAX_FIELD {
        return Err(Error::bad_request("session id: 1 to 256 characters"));
    }
    let stopped = state
        .blocking(move |s| {
            let (repo, cache) = service_of(s, &name)?;
            match ask(&cache, &Request::Status)? {
                Response::Status(service) => check_bound(&name, &repo, &service)?,
                other => return Err(unexpected(&other)),
            }
            let req = Request::Stop {
                session: id.clone(),
                keep_overlay: keep,
            };
            match ask(&cache, &req)? {
                Response::Stopped {
                    session,
                    overlay_kept,
                } => {
                    audit(
                        s,
                        &caller,
                        Action::RecoveryStop,
                        format!("{name}: {session}"),
                    )?;
                    Ok(StoppedRecovery {
                        session,
                        overlay_kept,
                    })
                }
                other => Err(unexpected(&other)),
            }
        })
        .await?;
    Ok(Json(stopped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_overlay_is_read_from_the_query() {
        assert!(!keep_overlay(None).unwrap());
        assert!(keep_overlay(Some("keep_overlay=true")).unwrap());
        assert!(!keep_overlay(Some("x=1&keep_overlay=false")).unwrap());
        assert!(keep_overlay(Some("keep_overlay=yes")).is_err());
    }
}
