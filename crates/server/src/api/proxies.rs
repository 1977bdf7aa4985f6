//! The proxy routes: enrollment secrets (for proxies and agents), listing
//! and deleting proxies (admin, bearer token); enrollment itself (no
//! token: the one-time secret authenticates; a proxy or an agent, as the
//! secret says); and the first route a proxy calls with its client
//! certificate, `POST /api/v1/proxy/hello`. Every change and every refused
//! enrollment is audited.
//!
//! Enrollment needs the server's own CA: with the operator's certificate
//! (`--tls-cert`) there is no CA key to sign with, and both enrollment
//! routes answer 409 saying so.

use super::auth::Caller;
use super::response::ApiJson;
use super::PeerAddr;
use crate::catalog::audit::{Action, NewAudit};
use crate::catalog::now_text;
use crate::catalog::proxies::{Enrolled, Enrollment, PeerKind, Proxy};
use crate::error::{Error, ErrorKind, Result};
use crate::proxies::auth::ProxyCaller;
use crate::proxies::{certificate, check_name};
use crate::state::{AppState, Shared};
use crate::tls::{CA_CERT, TLS_DIR};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

/// An enrollment secret's lifetime unless the request says otherwise.
pub const DEFAULT_EXPIRES_MINS: u32 = 60;
/// The longest lifetime accepted (a week).
pub const MAX_EXPIRES_MINS: u32 = 7 * 24 * 60;

const NO_CA: &str = "this server uses the operator's certificate (--tls-cert/--tls-key) and has no CA of its own to issue proxy certificates: proxies enroll only with a server that runs on its own CA";

/// `POST /api/v1/proxies/enrollments` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEnrollment {
    /// Minutes until the secret expires (default 60).
    #[serde(default)]
    pub expires_mins: Option<u32>,
    /// What the secret enrolls (default: a proxy).
    #[serde(default)]
    pub kind: PeerKind,
}

/// `POST /api/v1/proxies/enrollments` answer: the secret, shown once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedEnrollment {
    pub enrollment: Enrollment,
    pub secret: String,
}

/// `POST /api/v1/proxies/enroll` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enroll {
    pub secret: String,
    pub name: String,
    /// The proxy's ECDSA P-256 public key, PEM (`PUBLIC KEY`).
    pub public_key: String,
    /// What enrolls (default: a proxy); the secret must be of this kind.
    #[serde(default)]
    pub kind: PeerKind,
}

/// `POST /api/v1/proxies/enroll` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrolledProxy {
    /// The enrolled proxy (or agent).
    pub proxy: Proxy,
    /// The proxy's client certificate, PEM.
    pub certificate: String,
    /// The server's CA certificate, PEM.
    pub ca: String,
}

/// `DELETE /api/v1/proxies/{name}` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeletedProxy {
    pub deleted: String,
}

fn no_ca() -> Error {
    Error::Request {
        kind: ErrorKind::Conflict,
        message: NO_CA.into(),
    }
}

