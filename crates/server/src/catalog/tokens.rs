//! The `tokens` table: create, find by secret, list, delete. Every call
//! reads the table afresh (no cache), so a deleted token is refused on the
//! very next request.

use super::{now_text, Catalog};
use crate::error::Result;
use crate::token::{new_secret, secret_hash, Role, TokenInfo};
use rusqlite::{params, OptionalExtension, Row};

/// What [`Catalog::delete_token`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletion {
    /// Deleted; the token as it was.
    Deleted(TokenInfo),
    /// No token has that id.
    NotFound,
    /// Refused: it is the last admin token.
    LastAdmin,
}

const COLUMNS: &str = "id, name, role, created_at, created_by";

fn from_row(r: &Row<'_>) -> rusqlite::Result<TokenInfo> {
    let role: String = r.get(2)?;
    Ok(TokenInfo {
        id: r.get(0)?,
        name: r.get(1)?,
        role: role.parse().map_err(|e: String| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, e.into())
        })?,
        created_at: r.get(3)?,
        created_by: r.get(4)?,
    })
}

impl Catalog {
    /// Makes a token; returns it and its secret (shown once, never stored).
    pub fn create_token(
        &self,
        name: &str,
        role: Role,
        created_by: Option<i64>,
    ) -> Result<(TokenInfo, String)> {
        let secret = new_secret();
        let hash = secret_hash(&secret);
        let conn = self.conn();
        conn.execute(
            "INSERT INTO tokens (name, role, hash, created_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![name, role.as_str(), &hash[..], now_text(), created_by],
        )
        .map_err(|e| self.err(e))?;
        let id = conn.last_insert_rowid();
        let info = conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM tokens WHERE id = ?1"),
                [id],
                from_row,
            )
            .map_err(|e| self.err(e))?;
        Ok((info, secret))
    }

    /// The token whose secret this is, if any.
    pub fn token_by_secret(&self, secret: &str) -> Result<Option<TokenInfo>> {
        let hash = secret_hash(secret);
        self.conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM tokens WHERE hash = ?1"),
                [&hash[..]],
                from_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every token, by id.
    pub fn list_tokens(&self) -> Result<Vec<TokenInfo>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!("SELECT {COLUMNS} FROM tokens ORDER BY id"))
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], from_row).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// Deletes token `id`, unless it is the last admin token (nobody
    /// could make tokens any more). The check and the delete are one
    /// transaction under the connection's lock, so two admins deleting
    /// each other at once cannot both succeed.
    pub fn delete_token(&self, id: i64) -> Result<Deletion> {
        let conn = self.conn();
        let tx = conn.unchecked_transaction().map_err(|e| self.err(e))?;
        let target = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM tokens WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some(target) = target else {
            return Ok(Deletion::NotFound);
        };
        if target.role == Role::Admin {
            let admins: i64 = tx
                .query_row(
                    "SELECT COUNT(*) FROM tokens WHERE role = 'admin'",
                    [],
                    |r| r.get(0),
                )
                .map_err(|e| self.err(e))?;
            if admins <= 1 {
                return Ok(Deletion::LastAdmin);
            }
        }
        tx.execute("DELETE FROM tokens WHERE id = ?1", [id])
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(Deletion::Deleted(target))
    }

    /// How many tokens there are.
    pub fn token_count(&self) -> Result<i64> {
        self.conn()
            .query_row("SELECT COUNT(*) FROM tokens", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_by_secret_until_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        let (t, secret) = c.create_token("ci", Role::Operator, Some(7)).unwrap();
        assert_eq!(t.role, Role::Operator);
        assert_eq!(t.created_by, Some(7));
        assert_eq!(c.token_by_secret(&secret).unwrap(), Some(t.clone()));
        assert_eq!(c.token_by_secret("lbt_nope").unwrap(), None);
        assert_eq!(c.list_tokens().unwrap(), vec![t.clone()]);
        assert_eq!(c.delete_token(t.id).unwrap(), Deletion::Deleted(t.clone()));
        assert_eq!(c.delete_token(t.id).unwrap(), Deletion::NotFound);
        assert_eq!(c.token_by_secret(&secret).unwrap(), None);
        // Ids are never reused after a delete.
        let (t2, _) = c.create_token("next", Role::Viewer, None).unwrap();
        assert!(t2.id > t.id);
    }

    #[test]
    fn the_last_admin_token_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        let (a1, _) = c.create_token("a1", Role::Admin, None).unwrap();
        let (a2, _) = c.create_token("a2", Role::Admin, None).unwrap();
        assert!(matches!(
            c.delete_token(a1.id).unwrap(),
            Deletion::Deleted(_)
        ));
        assert_eq!(c.delete_token(a2.id).unwrap(), Deletion::LastAdmin);
        assert_eq!(c.list_tokens().unwrap(), vec![a2]);
    }

    #[test]
    fn only_the_hash_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        let c = Catalog::open(&path).unwrap();
        let (_, secret) = c.create_token("x", Role::Admin, None).unwrap();
        drop(c);
        let raw = std::fs::read(&path).unwrap();
        let wal = std::fs::read(path.with_extension("sqlite-wal")).unwrap_or_default();
        for bytes in [raw, wal] {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
        }
    }
}
