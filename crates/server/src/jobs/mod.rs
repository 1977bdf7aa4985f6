//! Jobs and their sessions: what runs, when, and how many at once.
//!
//! ```text
//!  scheduler tick (runner.rs, every second or when woken)
//!    schedule.rs: cron due? -> catalog: queue session (schedule | missed at start)
//!    API POST /jobs/{name}/run ------> queue session (manual), wake
//!    dispatch: queued sessions whose time has come, while fewer than
//!              --max-jobs run -> worker thread
//!  worker thread: execute.rs (backup_vm / live_backup_socket, prune_vm)
//!    progress.rs -> catalog (bytes read, log lines)
//!    end -> catalog, audit, retry (a new queued session after the backoff),
//!           webhook.rs
//! ```
//!
//! Jobs that name a proxy (or the pool) are not dispatched here: proxies
//! take their sessions (`POST /api/v1/proxy/work`, api/proxy_work.rs),
//! under a lease the loop expires (a session of a proxy that stopped
//! answering fails and is retried). `--max-jobs` is the server's own
//! limit; each proxy states its own.

pub mod execute;
pub mod progress;
pub mod runner;
pub mod schedule;
pub mod source;
pub mod webhook;

pub use webhook::check_url as check_webhook;

use std::time::Duration;

/// Sessions run at once unless `serve --max-jobs` says otherwise.
pub const DEFAULT_MAX_JOBS: usize = 2;

/// How the server runs jobs.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// Sessions running at once (at least 1).
    pub max_jobs: usize,
    /// The wait before a failed run's first retry (doubled per retry).
    pub retry_base: Duration,
    /// Webhook URLs notified when a session ends.
    pub webhooks: Vec<String>,
    /// How long a proxy's session lives without a progress call.
    pub proxy_lease: Duration,
    /// Where the server's own jobs may read sources (`--source-root`).
    pub source_roots: source::SourceRoots,
}

/// A proxy's lease on a session unless `serve --proxy-lease-secs` says
/// otherwise.
pub const DEFAULT_PROXY_LEASE: Duration = Duration::from_secs(60);

impl Default for JobsConfig {
    fn default() -> JobsConfig {
        JobsConfig {
            max_jobs: DEFAULT_MAX_JOBS,
            retry_base: schedule::DEFAULT_RETRY_BASE,
            webhooks: Vec::new(),
            proxy_lease: DEFAULT_PROXY_LEASE,
            source_roots: source::SourceRoots::none("lifeboat serve"),
        }
    }
}
