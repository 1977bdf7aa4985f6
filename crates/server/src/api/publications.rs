//! Publishing restore points on agents through the API: `POST
//! /api/v1/publications` (operator) resolves the restore point in a
//! served repository and asks the target agent to publish it read-only
//! (disk files, loop devices, read-only mounts: what `lifeboat publish`
//! does on its own host); `GET` (viewer) asks every agent that reported
//! an address for its publications (the agent is the truth for what is
//! mounted on it); `DELETE .../{agent}:{session}` (operator) has the agent
//! unpublish it. `POST /api/v1/scans` (operator) scans a restore point on
//! an agent and answers when the scan is done. Changes are audited.

use super::auth::Caller;
use super::response::ApiJson;
use crate::agents::call::{self, find};
use crate::agents::wire::{
    self, OnAgent, Publication, PublicationList, ScanResult, Unpublished, Unreachable,
};
use crate::catalog::agents::Agent;
use crate::catalog::audit::{Action, NewAudit};
use crate::error::{Error, Result};
use crate::state::{AppState, Shared};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

/// `POST /api/v1/publications` and `POST /api/v1/scans` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnTarget {
    /// `vm@id` or `vm@latest`.
    pub restore_point: String,
    /// A served repository's name; may be left out when the server
    /// serves one.
    #[serde(default)]
    pub repository: Option<String>,
    /// The agent's name.
    pub target: String,
}

/// The agent of `request` and what to ask it: the restore point resolved
/// in the served repository (404 when either is unknown).
fn prepare(s: &Shared, request: &OnTarget) -> Result<(Agent, OnAgent)> {
    let agent = find(s, &request.target)?;
    let served = match &request.repository {
        Some(name) => s.repositories.get(name).ok_or_else(|| Error::NotFound {
            what: format!("repository {name:?}"),
        })?,
        None => match s.repositories.values().collect::<Vec<_>>().as_slice() {
            [only] => only,
            _ => {
                return Err(Error::bad_request(
                    "name the repository: the server serves none or several",
                ))
            }
        },
    };
    let manifest = served
        .repo
        .resolve(&request.restore_point)
        .map_err(|source| Error::Repository {
            name: served.name.clone(),
            source,
        })?;
    Ok((
        agent,
        OnAgent {
            restore_point: manifest.name(),
            repository_path: served.path.to_string_lossy().into_owned(),
        },
    ))
}

/// Records one change of the API caller in the audit log.
/// `outcome`: what was done, or the error.
fn audit<T>(
    s: &Shared,
    caller: &Caller,
    action: Action,
    target: String,
    outcome: &Result<T>,
    done: impl Fn(&T) -> String,
) {
    let (success, detail) = match outcome {
        Ok(v) => (true, done(v)),
        Err(e) => (false, e.to_string()),
    };
    let entry = NewAudit {
        actor: Some(caller.token.id),
        action,
        target: Some(target),
        success,
        remote: caller.peer.clone(),
        detail: Some(detail),
    };
    if let Err(e) = s.catalog.audit(&entry) {
        tracing::warn!(error = %e, "audit");
    }
}

/// `POST /api/v1/publications` (operator).
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<OnTarget>,
) -> Result<(StatusCode, Json<Publication>)> {
    let published = state
        .blocking(move |s| {
            let result = prepare(s, &body).and_then(|(agent, ask)| {
                call::call::<_, Publication>(
                    s,
                    &agent,
                    "POST",
                    wire::PUBLICATIONS,
                    Some(&ask),
                    call::PUBLISH,
                )
            });
            let target = format!("{} on agent {}", body.restore_point, body.target);
            audit(
                s,
                &caller,
                Action::PublicationCreate,
                target,
                &result,
                |p| format!("{} at {}", p.id, p.disks_dir),
            );
            result
        })
        .await?;
    tracing::info!(
        publication = published.id,
        restore_point = published.restore_point,
        "published on an agent"
    );
    Ok((StatusCode::CREATED, Json(published)))
}

/// `GET /api/v1/publications` (viewer): every agent asked at once.
pub async fn list(State(state): State<AppState>, _caller: Caller) -> Result<Json<PublicationList>> {
    let list = state
        .blocking(|s| {
            let agents: Vec<Agent> = s
                .catalog
                .list_agents()?
                .into_iter()
                .filter(|a| a.port.is_some())
                .collect();
            let answers: Vec<(String, Result<Vec<Publication>>)> = std::thread::scope(|scope| {
                let asks: Vec<_> = agents
                    .iter()
                    .map(|a| {
                        scope.spawn(move || {
                            let got = call::call::<(), Vec<Publication>>(
                                s,
                                a,
                                "GET",
                                wire::PUBLICATIONS,
                                None,
                                call::SHORT,
                            );
                            (a.name.clone(), got)
                        })
                    })
                    .collect();
                asks.into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            (
                                String::new(),
                                Err(Error::Internal("a listing panicked".into())),
                            )
                        })
                    })
                    .collect()
            });
            let mut list = PublicationList {
                publications: Vec::new(),
                unreachable: Vec::new(),
            };
            for (agent, got) in answers {
                match got {
                    Ok(p) => list.publications.extend(p),
                    Err(e) => list.unreachable.push(Unreachable {
                        agent,
                        error: e.to_string(),
                    }),
                }
            }
            Ok(list)
        })
        .await?;
    Ok(Json(list))
}

/// `DELETE /api/v1/publications/{id}` (operator): `AGENT:SESSION`.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Unpublished>> {
    let Some((agent, session)) = wire::split_publication_id(&id) else {
        return Err(Error::bad_request(format!(
            "publication id {id:?}: AGENT:SESSION, as the list shows it"
        )));
    };
    if lifeboat_formats::safe_name(session).is_err() {
        return Err(Error::bad_request(format!(
            "publication id {id:?}: {session:?} is not a session name"
        )));
    }
    let (agent, session) = (agent.to_string(), session.to_string());
    let done = state
        .blocking(move |s| {
            let result = find(s, &agent).and_then(|a| {
                call::call::<(), Unpublished>(
                    s,
                    &a,
                    "DELETE",
                    &wire::publication_path(&session),
                    None,
                    call::PUBLISH,
                )
            });
            let id = wire::publication_id(&agent, &session);
            let target = format!("publication {id}");
            audit(
                s,
                &caller,
                Action::PublicationDelete,
                target,
                &result,
                |_| "unpublished".to_string(),
            );
            result.map(|_| Unpublished { deleted: id })
        })
        .await?;
    tracing::info!(publication = done.deleted, "unpublished on an agent");
    Ok(Json(done))
}

/// `POST /api/v1/scans` (operator): answers when the agent's scan ends.
pub async fn scan(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<OnTarget>,
) -> Result<Json<ScanResult>> {
    let result = state
        .blocking(move |s| {
            let result = prepare(s, &body).and_then(|(agent, ask)| {
                call::call::<_, ScanResult>(s, &agent, "POST", wire::SCANS, Some(&ask), call::SCAN)
            });
            let target = format!("{} on agent {}", body.restore_point, body.target);
            audit(s, &caller, Action::ScanRun, target, &result, |r| {
                format!("{}: {}", r.restore_point, r.verdict.as_str())
            });
            result
        })
        .await?;
    tracing::info!(
        agent = result.agent,
        restore_point = result.restore_point,
        verdict = ?result.verdict,
        "scanned on an agent"
    );
    Ok(Json(result))
}
