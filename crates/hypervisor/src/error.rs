//! The crate's one error type: what failed, on which QMP socket, for which
//! command, and QEMU's own error class and description when QEMU refused.

use std::path::PathBuf;
use std::time::Duration;

/// Result of this crate.
pub type Result<T, E = HypervisorError> = std::result::Result<T, E>;

/// Everything that can go wrong talking to QEMU.
#[derive(Debug, thiserror::Error)]
pub enum HypervisorError {
    /// The QMP socket could not be connected (missing file, nobody listening).
    #[error("cannot connect to the QMP socket {socket}: {source}")]
    Connect {
        /// The socket path.
        socket: PathBuf,
        /// The connect error.
        #[source]
        source: std::io::Error,
    },
    /// Something listens on the socket but it does not speak QMP.
    #[error("{socket} is not a QEMU QMP socket: {reason}")]
    NotQmp {
        /// The socket path.
        socket: PathBuf,
        /// What was (or was not) received instead of a QMP greeting.
        reason: String,
    },
    /// Reading or writing the socket failed.
    #[error("QMP socket {socket}: {command}: {source}")]
    Io {
        /// The socket path.
        socket: PathBuf,
        /// The command being sent (or "reading replies").
        command: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// QEMU did not answer in time.
    #[error("QMP socket {socket}: {command}: no answer from QEMU within {timeout:?}")]
    Timeout {
        /// The socket path.
        socket: PathBuf,
        /// The command.
        command: String,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// QEMU answered the command with an error.
    #[error("QMP socket {socket}: {command}: QEMU refused ({class}): {desc}")]
    Qemu {
        /// The socket path.
        socket: PathBuf,
        /// The command.
        command: String,
        /// QEMU's error class (`GenericError`, `CommandNotFound`, `DeviceNotFound`, ...).
        class: String,
        /// QEMU's description.
        desc: String,
    },
    /// The connection closed (QEMU quit or was killed).
    #[error("QMP socket {socket}: {command}: QEMU closed the connection")]
    Closed {
        /// The socket path.
        socket: PathBuf,
        /// The command that was waiting.
        command: String,
    },
    /// QEMU answered with something this client cannot read.
    #[error("QMP socket {socket}: {command}: unexpected reply: {reason}")]
    BadReply {
        /// The socket path.
        socket: PathBuf,
        /// The command.
        command: String,
        /// What was wrong with it.
        reason: String,
    },
    /// No event matched within the time given.
    #[error("QMP socket {socket}: no event {what} within {timeout:?}")]
    EventTimeout {
        /// The socket path.
        socket: PathBuf,
        /// The awaited event.
        what: String,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// The QEMU version lacks a feature.
    #[error("QEMU {version} (QMP socket {socket}) is too old for {feature}: needs >= {needs}")]
    TooOld {
        /// The socket path.
        socket: PathBuf,
        /// QEMU's version.
        version: String,
        /// The feature.
        feature: String,
        /// The first version that has it.
        needs: String,
    },
    /// A disk or bitmap request that does not fit the VM.
    #[error("QMP socket {socket}: {what}")]
    Invalid {
        /// The socket path.
        socket: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A block job (overlay creation) failed.
    #[error("QMP socket {socket}: job {job} failed: {reason}")]
    Job {
        /// The socket path.
        socket: PathBuf,
        /// The job id.
        job: String,
        /// QEMU's error text.
        reason: String,
    },
    /// The VM went away or a job of ours failed while a point in time was held.
    #[error("QMP socket {socket}: {event}: {detail}")]
    Interrupted {
        /// The socket path.
        socket: PathBuf,
        /// The event (`SHUTDOWN`, `BLOCK_JOB_ERROR`) or "connection closed".
        event: String,
        /// What QEMU said.
        detail: String,
    },
    /// Another live backup of the same VM holds its lock.
    #[error("another live backup of the VM behind {socket} is running: {holder} (lock {lock})")]
    Busy {
        /// The socket path.
        socket: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// Who holds it.
        holder: String,
    },
    /// The VM's lock file could not be opened or locked.
    #[error("cannot take the live-backup lock {lock} of the VM behind {socket}: {reason}")]
    Lock {
        /// The socket path.
        socket: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// Why.
        reason: String,
    },
    /// A local file operation (the fleecing overlay) failed.
    #[error("{what} {path}: {source}")]
    File {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl HypervisorError {
    /// QEMU's error class when QEMU refused a command.
    pub fn qemu_class(&self) -> Option<&str> {
        match self {
            HypervisorError::Qemu { class, .. } => Some(class),
            _ => None,
        }
    }
}
