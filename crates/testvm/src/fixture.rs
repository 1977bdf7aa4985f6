//! The cached test-guest fixture: runs `scripts/build-test-guest.sh` once per
//! test process into `<target dir>/fixtures/guest` (serialised across processes
//! with `flock` on `<target dir>/fixtures/guest.lock`; the script itself skips
//! the build when its stamp matches), and reads files back out of a guest disk
//! image with `debugfs` (offset-aware: `debugfs 'image?offset=N'`, no mount).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::error::{Result, TestVmError};

/// Byte offset of the guest's root partition (`/dev/vda1`) in `guest.raw`:
/// sector 2048, as the build script lays it out.
pub const GUEST_PARTITION_OFFSET: u64 = 2048 * 512;

/// Line the guest prints on its serial console once ports 22 and 23 listen.
pub const READY_MARKER: &str = "LIFEBOAT-GUEST-READY";

/// Line the guest prints on its serial console when its boot failed.
pub const FAILED_MARKER: &str = "LIFEBOAT-GUEST-FAILED";

/// What the build script produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestFixture {
    /// The pristine guest disk (raw). Boot a copy if the guest may write.
    pub image: PathBuf,
    /// Byte offset of the root ext4 partition inside `image`.
    pub partition_offset: u64,
    /// The QEMU launcher (`bin/qemu-system-x86_64` in the fixture directory).
    pub qemu: PathBuf,
}

/// Path of the cached guest image, built on first use in this process.
///
/// # Panics
/// Panics with the build script's output when the guest cannot be built
/// (this is a test helper: a missing fixture must fail the test loudly).
pub fn guest_image() -> PathBuf {
    match try_guest_fixture() {
        Ok(f) => f.image,
        Err(e) => panic!("lifeboat-testvm: cannot provide the test guest image: {e}"),
    }
}

/// The fixture (image, partition offset, QEMU launcher), built once per process.
pub fn try_guest_fixture() -> Result<GuestFixture> {
    static FIXTURE: OnceLock<std::result::Result<GuestFixture, String>> = OnceLock::new();
    FIXTURE
        .get_or_init(|| build_fixture().map_err(|e| e.to_string()))
        .clone()
        .map_err(|msg| TestVmError::BuildScript {
            script: build_script(),
            out_dir: fixture_dir(),
            status: "earlier failure in this process".into(),
            output: msg,
        })
}

/// Root of the workspace (two levels above this crate's manifest).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest.to_path_buf())
}

/// The cargo target directory (`CARGO_TARGET_DIR` if set, else `<workspace>/target`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                workspace_root().join(d)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// Where the fixture is cached: `<target dir>/fixtures/guest`.
pub fn fixture_dir() -> PathBuf {
    target_dir().join("fixtures").join("guest")
}

fn build_script() -> PathBuf {
    workspace_root().join("scripts").join("build-test-guest.sh")
}

fn build_fixture() -> Result<GuestFixture> {
    let script = build_script();
    let out_dir = fixture_dir();
    let parent = out_dir.parent().unwrap_or(&out_dir).to_path_buf();
    std::fs::create_dir_all(&parent)
        .map_err(|e| TestVmError::io(format!("creating {}", parent.display()), e))?;
    let lock = parent.join("guest.lock");
    let output = Command::new("flock")
        .arg(&lock)
        .arg("bash")
        .arg(&script)
        .arg(&out_dir)
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => TestVmError::MissingTool {
                program: "flock (or bash)".into(),
                hint: "apt-get install util-linux bash".into(),
            },
            _ => TestVmError::io(format!("running {}", script.display()), e),
        })?;
    if !output.status.success() {
        return Err(TestVmError::BuildScript {
            script,
            out_dir,
            status: output.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        });
    }
    let image = out_dir.join("guest.raw");
    let qemu = out_dir.join("bin").join("qemu-system-x86_64");
    for p in [&image, &qemu] {
        if !p.exists() {
            return Err(TestVmError::BuildScript {
                script: script.clone(),
                out_dir: out_dir.clone(),
                status: "exit 0".into(),
                output: format!("the script succeeded but {} is missing", p.display()),
            });
        }
    }
    let partition_offset = std::fs::read_to_string(out_dir.join("partition-offset"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(GUEST_PARTITION_OFFSET);
    Ok(GuestFixture {
        image,
        partition_offset,
        qemu,
    })
}

/// Reads `guest_path` from the ext4 partition at `partition_offset` of the raw
/// disk `image` with `debugfs` (no mount). The guest must have been shut down
/// cleanly (`Vm::shutdown` remounts read-only, so the journal is checkpointed).
pub fn read_guest_file(image: &Path, partition_offset: u64, guest_path: &str) -> Result<Vec<u8>> {
    let fail = |reason: String| TestVmError::GuestFile {
        image: image.to_path_buf(),
        guest_path: guest_path.to_string(),
        offset: partition_offset,
        reason,
    };
    if guest_path.contains(['\'', '"', '\n']) || !guest_path.starts_with('/') {
        return Err(fail(
            "path must be absolute and contain no quotes or newlines".into(),
        ));
    }
    let mut device = image.as_os_str().to_os_string();
    device.push(format!("?offset={partition_offset}"));
    let output = Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat \"{guest_path}\""))
        .arg(&device)
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => TestVmError::MissingTool {
                program: "debugfs".into(),
                hint: "apt-get install e2fsprogs".into(),
            },
            _ => fail(format!("cannot run debugfs: {e}")),
        })?;
    // debugfs exits 0 even when the file is missing: its complaints (anything
    // but the version banner) on stderr mean failure.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("debugfs "))
        .collect();
    if !output.status.success() || !complaints.is_empty() {
        return Err(fail(format!("{} {}", output.status, complaints.join("; "))));
    }
    Ok(output.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_dir_is_under_target() {
        let d = fixture_dir();
        assert!(d.ends_with("fixtures/guest"), "{}", d.display());
        assert!(build_script().ends_with("scripts/build-test-guest.sh"));
        assert!(build_script().exists(), "{}", build_script().display());
    }

    #[test]
    fn read_guest_file_rejects_bad_paths() {
        let err = read_guest_file(Path::new("/nonexistent.raw"), 0, "relative").unwrap_err();
        assert!(err.to_string().contains("must be absolute"), "{err}");
        let err = read_guest_file(Path::new("/nonexistent.raw"), 0, "/a'b").unwrap_err();
        assert!(matches!(err, TestVmError::GuestFile { .. }), "{err}");
    }

    #[test]
    fn read_guest_file_reports_missing_image() {
        let err = read_guest_file(Path::new("/nonexistent/guest.raw"), 0, "/x").unwrap_err();
        assert!(
            matches!(
                err,
                TestVmError::GuestFile { .. } | TestVmError::MissingTool { .. }
            ),
            "{err}"
        );
    }
}
