//! The QMP client: one unix-socket connection to a QEMU process.
//!
//! [`QmpClient::connect`] reads QEMU's greeting (which carries the version)
//! and negotiates capabilities synchronously, with the command timeout as the
//! read timeout, so a socket that is missing, silent or speaks something else
//! fails at once with [`HypervisorError::Connect`] or [`HypervisorError::NotQmp`].
//! After that a reader thread owns the read half: replies are matched to
//! their command by the `id` QEMU echoes, asynchronous events
//! (`JOB_STATUS_CHANGE`, `BLOCK_JOB_ERROR`, `SHUTDOWN`, ...) are queued
//! until [`QmpClient::wait_event`] or [`QmpClient::take_events`] takes them.
//! Every command waits at most the client's timeout (default 30 s); a reply
//! that arrives after its command timed out is dropped. Commands may be sent
//! from several threads at once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use crate::error::{HypervisorError, Result};

/// The default timeout of one command.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Events kept at most; older ones are dropped (with a warning) beyond this.
const MAX_QUEUED_EVENTS: usize = 4096;

/// Longest greeting line accepted from a socket that may not be QEMU.
const MAX_GREETING: u64 = 64 * 1024;

/// QEMU's version, from the QMP greeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QemuVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Micro version.
    pub micro: u32,
    /// Distribution package string (`Debian 1:7.2+dfsg-7+deb12u18`), may be empty.
    pub package: String,
}

impl QemuVersion {
    /// Whether this version is `major.minor` or newer.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }

    fn parse(v: &Value) -> Option<QemuVersion> {
        let q = v.get("qemu")?;
        let n = |k: &str| q.get(k).and_then(Value::as_u64).map(|x| x as u32);
        Some(QemuVersion {
            major: n("major")?,
            minor: n("minor")?,
            micro: n("micro")?,
            package: v
                .get("package")
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim()
                .to_string(),
        })
    }
}

impl std::fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

/// One asynchronous event QEMU sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QmpEvent {
    /// Event name (`JOB_STATUS_CHANGE`, `BLOCK_JOB_ERROR`, `SHUTDOWN`, ...).
    pub name: String,
    /// The event's `data` object (`Null` when it has none).
    pub data: Value,
    /// QEMU's timestamp: seconds and microseconds since the epoch.
    pub timestamp: (u64, u64),
}

#[derive(Default)]
struct State {
    replies: HashMap<u64, Value>,
    abandoned: HashSet<u64>,
    events: VecDeque<QmpEvent>,
    closed: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    cond: Condvar,
}

