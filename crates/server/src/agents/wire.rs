//! What the server and its agents send each other: the agent's hello,
//! and the agent's own API (`/agent/v1/...`, which only the server calls)
//! for publications and scans. The server's API (`/api/v1/publications`,
//! `/api/v1/scans`) answers with the same [`Publication`] and
//! [`ScanResult`].

use crate::catalog::agents::Agent;
use serde::{Deserialize, Serialize};

/// The agent's publications: GET lists, POST publishes.
pub const PUBLICATIONS: &str = "/agent/v1/publications";
/// The agent's scans: POST scans and answers when done.
pub const SCANS: &str = "/agent/v1/scans";

/// The agent's publication `session`: DELETE unpublishes.
pub fn publication_path(session: &str) -> String {
    format!("{PUBLICATIONS}/{session}")
}

/// `POST /api/v1/agent/hello` body: where the agent listens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    pub port: u16,
    /// The address the server should call; default: the address the
    /// hello came from.
    #[serde(default)]
    pub host: Option<String>,
}

/// `POST /api/v1/agent/hello` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HelloReply {
    pub agent: Agent,
    /// SHA-256 of the server's own client certificate: the agent answers
    /// the holder of that certificate only.
    pub server_fingerprint: String,
}

/// What the server asks an agent to publish or scan: an exact restore
/// point of the repository at a path the agent opens itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnAgent {
    /// `vm@id`, resolved by the server.
    pub restore_point: String,
    pub repository_path: String,
}

/// One filesystem mount of a publication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedMount {
    pub volume: String,
    pub fstype: String,
    pub device: String,
    pub mount_point: String,
    pub mounted: bool,
    pub error: Option<String>,
}

/// A restore point published on an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    /// `AGENT:SESSION`, what `DELETE /api/v1/publications/{id}` takes.
    pub id: String,
    pub agent: String,
    /// The agent's publish session (`vm-N`).
    pub session: String,
    pub restore_point: String,
    pub repository_path: String,
    /// RFC 3339.
    pub since: String,
    /// `publishing`, `ready` or `failed`.
    pub status: String,
    /// The publisher process runs and its FUSE mount is there.
    pub alive: bool,
    /// Where the disks are (the FUSE mount of read-only disk files).
    pub disks_dir: String,
    pub mounts: Vec<PublishedMount>,
    pub problems: Vec<String>,
}

/// The id of `session` on `agent`.
pub fn publication_id(agent: &str, session: &str) -> String {
    format!("{agent}:{session}")
}

/// The agent and session of a publication id.
pub fn split_publication_id(id: &str) -> Option<(&str, &str)> {
    id.split_once(':')
        .filter(|(a, s)| !a.is_empty() && !s.is_empty())
}

/// `DELETE` of a publication: what was removed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unpublished {
    pub deleted: String,
}

/// The verdict of a scan, as `lifeboat scan`'s exit code says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Clean,
    Infected,
    /// Files or volumes could not be read.
    Incomplete,
    /// Nothing found, but nothing proved (no usable ClamAV database).
    Unproven,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Clean => "clean",
            Verdict::Infected => "infected",
            Verdict::Incomplete => "incomplete",
            Verdict::Unproven => "unproven",
        }
    }
}

/// A scan run on an agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanResult {
    pub agent: String,
    pub restore_point: String,
    pub verdict: Verdict,
    /// `lifeboat scan --json`'s report of the restore point (detections,
    /// engines, unreadable files).
    pub report: serde_json::Value,
}

/// `GET /api/v1/publications` answer: every agent's publications, and
/// the agents that could not be asked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublicationList {
    pub publications: Vec<Publication>,
    pub unreachable: Vec<Unreachable>,
}

/// An agent that did not answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unreachable {
    pub agent: String,
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publication_ids_split_at_the_first_colon() {
        let id = publication_id("a1", "web01-1");
        assert_eq!(split_publication_id(&id), Some(("a1", "web01-1")));
        assert_eq!(split_publication_id("a1"), None);
        assert_eq!(split_publication_id(":x"), None);
        assert_eq!(split_publication_id("a1:"), None);
    }
}
