//! The proxy's work loop (`lifeboat proxy` after enrollment): it asks the
//! server for work (a long poll), runs each session it is given on a
//! thread of its own with [`back_up_job`], the backup the server's runner
//! makes, into an upload to the job's repository on the server
//! ([`RemoteTarget`]), reports progress every [`PROGRESS_EVERY`] (bytes
//! read and new log lines; each call renews the session's lease) and
//! sends the result.
//!
//! ```text
//!  loop: while running < max_jobs: POST /proxy/work {max_jobs} (held ~25 s)
//!          work -> thread: open an upload (the chunk keys come with it),
//!                  back_up_job into it, commit (the server applies retention)
//!                  reporter: POST .../progress every 2 s until done
//!                  POST .../finish {restore_point | error}
//! ```
//!
//! The server never dials the proxy, and the proxy needs neither the
//! repository's path nor its passphrase. A session the server took back
//! (cancelled, or its lease expired) answers `keep_going: false`: the
//! backup stops at its next chunk ([`Progress::cancelled`]), and its
//! upload is gone on the server (its staged chunks removed, no restore
//! point made). A job reads its sources only under the proxy's own
//! `--source-root` folders.

use super::identity::Identity;
use crate::api::proxy_work::{FinishReport, ProgressReport, Work};
use crate::client::{Client, ClientError};
use crate::error::ErrorKind;
use crate::jobs::execute::{back_up_job, SessionLog};
use crate::jobs::source::SourceRoots;
use crate::proxies::remote::RemoteTarget;
use lifeboat_engine::{error_chain, Progress};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How often a running session's progress goes to the server.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// The wait before asking again after the server could not be reached.
const RECONNECT_AFTER: Duration = Duration::from_secs(2);
/// Sessions a proxy runs at once unless `--max-jobs` says otherwise.
pub const DEFAULT_MAX_JOBS: u32 = 2;

/// How a proxy runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub max_jobs: u32,
    /// Where this proxy's jobs may read sources (`--source-root`).
    pub source_roots: SourceRoots,
}

/// Runs the loop until the server refuses the proxy's certificate (it was
/// deleted): that refusal is the error.
pub fn run(identity: &Identity, config: WorkerConfig) -> Result<(), ClientError> {
    let client = Arc::new(Client::for_proxy(identity)?);
    let max = config.max_jobs.max(1);
    let running = Arc::new((Mutex::new(0u32), Condvar::new()));
    loop {
        {
            let (count, freed) = &*running;
            let mut n = count.lock().unwrap_or_else(|e| e.into_inner());
            while *n >= max {
                n = freed.wait(n).unwrap_or_else(|e| e.into_inner());
            }
        }
        let work = match client.proxy_work(max) {
            Ok(Some(work)) => work,
            Ok(None) => continue,
            Err(e) if e.kind() == Some(ErrorKind::Unauthorized) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "asking the server for work");
                std::thread::sleep(RECONNECT_AFTER);
                continue;
            }
        };
        tracing::info!(
            session = work.session.id,
            job = work.job.name,
            "session received"
        );
        *running.0.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        let (client, running, roots) =
            (client.clone(), running.clone(), config.source_roots.clone());
        std::thread::spawn(move || {
            run_session(&client, &work, &roots);
            let (count, freed) = &*running;
            *count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
            freed.notify_one();
        });
    }
}

/// A session's progress, kept until the reporter sends it.
#[derive(Default)]
struct Pending {
    bytes_read: AtomicU64,
    bytes_total: AtomicU64,
    lines: Mutex<Vec<String>>,
    /// The server took the session back (cancelled, or its lease ended):
    /// the engine stops at its next chunk.
    stop: Arc<AtomicBool>,
}

impl Pending {
    fn report(&self) -> ProgressReport {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        ProgressReport {
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            bytes_total: self.bytes_total.load(Ordering::Relaxed),
            log: std::mem::take(&mut *lines),
        }
    }
}

impl Progress for Pending {
    fn start(&self, label: &str, total: u64) {
        self.bytes_total.fetch_add(total, Ordering::Relaxed);
        self.log(&format!("reading {label}: {total} bytes"));
    }
    fn advance(&self, bytes: u64) {
        self.bytes_read.fetch_add(bytes, Ordering::Relaxed);
    }
    fn finish(&self) {}
    fn cancelled(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

impl SessionLog for Pending {
    fn log(&self, line: &str) {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line.to_string());
    }
}

/// Runs one session and reports it.
fn run_session(client: &Arc<Client>, work: &Work, roots: &SourceRoots) {
    let id = work.session.id;
    let taken_back = Arc::new(AtomicBool::new(false));
    let pending = Arc::new(Pending {
        stop: taken_back.clone(),
        ..Pending::default()
    });
    let done = Arc::new(AtomicBool::new(false));
    let reporter = {
        let (client, pending, done, taken_back) = (
            client.clone(),
            pending.clone(),
            done.clone(),
            taken_back.clone(),
        );
        std::thread::spawn(move || loop {
            let mut waited = Duration::ZERO;
            while waited < PROGRESS_EVERY && !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                waited += Duration::from_millis(100);
            }
            if done.load(Ordering::Relaxed) || taken_back.load(Ordering::Relaxed) {
                break;
            }
            send_progress(&client, id, &pending, &taken_back);
        })
    };
    let result = RemoteTarget::open(client.clone(), id)
        .map_err(|e| format!("opening an upload to the server: {}", error_chain(&e)))
        .and_then(|target| {
            let done = back_up_job(&target, &work.job, roots, &*pending);
            match &done {
                Ok(_) => {
                    if let Some(line) = target.retention() {
                        pending.log(&line);
                    }
                }
                Err(_) => target.abort(),
            }
            done
        });
    done.store(true, Ordering::Relaxed);
    let _ = reporter.join();
    if !taken_back.load(Ordering::Relaxed) {
        send_progress(client, id, &pending, &taken_back);
    }
    if taken_back.load(Ordering::Relaxed) {
        tracing::warn!(
            session = id,
            "the server took this session back: result not sent"
        );
        return;
    }
    let bytes_read = pending.bytes_read.load(Ordering::Relaxed);
    let report = match result {
        Ok(done) => FinishReport {
            bytes_read: done.bytes_read,
            bytes_stored: done.bytes_stored,
            restore_point: Some(done.restore_point),
            error: None,
        },
        Err(error) => FinishReport {
            bytes_read,
            bytes_stored: 0,
            restore_point: None,
            error: Some(error),
        },
    };
    match client.proxy_finish(id, &report) {
        Ok(s) => tracing::info!(session = id, state = s.state.as_str(), "session finished"),
        Err(e) => tracing::warn!(session = id, error = %e, "sending the result"),
    }
}

/// One progress call; marks the session taken back when the server says
/// so.
fn send_progress(client: &Client, id: i64, pending: &Pending, taken_back: &AtomicBool) {
    let report = pending.report();
    match client.proxy_progress(id, &report) {
        Ok(reply) if !reply.keep_going => {
            tracing::warn!(session = id, reason = reply.reason, "session taken back");
            taken_back.store(true, Ordering::Relaxed);
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(session = id, error = %e, "sending progress");
            // Keep the lines for the next call.
            let mut lines = pending.lines.lock().unwrap_or_else(|e| e.into_inner());
            let newer = std::mem::take(&mut *lines);
            *lines = report.log;
            lines.extend(newer);
        }
    }
}