/// Why [`Shared::wait_for`] gave up.
enum WaitEnd {
    Closed,
    TimedOut,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in another holder leaves plain data behind: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `take` finds what it wants in the state, the connection
    /// closes, or `deadline` passes (then `on_timeout` runs under the lock).
    fn wait_for<T>(
        &self,
        deadline: Instant,
        mut take: impl FnMut(&mut State) -> Option<T>,
        on_timeout: impl FnOnce(&mut State),
    ) -> std::result::Result<T, WaitEnd> {
        let mut st = self.lock();
        loop {
            if let Some(found) = take(&mut st) {
                return Ok(found);
            }
            if st.closed.is_some() {
                return Err(WaitEnd::Closed);
            }
            let now = Instant::now();
            if now >= deadline {
                on_timeout(&mut st);
                return Err(WaitEnd::TimedOut);
            }
            st = self
                .cond
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// A connected QMP session.
pub struct QmpClient {
    socket: PathBuf,
    writer: Mutex<UnixStream>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
    timeout: Duration,
    version: QemuVersion,
    reader: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for QmpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QmpClient")
            .field("socket", &self.socket)
            .field("version", &self.version)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl QmpClient {
    /// Connects with the default command timeout.
    pub fn connect(socket: impl AsRef<Path>) -> Result<QmpClient> {
        Self::connect_with_timeout(socket, DEFAULT_TIMEOUT)
    }

    /// Connects; `timeout` bounds the handshake and every later command.
    pub fn connect_with_timeout(socket: impl AsRef<Path>, timeout: Duration) -> Result<QmpClient> {
        let socket = socket.as_ref().to_path_buf();
        let stream = UnixStream::connect(&socket).map_err(|source| HypervisorError::Connect {
            socket: socket.clone(),
            source,
        })?;
        let io = |command: &str| {
            let socket = socket.clone();
            let command = command.to_string();
            move |source| HypervisorError::Io {
                socket,
                command,
                source,
            }
        };
        stream
            .set_read_timeout(Some(timeout))
            .map_err(io("setting the read timeout"))?;
        let mut reader = BufReader::new(stream.try_clone().map_err(io("cloning the socket"))?);
        let not_qmp = |reason: String| HypervisorError::NotQmp {
            socket: socket.clone(),
            reason,
        };

        let greeting = read_line_limited(&mut reader).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => not_qmp(format!(
                "no QMP greeting within {timeout:?} (QEMU serves one client per QMP \
                     socket: is another client, such as libvirt, connected?)"
            )),
            _ => not_qmp(format!("reading the greeting: {e}")),
        })?;
        if greeting.is_empty() {
            return Err(not_qmp(
                "the connection closed without a QMP greeting".into(),
            ));
        }
        let version = serde_json::from_str::<Value>(&greeting)
            .ok()
            .and_then(|v| v.get("QMP").and_then(|q| q.get("version")).cloned())
            .and_then(|v| QemuVersion::parse(&v))
            .ok_or_else(|| {
                let shown: String = greeting.trim_end().chars().take(120).collect();
                not_qmp(format!("the greeting is not a QMP greeting: {shown:?}"))
            })?;
        tracing::debug!(socket = %socket.display(), %version, "QMP greeting");

        let mut writer = stream;
        writer
            .write_all(b"{\"execute\":\"qmp_capabilities\"}\n")
            .map_err(io("qmp_capabilities"))?;
        loop {
            let line = read_line_limited(&mut reader).map_err(io("qmp_capabilities"))?;
            if line.is_empty() {
                return Err(HypervisorError::Closed {
                    socket: socket.clone(),
                    command: "qmp_capabilities".into(),
                });
            }
            let reply: Value =
                serde_json::from_str(&line).map_err(|e| HypervisorError::BadReply {
                    socket: socket.clone(),
                    command: "qmp_capabilities".into(),
                    reason: e.to_string(),
                })?;
            if reply.get("event").is_some() {
                continue;
            }
            reply_result(&socket, "qmp_capabilities", reply)?;
            break;
        }
        reader
            .get_ref()
            .set_read_timeout(None)
            .map_err(io("clearing the read timeout"))?;

        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
        });
        let thread_shared = Arc::clone(&shared);
        let thread_socket = socket.clone();
        let reader = std::thread::Builder::new()
            .name("qmp-reader".into())
            .spawn(move || read_loop(reader, &thread_shared, &thread_socket))
            .map_err(io("starting the reader thread"))?;
        Ok(QmpClient {
            socket,
            writer: Mutex::new(writer),
            shared,
            next_id: AtomicU64::new(1),
            timeout,
            version,
            reader: Some(reader),
        })
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// QEMU's version, from the greeting.
    pub fn version(&self) -> &QemuVersion {
        &self.version
    }

    /// The timeout of each command.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Changes the timeout of later commands.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Runs `query-version` and parses it.
    pub fn query_version(&self) -> Result<QemuVersion> {
        let v = self.execute("query-version", Value::Null)?;
        QemuVersion::parse(&v).ok_or_else(|| HypervisorError::BadReply {
            socket: self.socket.clone(),
            command: "query-version".into(),
            reason: format!("no qemu.major/minor/micro in {v}"),
        })
    }

    /// Runs one command (`args` = `Value::Null` for none) within the client's timeout.
    pub fn execute(&self, command: &str, args: Value) -> Result<Value> {
        self.execute_with_timeout(command, args, self.timeout)
    }

    /// Runs one command within `timeout`; returns QEMU's `return` value.
    pub fn execute_with_timeout(
        &self,
        command: &str,
        args: Value,
        timeout: Duration,
    ) -> Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({ "execute": command, "id": id });
        if !args.is_null() {
            msg["arguments"] = args;
        }
        let mut line = msg.to_string();
        line.push('\n');
        tracing::debug!(socket = %self.socket.display(), %msg, "QMP command");
        {
            let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
            w.write_all(line.as_bytes())
                .map_err(|source| HypervisorError::Io {
                    socket: self.socket.clone(),
                    command: command.to_string(),
                    source,
                })?;
        }
        let deadline = Instant::now() + timeout;
        let waited = self.shared.wait_for(
            deadline,
            |st| st.replies.remove(&id),
            |st| {
                st.abandoned.insert(id);
            },
        );
        match waited {
            Ok(reply) => reply_result(&self.socket, command, reply),
            Err(WaitEnd::Closed) => Err(HypervisorError::Closed {
                socket: self.socket.clone(),
                command: command.to_string(),
            }),
            Err(WaitEnd::TimedOut) => Err(HypervisorError::Timeout {
                socket: self.socket.clone(),
                command: command.to_string(),
                timeout,
            }),
        }
    }

