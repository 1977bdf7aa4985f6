//! What a previous run of the agent left behind, cleaned up at start:
//! every scan session (a scan never outlives its request), and every
//! publication whose publisher process is gone (killed with the agent,
//! or by a reboot: its mounts, loop devices and state go, with the
//! publish crate's unpublish). A publication whose publisher still
//! serves is kept, and listed again: the publishers run in process
//! groups of their own, so an agent that was restarted alone left them
//! working.

use crate::error::AgentError;
use crate::AgentConfig;
use std::path::Path;

/// Cleans up after the previous run.
pub fn at_start(config: &AgentConfig) -> Result<(), AgentError> {
    let scans = crate::scans::state_dir(config);
    let (gone, errors) =
        lifeboat_publish::unpublish_all(&scans).map_err(|source| AgentError::Cleanup {
            dir: scans.clone(),
            source,
        })?;
    report(&scans, gone.len(), errors);
    let dir = config.publish_state();
    let published = lifeboat_publish::published(&dir).map_err(|source| AgentError::Cleanup {
        dir: dir.clone(),
        source,
    })?;
    let mut errors = Vec::new();
    let mut gone = 0;
    for p in published.iter().filter(|p| !p.alive) {
        match lifeboat_publish::unpublish(&dir, &p.state.session) {
            Ok(_) => gone += 1,
            Err(e) => errors.push(e),
        }
    }
    report(&dir, gone, errors);
    Ok(())
}

/// Logs what was cleaned up in `dir` and what could not be.
fn report(dir: &Path, gone: usize, errors: Vec<lifeboat_publish::Error>) {
    if gone > 0 {
        tracing::info!(dir = %dir.display(), sessions = gone, "cleaned up what the previous run left");
    }
    for e in errors {
        tracing::warn!(dir = %dir.display(), error = %e, "could not clean up a session");
    }
}
