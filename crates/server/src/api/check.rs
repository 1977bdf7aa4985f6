//! `POST /api/v1/check` (admin): the catalog against the served
//! repositories ([`crate::check`]); with `{"repair": true}` the catalog is
//! brought in line where it can be, and the repair is audited.

use super::auth::Caller;
use super::response::ApiJson;
use crate::catalog::audit::{Action, NewAudit};
use crate::check::{check, CheckReport, CheckRequest};
use crate::error::Result;
use crate::state::AppState;
use axum::extract::State;
use axum::Json;

/// `POST /api/v1/check`.
pub async fn run(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CheckRequest>,
) -> Result<Json<CheckReport>> {
    let report = state
        .blocking(move |s| {
            let report = check(s, body.repair)?;
            let repaired = report.findings.iter().filter(|f| f.repaired).count();
            if repaired > 0 {
                s.catalog.audit(&NewAudit {
                    actor: Some(caller.token.id),
                    action: Action::CatalogRepair,
                    target: Some(format!("{repaired} session(s)")),
                    success: true,
                    remote: caller.peer.clone(),
                    detail: None,
                })?;
            }
            Ok(report)
        })
        .await?;
    Ok(Json(report))
}
