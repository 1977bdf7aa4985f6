//! [`Check`]: the verdict of one probe, for people (a line) and for
//! machines (`--json`).

use serde::Serialize;

/// How a probe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Proven to work, as `detail` says.
    Pass,
    /// Works, but something was not proven or is close to a limit.
    Warn,
    /// Does not work; `fix` says what to open or change.
    Fail,
}

/// One probe's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was probed, e.g. `server TLS`.
    pub name: String,
    /// Where: `host:port`, a socket path.
    pub target: String,
    pub outcome: Outcome,
    /// What was proven, or what went wrong.
    pub detail: String,
    /// What to do about a warning or a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub fn pass(name: &str, target: &str, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            target: target.into(),
            outcome: Outcome::Pass,
            detail: detail.into(),
            fix: None,
        }
    }

    pub fn warn(
        name: &str,
        target: &str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check::pass(name, target, detail).with_fix(Outcome::Warn, fix)
    }

    pub fn fail(
        name: &str,
        target: &str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check::pass(name, target, detail).with_fix(Outcome::Fail, fix)
    }

    fn with_fix(self, outcome: Outcome, fix: impl Into<String>) -> Check {
        Check {
            outcome,
            fix: Some(fix.into()),
            ..self
        }
    }
}