/// `POST /api/v1/proxies/enrollments` (admin).
pub async fn create_enrollment(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateEnrollment>,
) -> Result<(StatusCode, Json<CreatedEnrollment>)> {
    let mins = body.expires_mins.unwrap_or(DEFAULT_EXPIRES_MINS);
    if mins == 0 || mins > MAX_EXPIRES_MINS {
        return Err(Error::bad_request(format!(
            "expires_mins must be 1 to {MAX_EXPIRES_MINS}"
        )));
    }
    let created = state
        .blocking(move |s| {
            if s.own_ca.is_none() {
                return Err(no_ca());
            }
            let expires = chrono::Utc::now() + chrono::Duration::minutes(mins.into());
            let expires = expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let (enrollment, secret) =
                s.catalog
                    .create_enrollment(body.kind, &expires, Some(caller.token.id))?;
            s.catalog.audit(&NewAudit {
                actor: Some(caller.token.id),
                action: Action::ProxyEnrollment,
                target: Some(format!("enrollment {}", enrollment.id)),
                success: true,
                remote: caller.peer,
                detail: Some(format!("{}, expires {expires}", body.kind)),
            })?;
            Ok(CreatedEnrollment { enrollment, secret })
        })
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// `POST /api/v1/proxies/enroll` (no token; the secret authenticates).
pub async fn enroll(
    State(state): State<AppState>,
    peer: Option<Extension<PeerAddr>>,
    ApiJson(body): ApiJson<Enroll>,
) -> Result<(StatusCode, Json<EnrolledProxy>)> {
    let peer = peer.map(|Extension(p)| p.0.to_string());
    let kind = body.kind;
    let enrolled = state
        .blocking(move |s| enroll_blocking(s, body, peer))
        .await?;
    tracing::info!(
        name = enrolled.proxy.name,
        fingerprint = enrolled.proxy.fingerprint,
        "{kind} enrolled"
    );
    Ok((StatusCode::CREATED, Json(enrolled)))
}

fn enroll_blocking(s: &Shared, body: Enroll, peer: Option<String>) -> Result<EnrolledProxy> {
    let Some(data_dir) = &s.own_ca else {
        return Err(no_ca());
    };
    check_name(&body.name).map_err(Error::bad_request)?;
    let kind = body.kind;
    let action = match kind {
        PeerKind::Proxy => Action::ProxyEnroll,
        PeerKind::Agent => Action::AgentEnroll,
    };
    let refused = |why: String| NewAudit {
        actor: None,
        action,
        target: Some(format!("{kind} {}", body.name)),
        success: false,
        remote: peer.clone(),
        detail: Some(why),
    };
    // The secret first: whoever lacks one learns nothing about the rest.
    let outcome = match s
        .catalog
        .enrollment_refusal(kind, &body.secret, &now_text())?
    {
        Some(refusal) => refusal,
        None => {
            let (issuer, ca_key) = crate::tls::own_ca(data_dir)?.ok_or_else(no_ca)?;
            let issued = certificate::issue(kind, &body.name, &body.public_key, &issuer, &ca_key)?;
            let ca_path = data_dir.join(TLS_DIR).join(CA_CERT);
            let ca = std::fs::read_to_string(&ca_path).map_err(|e| Error::io(&ca_path, e))?;
            let outcome = s.catalog.enroll(
                kind,
                &body.secret,
                &body.name,
                &issued.fingerprint,
                &issued.not_after,
                &now_text(),
            )?;
            if let Enrolled::Enrolled(proxy) = outcome {
                s.catalog.audit(&NewAudit {
                    actor: None,
                    action,
                    target: Some(format!("{kind} {}", proxy.name)),
                    success: true,
                    remote: peer.clone(),
                    detail: Some(format!("certificate {}", proxy.fingerprint)),
                })?;
                return Ok(EnrolledProxy {
                    proxy,
                    certificate: issued.pem,
                    ca,
                });
            }
            outcome
        }
    };
    match outcome {
        Enrolled::NameTaken => {
            s.catalog.audit(&refused("name taken".into()))?;
            Err(Error::Request {
                kind: ErrorKind::Conflict,
                message: format!(
                    "a {kind} named {:?} is enrolled: delete it first or pick another name",
                    body.name
                ),
            })
        }
        other => {
            let why = match other {
                Enrolled::AlreadyUsed(by) => format!("secret already used (by proxy {by})"),
                Enrolled::Expired(at) => format!("secret expired at {at}"),
                Enrolled::WrongKind(k) => format!("secret of kind {k}, not {kind}"),
                _ => "unknown secret".to_string(),
            };
            s.metrics.auth_failure();
            tracing::warn!(
                name = body.name,
                kind = kind.as_str(),
                detail = why,
                "enrollment refused"
            );
            s.catalog.audit(&refused(why))?;
            Err(Error::Unauthorized(
                "the enrollment secret is not valid (unknown, used or expired)",
            ))
        }
    }
}

/// `GET /api/v1/proxies` (admin).
pub async fn list(State(state): State<AppState>, _caller: Caller) -> Result<Json<Vec<Proxy>>> {
    Ok(Json(state.blocking(|s| s.catalog.list_proxies()).await?))
}

/// `DELETE /api/v1/proxies/{name}` (admin): its certificate is refused
/// from the next request on.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<DeletedProxy>> {
    let deleted = state
        .blocking(move |s| {
            let Some(p) = s.catalog.delete_proxy(&name)? else {
                return Err(Error::NotFound {
                    what: format!("proxy {name:?}"),
                });
            };
            s.catalog.audit(&NewAudit {
                actor: Some(caller.token.id),
                action: Action::ProxyDelete,
                target: Some(format!("proxy {}", p.name)),
                success: true,
                remote: caller.peer,
                detail: Some(format!("certificate {}", p.fingerprint)),
            })?;
            Ok(p.name)
        })
        .await?;
    tracing::info!(proxy = deleted, "proxy deleted");
    Ok(Json(DeletedProxy { deleted }))
}

/// `POST /api/v1/proxy/hello` (an enrolled proxy's certificate): which
/// proxy the server takes the caller for; records it as seen.
pub async fn hello(caller: ProxyCaller) -> Json<Proxy> {
    Json(caller.proxy)
}
