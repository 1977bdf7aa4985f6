//! The QEMU guest agent client: `qemu-ga` in the guest, reached through the
//! host side of its virtio-serial chardev, a unix socket QEMU serves:
//!
//! ```text
//! -chardev socket,path=SOCK,server=on,wait=off,id=qga0 -device virtio-serial
//! -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0
//! ```
//!
//! The channel has no session: replies to commands a previous client sent
//! (and gave up on) may still be in it. So every connection, and every
//! command after a timeout, first resyncs with `guest-sync-delimited`: the
//! client sends a 0xFF byte (the agent's parser drops what it had
//! half-read) and the command with a random id; the agent answers with a
//! 0xFF sentinel byte and then `{"return": id}`. Everything before a sentinel
//! followed by our id is stale and skipped. Every command waits at most the
//! client's timeout; a silent agent (not running in the guest, a paused VM,
//! a port nobody opened) is [`AgentError::NotAnswering`].
//!
//! [`AgentClient::freeze`] freezes the guest's filesystems
//! (`guest-fsfreeze-freeze`) and hands back a [`FreezeGuard`]: the guest is
//! thawed (`guest-fsfreeze-thaw`) by [`FreezeGuard::thaw`], by dropping the
//! guard, or by its watchdog thread once the freeze has lasted `max` (at
//! most [`MAX_FREEZE`]), whichever comes first. A freeze that fails or
//! times out is thawed at once.

use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The default timeout of one agent command.
pub const AGENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest the guest's filesystems stay frozen (from the freeze command
/// to the thaw command); longer requests are cut to this.
pub const MAX_FREEZE: Duration = Duration::from_secs(10);

/// Longest reply line accepted.
const MAX_REPLY: usize = 1 << 20;

/// The sentinel byte of `guest-sync-delimited`.
const SENTINEL: u8 = 0xFF;

/// What went wrong talking to the guest agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Nothing serves the socket (missing file, QEMU gone).
    #[error("no guest agent at {socket}: cannot connect: {source}")]
    Missing {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The socket is served but nothing answers in time.
    #[error(
        "guest agent {socket}: {command}: no answer within {timeout:?} \
         (is qemu-ga running in the guest, and the guest running?)"
    )]
    NotAnswering {
        socket: PathBuf,
        command: String,
        timeout: Duration,
    },
    /// Reading or writing the socket failed, or the connection closed.
    #[error("guest agent {socket}: {command}: {source}")]
    Io {
        socket: PathBuf,
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// The agent answered with an error.
    #[error("guest agent {socket}: {command}: the agent refused ({class}): {desc}")]
    Refused {
        socket: PathBuf,
        command: String,
        class: String,
        desc: String,
    },
    /// The agent answered with something this client cannot read.
    #[error("guest agent {socket}: {command}: unexpected reply: {reason}")]
    BadReply {
        socket: PathBuf,
        command: String,
        reason: String,
    },
    /// `guest-fsfreeze-freeze` failed (the guest was thawed again).
    #[error("guest agent {socket}: freezing the guest's filesystems failed: {reason}")]
    FreezeFailed { socket: PathBuf, reason: String },
}

/// `guest-fsfreeze-status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezeStatus {
    Thawed,
    Frozen,
}

/// A connection to the guest agent.
#[derive(Debug)]
pub struct AgentClient {
    socket: PathBuf,
    stream: UnixStream,
    /// Bytes read but not yet consumed.
    buf: Vec<u8>,
    timeout: Duration,
    /// False after a timeout: a stale reply may follow, resync first.
    synced: bool,
}

