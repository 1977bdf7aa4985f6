//! The `sessions` table and the sessions' logs: one row per run of a job,
//! from queued to running to succeeded or failed, with the bytes read and
//! stored, the restore point made and the error. A job has at most one
//! session queued or running at a time ([`Catalog::queue_session`] checks
//! it inside its transaction). Sessions left queued or running by a server
//! that stopped are failed at the next start
//! ([`Catalog::interrupt_unfinished`]).

use super::{now_text, Catalog};
use crate::error::Result;
use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

/// Why a session was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Schedule,
    Manual,
    /// Due while the server was down; run once at start.
    Missed,
    /// A failed session's next attempt.
    Retry,
}

/// Where a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Queued,
    Running,
    Succeeded,
    Failed,
}

macro_rules! text_enum {
    ($t:ty { $($v:ident => $s:literal),* }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
            fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$v),)* _ => None }
            }
        }
    };
}
text_enum!(Trigger { Schedule => "schedule", Manual => "manual", Missed => "missed", Retry => "retry" });
text_enum!(SessionState { Queued => "queued", Running => "running", Succeeded => "succeeded", Failed => "failed" });

impl SessionState {
    /// Succeeded or failed.
    pub fn ended(self) -> bool {
        matches!(self, SessionState::Succeeded | SessionState::Failed)
    }
}

/// One line of a session's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// RFC 3339, UTC.
    pub time: String,
    pub line: String,
}

/// One session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: i64,
    pub job: String,
    pub trigger: Trigger,
    /// 1 for the first run, N for the (N-1)th retry.
    pub attempt: u32,
    pub state: SessionState,
    /// RFC 3339, UTC, like every time here.
    pub queued_at: String,
    /// Not started before this (a retry's backoff).
    pub not_before: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub bytes_read: u64,
    /// The sizes of the disks the session has started reading (all of
    /// them once the last disk started): with `bytes_read`, the progress.
    #[serde(default)]
    pub bytes_total: u64,
    /// Bytes of new chunks written to the repository (compressed).
    pub bytes_stored: u64,
    pub restore_point: Option<String>,
    pub error: Option<String>,
    /// The proxy that ran it (`None`: the server itself).
    #[serde(default)]
    pub proxy: Option<String>,
    /// The log (in `GET /api/v1/sessions/{id}` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<Vec<LogLine>>,
}

const COLUMNS: &str = "id, job, trigger, attempt, state, queued_at, not_before, \
     started_at, ended_at, bytes_read, bytes_stored, restore_point, error, proxy, bytes_total";

fn enum_column<T>(r: &Row<'_>, i: usize, parse: fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    let text: String = r.get(i)?;
    parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unknown value {text:?}").into(),
        )
    })
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<Session> {
    Ok(Session {
        id: r.get(0)?,
        job: r.get(1)?,
        trigger: enum_column(r, 2, Trigger::parse)?,
        attempt: r.get(3)?,
        state: enum_column(r, 4, SessionState::parse)?,
        queued_at: r.get(5)?,
        not_before: r.get(6)?,
        started_at: r.get(7)?,
        ended_at: r.get(8)?,
        bytes_read: r.get::<_, i64>(9)? as u64,
        bytes_stored: r.get::<_, i64>(10)? as u64,
        restore_point: r.get(11)?,
        error: r.get(12)?,
        proxy: r.get(13)?,
        bytes_total: r.get::<_, i64>(14)? as u64,
        log: None,
    })
}

/// Session `id` read through `conn` (a transaction's, say).
pub(super) fn by_id(conn: &rusqlite::Connection, id: i64) -> rusqlite::Result<Session> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM sessions WHERE id = ?1"),
        [id],
        from_row,
    )
}

/// What [`Catalog::queue_session`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Queued {
    Queued(Session),
    /// The job already has a queued or running session (this one).
    Busy(Session),
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    pub state: SessionState,
    pub bytes_read: u64,
    pub bytes_stored: u64,
    pub restore_point: Option<String>,
    pub error: Option<String>,
}

/// The message of a session that a stopped server left unfinished.
pub const INTERRUPTED: &str = "interrupted: the server stopped";
/// The message of a cancelled session (never retried).
pub const CANCELLED: &str = "cancelled";

