//! Scans on the agent: `lifeboat scan` (the local command: publish under
//! a private mount root, ClamAV and the built-in YARA rules, unpublish,
//! record the verdict in the restore point) run as a child process with
//! `--json`, its exit code the verdict. Its sessions, mounts and scan
//! cache live in `<data-dir>/scans`; the passphrase goes to the child in
//! its environment, never on its command line.

use crate::AgentConfig;
use lifeboat_server::agents::wire::{OnAgent, ScanResult, Verdict};
use lifeboat_server::Error;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The state dir of scan sessions.
pub fn state_dir(config: &AgentConfig) -> PathBuf {
    config.scan_dir().join("state")
}

/// Scans the restore point of `ask`; blocks until the scan ends.
pub fn scan(config: &AgentConfig, agent: &str, ask: &OnAgent) -> Result<ScanResult, Error> {
    let dir = config.scan_dir();
    let mount_root = dir.join("mnt");
    std::fs::create_dir_all(&mount_root).map_err(|e| Error::io(&mount_root, e))?;
    let mut cmd = Command::new(&config.program);
    cmd.arg("scan")
        .args(["--repo", &ask.repository_path])
        .arg("--scan-cache")
        .arg(dir.join("cache"))
        .arg("--mount-root")
        .arg(&mount_root)
        .arg("--state-dir")
        .arg(state_dir(config))
        .arg("--json");
    if let Some(db) = &config.clamav_db {
        cmd.arg("--clamav-db").arg(db);
    }
    cmd.arg(&ask.restore_point)
        .env_remove("LIFEBOAT_PASSPHRASE")
        .stdin(Stdio::null());
    if let Some(p) = &config.passphrase {
        cmd.env("LIFEBOAT_PASSPHRASE", p);
    }
    tracing::info!(restore_point = ask.restore_point, "scanning");
    let out = cmd
        .output()
        .map_err(|e| Error::Internal(format!("starting {}: {e}", config.program.display())))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let verdict = match out.status.code() {
        Some(0) => Verdict::Clean,
        Some(7) => Verdict::Infected,
        Some(3) => Verdict::Incomplete,
        Some(8) => Verdict::Unproven,
        _ => {
            let why = stderr.lines().last().unwrap_or("(no output)");
            return Err(Error::Internal(format!(
                "scanning {} failed ({}): {why}",
                ask.restore_point, out.status
            )));
        }
    };
    let report = serde_json::from_slice(&out.stdout).map_err(|e| {
        Error::Internal(format!(
            "scanning {}: the report does not read: {e}",
            ask.restore_point
        ))
    })?;
    tracing::info!(
        restore_point = ask.restore_point,
        verdict = verdict.as_str(),
        "scanned"
    );
    Ok(ScanResult {
        agent: agent.to_string(),
        restore_point: ask.restore_point.clone(),
        verdict,
        report,
    })
}
