//! The `jobs` table: what a job backs up (its sources), into which
//! repository, when (a cron schedule, or only on demand), what it keeps
//! (retention), and when the scheduler last queued it. Sources and
//! retention are stored as JSON text; the catalog checks nothing about
//! them (the API validates before it writes).

use super::{now_text, Catalog};
use crate::error::Result;
use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

/// GFS keep counts, as `lifeboat prune` takes them; all zero: keep
/// everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    pub last: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
}

impl Retention {
    /// The prune policy; `None` when nothing is to be pruned.
    pub fn policy(&self) -> Option<lifeboat_repo::KeepPolicy> {
        let p = lifeboat_repo::KeepPolicy {
            last: self.last,
            hourly: 0,
            daily: self.daily,
            weekly: self.weekly,
            monthly: self.monthly,
            yearly: self.yearly,
        };
        (p != lifeboat_repo::KeepPolicy::default()).then_some(p)
    }
}

/// One job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The job's name, which is also the VM's name in the repository.
    pub name: String,
    /// The served repository's name (`serve --repo NAME=PATH`).
    pub repository: String,
    /// `NAME=[FORMAT:]PATH` image files, or one `qmp:/path/to.sock`.
    pub sources: Vec<String>,
    /// A cron expression in the server's time zone; `None`: on demand only.
    pub schedule: Option<String>,
    pub retention: Retention,
    pub enabled: bool,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// When the scheduler last queued it (RFC 3339, UTC).
    pub last_scheduled: Option<String>,
    /// Where it runs: `None` and not `pool`, on the server itself.
    #[serde(flatten)]
    pub runs_on: RunsOn,
}

/// Which proxy runs a job's sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunsOn {
    /// Only this proxy (by name).
    #[serde(default)]
    pub proxy: Option<String>,
    /// Any enrolled proxy.
    #[serde(default)]
    pub pool: bool,
}

impl RunsOn {
    /// Whether the server runs it itself.
    pub fn server(&self) -> bool {
        self.proxy.is_none() && !self.pool
    }
}

const COLUMNS: &str =
    "name, repository, sources, schedule, retention, enabled, created_at, last_scheduled, proxy, pool";

fn json_column<T: serde::de::DeserializeOwned>(r: &Row<'_>, i: usize) -> rusqlite::Result<T> {
    let text: String = r.get(i)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    })
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<Job> {
    Ok(Job {
        name: r.get(0)?,
        repository: r.get(1)?,
        sources: json_column(r, 2)?,
        schedule: r.get(3)?,
        retention: json_column(r, 4)?,
        enabled: r.get(5)?,
        created_at: r.get(6)?,
        last_scheduled: r.get(7)?,
        runs_on: RunsOn {
            proxy: r.get(8)?,
            pool: r.get(9)?,
        },
    })
}

/// What [`Catalog::delete_job`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobDeletion {
    Deleted,
    NotFound,
    /// The job has a queued or running session (its id).
    Active(i64),
}

impl Catalog {
    /// Adds a job (its `created_at` is now); `None` if the name is taken.
    pub fn create_job(
        &self,
        name: &str,
        repository: &str,
        sources: &[String],
        schedule: Option<&str>,
        retention: Retention,
        runs_on: &RunsOn,
    ) -> Result<Option<Job>> {
        let now = now_text();
        let sources_json = serde_json::to_string(sources).expect("strings serialize");
        let retention_json = serde_json::to_string(&retention).expect("counts serialize");
        let inserted = self
            .conn()
            .execute(
                "INSERT INTO jobs (name, repository, sources, schedule, retention, enabled, created_at, proxy, pool)
                 VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7, ?8) ON CONFLICT (name) DO NOTHING",
                params![name, repository, sources_json, schedule, retention_json, now, runs_on.proxy, runs_on.pool],
            )
            .map_err(|e| self.err(e))?;
        if inserted == 0 {
            return Ok(None);
        }
        self.job(name)
    }

    /// The job called `name`.
    pub fn job(&self, name: &str) -> Result<Option<Job>> {
        self.conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM jobs WHERE name = ?1"),
                [name],
                from_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every job, by name.
    pub fn list_jobs(&self) -> Result<Vec<Job>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!("SELECT {COLUMNS} FROM jobs ORDER BY name"))
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], from_row).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// Deletes a job unless a session of it is queued or running (its
    /// sessions stay, as history).
    pub fn delete_job(&self, name: &str) -> Result<JobDeletion> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let active: Option<i64> = tx
            .query_row(
                "SELECT id FROM sessions WHERE job = ?1 AND state IN ('queued', 'running')
                 ORDER BY id LIMIT 1",
                [name],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        if let Some(id) = active {
            return Ok(JobDeletion::Active(id));
        }
        let n = tx
            .execute("DELETE FROM jobs WHERE name = ?1", [name])
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(if n == 0 {
            JobDeletion::NotFound
        } else {
            JobDeletion::Deleted
        })
    }

    /// Writes `job`'s sources, schedule, retention, enabled flag and where
    /// it runs (its name, repository and creation time stay); with
    /// `reschedule`, its schedule counts from now (a changed schedule or a
    /// re-enabled job has missed nothing). `None` when it does not exist.
    pub fn update_job(&self, job: &Job, reschedule: bool) -> Result<Option<Job>> {
        let sources_json = serde_json::to_string(&job.sources).expect("strings serialize");
        let retention_json = serde_json::to_string(&job.retention).expect("counts serialize");
        let n = self
            .conn()
            .execute(
                "UPDATE jobs SET sources = ?2, schedule = ?3, retention = ?4, enabled = ?5,
                 proxy = ?6, pool = ?7,
                 last_scheduled = CASE WHEN ?8 THEN ?9 ELSE last_scheduled END
                 WHERE name = ?1",
                params![
                    job.name,
                    sources_json,
                    job.schedule,
                    retention_json,
                    job.enabled,
                    job.runs_on.proxy,
                    job.runs_on.pool,
                    reschedule,
                    now_text()
                ],
            )
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Ok(None);
        }
        self.job(&job.name)
    }

    /// Records that the scheduler queued (or considered) `name` at `time`.
    pub fn set_last_scheduled(&self, name: &str, time: &str) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE jobs SET last_scheduled = ?2 WHERE name = ?1",
                params![name, time],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_created_once_listed_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        let sources = vec!["disk0=/images/a.raw".to_string()];
        let keep = Retention {
            last: 2,
            ..Retention::default()
        };
        let job = c
            .create_job(
                "web01",
                "main",
                &sources,
                Some("0 2 * * *"),
                keep,
                &RunsOn::default(),
            )
            .unwrap()
            .unwrap();
        assert_eq!(job.sources, sources);
        assert_eq!(job.retention, keep);
        assert!(job.enabled && job.last_scheduled.is_none());
        assert!(c
            .create_job("web01", "main", &sources, None, keep, &RunsOn::default())
            .unwrap()
            .is_none());
        c.set_last_scheduled("web01", "2026-12-08T02:00:00Z")
            .unwrap();
        let listed = c.list_jobs().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            listed[0].last_scheduled.as_deref(),
            Some("2026-12-08T02:00:00Z")
        );
        assert_eq!(c.delete_job("web01").unwrap(), JobDeletion::Deleted);
        assert_eq!(c.delete_job("web01").unwrap(), JobDeletion::NotFound);
    }

    #[test]
    fn no_keep_count_means_no_pruning() {
        assert_eq!(Retention::default().policy(), None);
        let p = Retention {
            weekly: 4,
            ..Retention::default()
        }
        .policy()
        .unwrap();
        assert_eq!(p.weekly, 4);
    }
}
