//! The `agents` table: enrolled agents (rows made by
//! [`Catalog::enroll`] with [`PeerKind::Agent`](super::proxies::PeerKind)), found by their
//! certificate's fingerprint like proxies, with the address and port each
//! last reported (`POST /api/v1/agent/hello`), where the server calls it.

use super::{now_text, Catalog};
use crate::error::Result;
use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

/// An enrolled agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub name: String,
    /// SHA-256 of its certificate (DER), lower-case hex.
    pub fingerprint: String,
    /// RFC 3339, UTC.
    pub enrolled_at: String,
    /// When its certificate expires.
    pub not_after: String,
    /// Its last call to the server.
    pub last_seen: Option<String>,
    /// The address it listens on, as it reported it (or the address its
    /// report came from); `None` until its first report.
    pub host: Option<String>,
    /// The port it listens on (8082 unless that was taken).
    pub port: Option<u16>,
}

const COLUMNS: &str = "name, fingerprint, enrolled_at, not_after, last_seen, host, port";

fn agent_row(r: &Row<'_>) -> rusqlite::Result<Agent> {
    Ok(Agent {
        name: r.get(0)?,
        fingerprint: r.get(1)?,
        enrolled_at: r.get(2)?,
        not_after: r.get(3)?,
        last_seen: r.get(4)?,
        host: r.get(5)?,
        port: r.get(6)?,
    })
}

impl Catalog {
    /// The enrolled agent whose certificate has `fingerprint`; records
    /// that it was seen now.
    pub fn agent_seen(&self, fingerprint: &str) -> Result<Option<Agent>> {
        let conn = self.conn();
        conn.execute(
            "UPDATE agents SET last_seen = ?2 WHERE fingerprint = ?1",
            params![fingerprint, now_text()],
        )
        .map_err(|e| self.err(e))?;
        conn.query_row(
            &format!("SELECT {COLUMNS} FROM agents WHERE fingerprint = ?1"),
            [fingerprint],
            agent_row,
        )
        .optional()
        .map_err(|e| self.err(e))
    }

    /// Records where agent `name` listens; the agent as it is now.
    pub fn agent_listens(&self, name: &str, host: &str, port: u16) -> Result<Option<Agent>> {
        let conn = self.conn();
        conn.execute(
            "UPDATE agents SET host = ?2, port = ?3, last_seen = ?4 WHERE name = ?1",
            params![name, host, port, now_text()],
        )
        .map_err(|e| self.err(e))?;
        drop(conn);
        self.agent(name)
    }

    /// Agent `name`, if enrolled.
    pub fn agent(&self, name: &str) -> Result<Option<Agent>> {
        self.conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM agents WHERE name = ?1"),
                [name],
                agent_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every enrolled agent, by name.
    pub fn list_agents(&self) -> Result<Vec<Agent>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!("SELECT {COLUMNS} FROM agents ORDER BY name"))
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], agent_row).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// Deletes agent `name`; the agent as it was, if there was one.
    pub fn delete_agent(&self, name: &str) -> Result<Option<Agent>> {
        let agent = self.agent(name)?;
        if agent.is_some() {
            self.conn()
                .execute("DELETE FROM agents WHERE name = ?1", [name])
                .map_err(|e| self.err(e))?;
        }
        Ok(agent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::proxies::{Enrolled, PeerKind};

    const KIND: PeerKind = PeerKind::Agent;

    const LATER: &str = "2999-01-01T00:00:00Z";
    const NOW: &str = "2026-12-08T00:00:00Z";

    #[test]
    fn an_agent_secret_enrolls_an_agent_only() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        let (e, secret) = c.create_enrollment(KIND, LATER, None).unwrap();
        assert_eq!(e.kind, PeerKind::Agent);
        assert_eq!(
            c.enroll(PeerKind::Proxy, &secret, "a1", "aa", LATER, NOW)
                .unwrap(),
            Enrolled::WrongKind(PeerKind::Agent)
        );
        assert!(matches!(
            c.enroll(KIND, &secret, "a1", "aa", LATER, NOW).unwrap(),
            Enrolled::Enrolled(_)
        ));
        assert!(c.list_proxies().unwrap().is_empty(), "not a proxy");
        assert!(c.proxy_seen("aa").unwrap().is_none());
        let a = c.agent_seen("aa").unwrap().unwrap();
        assert_eq!((a.host, a.port), (None, None));
        let a = c.agent_listens("a1", "127.0.0.1", 8082).unwrap().unwrap();
        assert_eq!((a.host.as_deref(), a.port), (Some("127.0.0.1"), Some(8082)));
        assert_eq!(c.list_agents().unwrap(), vec![a]);
        assert!(c.delete_agent("a1").unwrap().is_some());
        assert!(c.agent_seen("aa").unwrap().is_none());
    }
}
