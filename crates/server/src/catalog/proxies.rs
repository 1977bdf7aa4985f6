//! The `proxies` and `proxy_enrollments` tables, and enrollment into
//! `agents` (the agents' own queries are in [`super::agents`]).
//!
//! An enrollment secret is made by an admin for one kind of peer (a
//! proxy or an agent), shown once and stored as its BLAKE3 hash (like API
//! tokens); it is good for one enrollment of that kind before its
//! expiry. [`Catalog::enroll`] checks the secret, its kind, the name and
//! records the peer in one transaction, so a secret is never spent on a
//! refused enrollment and never spent twice. A proxy is found by its
//! certificate's SHA-256 fingerprint; deleting it removes the row, so its
//! certificate matches nothing from the next request on.

use super::{now_text, Catalog};
use crate::error::Result;
use crate::token::secret_hash;
use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

/// The prefix of an enrollment secret (an API token's is `lbt_`).
pub const ENROLLMENT_PREFIX: &str = "lbe_";

/// What a secret enrolls: a proxy (pulls backup sessions) or an agent
/// (a publish and scan target the server calls).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerKind {
    #[default]
    Proxy,
    Agent,
}

impl PeerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerKind::Proxy => "proxy",
            PeerKind::Agent => "agent",
        }
    }

    /// The table its enrolled peers are kept in.
    fn table(self) -> &'static str {
        match self {
            PeerKind::Proxy => "proxies",
            PeerKind::Agent => "agents",
        }
    }
}

impl std::str::FromStr for PeerKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<PeerKind, String> {
        match s {
            "proxy" => Ok(PeerKind::Proxy),
            "agent" => Ok(PeerKind::Agent),
            other => Err(format!("{other:?}: proxy or agent")),
        }
    }
}

impl std::fmt::Display for PeerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An enrollment secret as the API shows it (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    pub id: i64,
    /// What it enrolls.
    #[serde(default)]
    pub kind: PeerKind,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub expires_at: String,
    /// The admin token that made it.
    pub created_by: Option<i64>,
}

/// An enrolled proxy (and what an agent's enrollment answers with).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proxy {
    pub name: String,
    /// SHA-256 of its certificate (DER), lower-case hex.
    pub fingerprint: String,
    /// RFC 3339, UTC.
    pub enrolled_at: String,
    /// When its certificate expires.
    pub not_after: String,
    /// Its last request on a proxy route.
    pub last_seen: Option<String>,
}

/// What [`Catalog::enroll`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrolled {
    Enrolled(Proxy),
    /// No enrollment has that secret.
    UnknownSecret,
    /// The secret was used already (by that proxy).
    AlreadyUsed(String),
    /// The secret expired (at that time).
    Expired(String),
    /// The secret enrolls the other kind of peer.
    WrongKind(PeerKind),
    /// A proxy of that name is enrolled (the secret stays unused).
    NameTaken,
}

const PROXY_COLUMNS: &str = "name, fingerprint, enrolled_at, not_after, last_seen";

fn proxy_row(r: &Row<'_>) -> rusqlite::Result<Proxy> {
    Ok(Proxy {
        name: r.get(0)?,
        fingerprint: r.get(1)?,
        enrolled_at: r.get(2)?,
        not_after: r.get(3)?,
        last_seen: r.get(4)?,
    })
}

impl Catalog {
    /// Makes an enrollment secret of `kind` valid until `expires_at` (RFC
    /// 3339); the enrollment and its secret (shown once, stored hashed).
    pub fn create_enrollment(
        &self,
        kind: PeerKind,
        expires_at: &str,
        created_by: Option<i64>,
    ) -> Result<(Enrollment, String)> {
        let secret =
            crate::token::new_secret().replacen(crate::token::SECRET_PREFIX, ENROLLMENT_PREFIX, 1);
        let hash = secret_hash(&secret);
        let conn = self.conn();
        let now = now_text();
        conn.execute(
            "INSERT INTO proxy_enrollments (hash, created_at, expires_at, created_by, kind)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![&hash[..], now, expires_at, created_by, kind.as_str()],
        )
        .map_err(|e| self.err(e))?;
        let e = Enrollment {
            id: conn.last_insert_rowid(),
            kind,
            created_at: now,
            expires_at: expires_at.to_string(),
            created_by,
        };
        Ok((e, secret))
    }

