//! Application-aware processing: the guest helper runs the user's
//! pre-freeze script before the guest agent freezes the filesystems and
//! the post-thaw script after the thaw, and the restore point is
//! application-consistent only when all of it went right.
//!
//! [`AppAware::start`] (never fails) makes the backup's two identities,
//! injects and starts the helper (`helper_inject`) and connects to it
//! (`helper_session`), retrying until the helper listens or
//! [`AppAwareOptions::start_timeout`] passes; a helper that exited, a
//! certificate that fails its pin, or any other fault is recorded and the
//! backup goes on without it. [`AppAware::pre_freeze`],
//! [`AppAware::post_thaw`] (always, when the pre-freeze script ran) and
//! [`AppAware::finish`] (quit, remove the helper's directory) follow;
//! [`AppAware::consistency`] turns the filesystem-level outcome into the
//! restore point's. Every script line is logged and kept in the report.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use lifeboat_guest_helper::layout::{DEFAULT_IDLE_TIMEOUT, DEFAULT_PORT};
use lifeboat_guest_helper::pin::client_config;
use lifeboat_guest_helper::wire::{Phase, ScriptEnd, Stream};
use lifeboat_repo::{Consistency, ConsistencyLevel};
use serde::Serialize;

use crate::agent::AgentClient;
use crate::helper_certs::make_identities;
use crate::helper_inject::{inject, stop, Payload, Started};
use crate::helper_session::{ConnectError, HelperSession};

/// How to run application-aware processing.
#[derive(Debug, Clone)]
pub struct AppAwareOptions {
    /// The statically linked `lifeboat-guest-helper` binary on this host.
    pub helper_bin: PathBuf,
    /// The script run in the guest before the freeze.
    pub pre_freeze: PathBuf,
    /// The script run in the guest after the thaw.
    pub post_thaw: Option<PathBuf>,
    /// Each script's timeout (the helper kills it then).
    pub script_timeout: Duration,
    /// Where the proxy reaches the helper (`HOST:PORT`); `None`: the
    /// guest's first IPv4 address the agent reports, at [`Self::port`].
    pub address: Option<String>,
    /// The port the helper listens on in the guest.
    pub port: u16,
    /// The directory in the guest under which the helper's own is made.
    pub guest_parent: String,
    /// How long the helper has to start listening.
    pub start_timeout: Duration,
    /// The helper exits after this long without a request.
    pub idle_timeout: Duration,
}