impl Catalog {
    /// Queues a session of `job` that may start at `not_before` (RFC 3339),
    /// unless the job already has one queued or running.
    pub fn queue_session(
        &self,
        job: &str,
        trigger: Trigger,
        attempt: u32,
        not_before: &str,
    ) -> Result<Queued> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let busy = tx
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM sessions WHERE job = ?1
                     AND state IN ('queued', 'running') ORDER BY id LIMIT 1"
                ),
                [job],
                from_row,
            )
            .optional()
            .map_err(|e| self.err(e))?;
        if let Some(s) = busy {
            return Ok(Queued::Busy(s));
        }
        tx.execute(
            "INSERT INTO sessions (job, trigger, attempt, state, queued_at, not_before)
             VALUES (?1, ?2, ?3, 'queued', ?4, ?5)",
            params![job, trigger.as_str(), attempt, now_text(), not_before],
        )
        .map_err(|e| self.err(e))?;
        let id = tx.last_insert_rowid();
        let s = by_id(&tx, id).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(Queued::Queued(s))
    }

    /// Queued sessions whose `not_before` has come (`now`, RFC 3339)
    /// that the server runs itself (not those of jobs run by proxies),
    /// oldest first.
    pub fn due_sessions(&self, now: &str) -> Result<Vec<Session>> {
        self.sessions_where(
            "state = 'queued' AND not_before <= ?1 AND job NOT IN
             (SELECT name FROM jobs WHERE proxy IS NOT NULL OR pool = 1) ORDER BY id",
            params![now],
        )
    }

    /// Marks a queued session running; false if it was not queued.
    pub fn start_session(&self, id: i64) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "UPDATE sessions SET state = 'running', started_at = ?2
                 WHERE id = ?1 AND state = 'queued'",
                params![id, now_text()],
            )
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    /// The bytes a running session has read so far.
    pub fn set_progress(&self, id: i64, bytes_read: u64, bytes_total: u64) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE sessions SET bytes_read = ?2, bytes_total = ?3 WHERE id = ?1",
                params![id, bytes_read as i64, bytes_total as i64],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Ends a session.
    pub fn end_session(&self, id: i64, e: &Ending) -> Result<()> {
        self.end_session_on(id, None, e).map(|_| ())
    }

    /// Ends session `id`; with `proxy`, only if it still runs on that
    /// proxy (false otherwise).
    pub(super) fn end_session_on(&self, id: i64, proxy: Option<&str>, e: &Ending) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "UPDATE sessions SET state = ?2, ended_at = ?3, bytes_read = ?4,
                 bytes_stored = ?5, restore_point = ?6, error = ?7, lease_until = NULL
                 WHERE id = ?1 AND (?8 IS NULL OR (proxy = ?8 AND state = 'running'))",
                params![
                    id,
                    e.state.as_str(),
                    now_text(),
                    e.bytes_read as i64,
                    e.bytes_stored as i64,
                    e.restore_point,
                    e.error,
                    proxy
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    /// Appends a line to a session's log.
    pub fn log_line(&self, id: i64, line: &str) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO session_log (session, time, line) VALUES (?1, ?2, ?3)",
                params![id, now_text(), line],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// A session, with its log.
    pub fn session(&self, id: i64) -> Result<Option<Session>> {
        let conn = self.conn();
        let Some(mut s) = conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM sessions WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()
            .map_err(|e| self.err(e))?
        else {
            return Ok(None);
        };
        let mut stmt = conn
            .prepare("SELECT time, line FROM session_log WHERE session = ?1 ORDER BY id")
            .map_err(|e| self.err(e))?;
        let lines = stmt
            .query_map([id], |r| {
                Ok(LogLine {
                    time: r.get(0)?,
                    line: r.get(1)?,
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))?;
        s.log = Some(lines);
        Ok(Some(s))
    }

    /// The newest `limit` sessions (of `job` only, if given), newest first.
    pub fn list_sessions(&self, job: Option<&str>, limit: u32) -> Result<Vec<Session>> {
        match job {
            Some(job) => {
                self.sessions_where("job = ?1 ORDER BY id DESC LIMIT ?2", params![job, limit])
            }
            None => self.sessions_where("1 ORDER BY id DESC LIMIT ?1", params![limit]),
        }
    }

    pub(super) fn sessions_where(
        &self,
        clause: &str,
        p: impl rusqlite::Params,
    ) -> Result<Vec<Session>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!("SELECT {COLUMNS} FROM sessions WHERE {clause}"))
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map(p, from_row).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// Fails session `id` as cancelled if it is still queued; false
    /// otherwise.
    pub fn cancel_queued(&self, id: i64, error: &str) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "UPDATE sessions SET state = 'failed', ended_at = ?2, error = ?3
                 WHERE id = ?1 AND state = 'queued'",
                params![id, now_text(), error],
            )
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    /// Every session, oldest first, without logs.
    pub fn all_sessions(&self) -> Result<Vec<Session>> {
        self.sessions_where("1 ORDER BY id", [])
    }

    /// The log lines in which a job's retention removed restore points:
    /// (session, job, line).
    pub fn retention_removals(&self) -> Result<Vec<(i64, String, String)>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT l.session, s.job, l.line FROM session_log l JOIN sessions s ON s.id = l.session
                 WHERE l.line LIKE 'retention:%removed%' ORDER BY l.id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// Records `restore_point` (found committed in its repository) on
    /// failed session `id`, and with `succeeded` marks the session
    /// succeeded; logs `line`. False when it is not a failed session.
    pub fn record_committed(
        &self,
        id: i64,
        restore_point: &str,
        succeeded: bool,
        line: &str,
    ) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let n = tx
            .execute(
                "UPDATE sessions SET restore_point = ?2,
                 state = CASE WHEN ?3 THEN 'succeeded' ELSE state END,
                 error = CASE WHEN ?3 THEN NULL ELSE error END
                 WHERE id = ?1 AND state = 'failed'",
                params![id, restore_point, succeeded],
            )
            .map_err(|e| self.err(e))?;
        if n == 1 {
            tx.execute(
                "INSERT INTO session_log (session, time, line) VALUES (?1, ?2, ?3)",
                params![id, now_text(), line],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    /// Fails every session left queued or running (at start: the server
    /// that ran them stopped), logging why; the ids.
    pub fn interrupt_unfinished(&self) -> Result<Vec<i64>> {
        let ids: Vec<i64> = self
            .sessions_where("state IN ('queued', 'running') ORDER BY id", [])?
            .into_iter()
            .map(|s| s.id)
            .collect();
        for &id in &ids {
            let mut conn = self.conn();
            let tx = conn.transaction().map_err(|e| self.err(e))?;
            let now = now_text();
            tx.execute(
                "UPDATE sessions SET state = 'failed', ended_at = ?2, error = ?3 WHERE id = ?1",
                params![id, now, INTERRUPTED],
            )
            .map_err(|e| self.err(e))?;
            tx.execute(
                "INSERT INTO session_log (session, time, line) VALUES (?1, ?2, ?3)",
                params![id, now, INTERRUPTED],
            )
            .map_err(|e| self.err(e))?;
            tx.commit().map_err(|e| self.err(e))?;
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> (tempfile::TempDir, Catalog) {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        (dir, c)
    }

    #[test]
    fn a_job_has_one_active_session_at_a_time() {
        let (_d, c) = catalog();
        let now = now_text();
        let Queued::Queued(s) = c.queue_session("web01", Trigger::Manual, 1, &now).unwrap() else {
            panic!("not queued")
        };
        assert_eq!(s.state, SessionState::Queued);
        let Queued::Busy(b) = c
            .queue_session("web01", Trigger::Schedule, 1, &now)
            .unwrap()
        else {
            panic!("queued twice")
        };
        assert_eq!(b.id, s.id);
        assert!(matches!(
            c.queue_session("db01", Trigger::Manual, 1, &now).unwrap(),
            Queued::Queued(_)
        ));
        assert_eq!(c.due_sessions(&now).unwrap().len(), 2);
        assert!(c.start_session(s.id).unwrap());
        assert!(!c.start_session(s.id).unwrap());
        c.set_progress(s.id, 4096, 8192).unwrap();
        c.log_line(s.id, "reading").unwrap();
        c.end_session(
            s.id,
            &Ending {
                state: SessionState::Succeeded,
                bytes_read: 8192,
                bytes_stored: 100,
                restore_point: Some("web01@x".into()),
                error: None,
            },
        )
        .unwrap();
        let got = c.session(s.id).unwrap().unwrap();
        assert_eq!(got.state, SessionState::Succeeded);
        assert_eq!(got.bytes_read, 8192);
        assert_eq!(got.log.unwrap()[0].line, "reading");
        assert!(matches!(
            c.queue_session("web01", Trigger::Manual, 1, &now).unwrap(),
            Queued::Queued(_)
        ));
        assert_eq!(c.list_sessions(Some("web01"), 10).unwrap().len(), 2);
        assert_eq!(c.list_sessions(None, 10).unwrap().len(), 3);
    }

    #[test]
    fn unfinished_sessions_are_failed_as_interrupted() {
        let (_d, c) = catalog();
        let now = now_text();
        let Queued::Queued(s) = c.queue_session("web01", Trigger::Manual, 1, &now).unwrap() else {
            panic!()
        };
        c.start_session(s.id).unwrap();
        assert_eq!(c.interrupt_unfinished().unwrap(), vec![s.id]);
        let got = c.session(s.id).unwrap().unwrap();
        assert_eq!(got.state, SessionState::Failed);
        assert_eq!(got.error.as_deref(), Some(INTERRUPTED));
        assert!(c.interrupt_unfinished().unwrap().is_empty());
    }
}