    /// Takes the first queued event (oldest first) that `matches`, waiting up
    /// to `timeout` for one to arrive. `what` names it in the timeout error.
    pub fn wait_event(
        &self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&QmpEvent) -> bool,
    ) -> Result<QmpEvent> {
        let deadline = Instant::now() + timeout;
        let waited = self.shared.wait_for(
            deadline,
            |st| {
                let i = st.events.iter().position(&matches)?;
                st.events.remove(i)
            },
            |_| {},
        );
        waited.map_err(|end| match end {
            WaitEnd::Closed => HypervisorError::Closed {
                socket: self.socket.clone(),
                command: format!("waiting for event {what}"),
            },
            WaitEnd::TimedOut => HypervisorError::EventTimeout {
                socket: self.socket.clone(),
                what: what.to_string(),
                timeout,
            },
        })
    }

    /// Removes and returns every queued event.
    pub fn take_events(&self) -> Vec<QmpEvent> {
        self.shared.lock().events.drain(..).collect()
    }

    /// Removes and returns the queued events that `matches`.
    pub fn take_events_matching(&self, matches: impl Fn(&QmpEvent) -> bool) -> Vec<QmpEvent> {
        let mut st = self.shared.lock();
        let (taken, kept): (Vec<QmpEvent>, Vec<QmpEvent>) =
            st.events.drain(..).partition(|e| matches(e));
        st.events = kept.into();
        taken
    }

    /// The queued events, left in the queue.
    pub fn events(&self) -> Vec<QmpEvent> {
        self.shared.lock().events.iter().cloned().collect()
    }

    /// Whether QEMU closed the connection (quit, killed).
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some()
    }
}

impl Drop for QmpClient {
    fn drop(&mut self) {
        if let Ok(w) = self.writer.lock() {
            let _ = w.shutdown(std::net::Shutdown::Both);
        }
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
    }
}

/// Reads one line of at most [`MAX_GREETING`] bytes ("" at end of stream).
fn read_line_limited(reader: &mut BufReader<UnixStream>) -> std::io::Result<String> {
    let mut line = String::new();
    reader.by_ref().take(MAX_GREETING).read_line(&mut line)?;
    Ok(line)
}

/// The `return` of a reply, or QEMU's error as [`HypervisorError::Qemu`].
fn reply_result(socket: &Path, command: &str, reply: Value) -> Result<Value> {
    if let Some(err) = reply.get("error") {
        let s = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        return Err(HypervisorError::Qemu {
            socket: socket.to_path_buf(),
            command: command.to_string(),
            class: s("class"),
            desc: s("desc"),
        });
    }
    match reply {
        Value::Object(mut m) => m.remove("return").ok_or_else(|| HypervisorError::BadReply {
            socket: socket.to_path_buf(),
            command: command.to_string(),
            reason: "neither return nor error".into(),
        }),
        other => Err(HypervisorError::BadReply {
            socket: socket.to_path_buf(),
            command: command.to_string(),
            reason: format!("not an object: {other}"),
        }),
    }
}

fn read_loop(mut reader: BufReader<UnixStream>, shared: &Shared, socket: &Path) {
    let mut line = String::new();
    let reason = loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break "end of stream".to_string(),
            Ok(_) => {}
            Err(e) => break e.to_string(),
        }
        let msg: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(socket = %socket.display(), error = %e, "unreadable QMP message");
                continue;
            }
        };
        let mut st = shared.lock();
        if let Some(name) = msg.get("event").and_then(Value::as_str) {
            let ts = msg.get("timestamp");
            let t = |k: &str| {
                ts.and_then(|t| t.get(k))
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
            };
            let event = QmpEvent {
                name: name.to_string(),
                data: msg.get("data").cloned().unwrap_or(Value::Null),
                timestamp: (t("seconds"), t("microseconds")),
            };
            tracing::debug!(socket = %socket.display(), event = %event.name, data = %event.data, "QMP event");
            if st.events.len() >= MAX_QUEUED_EVENTS {
                let old = st.events.pop_front();
                tracing::warn!(socket = %socket.display(), dropped = ?old.map(|e| e.name), "QMP event queue full");
            }
            st.events.push_back(event);
        } else if let Some(id) = msg.get("id").and_then(Value::as_u64) {
            if !st.abandoned.remove(&id) {
                st.replies.insert(id, msg);
            }
        } else {
            tracing::warn!(socket = %socket.display(), %msg, "QMP reply without an id");
        }
        drop(st);
        shared.cond.notify_all();
    };
    tracing::debug!(socket = %socket.display(), %reason, "QMP connection closed");
    shared.lock().closed = Some(reason);
    shared.cond.notify_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare() {
        let v = QemuVersion::parse(
            &json!({"qemu": {"major": 7, "minor": 2, "micro": 22}, "package": " Debian "}),
        )
        .unwrap();
        assert_eq!(v.to_string(), "7.2.22");
        assert_eq!(v.package, "Debian");
        assert!(v.at_least(7, 1) && v.at_least(7, 2) && !v.at_least(7, 3) && !v.at_least(8, 0));
        assert!(QemuVersion::parse(&json!({"qemu": {"major": 7}})).is_none());
    }

    #[test]
    fn errors_carry_class_and_desc() {
        let e = reply_result(
            Path::new("/s"),
            "x",
            json!({"error": {"class": "CommandNotFound", "desc": "The command x has not been found"}, "id": 1}),
        )
        .unwrap_err();
        assert_eq!(e.qemu_class(), Some("CommandNotFound"));
        assert!(
            e.to_string().contains("The command x has not been found"),
            "{e}"
        );
        assert_eq!(
            reply_result(Path::new("/s"), "x", json!({"return": {"a": 1}})).unwrap(),
            json!({"a": 1})
        );
    }
}