impl AgentClient {
    /// Connects to the agent's socket and resyncs, each step within `timeout`.
    pub fn connect(socket: impl AsRef<Path>, timeout: Duration) -> Result<AgentClient, AgentError> {
        let socket = socket.as_ref().to_path_buf();
        let stream = UnixStream::connect(&socket).map_err(|source| AgentError::Missing {
            socket: socket.clone(),
            source,
        })?;
        let mut client = AgentClient {
            socket,
            stream,
            buf: Vec::new(),
            timeout,
            synced: false,
        };
        client.sync()?;
        Ok(client)
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The timeout of each command.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `guest-sync-delimited` with a random id: drops everything the channel
    /// held before the agent's answer to it.
    pub fn sync(&mut self) -> Result<(), AgentError> {
        let command = "guest-sync-delimited";
        let id = random_id();
        let mut msg = vec![SENTINEL];
        msg.extend_from_slice(
            json!({"execute": command, "arguments": {"id": id}})
                .to_string()
                .as_bytes(),
        );
        msg.push(b'\n');
        self.write(command, &msg)?;
        let deadline = Instant::now() + self.timeout;
        loop {
            self.skip_to_sentinel(command, deadline)?;
            let line = self.read_line(command, deadline, self.timeout)?;
            let reply: Option<Value> = serde_json::from_slice(&line).ok();
            match reply.as_ref().and_then(|r| r.get("return")) {
                Some(r) if r.as_u64() == Some(id) => break,
                _ => tracing::debug!(
                    socket = %self.socket.display(),
                    "skipping a stale guest agent reply: {}",
                    String::from_utf8_lossy(&line)
                ),
            }
        }
        self.synced = true;
        Ok(())
    }

    /// Runs one command within the client's timeout; returns its `return`.
    pub fn execute(&mut self, command: &str, args: Value) -> Result<Value, AgentError> {
        self.execute_with_timeout(command, args, self.timeout)
    }

    /// Runs one command within `timeout` (the resync it may need first
    /// within the client's timeout).
    pub fn execute_with_timeout(
        &mut self,
        command: &str,
        args: Value,
        timeout: Duration,
    ) -> Result<Value, AgentError> {
        if !self.synced {
            self.sync()?;
        }
        let mut msg = json!({ "execute": command });
        if !args.is_null() {
            msg["arguments"] = args;
        }
        let mut line = msg.to_string().into_bytes();
        line.push(b'\n');
        tracing::debug!(socket = %self.socket.display(), %msg, "guest agent command");
        self.write(command, &line)?;
        let deadline = Instant::now() + timeout;
        let reply = self.read_line(command, deadline, timeout)?;
        let reply: Value = serde_json::from_slice(&reply).map_err(|e| {
            self.synced = false;
            self.bad_reply(command, format!("{e}: {}", String::from_utf8_lossy(&reply)))
        })?;
        if let Some(err) = reply.get("error") {
            let s = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            return Err(AgentError::Refused {
                socket: self.socket.clone(),
                command: command.to_string(),
                class: s("class"),
                desc: s("desc"),
            });
        }
        reply
            .get("return")
            .cloned()
            .ok_or_else(|| self.bad_reply(command, format!("no \"return\" in {reply}")))
    }

    /// `guest-ping`.
    pub fn ping(&mut self) -> Result<(), AgentError> {
        self.execute("guest-ping", Value::Null).map(drop)
    }

    /// `guest-fsfreeze-status`.
    pub fn fsfreeze_status(&mut self) -> Result<FreezeStatus, AgentError> {
        let command = "guest-fsfreeze-status";
        match self.execute(command, Value::Null)?.as_str() {
            Some("thawed") => Ok(FreezeStatus::Thawed),
            Some("frozen") => Ok(FreezeStatus::Frozen),
            other => Err(self.bad_reply(command, format!("status {other:?}"))),
        }
    }

    /// Thaws a guest that an earlier backup left frozen (a backup killed
    /// while the guest was frozen: its watchdog died with it, and qemu-ga
    /// has no bound of its own). `Ok(Some(n))`: it was frozen and `n`
    /// filesystems were thawed; `Ok(None)`: it was not frozen.
    pub fn thaw_left_frozen(&mut self) -> Result<Option<u32>, AgentError> {
        if self.fsfreeze_status()? == FreezeStatus::Thawed {
            return Ok(None);
        }
        let n = self.fsfreeze_thaw()?;
        tracing::warn!(socket = %self.socket.display(), thawed = n,
            "the guest was left frozen (by a backup that was killed?): thawed it");
        Ok(Some(n))
    }

    /// `guest-fsfreeze-freeze` within `timeout`: the number of filesystems
    /// frozen. Prefer [`AgentClient::freeze`], which bounds the freeze.
    pub fn fsfreeze_freeze(&mut self, timeout: Duration) -> Result<u32, AgentError> {
        let command = "guest-fsfreeze-freeze";
        let r = self.execute_with_timeout(command, Value::Null, timeout)?;
        self.count(command, &r)
    }

    /// `guest-fsfreeze-thaw`: the number of filesystems thawed.
    pub fn fsfreeze_thaw(&mut self) -> Result<u32, AgentError> {
        let command = "guest-fsfreeze-thaw";
        let r = self.execute(command, Value::Null)?;
        self.count(command, &r)
    }

    /// Freezes the guest's filesystems for at most `max` (cut to
    /// [`MAX_FREEZE`]); the guard thaws them. On failure or timeout the
    /// guest is thawed before this returns.
    pub fn freeze(mut self, max: Duration) -> Result<FreezeGuard, AgentError> {
        let max = max.min(MAX_FREEZE);
        let started = Instant::now();
        match self.fsfreeze_freeze(max) {
            Ok(frozen) => {
                tracing::info!(socket = %self.socket.display(), frozen, "guest filesystems frozen");
                let socket = self.socket.clone();
                FreezeGuard::watch(self, frozen, started, max).map_err(|(e, thaw)| {
                    AgentError::FreezeFailed {
                        socket,
                        reason: format!(
                            "cannot start the thread that bounds the freeze ({e}); thawed: {}",
                            match thaw {
                                Ok(n) => format!("{n} filesystems"),
                                Err(t) => format!("NO, {t}"),
                            }
                        ),
                    }
                })
            }
            Err(e) => {
                // A timed-out freeze may still complete in the guest, and
                // a failed one may have frozen some filesystems: thaw.
                if let Err(t) = thaw_retrying(&mut self) {
                    tracing::warn!(socket = %self.socket.display(), error = %t,
                        "thawing after a failed freeze");
                }
                Err(match e {
                    AgentError::Refused { socket, desc, .. } => AgentError::FreezeFailed {
                        socket,
                        reason: desc,
                    },
                    other => other,
                })
            }
        }
    }

    fn count(&self, command: &str, r: &Value) -> Result<u32, AgentError> {
        r.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| self.bad_reply(command, format!("expected a count, got {r}")))
    }

