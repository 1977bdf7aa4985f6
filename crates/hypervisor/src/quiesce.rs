//! Quiescing the guest for the point in time, and the consistency it earns.
//!
//! [`Quiesce::connect`] reaches the guest agent (when one is given) before
//! anything else happens; as a [`PointInTimeHook`] it freezes the guest's
//! filesystems just before the point in time and thaws them right after
//! (bounded by [`crate::MAX_FREEZE`]: see `agent`). [`Quiesce::consistency`]
//! is what the restore point records:
//!
//! - `filesystem`: the freeze held across the whole point in time;
//! - `crash`: no agent given, the agent missing or not answering within its
//!   timeout, the freeze refused, or the freeze's bound passed before the
//!   point in time was taken (the watchdog thawed first). `why` says which.
//!
//! With [`AgentOptions::app_aware`], the guest helper (`app_aware`) is
//! started when the agent connects, runs the pre-freeze script just before
//! the freeze and the post-thaw script just after the thaw (also when the
//! freeze or the point in time failed, and on drop), and is removed; the
//! point in time is then `application`-consistent when the freeze held and
//! the scripts did their part, else the level above with why not.
//!
//! On connecting, a guest that an earlier, killed backup left frozen is
//! thawed first (`AgentClient::thaw_left_frozen`).
//!
//! Nothing here fails the backup: a guest that cannot be frozen is backed
//! up crash-consistent, and says so.

use std::path::PathBuf;
use std::time::Duration;

use lifeboat_repo::{Consistency, ConsistencyLevel};

use crate::agent::{AgentClient, FreezeGuard, MAX_FREEZE};
use crate::app_aware::{AppAware, AppAwareOptions, AppAwareReport};
use crate::fleece::PointInTimeHook;

/// Where the guest agent is, and how long to wait for it.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The host side of the agent's virtio-serial chardev (a unix socket).
    pub socket: PathBuf,
    /// Timeout of each agent command (connect and resync included).
    pub timeout: Duration,
    /// The longest the filesystems may stay frozen (cut to [`MAX_FREEZE`]).
    pub max_freeze: Duration,
    /// Application-aware processing through the guest helper (`None`: none).
    pub app_aware: Option<AppAwareOptions>,
}

impl AgentOptions {
    /// `socket` with the default timeout and the longest freeze.
    pub fn new(socket: impl Into<PathBuf>) -> AgentOptions {
        AgentOptions {
            socket: socket.into(),
            timeout: crate::agent::AGENT_TIMEOUT,
            max_freeze: MAX_FREEZE,
            app_aware: None,
        }
    }
}

/// The guest's quiescing for one point in time.
#[derive(Debug)]
pub struct Quiesce {
    agent: Option<AgentClient>,
    max_freeze: Duration,
    guard: Option<FreezeGuard>,
    outcome: Consistency,
    /// The agent's socket and timeout, to reconnect for the helper's removal.
    reconnect: Option<(PathBuf, Duration)>,
    app: Option<AppAware>,
    /// The post-thaw script ran (or could not) and the outcome includes it.
    app_done: bool,
}

fn crash(why: String) -> Consistency {
    Consistency {
        level: ConsistencyLevel::Crash,
        why: Some(why),
        frozen_filesystems: 0,
        frozen_ms: 0,
    }
}