impl AppAwareOptions {
    /// The defaults: port 3542, under `/run`, 60 s per script, 30 s to start.
    pub fn new(helper_bin: impl Into<PathBuf>, pre_freeze: impl Into<PathBuf>) -> Self {
        AppAwareOptions {
            helper_bin: helper_bin.into(),
            pre_freeze: pre_freeze.into(),
            post_thaw: None,
            script_timeout: Duration::from_secs(60),
            address: None,
            port: DEFAULT_PORT,
            guest_parent: "/run".into(),
            start_timeout: Duration::from_secs(30),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// One line of a script's output.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OutputLine {
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    pub text: String,
}

/// How one script ran.
#[derive(Debug, Clone, Serialize)]
pub struct ScriptReport {
    /// `pre-freeze` or `post-thaw`.
    pub phase: String,
    /// `exited`, `killed`, `timed_out`, `not_run`, or `lost` (the session
    /// with the helper failed while it ran).
    pub status: &'static str,
    /// The exit status, when it exited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// In words.
    pub result: String,
    pub output: Vec<OutputLine>,
    pub elapsed_ms: u64,
    #[serde(skip)]
    succeeded: bool,
}

impl ScriptReport {
    /// Exited with status 0.
    pub fn succeeded(&self) -> bool {
        self.succeeded
    }
}

/// What application-aware processing did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct AppAwareReport {
    /// Where the helper was reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Its directory in the guest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_freeze: Option<ScriptReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_thaw: Option<ScriptReport>,
    /// The helper's directory is gone from the guest.
    pub removed: bool,
    /// What went wrong, when something did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

/// Application-aware processing for one backup.
#[derive(Debug)]
pub struct AppAware {
    opts: AppAwareOptions,
    started: Option<Started>,
    session: Option<HelperSession>,
    report: AppAwareReport,
    finished: bool,
}

impl AppAware {
    /// Without a guest agent nothing can be injected.
    pub fn without_agent(opts: &AppAwareOptions, why: &str) -> AppAware {
        let mut a = AppAware::new(opts);
        a.fault(format!("no guest agent ({why})"));
        a.finished = true;
        a
    }

    fn new(opts: &AppAwareOptions) -> AppAware {
        AppAware {
            opts: opts.clone(),
            started: None,
            session: None,
            report: AppAwareReport::default(),
            finished: false,
        }
    }

    fn fault(&mut self, why: String) {
        tracing::warn!("application-aware processing: {why}");
        if self.report.fault.is_none() {
            self.report.fault = Some(why);
        }
    }

    /// Injects, starts and connects to the helper. Never fails: a fault is
    /// recorded and the backup goes on without application awareness.
    pub fn start(agent: &mut AgentClient, opts: &AppAwareOptions) -> AppAware {
        let mut a = AppAware::new(opts);
        if let Err(why) = a.try_start(agent) {
            a.fault(why);
        }
        a
    }

    fn try_start(&mut self, agent: &mut AgentClient) -> Result<(), String> {
        let read = |p: &PathBuf, what: &str| {
            std::fs::read(p).map_err(|e| format!("cannot read {what} {}: {e}", p.display()))
        };
        let binary = read(&self.opts.helper_bin, "the guest helper binary")
            .map_err(|e| format!("the helper could not start: {e}"))?;
        let pre = read(&self.opts.pre_freeze, "the pre-freeze script")?;
        let post = match &self.opts.post_thaw {
            Some(p) => Some(read(p, "the post-thaw script")?),
            None => None,
        };
        let ids = make_identities().map_err(|e| format!("making the certificates: {e}"))?;
        let tls = client_config(&ids.proxy, &ids.helper.cert).map_err(|e| e.to_string())?;
        let address = match &self.opts.address {
            Some(a) => a.clone(),
            None => match agent.ipv4_addresses() {
                Ok(ips) => match ips.first() {
                    Some(ip) => format!("{ip}:{}", self.opts.port),
                    None => {
                        return Err("the guest agent reports no IPv4 address for the helper \
                                    (give --guest-helper-address)"
                            .into())
                    }
                },
                Err(e) => return Err(format!("finding the guest's address: {e}")),
            },
        };
        self.report.address = Some(address.clone());
        let payload = Payload {
            binary: &binary,
            pre_freeze: &pre,
            post_thaw: post.as_deref(),
            ids: &ids,
            parent: &self.opts.guest_parent,
            port: self.opts.port,
            idle_timeout: self.opts.idle_timeout,
        };
        let t0 = Instant::now();
        let started =
            inject(agent, &payload).map_err(|e| format!("the helper could not start: {e}"))?;
        tracing::info!(dir = %started.dir, took = ?t0.elapsed(), "guest helper copied and started");
        self.report.guest_dir = Some(started.dir.clone());
        let pid = started.pid;
        self.started = Some(started);
        let deadline = Instant::now() + self.opts.start_timeout;
        loop {
            match HelperSession::connect(&address, tls.clone(), Duration::from_secs(5)) {
                Ok(s) => {
                    tracing::info!(%address, took = ?t0.elapsed(), "connected to the guest helper");
                    self.session = Some(s);
                    return Ok(());
                }
                Err(ConnectError::Mismatch { addr, detail }) => {
                    return Err(format!(
                        "certificate mismatch: the helper at {addr} was refused ({detail})"
                    ))
                }
                Err(ConnectError::Other { detail, .. }) => {
                    match agent.exec_status(pid) {
                        Ok(s) if s.exited => {
                            return Err(format!(
                                "the helper could not start: it exited ({})",
                                s.describe()
                            ));
                        }
                        Ok(_) => {}
                        Err(e) => tracing::debug!(error = %e, "the guest helper's status"),
                    }
                    if Instant::now() >= deadline {
                        return Err(format!(
                            "the helper could not start: not reachable at {address} within \
                             {:?}: {detail}",
                            self.opts.start_timeout
                        ));
                    }
                    tracing::debug!(%address, %detail, "the guest helper does not answer yet");
                    std::thread::sleep(Duration::from_millis(300));
                }
            }
        }
    }

    /// Runs the pre-freeze script (when the helper is up).
    pub fn pre_freeze(&mut self) {
        self.report.pre_freeze = self.run(Phase::PreFreeze);
    }

    /// Runs the post-thaw script: when the pre-freeze script ran, whatever
    /// happened since.
    pub fn post_thaw(&mut self) {
        if self.report.pre_freeze.is_some()
            && self.report.post_thaw.is_none()
            && self.opts.post_thaw.is_some()
        {
            self.report.post_thaw = self.run(Phase::PostThaw);
        }
    }

    fn run(&mut self, phase: Phase) -> Option<ScriptReport> {
        let session = self.session.as_mut()?;
        let t0 = Instant::now();
        let mut output = Vec::new();
        let name = phase.to_string();
        let mut line = |stream: Stream, text: String| {
            let stream = match stream {
                Stream::Stdout => "stdout",
                Stream::Stderr => "stderr",
            };
            tracing::info!(script = %name, stream, "{text}");
            output.push(OutputLine { stream, text });
        };
        let end = session.run(phase, self.opts.script_timeout, &mut line);
        let elapsed_ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (status, exit_code, result, succeeded) = match &end {
            Ok(e) => (
                match e {
                    ScriptEnd::Exited(_) => "exited",
                    ScriptEnd::Killed(_) => "killed",
                    ScriptEnd::TimedOut(_) => "timed_out",
                    ScriptEnd::NotRun(_) => "not_run",
                },
                match e {
                    ScriptEnd::Exited(c) => Some(*c),
                    _ => None,
                },
                e.to_string(),
                e.succeeded(),
            ),
            Err(e) => (
                "lost",
                None,
                format!("was lost: the session with the helper failed: {e}"),
                false,
            ),
        };
        tracing::info!(script = %name, elapsed_ms, "the {name} script {result}");
        if end.is_err() {
            self.session = None;
            self.fault(format!("the {name} script {result}"));
        }
        Some(ScriptReport {
            phase: name,
            status,
            exit_code,
            result,
            output,
            elapsed_ms,
            succeeded,
        })
    }

    /// Ends the session and removes the helper from the guest (through a
    /// fresh agent connection: the freeze took the earlier one).
    pub fn finish(&mut self, agent: Option<&mut AgentClient>) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        // A helper that said Bye exits at once; one never reached (or lost)
        // would wait for its idle timeout: it is killed without waiting.
        let mut wait = Duration::ZERO;
        if let Some(s) = self.session.take() {
            match s.quit() {
                Ok(()) => wait = Duration::from_secs(10),
                Err(e) => tracing::warn!(error = %e, "ending the session with the guest helper"),
            }
        }
        let Some(started) = self.started.take() else {
            // Nothing was made in the guest, or inject removed it.
            self.report.removed = true;
            return;
        };
        let Some(agent) = agent else {
            self.fault(format!(
                "the helper's directory {} could not be removed: no guest agent",
                started.dir
            ));
            return;
        };
        match stop(agent, &started, wait) {
            Ok(()) => {
                tracing::info!(dir = %started.dir, "guest helper removed");
                self.report.removed = true;
            }
            Err(e) => tracing::warn!(error = %e, "removing the guest helper"),
        }
    }

    /// Whether application consistency was earned, and in words why (not).
    fn verdict(&self) -> Result<String, String> {
        if let Some(f) = &self.report.fault {
            if self.report.pre_freeze.is_none() {
                return Err(f.clone());
            }
        }
        let pre = self
            .report
            .pre_freeze
            .as_ref()
            .ok_or("the pre-freeze script did not run")?;
        if !pre.succeeded() {
            return Err(format!("the pre-freeze script {}", pre.result));
        }
        let post = match (&self.opts.post_thaw, &self.report.post_thaw) {
            (None, _) => "no post-thaw script".to_string(),
            (Some(_), Some(p)) if p.status != "lost" => {
                format!("the post-thaw script {}", p.result)
            }
            (Some(_), Some(p)) => return Err(format!("the post-thaw script {}", p.result)),
            (Some(_), None) => return Err("the post-thaw script did not run".into()),
        };
        Ok(format!("the pre-freeze script succeeded, {post}"))
    }

    /// The restore point's consistency, given the freeze's `fs` outcome.
    pub fn consistency(&self, fs: Consistency) -> Consistency {
        let fs_why = fs.why.clone().unwrap_or_default();
        match (fs.level, self.verdict()) {
            (ConsistencyLevel::Filesystem, Ok(v)) => Consistency {
                level: ConsistencyLevel::Application,
                why: Some(format!("{v}; {fs_why}")),
                ..fs
            },
            (_, Ok(_)) => Consistency {
                why: Some(format!(
                    "not application-consistent: the filesystems were not frozen; {fs_why}"
                )),
                ..fs
            },
            (_, Err(why)) => Consistency {
                why: Some(format!("not application-consistent: {why}; {fs_why}")),
                ..fs
            },
        }
    }

    /// What happened, for the backup's report.
    pub fn report(&self) -> AppAwareReport {
        self.report.clone()
    }
}
