//! The agent routes: listing (viewer) and deleting (admin) agents with a
//! bearer token, and `POST /api/v1/agent/hello`, which an agent calls with
//! its certificate at start and then every half minute: where it listens
//! (the port it got, the address to call), recorded in the catalog; the
//! answer tells it the fingerprint of the server's client certificate,
//! the one caller it serves.

use super::auth::Caller;
use super::response::ApiJson;
use crate::agents::wire::{Hello, HelloReply};
use crate::catalog::agents::Agent;
use crate::catalog::audit::{Action, NewAudit};
use crate::error::{Error, ErrorKind, Result};
use crate::proxies::auth::AgentCaller;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};

/// `DELETE /api/v1/agents/{name}` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeletedAgent {
    pub deleted: String,
}

/// `GET /api/v1/agents` (viewer).
pub async fn list(State(state): State<AppState>, _caller: Caller) -> Result<Json<Vec<Agent>>> {
    Ok(Json(state.blocking(|s| s.catalog.list_agents()).await?))
}

/// `DELETE /api/v1/agents/{name}` (admin): its certificate is refused
/// from its next hello on, and the server calls it no more.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<DeletedAgent>> {
    let deleted = state
        .blocking(move |s| {
            let Some(a) = s.catalog.delete_agent(&name)? else {
                return Err(Error::NotFound {
                    what: format!("agent {name:?}"),
                });
            };
            s.catalog.audit(&NewAudit {
                actor: Some(caller.token.id),
                action: Action::AgentDelete,
                target: Some(format!("agent {}", a.name)),
                success: true,
                remote: caller.peer,
                detail: Some(format!("certificate {}", a.fingerprint)),
            })?;
            Ok(a.name)
        })
        .await?;
    tracing::info!(agent = deleted, "agent deleted");
    Ok(Json(DeletedAgent { deleted }))
}

/// `POST /api/v1/agent/hello` (an enrolled agent's certificate).
pub async fn hello(
    State(state): State<AppState>,
    caller: AgentCaller,
    ApiJson(body): ApiJson<Hello>,
) -> Result<Json<HelloReply>> {
    if body.port == 0 {
        return Err(Error::bad_request("port must be 1 to 65535"));
    }
    let host = match body.host.filter(|h| !h.is_empty()) {
        Some(h) => h,
        None => caller
            .peer
            .map(|p| p.ip().to_string())
            .ok_or_else(|| Error::bad_request("no host given and no peer address"))?,
    };
    let before = caller.agent.clone();
    let reply = state
        .blocking(move |s| {
            let fingerprint = s
                .client_identity
                .as_ref()
                .map(|c| c.fingerprint.clone())
                .ok_or(Error::Request {
                    kind: ErrorKind::Conflict,
                    message: "this server has no CA of its own to call agents with".into(),
                })?;
            let agent = s
                .catalog
                .agent_listens(&before.name, &host, body.port)?
                .ok_or_else(|| Error::NotFound {
                    what: format!("agent {:?}", before.name),
                })?;
            Ok(HelloReply {
                agent,
                server_fingerprint: fingerprint,
            })
        })
        .await?;
    let (a, b) = (&reply.agent, &caller.agent);
    if (&a.host, a.port) != (&b.host, b.port) {
        tracing::info!(
            agent = a.name,
            host = a.host.as_deref(),
            port = a.port,
            "agent listens"
        );
    }
    Ok(Json(reply))
}