    fn bad_reply(&self, command: &str, reason: String) -> AgentError {
        AgentError::BadReply {
            socket: self.socket.clone(),
            command: command.to_string(),
            reason,
        }
    }

    fn io(&self, command: &str, source: std::io::Error) -> AgentError {
        AgentError::Io {
            socket: self.socket.clone(),
            command: command.to_string(),
            source,
        }
    }

    fn write(&mut self, command: &str, bytes: &[u8]) -> Result<(), AgentError> {
        self.stream
            .set_write_timeout(Some(self.timeout))
            .and_then(|()| self.stream.write_all(bytes))
            .map_err(|e| {
                self.synced = false;
                self.io(command, e)
            })
    }

    /// Reads more bytes into the buffer, waiting until `deadline`.
    fn fill(
        &mut self,
        command: &str,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), AgentError> {
        let now = Instant::now();
        if now >= deadline {
            self.synced = false;
            return Err(AgentError::NotAnswering {
                socket: self.socket.clone(),
                command: command.to_string(),
                timeout,
            });
        }
        let wait = (deadline - now).max(Duration::from_millis(1));
        self.stream
            .set_read_timeout(Some(wait))
            .map_err(|e| self.io(command, e))?;
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) => {
                self.synced = false;
                Err(self.io(
                    command,
                    std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the connection closed (QEMU quit?)",
                    ),
                ))
            }
            Ok(n) => {
                self.buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default());
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                Ok(())
            }
            Err(e) => {
                self.synced = false;
                Err(self.io(command, e))
            }
        }
    }

    /// Drops bytes up to and including the next sentinel.
    fn skip_to_sentinel(&mut self, command: &str, deadline: Instant) -> Result<(), AgentError> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == SENTINEL) {
                self.buf.drain(..=i);
                return Ok(());
            }
            self.buf.clear();
            self.fill(command, deadline, self.timeout)?;
        }
    }

    /// The next non-empty line (without its newline).
    fn read_line(
        &mut self,
        command: &str,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Vec<u8>, AgentError> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let text = line.trim_ascii();
                if text.is_empty() {
                    continue;
                }
                return Ok(text.to_vec());
            }
            if self.buf.len() > MAX_REPLY {
                self.synced = false;
                self.buf.clear();
                return Err(
                    self.bad_reply(command, format!("a reply longer than {MAX_REPLY} bytes"))
                );
            }
            self.fill(command, deadline, timeout)?;
        }
    }
}

/// Thaws, resyncing and trying once more when the agent did not answer.
fn thaw_retrying(client: &mut AgentClient) -> Result<u32, AgentError> {
    match client.fsfreeze_thaw() {
        Err(AgentError::NotAnswering { .. } | AgentError::Io { .. }) => client.fsfreeze_thaw(),
        other => other,
    }
}