impl Quiesce {
    /// Connects to the agent (`None`: none given). Never fails: an agent
    /// that cannot be reached makes the backup crash-consistent.
    pub fn connect(agent: Option<&AgentOptions>) -> Quiesce {
        let Some(opts) = agent else {
            return Quiesce {
                agent: None,
                max_freeze: MAX_FREEZE,
                guard: None,
                outcome: crash(
                    "no guest agent given (--guest-agent): the guest's filesystems were not \
                     frozen"
                        .into(),
                ),
                reconnect: None,
                app: None,
                app_done: false,
            };
        };
        let app;
        let (agent, outcome) = match AgentClient::connect(&opts.socket, opts.timeout) {
            Ok(mut client) => {
                // A backup killed while the guest was frozen left it so.
                if let Err(e) = client.thaw_left_frozen() {
                    tracing::warn!(error = %e, "checking whether the guest was left frozen");
                }
                app = opts
                    .app_aware
                    .as_ref()
                    .map(|a| AppAware::start(&mut client, a));
                (
                    Some(client),
                    crash("the point in time was not taken".into()),
                )
            }
            Err(e) => {
                tracing::warn!(error = %e, "guest agent unusable: the backup is crash-consistent");
                app = opts
                    .app_aware
                    .as_ref()
                    .map(|a| AppAware::without_agent(a, &e.to_string()));
                (
                    None,
                    crash(format!("{e}: the guest's filesystems were not frozen")),
                )
            }
        };
        Quiesce {
            agent,
            max_freeze: opts.max_freeze.min(MAX_FREEZE),
            guard: None,
            outcome,
            reconnect: Some((opts.socket.clone(), opts.timeout)),
            app,
            app_done: false,
        }
    }

    /// Whether an agent answered and a freeze will be tried.
    pub fn has_agent(&self) -> bool {
        self.agent.is_some()
    }

    /// The consistency of the point in time (after [`PointInTimeHook::after`]).
    pub fn consistency(&self) -> Consistency {
        self.outcome.clone()
    }

    /// What application-aware processing did (when it was asked for).
    pub fn app_report(&self) -> Option<AppAwareReport> {
        self.app.as_ref().map(AppAware::report)
    }

    /// The post-thaw script (when the pre-freeze script ran) and the
    /// helper's removal; the consistency then earned.
    fn finish_app(&mut self) {
        if std::mem::replace(&mut self.app_done, true) {
            return;
        }
        let Some(app) = self.app.as_mut() else {
            return;
        };
        app.post_thaw();
        let mut agent = self.agent.take().or_else(|| {
            let (socket, timeout) = self.reconnect.as_ref()?;
            AgentClient::connect(socket, *timeout)
                .map_err(|e| tracing::warn!(error = %e, "reconnecting to the guest agent"))
                .ok()
        });
        app.finish(agent.as_mut());
        self.outcome = app.consistency(self.outcome.clone());
    }
}

impl Drop for Quiesce {
    fn drop(&mut self) {
        // A point in time that never came (or a hook whose `after` never
        // ran): thaw first (the guard), then the post-thaw script and removal.
        if let Some(guard) = self.guard.take() {
            drop(guard.thaw());
        }
        self.finish_app();
    }
}

impl PointInTimeHook for Quiesce {
    fn before(&mut self) {
        if let Some(app) = self.app.as_mut() {
            app.pre_freeze();
        }
        let Some(agent) = self.agent.take() else {
            return;
        };
        match agent.freeze(self.max_freeze) {
            Ok(guard) => self.guard = Some(guard),
            Err(e) => {
                tracing::warn!(error = %e, "the backup is crash-consistent");
                self.outcome = crash(format!("{e}: the guest's filesystems were not frozen"));
            }
        }
    }

    fn after(&mut self) {
        self.thaw();
        self.finish_app();
    }
}

impl Quiesce {
    fn thaw(&mut self) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        let max = guard.max();
        let t = guard.thaw();
        if let Err(e) = &t.thaw {
            tracing::error!(error = %e, "thawing the guest failed");
        }
        let frozen_ms = u64::try_from(t.frozen_for.as_millis()).unwrap_or(u64::MAX);
        self.outcome = if t.by_watchdog {
            Consistency {
                frozen_filesystems: 0,
                frozen_ms,
                ..crash(format!(
                    "the freeze reached its bound of {max:?} before the point in time was \
                     taken: the guest was thawed first"
                ))
            }
        } else {
            let n = t.frozen_filesystems;
            let thaw_note = match &t.thaw {
                Ok(_) => String::new(),
                Err(e) => format!("; THAWING FAILED ({e}): thaw the guest by hand"),
            };
            Consistency {
                level: ConsistencyLevel::Filesystem,
                why: Some(format!(
                    "{n} filesystem{} frozen by the guest agent for {frozen_ms} ms{thaw_note}",
                    if n == 1 { "" } else { "s" }
                )),
                frozen_filesystems: n,
                frozen_ms,
            }
        };
    }
}
