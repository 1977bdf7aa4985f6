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
//! Nothing here fails the backup: a guest that cannot be frozen is backed
//! up crash-consistent, and says so.

use std::path::PathBuf;
use std::time::Duration;

use lifeboat_repo::{Consistency, ConsistencyLevel};

use crate::agent::{AgentClient, FreezeGuard, MAX_FREEZE};
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
}

impl AgentOptions {
    /// `socket` with the default timeout and the longest freeze.
    pub fn new(socket: impl Into<PathBuf>) -> AgentOptions {
        AgentOptions {
            socket: socket.into(),
            timeout: crate::agent::AGENT_TIMEOUT,
            max_freeze: MAX_FREEZE,
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
            };
        };
        let (agent, outcome) = match AgentClient::connect(&opts.socket, opts.timeout) {
            Ok(client) => (
                Some(client),
                crash("the point in time was not taken".into()),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "guest agent unusable: the backup is crash-consistent");
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
}

impl PointInTimeHook for Quiesce {
    fn before(&mut self) {
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
