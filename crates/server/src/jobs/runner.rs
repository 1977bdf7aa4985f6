//! The scheduler and the dispatcher, one loop ([`run`]) that wakes every
//! [`TICK`] or when a session is queued or ends: queue the jobs whose cron
//! time has come, then start queued sessions on worker threads while fewer
//! than `--max-jobs` run. At start, [`recover`] fails the sessions a
//! stopped server left behind (and tells the webhooks) and queues once
//! each job that fell due while the server was down (trigger `missed`).

use super::execute::run_job;
use super::progress::SessionProgress;
use super::schedule::{retry_delay_from, Schedule, MAX_RETRIES};
use super::webhook::Event;
use crate::catalog::audit::{Action, NewAudit};
use crate::catalog::jobs::Job;
use crate::catalog::now_text;
use crate::catalog::sessions::{Ending, Queued, Session, SessionState, Trigger, CANCELLED};
use crate::error::Result;
use crate::state::{AppState, Shared};
use chrono::{DateTime, Local, SecondsFormat, Utc};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How often the loop looks at the schedules and the queue by itself.
pub const TICK: Duration = Duration::from_secs(1);

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn local(text: &str) -> Option<DateTime<Local>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Local))
}

/// Queues a session of `job` that may start after `delay`, audits it and
/// logs it in the session; who asked is `actor` (`None`: the server).
pub fn queue(
    shared: &Shared,
    job: &str,
    trigger: Trigger,
    attempt: u32,
    delay: Duration,
    actor: Option<i64>,
    remote: Option<String>,
) -> Result<Queued> {
    let not_before = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
    let queued = shared
        .catalog
        .queue_session(job, trigger, attempt, &rfc3339(not_before))?;
    if let Queued::Queued(s) = &queued {
        let line = if delay.is_zero() {
            format!("queued ({}, attempt {attempt})", trigger.as_str())
        } else {
            format!(
                "queued ({}, attempt {attempt}), starts at {} at the earliest",
                trigger.as_str(),
                s.not_before
            )
        };
        shared.catalog.log_line(s.id, &line)?;
        shared.catalog.audit(&NewAudit {
            actor,
            action: Action::JobRun,
            target: Some(format!("job {job}")),
            success: true,
            remote,
            detail: Some(format!(
                "session {}, {}, attempt {attempt}",
                s.id,
                trigger.as_str()
            )),
        })?;
        tracing::info!(
            job,
            session = s.id,
            trigger = trigger.as_str(),
            attempt,
            "session queued"
        );
    }
    Ok(queued)
}

/// At start: fails what a stopped server left queued or running, then
/// queues once each job whose schedule fell due while it was down.
pub fn recover(shared: &Shared) -> Result<()> {
    let mut interrupted = Vec::new();
    for id in shared.catalog.interrupt_unfinished()? {
        tracing::warn!(session = id, "session interrupted by the last stop");
        interrupted.extend(shared.catalog.session(id)?);
    }
    if !interrupted.is_empty() {
        // Their webhooks, without holding up the start.
        let hooks = shared.webhooks.clone();
        std::thread::spawn(move || {
            for s in &interrupted {
                hooks.send(&Event::ended(s));
            }
        });
    }
    let now = Local::now();
    for job in shared.catalog.list_jobs()? {
        let Some((schedule, since)) = scheduled(&job) else {
            continue;
        };
        if let Some(due) = schedule.missed(&since, &now) {
            tracing::info!(job = job.name, due = %due, "schedule missed while the server was down: running once");
            queue(
                shared,
                &job.name,
                Trigger::Missed,
                1,
                Duration::ZERO,
                None,
                None,
            )?;
        }
        shared
            .catalog
            .set_last_scheduled(&job.name, &rfc3339(now.with_timezone(&Utc)))?;
    }
    Ok(())
}

