//! Who is calling on a proxy route (`/api/v1/proxy/...`) or an agent
//! route (`/api/v1/agent/...`): the client certificate of the TLS
//! connection (verified against the server's CA during the handshake,
//! [`crate::tls`]) matched by its SHA-256 fingerprint to an enrolled
//! proxy, or agent, afresh on every request, so a deleted one is refused
//! on its next request. A bearer token gives no access to these routes,
//! a proxy certificate none to the agent routes and the other way round,
//! and neither opens the others (they ask for a token). Refusals are
//! audited and counted.

use crate::api::PeerAddr;
use crate::catalog::agents::Agent;
use crate::catalog::audit::{Action, NewAudit};
use crate::catalog::proxies::{PeerKind, Proxy};
use crate::error::{Error, Result};
use crate::state::{AppState, Shared};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

/// The fingerprint of the connection's client certificate, if it sent
/// one; put in each request's extensions by the connection loop.
#[derive(Debug, Clone)]
pub struct ClientCertificate(pub Option<String>);

/// The enrolled proxy calling.
#[derive(Debug, Clone)]
pub struct ProxyCaller {
    pub proxy: Proxy,
    pub peer: Option<String>,
}

/// The enrolled agent calling.
#[derive(Debug, Clone)]
pub struct AgentCaller {
    pub agent: Agent,
    /// The address the call came from.
    pub peer: Option<std::net::SocketAddr>,
}

impl FromRequestParts<AppState> for ProxyCaller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<ProxyCaller> {
        let proxy = enrolled_caller(parts, state, PeerKind::Proxy, |s, fp| {
            s.catalog.proxy_seen(fp)
        })
        .await?;
        let peer = parts.extensions.get::<PeerAddr>().map(|p| p.0.to_string());
        Ok(ProxyCaller { proxy, peer })
    }
}

impl FromRequestParts<AppState> for AgentCaller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<AgentCaller> {
        let agent = enrolled_caller(parts, state, PeerKind::Agent, |s, fp| {
            s.catalog.agent_seen(fp)
        })
        .await?;
        let peer = parts.extensions.get::<PeerAddr>().map(|p| p.0);
        Ok(AgentCaller { agent, peer })
    }
}

/// The enrolled `kind` peer whose certificate the connection presented
/// (`seen` looks it up by fingerprint and records it as seen); else the
/// refusal, counted, logged and audited.
async fn enrolled_caller<T, F>(
    parts: &Parts,
    state: &AppState,
    kind: PeerKind,
    seen: F,
) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&Shared, &str) -> Result<Option<T>> + Send + 'static,
{
    let fingerprint = parts
        .extensions
        .get::<ClientCertificate>()
        .and_then(|c| c.0.clone());
    let found = match fingerprint.clone() {
        Some(fp) => state.blocking(move |s| seen(s, &fp)).await?,
        None => None,
    };
    if let Some(found) = found {
        return Ok(found);
    }
    let (why, message) = match (fingerprint, kind) {
        (None, PeerKind::Proxy) => (
            "no client certificate".to_string(),
            "this route needs an enrolled proxy's client certificate (lifeboat proxy --enroll)",
        ),
        (None, PeerKind::Agent) => (
            "no client certificate".to_string(),
            "this route needs an enrolled agent's certificate (lifeboat agent --enroll)",
        ),
        (Some(fp), PeerKind::Proxy) => (
            format!("certificate {fp} is not an enrolled proxy's (deleted?)"),
            "the client certificate is not an enrolled proxy's (deleted?)",
        ),
        (Some(fp), PeerKind::Agent) => (
            format!("certificate {fp} is not an enrolled agent's (deleted?)"),
            "the client certificate is not an enrolled agent's (deleted?)",
        ),
    };
    let peer = parts.extensions.get::<PeerAddr>().map(|p| p.0.to_string());
    state.metrics().auth_failure();
    tracing::warn!(
        kind = kind.as_str(),
        remote = peer.as_deref(),
        detail = why,
        "certificate request refused"
    );
    let audit = NewAudit {
        actor: None,
        action: match kind {
            PeerKind::Proxy => Action::ProxyRefused,
            PeerKind::Agent => Action::AgentRefused,
        },
        target: Some(format!("{} {}", parts.method, parts.uri.path())),
        success: false,
        remote: peer,
        detail: Some(why),
    };
    state.blocking(move |s| s.catalog.audit(&audit)).await?;
    Err(Error::Unauthorized(message))
}
