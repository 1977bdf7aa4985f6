//! The statically linked guest helper for tests that inject it into the
//! test guest: `scripts/build-guest-helper.sh <target dir>/fixtures/guest-helper`
//! once per test process (serialised across processes with `flock`; the
//! script's cargo build has its own target directory, so it does not wait
//! for the lock of the test's, and does nothing when up to date).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::fixture::{target_dir, workspace_root};

/// The helper binary, built on first use in this process.
///
/// # Panics
/// Panics with the build script's output when the helper cannot be built
/// (a test helper: a missing fixture must fail the test loudly).
pub fn guest_helper_binary() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BIN.get_or_init(build) {
        Ok(p) => p.clone(),
        Err(e) => panic!("lifeboat-testvm: cannot build the guest helper: {e}"),
    }
}

fn build() -> Result<PathBuf, String> {
    let out = target_dir().join("fixtures").join("guest-helper");
    std::fs::create_dir_all(&out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let script = workspace_root()
        .join("scripts")
        .join("build-guest-helper.sh");
    let output = Command::new("flock")
        .arg(out.join("build.lock"))
        .arg("bash")
        .arg(&script)
        .arg(&out)
        .output()
        .map_err(|e| {
            format!(
                "running flock bash {}: {e} (apt-get install util-linux bash)",
                script.display()
            )
        })?;
    if !output.status.success() {
        return Err(format!(
            "{} {} failed ({}):\n{}{}",
            script.display(),
            out.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(out.join("lifeboat-guest-helper"))
}
