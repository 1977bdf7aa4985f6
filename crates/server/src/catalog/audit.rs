//! The `audit` table: one row per change (token created or deleted), per
//! login (`POST /api/v1/login`, successful or not) and per request refused
//! for its credentials (no, unknown or deleted token). Rows are only ever
//! appended.

use super::{now_text, Catalog};
use crate::error::Result;
use rusqlite::{params, Row};
use serde::{Deserialize, Serialize};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    #[serde(rename = "token.create")]
    TokenCreate,
    #[serde(rename = "token.delete")]
    TokenDelete,
    #[serde(rename = "login")]
    Login,
    /// A request refused because its token is missing or unknown (401).
    #[serde(rename = "auth.failed")]
    AuthFailed,
    /// A request refused because its token's role is too low (403).
    #[serde(rename = "auth.forbidden")]
    Forbidden,
    #[serde(rename = "job.create")]
    JobCreate,
    #[serde(rename = "job.delete")]
    JobDelete,
    #[serde(rename = "job.update")]
    JobUpdate,
    /// A session queued: by a caller (`POST .../run`) or by the server
    /// (schedule, missed run, retry).
    #[serde(rename = "job.run")]
    JobRun,
    /// A session ended (succeeded or failed; the outcome says which).
    #[serde(rename = "session.end")]
    SessionEnd,
    /// A session cancelled by a caller.
    #[serde(rename = "session.cancel")]
    SessionCancel,
    /// A proxy enrollment secret made.
    #[serde(rename = "proxy.enrollment")]
    ProxyEnrollment,
    /// A proxy enrolled, or an enrollment refused (outcome says which).
    #[serde(rename = "proxy.enroll")]
    ProxyEnroll,
    #[serde(rename = "proxy.delete")]
    ProxyDelete,
    /// A request to a proxy route refused for its client certificate.
    #[serde(rename = "proxy.refused")]
    ProxyRefused,
    /// An instant recovery session started through the API.
    #[serde(rename = "recovery.start")]
    RecoveryStart,
    /// An instant recovery session stopped through the API.
    #[serde(rename = "recovery.stop")]
    RecoveryStop,
    /// `catalog check --repair` changed sessions to match a repository.
    #[serde(rename = "catalog.repair")]
    CatalogRepair,
    /// An agent enrolled, or an agent's enrollment refused.
    #[serde(rename = "agent.enroll")]
    AgentEnroll,
    #[serde(rename = "agent.delete")]
    AgentDelete,
    /// A request to an agent route refused for its client certificate.
    #[serde(rename = "agent.refused")]
    AgentRefused,
    /// A restore point published on an agent (or the attempt).
    #[serde(rename = "publication.create")]
    PublicationCreate,
    #[serde(rename = "publication.delete")]
    PublicationDelete,
    /// A restore point scanned on an agent (or the attempt).
    #[serde(rename = "scan.run")]
    ScanRun,
}

impl Action {
    /// Every action (a new one goes here too: the OpenAPI document's
    /// enum is checked against this list).
    pub const ALL: &'static [Action] = &[
        Action::TokenCreate,
        Action::TokenDelete,
        Action::Login,
        Action::AuthFailed,
        Action::Forbidden,
        Action::JobCreate,
        Action::JobDelete,
        Action::JobUpdate,
        Action::JobRun,
        Action::SessionEnd,
        Action::SessionCancel,
        Action::ProxyEnrollment,
        Action::ProxyEnroll,
        Action::ProxyDelete,
        Action::ProxyRefused,
        Action::RecoveryStart,
        Action::RecoveryStop,
        Action::CatalogRepair,
        Action::AgentEnroll,
        Action::AgentDelete,
        Action::AgentRefused,
        Action::PublicationCreate,
        Action::PublicationDelete,
        Action::ScanRun,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::TokenCreate => "token.create",
            Action::TokenDelete => "token.delete",
            Action::Login => "login",
            Action::AuthFailed => "auth.failed",
            Action::Forbidden => "auth.forbidden",
            Action::JobCreate => "job.create",
            Action::JobDelete => "job.delete",
            Action::JobUpdate => "job.update",
            Action::JobRun => "job.run",
            Action::SessionEnd => "session.end",
            Action::SessionCancel => "session.cancel",
            Action::ProxyEnrollment => "proxy.enrollment",
            Action::ProxyEnroll => "proxy.enroll",
            Action::ProxyDelete => "proxy.delete",
            Action::ProxyRefused => "proxy.refused",
            Action::RecoveryStart => "recovery.start",
            Action::RecoveryStop => "recovery.stop",
            Action::CatalogRepair => "catalog.repair",
            Action::AgentEnroll => "agent.enroll",
            Action::AgentDelete => "agent.delete",
            Action::AgentRefused => "agent.refused",
            Action::PublicationCreate => "publication.create",
            Action::PublicationDelete => "publication.delete",
            Action::ScanRun => "scan.run",
        }
    }

    fn parse(s: &str) -> Option<Action> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
}

/// One audit row to write.
#[derive(Debug, Clone)]
pub struct NewAudit {
    /// The token that acted (`None`: unknown, or the server itself).
    pub actor: Option<i64>,
    pub action: Action,
    /// What it acted on, e.g. `token 4` or the route.
    pub target: Option<String>,
    /// `ok` or `refused`.
    pub success: bool,
    /// The peer's address.
    pub remote: Option<String>,
    pub detail: Option<String>,
}

/// One audit row as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    /// RFC 3339, UTC.
    pub time: String,
    pub actor: Option<i64>,
    pub action: Action,
    pub target: Option<String>,
    /// `ok` or `refused`.
    pub outcome: String,
    pub remote: Option<String>,
    pub detail: Option<String>,
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    let action: String = r.get(3)?;
    Ok(AuditEntry {
        id: r.get(0)?,
        time: r.get(1)?,
        actor: r.get(2)?,
        action: Action::parse(&action).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                3,
                rusqlite::types::Type::Text,
                format!("unknown audit action {action:?}").into(),
            )
        })?,
        target: r.get(4)?,
        outcome: r.get(5)?,
        remote: r.get(6)?,
        detail: r.get(7)?,
    })
}

impl Catalog {
    /// Appends one audit row.
    pub fn audit(&self, a: &NewAudit) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO audit (time, actor, action, target, outcome, remote, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    now_text(),
                    a.actor,
                    a.action.as_str(),
                    a.target,
                    if a.success { "ok" } else { "refused" },
                    a.remote,
                    a.detail
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The newest `limit` audit rows, oldest first.
    pub fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT * FROM (SELECT id, time, actor, action, target, outcome, remote, detail
                 FROM audit ORDER BY id DESC LIMIT ?1) ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([limit], from_row).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_rows_come_back_in_order_with_their_fields() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        for (action, success) in [(Action::TokenCreate, true), (Action::AuthFailed, false)] {
            c.audit(&NewAudit {
                actor: Some(1),
                action,
                target: Some("token 2".into()),
                success,
                remote: Some("127.0.0.1:5000".into()),
                detail: None,
            })
            .unwrap();
        }
        let log = c.audit_log(10).unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].action, Action::TokenCreate);
        assert_eq!(log[0].outcome, "ok");
        assert_eq!(log[1].action, Action::AuthFailed);
        assert_eq!(log[1].outcome, "refused");
        assert_eq!(log[1].remote.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(c.audit_log(1).unwrap()[0].id, log[1].id);
    }

    #[test]
    fn actions_parse_from_their_names() {
        for &a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
    }
}
