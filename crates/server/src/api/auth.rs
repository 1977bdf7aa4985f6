//! Who is calling: the `Authorization: Bearer <secret>` header looked up in
//! the catalog on every request (no cache: a deleted token is refused on
//! the next request), and the role the route needs (from
//! [`crate::routes::ROUTES`]) checked. Each refusal is counted in the
//! metrics and written to the audit log; a refused `POST /api/v1/login` is
//! recorded as a failed login.

use super::PeerAddr;
use crate::catalog::audit::{Action, NewAudit};
use crate::error::Error;
use crate::routes::{self, Access, Endpoint};
use crate::state::AppState;
use crate::token::TokenInfo;
use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

/// The token of an authenticated request, with a role the route allows.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token: TokenInfo,
    pub peer: Option<String>,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, Error> {
        let path = parts
            .extensions
            .get::<MatchedPath>()
            .map(|m| m.as_str().to_string())
            .unwrap_or_default();
        let method = parts.method.as_str().to_string();
        let route = routes::find(&method, &path);
        let is_login = route.is_some_and(|r| r.endpoint == Endpoint::Login);
        let needed = match route.map(|r| r.access) {
            Some(Access::Role(role)) => role,
            // A handler that takes a Caller on a route the table does not
            // list, or lists as public, is a programming error: refuse.
            _ => {
                return Err(Error::Internal(format!(
                    "no access rule for {method} {path}"
                )))
            }
        };
        let peer = parts.extensions.get::<PeerAddr>().map(|p| p.0.to_string());
        let target = Some(format!("{method} {path}"));
        let secret = bearer(parts);
        let had_secret = secret.is_some();
        let token = match secret {
            Some(secret) => {
                state
                    .blocking(move |s| s.catalog.token_by_secret(&secret))
                    .await?
            }
            None => None,
        };
        let Some(token) = token else {
            let (why, message) = if had_secret {
                (
                    "unknown or deleted token",
                    "the token is not valid (unknown or deleted)",
                )
            } else {
                (
                    "no bearer token",
                    "this needs a token: Authorization: Bearer <token>",
                )
            };
            refuse(
                state,
                NewAudit {
                    actor: None,
                    action: if is_login {
                        Action::Login
                    } else {
                        Action::AuthFailed
                    },
                    target,
                    success: false,
                    remote: peer,
                    detail: Some(why.into()),
                },
            )
            .await?;
            return Err(Error::Unauthorized(message));
        };
        if !token.role.allows(needed) {
            refuse(
                state,
                NewAudit {
                    actor: Some(token.id),
                    action: Action::Forbidden,
                    target,
                    success: false,
                    remote: peer,
                    detail: Some(format!("needs {needed}, token has {}", token.role)),
                },
            )
            .await?;
            return Err(Error::Forbidden {
                needed: needed.as_str(),
                has: token.role.as_str(),
            });
        }
        Ok(Caller { token, peer })
    }
}

/// The secret of an `Authorization: Bearer` header, if there is one.
fn bearer(parts: &Parts) -> Option<String> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, secret) = value.split_once(' ')?;
    let secret = secret.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !secret.is_empty()).then(|| secret.to_string())
}

/// Counts and records one refusal.
async fn refuse(state: &AppState, a: NewAudit) -> Result<(), Error> {
    state.metrics().auth_failure();
    tracing::warn!(
        action = a.action.as_str(),
        target = a.target.as_deref(),
        remote = a.remote.as_deref(),
        detail = a.detail.as_deref(),
        "request refused"
    );
    state.blocking(move |s| s.catalog.audit(&a)).await
}