/// A random id for `guest-sync-delimited` (positive, fits a JSON int64).
fn random_id() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish() & 0x7FFF_FFFF_FFFF
}

/// How a freeze ended.
#[derive(Debug)]
pub struct Thawed {
    /// Filesystems the freeze had frozen.
    pub frozen_filesystems: u32,
    /// From the freeze command to the end of the thaw command.
    pub frozen_for: Duration,
    /// The watchdog thawed because the freeze reached its bound.
    pub by_watchdog: bool,
    /// The thaw's result: the filesystems thawed.
    pub thaw: Result<u32, AgentError>,
}

/// Frozen guest filesystems; thawed by [`FreezeGuard::thaw`], on drop, or
/// by a watchdog thread when the bound passes.
#[derive(Debug)]
pub struct FreezeGuard {
    socket: PathBuf,
    frozen: u32,
    max: Duration,
    stop: Option<mpsc::Sender<()>>,
    watchdog: Option<JoinHandle<Thawed>>,
}

impl FreezeGuard {
    /// Starts the watchdog; without a thread, thaws at once and returns why.
    #[allow(clippy::type_complexity)]
    fn watch(
        client: AgentClient,
        frozen: u32,
        started: Instant,
        max: Duration,
    ) -> Result<FreezeGuard, (std::io::Error, Result<u32, AgentError>)> {
        let socket = client.socket.clone();
        let (stop, stopped) = mpsc::channel::<()>();
        // Shared so that a failed spawn leaves the client here to thaw with.
        let shared = std::sync::Arc::new(std::sync::Mutex::new(client));
        let mine = std::sync::Arc::clone(&shared);
        let watchdog = std::thread::Builder::new()
            .name("fsfreeze-watchdog".into())
            .spawn(move || {
                let mut client = mine.lock().unwrap_or_else(|e| e.into_inner());
                let left = max.saturating_sub(started.elapsed());
                let by_watchdog = matches!(
                    stopped.recv_timeout(left),
                    Err(mpsc::RecvTimeoutError::Timeout)
                );
                if by_watchdog {
                    tracing::warn!(socket = %client.socket.display(), ?max,
                        "the guest's filesystems reached the freeze bound: thawing");
                }
                let thaw = thaw_retrying(&mut client);
                drop(client);
                let frozen_for = started.elapsed();
                match &thaw {
                    Ok(n) => tracing::info!(thawed = n, ?frozen_for, "guest filesystems thawed"),
                    Err(e) => tracing::error!(error = %e, "THAWING THE GUEST FAILED: its \
                        filesystems may still be frozen (guest-fsfreeze-thaw by hand)"),
                }
                Thawed {
                    frozen_filesystems: frozen,
                    frozen_for,
                    by_watchdog,
                    thaw,
                }
            });
        match watchdog {
            Ok(handle) => Ok(FreezeGuard {
                socket,
                frozen,
                max,
                stop: Some(stop),
                watchdog: Some(handle),
            }),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the freeze watchdog: thawing now");
                let mut client = shared.lock().unwrap_or_else(|e| e.into_inner());
                Err((e, thaw_retrying(&mut client)))
            }
        }
    }

    /// Filesystems the agent froze.
    pub fn frozen_filesystems(&self) -> u32 {
        self.frozen
    }

    /// The bound of this freeze.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// Thaws now (or reports the watchdog's earlier thaw).
    pub fn thaw(mut self) -> Thawed {
        self.finish()
    }

    fn finish(&mut self) -> Thawed {
        if let Some(stop) = self.stop.take() {
            // The watchdog may have finished already: then nobody receives.
            let _ = stop.send(());
        }
        let joined = self.watchdog.take().map(JoinHandle::join);
        match joined {
            Some(Ok(thawed)) => thawed,
            _ => Thawed {
                frozen_filesystems: self.frozen,
                frozen_for: Duration::ZERO,
                by_watchdog: false,
                thaw: Err(AgentError::Io {
                    socket: self.socket.clone(),
                    command: "guest-fsfreeze-thaw".into(),
                    source: std::io::Error::other("the freeze watchdog thread did not run"),
                }),
            },
        }
    }
}

impl Drop for FreezeGuard {
    fn drop(&mut self) {
        if self.watchdog.is_some() {
            self.finish();
        }
    }
}
