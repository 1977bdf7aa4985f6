//! Sessions run by proxies: a proxy takes a queued session of a job that
//! names it (or of a pool job) while it runs fewer than its limit, and
//! holds it by a lease that its progress calls renew. A session whose
//! lease ran out is ended by the server ([`Catalog::expired_leases`], then
//! the runner fails it and retries it). Each change is one conditional
//! statement or transaction, so a proxy's finish and the lease's expiry
//! cannot both end a session.

use super::sessions::{by_id, Ending, Session};
use super::Catalog;
use crate::error::Result;
use rusqlite::{params, OptionalExtension};

impl Catalog {
    /// Gives `proxy` the oldest due session of a job it may run, unless
    /// it runs `max_jobs` already: the session, now running on it with a
    /// lease until `lease_until`.
    pub fn take_session(
        &self,
        proxy: &str,
        max_jobs: u32,
        now: &str,
        lease_until: &str,
    ) -> Result<Option<Session>> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let running: u32 = tx
            .query_row(
                "SELECT COUNT(*) FROM sessions WHERE state = 'running' AND proxy = ?1",
                [proxy],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        if running >= max_jobs {
            return Ok(None);
        }
        let id: Option<i64> = tx
            .query_row(
                "SELECT s.id FROM sessions s JOIN jobs j ON j.name = s.job
                 WHERE s.state = 'queued' AND s.not_before <= ?2
                 AND (j.proxy = ?1 OR j.pool = 1) ORDER BY s.id LIMIT 1",
                params![proxy, now],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some(id) = id else {
            return Ok(None);
        };
        tx.execute(
            "UPDATE sessions SET state = 'running', started_at = ?2, proxy = ?3, lease_until = ?4
             WHERE id = ?1",
            params![id, now, proxy, lease_until],
        )
        .map_err(|e| self.err(e))?;
        let s = by_id(&tx, id).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(Some(s))
    }

    /// Renews the lease of session `id` if it still runs on `proxy`, and
    /// records its bytes read; false when it does not (failed by an
    /// expired lease, and maybe retried elsewhere).
    pub fn renew_lease(
        &self,
        id: i64,
        proxy: &str,
        lease_until: &str,
        bytes_read: u64,
        bytes_total: u64,
    ) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "UPDATE sessions SET lease_until = ?3, bytes_read = ?4, bytes_total = ?5
                 WHERE id = ?1 AND proxy = ?2 AND state = 'running'",
                params![
                    id,
                    proxy,
                    lease_until,
                    bytes_read as i64,
                    bytes_total as i64
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    /// Ends session `id` if it still runs on `proxy`; false otherwise.
    pub fn end_proxy_session(&self, id: i64, proxy: &str, e: &Ending) -> Result<bool> {
        self.end_session_on(id, Some(proxy), e)
    }

    /// Sessions running on a proxy whose lease ended before `now`.
    pub fn expired_leases(&self, now: &str) -> Result<Vec<Session>> {
        self.sessions_where(
            "state = 'running' AND proxy IS NOT NULL AND lease_until < ?1 ORDER BY id",
            params![now],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::jobs::{Retention, RunsOn};
    use crate::catalog::sessions::{Queued, SessionState, Trigger};

    #[test]
    fn proxies_take_their_sessions_up_to_their_limit_and_leases_expire() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        let src = vec!["d=/a".to_string()];
        let pool = RunsOn {
            proxy: None,
            pool: true,
        };
        let p2 = RunsOn {
            proxy: Some("p2".into()),
            pool: false,
        };
        for (name, on) in [
            ("a", &pool),
            ("b", &pool),
            ("c", &p2),
            ("own", &RunsOn::default()),
        ] {
            c.create_job(name, "main", &src, None, Retention::default(), on)
                .unwrap();
        }
        let now = "2026-12-08T00:00:00Z";
        for job in ["a", "b", "c", "own"] {
            assert!(matches!(
                c.queue_session(job, Trigger::Manual, 1, now).unwrap(),
                Queued::Queued(_)
            ));
        }
        assert_eq!(c.due_sessions(now).unwrap().len(), 1, "the server's own");
        let lease = "2026-12-08T00:01:00Z";
        let a = c.take_session("p1", 1, now, lease).unwrap().unwrap();
        assert_eq!((a.job.as_str(), a.proxy.as_deref()), ("a", Some("p1")));
        assert!(c.take_session("p1", 1, now, lease).unwrap().is_none());
        let b = c.take_session("p2", 2, now, lease).unwrap().unwrap();
        let cc = c.take_session("p2", 2, now, lease).unwrap().unwrap();
        assert_eq!((b.job.as_str(), cc.job.as_str()), ("b", "c"));
        assert!(c
            .renew_lease(a.id, "p1", "2026-12-08T00:09:00Z", 5, 10)
            .unwrap());
        assert!(!c.renew_lease(a.id, "p2", lease, 5, 10).unwrap());
        let late = "2026-12-08T00:02:00Z";
        let expired: Vec<i64> = c
            .expired_leases(late)
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(expired, vec![b.id, cc.id]);
        let failed = Ending {
            state: SessionState::Failed,
            bytes_read: 0,
            bytes_stored: 0,
            restore_point: None,
            error: Some("gone".into()),
        };
        assert!(c.end_proxy_session(b.id, "p2", &failed).unwrap());
        assert!(!c.end_proxy_session(b.id, "p2", &failed).unwrap());
        assert!(!c.renew_lease(b.id, "p2", lease, 1, 10).unwrap());
    }
}