/// A job's schedule and the time it was last queued (or created).
fn scheduled(job: &Job) -> Option<(Schedule, DateTime<Local>)> {
    if !job.enabled {
        return None;
    }
    let schedule = Schedule::parse(job.schedule.as_deref()?).ok()?;
    let since = local(job.last_scheduled.as_deref().unwrap_or(&job.created_at))?;
    Some((schedule, since))
}

/// The loop: schedules and dispatch until the runtime stops.
pub async fn run(state: AppState) {
    loop {
        let shared = state.inner.clone();
        let ticked = state
            .blocking(move |_| {
                schedule_due(&shared)?;
                expire_leases(&shared)?;
                dispatch(&shared)
            })
            .await;
        if let Err(e) = ticked {
            tracing::error!(error = %e, "job scheduler");
        }
        tokio::select! {
            () = state.inner.wake.notified() => {}
            () = tokio::time::sleep(TICK) => {}
        }
    }
}

/// Queues every job whose next cron time (after it was last queued) has
/// come; a job still running then skips that time.
fn schedule_due(shared: &Shared) -> Result<()> {
    let now = Local::now();
    for job in shared.catalog.list_jobs()? {
        let Some((schedule, since)) = scheduled(&job) else {
            continue;
        };
        if schedule.next_after(&since).is_none_or(|t| t > now) {
            continue;
        }
        shared
            .catalog
            .set_last_scheduled(&job.name, &rfc3339(now.with_timezone(&Utc)))?;
        if let Queued::Busy(s) = queue(
            shared,
            &job.name,
            Trigger::Schedule,
            1,
            Duration::ZERO,
            None,
            None,
        )? {
            tracing::warn!(
                job = job.name,
                session = s.id,
                "scheduled run skipped: the job is still running"
            );
        }
    }
    Ok(())
}

/// Fails the sessions of proxies that stopped renewing their lease (the
/// retry, if any, may go to another proxy).
fn expire_leases(shared: &Shared) -> Result<()> {
    for s in shared.catalog.expired_leases(&now_text())? {
        let proxy = s.proxy.clone().unwrap_or_default();
        let error = format!("proxy {proxy} stopped answering");
        let ending = Ending {
            state: SessionState::Failed,
            bytes_read: s.bytes_read,
            bytes_stored: 0,
            restore_point: None,
            error: Some(error.clone()),
        };
        if shared.catalog.end_proxy_session(s.id, &proxy, &ending)? {
            tracing::warn!(session = s.id, proxy, "lease expired: session failed");
            shared.catalog.log_line(s.id, &format!("failed: {error}"))?;
            conclude(shared, &s, &ending);
        }
    }
    Ok(())
}

