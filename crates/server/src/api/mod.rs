//! The HTTP API: the router built from [`crate::routes::ROUTES`], the body
//! limit, JSON errors for every refusal (unknown route, wrong method,
//! oversized or malformed body), and the middleware that counts and logs
//! each request.

pub mod agents;
pub mod auth;
mod check;
pub mod handlers;
pub mod instant_recovery;
pub mod jobs;
pub mod openapi;
pub mod proxies;
pub mod proxy_work;
pub mod publications;
pub mod response;
pub mod sessions;
pub mod tokens;
pub mod upload_wire;
pub mod uploads;

use crate::error::{Error, ErrorKind};
use crate::metrics::UNMATCHED;
use crate::routes::{Endpoint, Method, ROUTES};
use crate::state::AppState;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use std::time::Instant;

/// The largest request body accepted (413 above it), but for the upload
/// routes' (see [`body_limit`]).
pub const BODY_LIMIT: usize = 64 * 1024;
/// The largest body of a `known` call (its digests).
pub const KNOWN_BODY_LIMIT: usize = 1 << 20;
/// The largest body of an upload's commit (its indexes: 64 hex digits a
/// chunk, some 17 MB for a 1 TiB disk at 4 MiB chunks).
pub const COMMIT_BODY_LIMIT: usize = 64 << 20;

/// A body declared over [`BODY_LIMIT`] but at most this long is read and
/// dropped before the 413 goes out: closing a connection with unread data
/// makes the kernel send a reset, and the client would never see the
/// answer. Longer ones are answered at once and the connection closed.
pub const DRAIN_LIMIT: usize = 1 << 20;

/// The peer's address, put in each request's extensions by the connection
/// loop.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// The largest body `endpoint` takes: a chunk blob of the largest chunk
/// size served (`blob_limit`), an upload's indexes, a batch of digests,
/// or [`BODY_LIMIT`].
pub fn body_limit(endpoint: Endpoint, blob_limit: usize) -> usize {
    match endpoint {
        Endpoint::UploadChunk => blob_limit,
        Endpoint::UploadCommit => COMMIT_BODY_LIMIT,
        Endpoint::UploadKnown => KNOWN_BODY_LIMIT,
        _ => BODY_LIMIT,
    }
}

/// The router of every route in [`ROUTES`].
pub fn router(state: AppState) -> Router {
    let blob_limit = state.blob_limit();
    let mut router: Router<AppState> = Router::new();
    for r in ROUTES {
        let limit = body_limit(r.endpoint, blob_limit);
        let mut route = method_router(r.endpoint, r.method);
        if limit != BODY_LIMIT {
            route = route.layer(DefaultBodyLimit::max(limit));
        }
        router = router.route(r.path, route);
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            blob_limit,
            refuse_oversized,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

fn method_router(endpoint: Endpoint, method: Method) -> MethodRouter<AppState> {
    let filter = match method {
        Method::Get => MethodFilter::GET,
        Method::Post => MethodFilter::POST,
        Method::Patch => MethodFilter::PATCH,
        Method::Put => MethodFilter::PUT,
        Method::Delete => MethodFilter::DELETE,
    };
    match endpoint {
        Endpoint::Health => on(filter, handlers::health),
        Endpoint::Login => on(filter, handlers::login),
        Endpoint::ListTokens => on(filter, tokens::list),
        Endpoint::CreateToken => on(filter, tokens::create),
        Endpoint::DeleteToken => on(filter, tokens::delete),
        Endpoint::ListRepositories => on(filter, handlers::repositories),
        Endpoint::ListRestorePoints => on(filter, handlers::restore_points),
        Endpoint::ListRecoveries => on(filter, instant_recovery::list),
        Endpoint::StartRecovery => on(filter, instant_recovery::start),
        Endpoint::StopRecovery => on(filter, instant_recovery::stop),
        Endpoint::Audit => on(filter, handlers::audit),
        Endpoint::Check => on(filter, check::run),
        Endpoint::ListJobs => on(filter, jobs::list),
        Endpoint::CreateJob => on(filter, jobs::create),
        Endpoint::ShowJob => on(filter, jobs::show),
        Endpoint::UpdateJob => on(filter, jobs::update),
        Endpoint::DeleteJob => on(filter, jobs::delete),
        Endpoint::RunJob => on(filter, jobs::run),
        Endpoint::ListSessions => on(filter, sessions::list),
        Endpoint::ShowSession => on(filter, sessions::show),
        Endpoint::CancelSession => on(filter, sessions::cancel),
        Endpoint::Metrics => on(filter, handlers::metrics),
        Endpoint::OpenApi => on(filter, openapi::document),
        Endpoint::CreateEnrollment => on(filter, proxies::create_enrollment),
        Endpoint::Enroll => on(filter, proxies::enroll),
        Endpoint::ListProxies => on(filter, proxies::list),
        Endpoint::DeleteProxy => on(filter, proxies::delete),
        Endpoint::ProxyHello => on(filter, proxies::hello),
        Endpoint::ProxyWork => on(filter, proxy_work::work),
        Endpoint::ProxyProgress => on(filter, proxy_work::progress),
        Endpoint::ProxyFinish => on(filter, proxy_work::finish),
        Endpoint::ListAgents => on(filter, agents::list),
        Endpoint::DeleteAgent => on(filter, agents::delete),
        Endpoint::AgentHello => on(filter, agents::hello),
        Endpoint::ListPublications => on(filter, publications::list),
        Endpoint::CreatePublication => on(filter, publications::create),
        Endpoint::DeletePublication => on(filter, publications::delete),
        Endpoint::RunScan => on(filter, publications::scan),
        Endpoint::UploadOpen => on(filter, uploads::open),
        Endpoint::UploadKnown => on(filter, uploads::known),
        Endpoint::UploadChunk => on(filter, uploads::put),
        Endpoint::UploadCommit => on(filter, uploads::commit),
        Endpoint::UploadAbort => on(filter, uploads::abort),
    }
}

async fn not_found(method: axum::http::Method, uri: axum::http::Uri) -> Error {
    Error::NotFound {
        what: format!("route {method} {}", uri.path()),
    }
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Error {
    Error::Request {
        kind: ErrorKind::MethodNotAllowed,
        message: format!("{} does not take {method}", uri.path()),
    }
}

/// Answers 413 to a body whose `Content-Length` is over its route's
/// [`body_limit`] (after reading it, up to [`DRAIN_LIMIT`]); bodies
/// without a length are cut at the limit by [`DefaultBodyLimit`] as they
/// are read.
async fn refuse_oversized(State(blob_limit): State<usize>, req: Request, next: Next) -> Response {
    let limit = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|m| crate::routes::find(req.method().as_str(), m.as_str()))
        .map_or(BODY_LIMIT, |r| body_limit(r.endpoint, blob_limit));
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => {
            if n <= DRAIN_LIMIT as u64 {
                let _ = axum::body::to_bytes(req.into_body(), DRAIN_LIMIT).await;
            }
            response::too_large(limit).into_response()
        }
        _ => next.run(req).await,
    }
}

/// Counts the request in the metrics and logs it (route pattern, never the
/// query or a token).
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED.to_string(), |m| m.as_str().to_string());
    let method = req.method().clone();
    let peer = req.extensions().get::<PeerAddr>().map(|p| p.0);
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    state.metrics().request(&route, method.as_str(), status);
    tracing::info!(
        method = %method,
        route,
        status,
        ms = started.elapsed().as_secs_f64() * 1000.0,
        peer = peer.map(|p| p.to_string()),
        "request"
    );
    response
}
