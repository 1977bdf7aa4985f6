//! The agent's publications: what `lifeboat publish` does on its own
//! host ([`lifeboat_publish::publish`]: disk files on FUSE, a loop device
//! per partition and LV, filesystems mounted read-only), with the state
//! files in `<data-dir>/publications`, so the agent's publications are
//! its own and the state says what is mounted (the agent is the truth
//! for it). The publisher processes are `lifeboat publish-daemon`.

use crate::AgentConfig;
use lifeboat_server::agents::wire::{self, OnAgent, Publication, PublishedMount, Unpublished};
use lifeboat_server::{error_chain, Error, ErrorKind};
use std::path::Path;

/// Publishes the restore point of `ask`; agent `agent`'s publication.
pub fn publish(config: &AgentConfig, agent: &str, ask: &OnAgent) -> Result<Publication, Error> {
    let path = Path::new(&ask.repository_path);
    let repo =
        lifeboat_repo::Repository::open(path, config.passphrase.as_deref()).map_err(|source| {
            Error::Repository {
                name: ask.repository_path.clone(),
                source,
            }
        })?;
    let opts = lifeboat_publish::PublishOptions {
        repo: path.to_path_buf(),
        restore_point: ask.restore_point.clone(),
        mount_root: config.mount_root.clone(),
        state_dir: config.publish_state(),
        disks: Vec::new(),
        block_store: None,
        group: None,
    };
    let mut daemon = std::process::Command::new(&config.program);
    daemon.arg("publish-daemon");
    let state = lifeboat_publish::publish(&opts, &repo, daemon)
        .map_err(|e| publish_error(&format!("publishing {}", ask.restore_point), e))?;
    tracing::info!(
        session = state.session,
        restore_point = state.restore_point,
        "published"
    );
    Ok(publication(agent, &state, true))
}

/// Every publication of the agent.
pub fn list(config: &AgentConfig, agent: &str) -> Result<Vec<Publication>, Error> {
    let sessions = lifeboat_publish::published(&config.publish_state())
        .map_err(|e| publish_error("listing publications", e))?;
    Ok(sessions
        .iter()
        .map(|p| publication(agent, &p.state, p.alive))
        .collect())
}

/// Unpublishes `session`: mounts, loop devices, the FUSE mount and the
/// publisher go.
pub fn unpublish(config: &AgentConfig, agent: &str, session: &str) -> Result<Unpublished, Error> {
    lifeboat_formats::safe_name(session)
        .map_err(|e| Error::bad_request(format!("session {session:?}: {e}")))?;
    lifeboat_publish::unpublish(&config.publish_state(), session)
        .map_err(|e| publish_error(&format!("unpublishing {session}"), e))?;
    tracing::info!(session, "unpublished");
    Ok(Unpublished {
        deleted: wire::publication_id(agent, session),
    })
}

/// The API's error for a publishing error: a missing session is 404, a
/// target that cannot publish or a bad request 409 and 400, the rest the
/// agent's failure.
fn publish_error(what: &str, e: lifeboat_publish::Error) -> Error {
    let kind = match &e {
        lifeboat_publish::Error::NoSession(_) => ErrorKind::NotFound,
        lifeboat_publish::Error::Repo(lifeboat_repo::Error::NotFound { .. }) => ErrorKind::NotFound,
        lifeboat_publish::Error::Missing(_) => ErrorKind::Conflict,
        lifeboat_publish::Error::Invalid(_) => ErrorKind::BadRequest,
        _ => ErrorKind::Internal,
    };
    let message = format!("{what}: {}", error_chain(&e));
    match kind {
        ErrorKind::Internal => Error::Internal(message),
        kind => Error::Request { kind, message },
    }
}

/// The wire form of a publish session.
fn publication(agent: &str, s: &lifeboat_publish::SessionState, alive: bool) -> Publication {
    Publication {
        id: wire::publication_id(agent, &s.session),
        agent: agent.to_string(),
        session: s.session.clone(),
        restore_point: s.restore_point.clone(),
        repository_path: s.repo.to_string_lossy().into_owned(),
        since: s.since.to_rfc3339(),
        status: format!("{:?}", s.status).to_lowercase(),
        alive,
        disks_dir: s.fuse_mount.to_string_lossy().into_owned(),
        mounts: s
            .mounts
            .iter()
            .map(|m| PublishedMount {
                volume: m.volume.clone(),
                fstype: m.fstype.clone(),
                device: m.device.clone(),
                mount_point: m.mount_point.to_string_lossy().into_owned(),
                mounted: m.mounted,
                error: m.error.clone(),
            })
            .collect(),
        problems: s.problems.iter().map(|p| p.to_string()).collect(),
    }
}
