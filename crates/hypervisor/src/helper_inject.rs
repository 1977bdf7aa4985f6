//! The guest helper's life in the guest, through the guest agent: a fresh
//! private directory (`mkdir -m 0700`, named `lifeboat-helper-*`), the
//! helper binary, its certificate and key, the proxy's certificate and the
//! scripts written into it (`guest-file-*`), the helper started
//! (`guest-exec`), and at the end the helper's exit awaited (it removes its
//! own directory), killed if it lingers, and the directory removed
//! (`rm -rf`) whatever happened.

use std::time::Duration;

use lifeboat_guest_helper::layout::{
    DIR_PREFIX, HELPER_BIN, HELPER_CERT, HELPER_KEY, POST_THAW, PRE_FREEZE, PROXY_CERT,
};

use crate::agent::{AgentClient, AgentError};
use crate::guest_ops::ExecStatus;
use crate::helper_certs::BackupIdentities;

/// How long mkdir, chmod, kill and rm may take in the guest.
const GUEST_COMMAND: Duration = Duration::from_secs(15);

/// What goes into the guest.
pub struct Payload<'a> {
    pub binary: &'a [u8],
    pub pre_freeze: &'a [u8],
    pub post_thaw: Option<&'a [u8]>,
    pub ids: &'a BackupIdentities,
    /// The parent of the helper's directory in the guest.
    pub parent: &'a str,
    pub port: u16,
    pub idle_timeout: Duration,
}

/// A helper started in the guest.
#[derive(Debug, Clone)]
pub struct Started {
    /// Its directory in the guest.
    pub dir: String,
    /// Its pid (for `guest-exec-status`).
    pub pid: i64,
}

/// Why the helper could not be put into the guest or started.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error("{step}: {source}")]
    Agent {
        step: String,
        #[source]
        source: AgentError,
    },
    #[error("{step}: {status}")]
    Failed { step: String, status: String },
}

fn step<T>(what: impl FnOnce() -> String, r: Result<T, AgentError>) -> Result<T, InjectError> {
    r.map_err(|source| InjectError::Agent {
        step: what(),
        source,
    })
}

fn must_succeed(what: String, s: ExecStatus) -> Result<(), InjectError> {
    if s.succeeded() {
        Ok(())
    } else {
        Err(InjectError::Failed {
            step: what,
            status: s.describe(),
        })
    }
}

/// A directory name no earlier backup used.
fn fresh_dir(parent: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}/{DIR_PREFIX}{now:x}-{}",
        parent.trim_end_matches('/'),
        std::process::id()
    )
}

/// Copies the helper into a fresh directory of the guest and starts it.
/// On failure after the directory was made, the directory is removed.
pub fn inject(agent: &mut AgentClient, p: &Payload<'_>) -> Result<Started, InjectError> {
    let dir = fresh_dir(p.parent);
    let made = step(
        || format!("creating {dir} in the guest"),
        agent.run("/bin/mkdir", &["-m", "0700", "--", &dir], GUEST_COMMAND),
    )?;
    must_succeed(format!("creating {dir} in the guest (/bin/mkdir)"), made)?;
    match copy_and_start(agent, p, &dir) {
        Ok(pid) => Ok(Started { dir, pid }),
        Err(e) => {
            if let Err(r) = remove_dir(agent, &dir) {
                tracing::warn!(error = %r, "removing the helper's directory after a failed start");
            }
            Err(e)
        }
    }
}

fn copy_and_start(agent: &mut AgentClient, p: &Payload<'_>, dir: &str) -> Result<i64, InjectError> {
    let mut files: Vec<(&str, &[u8])> = vec![
        (HELPER_BIN, p.binary),
        (HELPER_CERT, &p.ids.helper.cert),
        (HELPER_KEY, &p.ids.helper.key),
        (PROXY_CERT, &p.ids.proxy.cert),
        (PRE_FREEZE, p.pre_freeze),
    ];
    if let Some(post) = p.post_thaw {
        files.push((POST_THAW, post));
    }
    for (name, data) in files {
        let path = format!("{dir}/{name}");
        step(
            || format!("copying {name} to {path} in the guest"),
            agent.write_file(&path, data),
        )?;
    }
    let bin = format!("{dir}/{HELPER_BIN}");
    let chmod = step(
        || format!("making {bin} executable"),
        agent.run("/bin/chmod", &["0700", "--", &bin], GUEST_COMMAND),
    )?;
    must_succeed(format!("making {bin} executable (/bin/chmod)"), chmod)?;
    let listen = format!("0.0.0.0:{}", p.port);
    let idle = p.idle_timeout.as_secs().max(1).to_string();
    let pid = step(
        || format!("starting {bin} in the guest"),
        agent.exec(
            &bin,
            &["--dir", dir, "--listen", &listen, "--idle-timeout", &idle],
        ),
    )?;
    tracing::info!(dir, pid, %listen, "guest helper started");
    Ok(pid)
}

/// `rm -rf` of the helper's directory; an error unless it is gone.
pub fn remove_dir(agent: &mut AgentClient, dir: &str) -> Result<(), InjectError> {
    let rm = step(
        || format!("removing {dir} from the guest"),
        agent.run("/bin/rm", &["-rf", "--", dir], GUEST_COMMAND),
    )?;
    must_succeed(format!("removing {dir} from the guest (/bin/rm)"), rm)
}

/// Waits up to `wait` for the helper to exit (killing it if it does not),
/// logs its stderr, and removes its directory.
pub fn stop(agent: &mut AgentClient, started: &Started, wait: Duration) -> Result<(), InjectError> {
    match agent.wait_exec(started.pid, wait) {
        Ok(s) if s.exited => {
            tracing::debug!(pid = started.pid, stderr = %s.stderr.trim(), "guest helper exited")
        }
        Ok(_) => {
            tracing::warn!(
                pid = started.pid,
                "the guest helper did not exit: killing it"
            );
            let pid = started.pid.to_string();
            if let Err(e) = agent.run("/bin/kill", &["-9", &pid], GUEST_COMMAND) {
                tracing::warn!(error = %e, "killing the guest helper");
            }
        }
        Err(e) => tracing::warn!(error = %e, "the guest helper's status"),
    }
    remove_dir(agent, &started.dir)
}
