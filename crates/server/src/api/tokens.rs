//! The token routes (admin only): list, create (the secret is in the
//! answer, once), delete. Creations and deletions are audited.

use super::auth::Caller;
use super::response::ApiJson;
use crate::catalog::audit::{Action, NewAudit};
use crate::catalog::tokens::Deletion;
use crate::error::{Error, ErrorKind, Result};
use crate::state::AppState;
use crate::token::{Role, TokenInfo};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

/// The longest token name accepted.
pub const MAX_NAME_LEN: usize = 128;

/// `POST /api/v1/tokens` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub role: Role,
    #[serde(default)]
    pub name: Option<String>,
}

/// `POST /api/v1/tokens` answer: the token and its secret, shown once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedToken {
    pub token: TokenInfo,
    pub secret: String,
}

/// `DELETE /api/v1/tokens/{id}` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeletedToken {
    pub deleted: i64,
}

/// `GET /api/v1/tokens`.
pub async fn list(State(state): State<AppState>, _caller: Caller) -> Result<Json<Vec<TokenInfo>>> {
    Ok(Json(state.blocking(|s| s.catalog.list_tokens()).await?))
}

/// `POST /api/v1/tokens`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>)> {
    let name = body.name.unwrap_or_else(|| body.role.as_str().to_string());
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(Error::bad_request(format!(
            "token name must be 1 to {MAX_NAME_LEN} bytes without control characters"
        )));
    }
    let created = state
        .blocking(move |s| {
            let (token, secret) =
                s.catalog
                    .create_token(&name, body.role, Some(caller.token.id))?;
            s.catalog.audit(&NewAudit {
                actor: Some(caller.token.id),
                action: Action::TokenCreate,
                target: Some(format!("token {}", token.id)),
                success: true,
                remote: caller.peer,
                detail: Some(format!("role {}, name {:?}", token.role, token.name)),
            })?;
            Ok(CreatedToken { token, secret })
        })
        .await?;
    tracing::info!(id = created.token.id, role = %created.token.role, by = created.token.created_by, "token created");
    Ok((StatusCode::CREATED, Json(created)))
}

/// `DELETE /api/v1/tokens/{id}`. The last admin token cannot be deleted
/// (409): nobody could make tokens any more.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DeletedToken>> {
    let id: i64 = id
        .parse()
        .map_err(|_| Error::bad_request(format!("token id {id:?} is not a number")))?;
    state
        .blocking(move |s| {
            let target = match s.catalog.delete_token(id)? {
                Deletion::Deleted(t) => t,
                Deletion::NotFound => {
                    return Err(Error::NotFound {
                        what: format!("token {id}"),
                    })
                }
                Deletion::LastAdmin => {
                    return Err(Error::Request {
                        kind: ErrorKind::Conflict,
                        message: format!(
                            "token {id} is the last admin token: make another admin token first"
                        ),
                    })
                }
            };
            s.catalog.audit(&NewAudit {
                actor: Some(caller.token.id),
                action: Action::TokenDelete,
                target: Some(format!("token {id}")),
                success: true,
                remote: caller.peer,
                detail: Some(format!("role {}, name {:?}", target.role, target.name)),
            })
        })
        .await?;
    tracing::info!(id, "token deleted");
    Ok(Json(DeletedToken { deleted: id }))
}