/// Starts queued sessions whose time has come while fewer than
/// `max_jobs` run.
fn dispatch(shared: &Arc<Shared>) -> Result<()> {
    let max = shared.jobs.max_jobs.max(1);
    for s in shared.catalog.due_sessions(&now_text())? {
        if shared.running.load(Ordering::SeqCst) >= max {
            break;
        }
        // The cancel flag is there before the session shows as running,
        // so a cancel never finds a running session without one.
        let cancel = Arc::new(AtomicBool::new(false));
        lock(&shared.cancels).insert(s.id, cancel.clone());
        if !shared.catalog.start_session(s.id)? {
            lock(&shared.cancels).remove(&s.id);
            continue;
        }
        shared.running.fetch_add(1, Ordering::SeqCst);
        let worker = shared.clone();
        let id = s.id;
        let spawned = std::thread::Builder::new()
            .name(format!("job-{}", s.job))
            .spawn(move || {
                work(&worker, &s, cancel);
                worker.running.fetch_sub(1, Ordering::SeqCst);
                worker.wake.notify_one();
            });
        if let Err(e) = spawned {
            lock(&shared.cancels).remove(&id);
            shared.running.fetch_sub(1, Ordering::SeqCst);
            tracing::error!(error = %e, "starting a worker thread");
        }
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Asks session `id`, run by the server itself, to stop; false when it
/// does not run here.
pub fn cancel_running(shared: &Shared, id: i64) -> bool {
    match lock(&shared.cancels).get(&id) {
        Some(flag) => {
            flag.store(true, Ordering::Relaxed);
            true
        }
        None => false,
    }
}

/// Runs one session to its end: the backup, the catalog, the audit, the
/// retry and the webhooks.
fn work(shared: &Shared, s: &Session, cancel: Arc<AtomicBool>) {
    let progress = SessionProgress::new(&shared.catalog, s.id, cancel.clone());
    progress.log(&format!(
        "started ({}, attempt {}) on the server itself",
        s.trigger.as_str(),
        s.attempt
    ));
    let result = match shared.catalog.job(&s.job) {
        Ok(Some(job)) => match shared.repositories.get(&job.repository) {
            Some(served) => run_job(&served.repo, &job, &shared.jobs.source_roots, &progress),
            None => Err(format!(
                "repository {:?} is not served by this server (serve --repo NAME=PATH)",
                job.repository
            )),
        },
        Ok(None) => Err(format!("job {:?} was deleted", s.job)),
        Err(e) => Err(e.to_string()),
    };
    lock(&shared.cancels).remove(&s.id);
    let result = match result {
        Err(_) if cancel.load(Ordering::Relaxed) => Err(CANCELLED.to_string()),
        other => other,
    };
    let ending = match result {
        Ok(done) => Ending {
            state: SessionState::Succeeded,
            bytes_read: done.bytes_read,
            bytes_stored: done.bytes_stored,
            restore_point: Some(done.restore_point),
            error: None,
        },
        Err(error) => {
            progress.log(&format!("failed: {error}"));
            Ending {
                state: SessionState::Failed,
                bytes_read: progress.bytes_read(),
                bytes_stored: 0,
                restore_point: None,
                error: Some(error),
            }
        }
    };
    if let Err(e) = shared.catalog.end_session(s.id, &ending) {
        tracing::error!(session = s.id, error = %e, "ending a session");
    }
    conclude(shared, s, &ending);
}

/// What follows a session's end in the catalog (by the server's worker,
/// a proxy's finish or an expired lease): its last log line, the audit,
/// the retry and the webhooks.
pub fn conclude(shared: &Shared, s: &Session, ending: &Ending) {
    shared.uploads.drop_session(s.id);
    if let Err(e) = end(shared, s, ending) {
        tracing::error!(session = s.id, error = %e, "ending a session");
    }
    match shared.catalog.session(s.id) {
        Ok(Some(ended)) => shared.webhooks.send(&Event::ended(&ended)),
        Ok(None) => {}
        Err(e) => tracing::error!(session = s.id, error = %e, "reading an ended session"),
    }
}

fn end(shared: &Shared, s: &Session, ending: &Ending) -> Result<()> {
    let failed = ending.state == SessionState::Failed;
    shared
        .catalog
        .log_line(s.id, &format!("ended: {}", ending.state.as_str()))?;
    shared.catalog.audit(&NewAudit {
        actor: None,
        action: Action::SessionEnd,
        target: Some(format!("job {}", s.job)),
        success: true,
        remote: None,
        detail: Some(format!(
            "session {} {}{}",
            s.id,
            ending.state.as_str(),
            ending
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )),
    })?;
    tracing::info!(
        job = s.job,
        session = s.id,
        state = ending.state.as_str(),
        "session ended"
    );
    let cancelled = ending.error.as_deref() == Some(CANCELLED);
    if failed && !cancelled && s.attempt <= MAX_RETRIES && shared.catalog.job(&s.job)?.is_some() {
        let delay = retry_delay_from(shared.jobs.retry_base, s.attempt);
        if let Queued::Queued(r) = queue(
            shared,
            &s.job,
            Trigger::Retry,
            s.attempt + 1,
            delay,
            None,
            None,
        )? {
            shared.catalog.log_line(
                s.id,
                &format!("retry: session {} in {} s", r.id, delay.as_secs()),
            )?;
        }
    }
    Ok(())
}
