//! The error type of the test-VM harness: every variant names the thing that
//! failed (script, binary, port, command) and carries the evidence a person
//! needs (exit status, stderr, the tail of the serial log).

use std::path::PathBuf;
use std::time::Duration;

/// Result alias for this crate.
pub type Result<T, E = TestVmError> = std::result::Result<T, E>;

/// Everything that can go wrong while building or running the test guest.
#[derive(Debug, thiserror::Error)]
pub enum TestVmError {
    /// An I/O operation on a named file, directory or socket failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    /// `scripts/build-test-guest.sh` failed.
    #[error("building the test guest with {script} into {out_dir} failed ({status}):\n{output}")]
    BuildScript {
        script: PathBuf,
        out_dir: PathBuf,
        status: String,
        output: String,
    },

    /// A needed program is not installed.
    #[error("{program} not found: {hint}")]
    MissingTool { program: String, hint: String },

    /// The drive specification is not one QEMU can boot here.
    #[error("unsupported drive {spec:?}: {reason}")]
    BadDrive { spec: String, reason: String },

    /// QEMU exited before the guest became ready (or while a command ran).
    #[error("QEMU exited early ({status}); stderr:\n{stderr}\nserial log tail:\n{serial_tail}")]
    QemuExited {
        status: String,
        stderr: String,
        serial_tail: String,
    },

    /// The guest reported a boot failure on its serial console.
    #[error("guest reported a boot failure; serial log tail:\n{serial_tail}")]
    GuestFailed { serial_tail: String },

    /// Waiting for something in the guest took too long.
    #[error("timed out after {waited:?} waiting for {what}; serial log tail:\n{serial_tail}")]
    Timeout {
        what: String,
        waited: Duration,
        serial_tail: String,
    },

    /// A command sent to the guest's command server could not be run or
    /// returned no exit status.
    #[error("guest command {command:?}: {reason}")]
    GuestCommand { command: String, reason: String },

    /// `debugfs` could not read a file from a guest disk image.
    #[error(
        "reading {guest_path} from {image} (partition offset {offset}) with debugfs: {reason}"
    )]
    GuestFile {
        image: PathBuf,
        guest_path: String,
        offset: u64,
        reason: String,
    },

    /// The guest did not power off within the timeout; QEMU was killed.
    #[error("guest did not power off within {waited:?}; QEMU was killed")]
    ShutdownTimeout { waited: Duration },
}

impl TestVmError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        TestVmError::Io {
            what: what.into(),
            source,
        }
    }
}
