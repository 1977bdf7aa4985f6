//! The read-only handlers: health, login, repositories and their restore
//! points, the audit log and the metrics.

use super::auth::Caller;
use crate::catalog::audit::{Action, AuditEntry, NewAudit};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::token::TokenInfo;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::Json;
use lifeboat_repo::ListedPoint;
use serde::{Deserialize, Serialize};

/// How many audit rows `GET /api/v1/audit` returns (the newest).
pub const AUDIT_LIMIT: u32 = 1000;

/// `GET /api/v1/health` (no token).
pub async fn health(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.metrics().uptime_seconds().floor(),
    }))
}

/// `POST /api/v1/login`: checks the token (the [`Caller`] extractor
/// refuses and records a bad one) and says whose it is.
pub async fn login(State(state): State<AppState>, caller: Caller) -> Result<Json<TokenInfo>> {
    let token = caller.token.clone();
    state
        .blocking(move |s| {
            s.catalog.audit(&NewAudit {
                actor: Some(caller.token.id),
                action: Action::Login,
                target: Some(format!("token {}", caller.token.id)),
                success: true,
                remote: caller.peer,
                detail: None,
            })
        })
        .await?;
    Ok(Json(token))
}

/// One repository the server serves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepositoryInfo {
    pub name: String,
    pub path: String,
    /// The repository's own id (from its config).
    pub id: String,
    pub encrypted: bool,
}

/// `GET /api/v1/repositories`.
pub async fn repositories(
    State(state): State<AppState>,
    _caller: Caller,
) -> Json<Vec<RepositoryInfo>> {
    Json(
        state
            .inner
            .repositories
            .values()
            .map(|r| RepositoryInfo {
                name: r.name.clone(),
                path: r.path.display().to_string(),
                id: r.repo.id().to_string(),
                encrypted: r.repo.encrypted(),
            })
            .collect(),
    )
}

/// `GET /api/v1/repositories/{name}/restore-points`: what `lifeboat list
/// --json` prints for that repository (the same library call).
pub async fn restore_points(
    State(state): State<AppState>,
    _caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Vec<ListedPoint>>> {
    let points = state
        .blocking(move |s| {
            let served = s.repositories.get(&name).ok_or_else(|| Error::NotFound {
                what: format!("repository {name:?}"),
            })?;
            served
                .repo
                .list_report(None)
                .map_err(|source| Error::Repository {
                    name: name.clone(),
                    source,
                })
        })
        .await?;
    Ok(Json(points))
}

/// `GET /api/v1/audit`: the newest [`AUDIT_LIMIT`] rows, oldest first.
pub async fn audit(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<Vec<AuditEntry>>> {
    let rows = state.blocking(|s| s.catalog.audit_log(AUDIT_LIMIT)).await?;
    Ok(Json(rows))
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(State(state): State<AppState>, _caller: Caller) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics().render(),
    )
}
