//! The agent's HTTPS API, which only the server calls: every request must
//! come with the server's own client certificate (the TLS handshake has
//! already required a certificate from the server's CA; this checks it
//! is the server's, by the fingerprint the server gave at hello, so a
//! proxy's or another agent's certificate gets 401). Errors are the
//! server's JSON errors.
//!
//! ```text
//!  GET    /agent/v1/publications            the agent's publications
//!  POST   /agent/v1/publications            publish {restore_point, repository_path}
//!  DELETE /agent/v1/publications/{session}  unpublish
//!  POST   /agent/v1/scans                   scan {restore_point, repository_path}
//! ```

use crate::hello::Trusted;
use crate::{publications, scans, AgentConfig};
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use lifeboat_server::agents::wire::{self, OnAgent, Publication, ScanResult, Unpublished};
use lifeboat_server::api::response::ApiJson;
use lifeboat_server::api::PeerAddr;
use lifeboat_server::proxies::auth::ClientCertificate;
use lifeboat_server::Error;
use std::sync::Arc;

/// What the handlers share.
#[derive(Clone)]
struct Agent {
    config: Arc<AgentConfig>,
    /// The agent's name (its certificate's).
    name: Arc<str>,
}

/// The agent's router: its routes behind the server-only check.
pub fn router(config: Arc<AgentConfig>, name: &str, trusted: Arc<Trusted>) -> Router {
    let state = Agent {
        config,
        name: name.into(),
    };
    let publication = format!("{}/{{session}}", wire::PUBLICATIONS);
    Router::new()
        .route(wire::PUBLICATIONS, get(list).post(publish))
        .route(&publication, delete(unpublish))
        .route(wire::SCANS, post(scan))
        .fallback(|| async {
            Error::NotFound {
                what: "route".into(),
            }
        })
        .layer(axum::middleware::from_fn_with_state(
            trusted,
            only_the_server,
        ))
        .with_state(state)
}

/// Refuses every caller but the server (401), and logs each request.
async fn only_the_server(
    State(trusted): State<Arc<Trusted>>,
    req: Request,
    next: Next,
) -> Response {
    let peer = req.extensions().get::<PeerAddr>().map(|p| p.0.to_string());
    let fingerprint = req
        .extensions()
        .get::<ClientCertificate>()
        .and_then(|c| c.0.clone());
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    if !fingerprint.as_deref().is_some_and(|fp| trusted.is(fp)) {
        tracing::warn!(
            peer,
            fingerprint,
            %method,
            path,
            "refused: not the server's certificate"
        );
        return Error::Unauthorized(
            "only the Lifeboat server this agent enrolled with may call it",
        )
        .into_response();
    }
    let response = next.run(req).await;
    tracing::info!(%method, path, status = response.status().as_u16(), "request");
    response
}

/// Runs `f` on a blocking thread (publishing and scanning block).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("a blocking task failed: {e}")))?
}

async fn list(State(a): State<Agent>) -> Result<Json<Vec<Publication>>, Error> {
    blocking(move || publications::list(&a.config, &a.name))
        .await
        .map(Json)
}

async fn publish(
    State(a): State<Agent>,
    ApiJson(ask): ApiJson<OnAgent>,
) -> Result<(StatusCode, Json<Publication>), Error> {
    blocking(move || publications::publish(&a.config, &a.name, &ask))
        .await
        .map(|p| (StatusCode::CREATED, Json(p)))
}

async fn unpublish(
    State(a): State<Agent>,
    Path(session): Path<String>,
) -> Result<Json<Unpublished>, Error> {
    blocking(move || publications::unpublish(&a.config, &a.name, &session))
        .await
        .map(Json)
}

async fn scan(
    State(a): State<Agent>,
    ApiJson(ask): ApiJson<OnAgent>,
) -> Result<Json<ScanResult>, Error> {
    blocking(move || scans::scan(&a.config, &a.name, &ask))
        .await
        .map(Json)
}