    /// Spends `secret` on enrolling the `kind` peer `name` whose
    /// certificate has `fingerprint` and expires at `not_after`; `now`
    /// decides expiry.
    pub fn enroll(
        &self,
        kind: PeerKind,
        secret: &str,
        name: &str,
        fingerprint: &str,
        not_after: &str,
        now: &str,
    ) -> Result<Enrolled> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let id = match self.usable_enrollment(&tx, kind, secret, now)? {
            Ok(id) => id,
            Err(refused) => return Ok(refused),
        };
        let table = kind.table();
        let inserted = tx
            .execute(
                &format!(
                    "INSERT INTO {table} (name, fingerprint, enrolled_at, not_after, enrollment)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name) DO NOTHING"
                ),
                params![name, fingerprint, now, not_after, id],
            )
            .map_err(|e| self.err(e))?;
        if inserted == 0 {
            return Ok(Enrolled::NameTaken);
        }
        tx.execute(
            "UPDATE proxy_enrollments SET used_at = ?2, used_by = ?3 WHERE id = ?1",
            params![id, now, name],
        )
        .map_err(|e| self.err(e))?;
        let proxy = tx
            .query_row(
                &format!("SELECT {PROXY_COLUMNS} FROM {table} WHERE name = ?1"),
                [name],
                proxy_row,
            )
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(Enrolled::Enrolled(proxy))
    }

    /// Whether `secret` could enroll a `kind` peer at `now`: `None`, or
    /// why not (checked again, in its transaction, by [`Catalog::enroll`]).
    pub fn enrollment_refusal(
        &self,
        kind: PeerKind,
        secret: &str,
        now: &str,
    ) -> Result<Option<Enrolled>> {
        let conn = self.conn();
        Ok(self.usable_enrollment(&conn, kind, secret, now)?.err())
    }

    /// The id of the enrollment of `secret` if it enrolls `kind`, is
    /// unused and not expired at `now`; else why not.
    fn usable_enrollment(
        &self,
        conn: &rusqlite::Connection,
        kind: PeerKind,
        secret: &str,
        now: &str,
    ) -> Result<Result<i64, Enrolled>> {
        let hash = secret_hash(secret);
        let found: Option<(i64, String, Option<String>, String)> = conn
            .query_row(
                "SELECT id, expires_at, used_by, kind FROM proxy_enrollments WHERE hash = ?1",
                [&hash[..]],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(match found {
            None => Err(Enrolled::UnknownSecret),
            Some((_, _, Some(by), _)) => Err(Enrolled::AlreadyUsed(by)),
            // Both RFC 3339 UTC with seconds: text order is time order.
            Some((_, expires_at, None, _)) if expires_at.as_str() <= now => {
                Err(Enrolled::Expired(expires_at))
            }
            Some((_, _, None, k)) if k != kind.as_str() => {
                Err(Enrolled::WrongKind(k.parse().unwrap_or_default()))
            }
            Some((id, _, None, _)) => Ok(id),
        })
    }

    /// The enrolled proxy whose certificate has `fingerprint`; records
    /// that it was seen now.
    pub fn proxy_seen(&self, fingerprint: &str) -> Result<Option<Proxy>> {
        let conn = self.conn();
        conn.execute(
            "UPDATE proxies SET last_seen = ?2 WHERE fingerprint = ?1",
            params![fingerprint, now_text()],
        )
        .map_err(|e| self.err(e))?;
        conn.query_row(
            &format!("SELECT {PROXY_COLUMNS} FROM proxies WHERE fingerprint = ?1"),
            [fingerprint],
            proxy_row,
        )
        .optional()
        .map_err(|e| self.err(e))
    }

    /// Every enrolled proxy, by name.
    pub fn list_proxies(&self) -> Result<Vec<Proxy>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {PROXY_COLUMNS} FROM proxies ORDER BY name"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], proxy_row).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// Deletes proxy `name`; the proxy as it was, if there was one.
    pub fn delete_proxy(&self, name: &str) -> Result<Option<Proxy>> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let proxy = tx
            .query_row(
                &format!("SELECT {PROXY_COLUMNS} FROM proxies WHERE name = ?1"),
                [name],
                proxy_row,
            )
            .optional()
            .map_err(|e| self.err(e))?;
        tx.execute("DELETE FROM proxies WHERE name = ?1", [name])
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(proxy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LATER: &str = "2999-01-01T00:00:00Z";
    const NOW: &str = "2026-12-08T00:00:00Z";

    fn catalog() -> (tempfile::TempDir, Catalog) {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        (dir, c)
    }

    #[test]
    fn a_secret_enrolls_one_proxy_once() {
        let (_d, c) = catalog();
        let (_, secret) = c
            .create_enrollment(PeerKind::Proxy, LATER, Some(1))
            .unwrap();
        assert!(secret.starts_with(ENROLLMENT_PREFIX));
        let Enrolled::Enrolled(p) = c
            .enroll(PeerKind::Proxy, &secret, "p1", "aa", LATER, NOW)
            .unwrap()
        else {
            panic!("not enrolled")
        };
        assert_eq!(p.name, "p1");
        assert_eq!(
            c.enroll(PeerKind::Proxy, &secret, "p2", "bb", LATER, NOW)
                .unwrap(),
            Enrolled::AlreadyUsed("p1".into())
        );
        assert_eq!(
            c.enroll(PeerKind::Proxy, "lbe_nonsense", "p2", "bb", LATER, NOW)
                .unwrap(),
            Enrolled::UnknownSecret
        );
        assert!(c.proxy_seen("aa").unwrap().unwrap().last_seen.is_some());
        assert_eq!(c.list_proxies().unwrap().len(), 1);
        assert!(c.delete_proxy("p1").unwrap().is_some());
        assert!(c.proxy_seen("aa").unwrap().is_none());
        assert!(c.delete_proxy("p1").unwrap().is_none());
    }

    #[test]
    fn expired_secrets_and_taken_names_are_refused_without_spending() {
        let (_d, c) = catalog();
        let (_, old) = c
            .create_enrollment(PeerKind::Proxy, "2026-01-01T00:00:00Z", None)
            .unwrap();
        assert_eq!(
            c.enroll(PeerKind::Proxy, &old, "p1", "aa", LATER, NOW)
                .unwrap(),
            Enrolled::Expired("2026-01-01T00:00:00Z".into())
        );
        let (_, a) = c.create_enrollment(PeerKind::Proxy, LATER, None).unwrap();
        let (_, b) = c.create_enrollment(PeerKind::Proxy, LATER, None).unwrap();
        assert!(matches!(
            c.enroll(PeerKind::Proxy, &a, "p1", "aa", LATER, NOW)
                .unwrap(),
            Enrolled::Enrolled(_)
        ));
        assert_eq!(
            c.enroll(PeerKind::Proxy, &b, "p1", "bb", LATER, NOW)
                .unwrap(),
            Enrolled::NameTaken
        );
        assert!(matches!(
            c.enroll(PeerKind::Proxy, &b, "p2", "bb", LATER, NOW)
                .unwrap(),
            Enrolled::Enrolled(_)
        ));
    }
}
