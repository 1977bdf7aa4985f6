//! Files and processes in the guest through the guest agent: write a file
//! (`guest-file-open`/`guest-file-write` in base64 chunks of at most
//! [`FILE_CHUNK`] bytes/`guest-file-close`), start a program (`guest-exec`),
//! poll it (`guest-exec-status`), run one to its end, and list the guest's
//! IPv4 addresses (`guest-network-get-interfaces`).

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::agent::{AgentClient, AgentError};

/// The most file bytes sent in one `guest-file-write`.
pub const FILE_CHUNK: usize = 192 << 10;

/// What `guest-exec-status` said about a program.
#[derive(Debug, Clone, Default)]
pub struct ExecStatus {
    /// The program has ended (its status below is final).
    pub exited: bool,
    /// Its exit status, when it exited.
    pub exit_code: Option<i64>,
    /// The signal that killed it, when one did.
    pub signal: Option<i64>,
    /// Its stdout (when captured).
    pub stdout: String,
    /// Its stderr (when captured).
    pub stderr: String,
}

impl ExecStatus {
    /// Exited with status 0.
    pub fn succeeded(&self) -> bool {
        self.exited && self.exit_code == Some(0)
    }

    /// "exit status N" or "killed by signal N", and its stderr.
    pub fn describe(&self) -> String {
        let how = match (self.exit_code, self.signal) {
            (_, Some(s)) => format!("killed by signal {s}"),
            (Some(c), None) => format!("exit status {c}"),
            (None, None) => "still running".into(),
        };
        let err = self.stderr.trim();
        if err.is_empty() {
            how
        } else {
            format!("{how}: {err}")
        }
    }
}

fn b64(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

impl AgentClient {
    fn bad(&self, command: &str, reason: String) -> AgentError {
        AgentError::BadReply {
            socket: self.socket().to_path_buf(),
            command: command.to_string(),
            reason,
        }
    }

    /// Creates (or truncates) `path` in the guest and writes `data` to it.
    pub fn write_file(&mut self, path: &str, data: &[u8]) -> Result<(), AgentError> {
        let opened = self.execute("guest-file-open", json!({"path": path, "mode": "w"}))?;
        let handle = opened
            .as_i64()
            .ok_or_else(|| self.bad("guest-file-open", format!("no handle in {opened}")))?;
        let written = self.write_chunks(handle, data);
        let closed = self.execute("guest-file-close", json!({ "handle": handle }));
        written?;
        closed.map(drop)
    }

    fn write_chunks(&mut self, handle: i64, data: &[u8]) -> Result<(), AgentError> {
        for chunk in data.chunks(FILE_CHUNK) {
            let buf = base64::engine::general_purpose::STANDARD.encode(chunk);
            let r = self.execute(
                "guest-file-write",
                json!({"handle": handle, "buf-b64": buf}),
            )?;
            let count = r.get("count").and_then(Value::as_u64);
            if count != Some(chunk.len() as u64) {
                return Err(self.bad(
                    "guest-file-write",
                    format!("{} bytes sent, the agent wrote {count:?}", chunk.len()),
                ));
            }
        }
        Ok(())
    }

    /// Starts `path` with `args` in the guest (output captured); its pid.
    pub fn exec(&mut self, path: &str, args: &[&str]) -> Result<i64, AgentError> {
        let r = self.execute(
            "guest-exec",
            json!({"path": path, "arg": args, "capture-output": true}),
        )?;
        r.get("pid")
            .and_then(Value::as_i64)
            .ok_or_else(|| self.bad("guest-exec", format!("no pid in {r}")))
    }

    /// `guest-exec-status` of a program [`AgentClient::exec`] started. Once
    /// it reports the end, the agent forgets the program.
    pub fn exec_status(&mut self, pid: i64) -> Result<ExecStatus, AgentError> {
        let r = self.execute("guest-exec-status", json!({ "pid": pid }))?;
        Ok(ExecStatus {
            exited: r.get("exited").and_then(Value::as_bool).unwrap_or(false),
            exit_code: r.get("exitcode").and_then(Value::as_i64),
            signal: r.get("signal").and_then(Value::as_i64),
            stdout: b64(&r, "out-data"),
            stderr: b64(&r, "err-data"),
        })
    }

    /// Polls a started program until it ends or `timeout` passes (then the
    /// last status, not exited).
    pub fn wait_exec(&mut self, pid: i64, timeout: Duration) -> Result<ExecStatus, AgentError> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.exec_status(pid)?;
            if s.exited || Instant::now() >= deadline {
                return Ok(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `path` with `args` to its end (at most `timeout`).
    pub fn run(
        &mut self,
        path: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<ExecStatus, AgentError> {
        let pid = self.exec(path, args)?;
        self.wait_exec(pid, timeout)
    }

    /// The guest's IPv4 addresses outside 127.0.0.0/8, as the agent lists them.
    pub fn ipv4_addresses(&mut self) -> Result<Vec<std::net::Ipv4Addr>, AgentError> {
        let r = self.execute("guest-network-get-interfaces", Value::Null)?;
        let addrs = r
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i.get("ip-addresses").and_then(Value::as_array))
            .flatten()
            .filter(|a| a.get("ip-address-type").and_then(Value::as_str) == Some("ipv4"))
            .filter_map(|a| a.get("ip-address").and_then(Value::as_str))
            .filter_map(|s| s.parse::<std::net::Ipv4Addr>().ok())
            .filter(|ip| !ip.is_loopback())
            .collect();
        Ok(addrs)
    }
}
