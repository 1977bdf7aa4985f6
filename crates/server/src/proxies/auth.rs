//! Who is calling on a proxy route (`/api/v1/proxy/...`): the client
//! certificate of the TLS connection (verified against the server's CA
//! during the handshake, [`crate::tls`]) matched by its SHA-256
//! fingerprint to an enrolled proxy, afresh on every request, so a
//! deleted proxy is refused on its next request. A bearer token gives no
//! access to these routes, and a proxy certificate none to the others
//! (they ask for a token). Refusals are audited and counted.

use crate::api::PeerAddr;
use crate::catalog::audit::{Action, NewAudit};
use crate::catalog::proxies::Proxy;
use crate::error::Error;
use crate::state::AppState;
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

impl FromRequestParts<AppState> for ProxyCaller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<ProxyCaller, Error> {
        let peer = parts.extensions.get::<PeerAddr>().map(|p| p.0.to_string());
        let fingerprint = parts
            .extensions
            .get::<ClientCertificate>()
            .and_then(|c| c.0.clone());
        let proxy = match fingerprint.clone() {
            Some(fp) => state.blocking(move |s| s.catalog.proxy_seen(&fp)).await?,
            None => None,
        };
        if let Some(proxy) = proxy {
            return Ok(ProxyCaller { proxy, peer });
        }
        let (why, message) = match fingerprint {
            None => (
                "no client certificate".to_string(),
                "this route needs an enrolled proxy's client certificate (lifeboat proxy --enroll)",
            ),
            Some(fp) => (
                format!("certificate {fp} is not an enrolled proxy's (deleted?)"),
                "the client certificate is not an enrolled proxy's (deleted?)",
            ),
        };
        state.metrics().auth_failure();
        tracing::warn!(
            remote = peer.as_deref(),
            detail = why,
            "proxy request refused"
        );
        let audit = NewAudit {
            actor: None,
            action: Action::ProxyRefused,
            target: Some(format!("{} {}", parts.method, parts.uri.path())),
            success: false,
            remote: peer,
            detail: Some(why),
        };
        state.blocking(move |s| s.catalog.audit(&audit)).await?;
        Err(Error::Unauthorized(message))
    }
}
