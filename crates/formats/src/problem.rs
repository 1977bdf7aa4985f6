//! Typed problems of volume discovery and publishing: every problem says
//! what it means for the data ([`ProblemKind`]) beside the message a person
//! reads, so consumers (a scan deciding whether a restore point was read in
//! full, a volume list printing warnings) decide by kind, never by matching
//! message text.
//!
//! Design notes:
//! - The code that finds a problem chooses its kind; a message is never
//!   re-read to guess it. When in doubt the kind is [`ProblemKind::Unserved`]:
//!   a scan must not call a restore point clean because a problem was
//!   wrongly taken for harmless.
//! - Serialized as `{"kind": "unserved", "message": "..."}`. A bare string
//!   (how publisher state files recorded problems before kinds existed)
//!   still deserializes, as kind `Unserved`.
//! - `Display` prints the message alone, so printed text is unchanged.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What a problem means for the data of the restore point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// Data on the disks that will not be readable: an unreadable or damaged
    /// partition table, a skipped partition (out of range, overlapping),
    /// damaged LVM metadata, a missing PV, an LV that cannot be assembled,
    /// a volume whose filesystem could not be probed.
    Unserved,
    /// A filesystem was found but mounting it failed. The publisher also
    /// records it in its mount list, with its disk, volume and error.
    NotMounted,
    /// Harmless: everything is served all the same (the backup GPT used in
    /// place of a damaged primary, an empty partition entry, a VG served
    /// under a suffixed name because another has the same name, a volume
    /// holding no filesystem).
    Note,
}

impl ProblemKind {
    /// True when some data is not served (everything but [`ProblemKind::Note`]).
    pub fn leaves_data_unserved(self) -> bool {
        match self {
            ProblemKind::Unserved | ProblemKind::NotMounted => true,
            ProblemKind::Note => false,
        }
    }
}

/// One problem of volume discovery or publishing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "ProblemRepr")]
pub struct VolumeProblem {
    pub kind: ProblemKind,
    /// What happened, naming the disk / volume / VG concerned.
    pub message: String,
}

impl VolumeProblem {
    pub fn new(kind: ProblemKind, message: impl Into<String>) -> Self {
        VolumeProblem {
            kind,
            message: message.into(),
        }
    }

    /// A problem that leaves data unserved.
    pub fn unserved(message: impl Into<String>) -> Self {
        Self::new(ProblemKind::Unserved, message)
    }

    /// A harmless problem.
    pub fn note(message: impl Into<String>) -> Self {
        Self::new(ProblemKind::Note, message)
    }

    /// The same problem with `prefix` put before its message.
    pub fn prefixed(&self, prefix: &str) -> Self {
        Self::new(self.kind, format!("{prefix}{}", self.message))
    }
}

impl fmt::Display for VolumeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The messages of `problems` joined by `sep` (as `[String]::join`).
pub fn join(problems: &[VolumeProblem], sep: &str) -> String {
    problems
        .iter()
        .map(|p| p.message.as_str())
        .collect::<Vec<_>>()
        .join(sep)
}

/// What a serialized problem may look like.
#[derive(Deserialize)]
#[serde(untagged)]
enum ProblemRepr {
    Typed {
        kind: ProblemKind,
        message: String,
    },
    /// A state file written before problems had kinds.
    Legacy(String),
}

impl From<ProblemRepr> for VolumeProblem {
    fn from(r: ProblemRepr) -> Self {
        match r {
            ProblemRepr::Typed { kind, message } => VolumeProblem { kind, message },
            ProblemRepr::Legacy(message) => VolumeProblem::unserved(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_message_and_prefix_keeps_the_kind() {
        let p = VolumeProblem::note("partition 3 is empty").prefixed("disk0p3 skipped: ");
        assert_eq!(p.to_string(), "disk0p3 skipped: partition 3 is empty");
        assert_eq!(p.kind, ProblemKind::Note);
        assert!(!p.kind.leaves_data_unserved());
        assert!(ProblemKind::Unserved.leaves_data_unserved());
        assert!(ProblemKind::NotMounted.leaves_data_unserved());
    }
}
