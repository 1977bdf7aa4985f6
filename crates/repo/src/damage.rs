//! Damage found in a repository's own files, in one shape for every kind of
//! file (config, key slot, manifest, index, chunk): which file, what is
//! wrong with it, and which restore points depend on it. `verify`, `list`,
//! gc and `repo repair` all report damage as [`FileDamage`], so a user sees
//! the same words whichever command found it.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The kind of repository file that is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// `config`: every restore point depends on it.
    Config,
    /// A key slot (a wrapped copy of the master key): every restore point
    /// depends on at least one intact slot.
    KeySlot,
    /// `snapshots/<vm>/<id>.manifest`: its own restore point.
    Manifest,
    /// `indexes/<vm>/<id>/<disk>.idx`: its own restore point.
    Index,
    /// `chunks/<xx>/<digest>`: every restore point whose indexes name it.
    Chunk,
}

impl FileKind {
    /// The word used in messages: `config`, `key slot`, `manifest`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Config => "config",
            FileKind::KeySlot => "key slot",
            FileKind::Manifest => "manifest",
            FileKind::Index => "index",
            FileKind::Chunk => "chunk",
        }
    }
}

/// What is wrong with a damaged file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DamageState {
    /// The file should exist and does not.
    Missing,
    /// The file exists but does not read back: truncated, flipped bytes,
    /// swapped for another file, failed authentication.
    Corrupt,
    /// Moved aside into `quarantine/` by verify or `repo repair`.
    Quarantined,
}

/// One damaged file and the restore points it takes with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileDamage {
    pub kind: FileKind,
    pub path: PathBuf,
    pub state: DamageState,
    /// Why it is damaged, from the error that found it.
    pub detail: String,
    /// True for the config and the key slots: nothing reads without them.
    pub all_restore_points: bool,
    /// Restore points (`vm@id`) that depend on the file.
    pub restore_points: Vec<String>,
    /// For a chunk: the (restore point, disk) pairs whose index names it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub used_by: Vec<(String, String)>,
}

impl std::fmt::Display for FileDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            DamageState::Missing => "missing",
            DamageState::Corrupt => "damaged",
            DamageState::Quarantined => "quarantined",
        };
        write!(
            f,
            "{} {} is {state}: {}",
            self.kind.as_str(),
            self.path.display(),
            self.detail
        )
    }
}
