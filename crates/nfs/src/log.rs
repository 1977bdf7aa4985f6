//! [`ServiceLog`]: the service's counters and its last log lines, without a
//! logging crate.
//!
//! Errors the operator must see (a disk read failing under a READ, the
//! cache folder full under a WRITE, a connection dropped for bad framing)
//! are counted and kept as lines in a bounded ring; an optional hook
//! forwards each line (the CLI prints them, a systemd unit sends them to
//! the journal). Nothing here writes to stderr by itself.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// How many lines [`ServiceLog::lines`] keeps.
pub const KEPT_LINES: usize = 256;

/// A function that receives every log line.
pub type LogHook = Arc<dyn Fn(&str) + Send + Sync>;

/// Counters and recent lines of a running service.
#[derive(Default)]
pub struct ServiceLog {
    pub(crate) accepted: AtomicU64,
    pub(crate) active: AtomicU64,
    pub(crate) closed_bad_input: AtomicU64,
    pub(crate) io_errors: AtomicU64,
    pub(crate) nospc_errors: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) refused_peers: AtomicU64,
    pub(crate) over_limit: AtomicU64,
    pub(crate) idle_closed: AtomicU64,
    pub(crate) followed: AtomicU64,
    pub(crate) calls: AtomicU64,
    lines: Mutex<VecDeque<String>>,
    hook: Mutex<Option<LogHook>>,
}

impl std::fmt::Debug for ServiceLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceLog")
            .field("accepted", &self.accepted())
            .field("io_errors", &self.io_errors())
            .field("nospc_errors", &self.nospc_errors())
            .finish()
    }
}

impl ServiceLog {
    /// Sends every future line to `hook` as well.
    pub fn set_hook(&self, hook: LogHook) {
        *self.hook.lock().unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    /// Records a line.
    pub fn line(&self, msg: impl Into<String>) {
        let msg = msg.into();
        let hook = self.hook.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(h) = hook {
            h(&msg);
        }
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == KEPT_LINES {
            lines.pop_front();
        }
        lines.push_back(msg);
    }

    /// The recent lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// TCP connections accepted.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
    /// TCP connections open now.
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }
    /// Connections closed because their bytes broke the RPC framing.
    pub fn closed_bad_input(&self) -> u64 {
        self.closed_bad_input.load(Ordering::Relaxed)
    }
    /// Requests answered NFS3ERR_IO.
    pub fn io_errors(&self) -> u64 {
        self.io_errors.load(Ordering::Relaxed)
    }
    /// Requests answered NFS3ERR_NOSPC.
    pub fn nospc_errors(&self) -> u64 {
        self.nospc_errors.load(Ordering::Relaxed)
    }
    /// Requests refused because the client may not use the object.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
    /// Connections closed when accepted and datagrams dropped because the
    /// peer is on no allow list.
    pub fn refused_peers(&self) -> u64 {
        self.refused_peers.load(Ordering::Relaxed)
    }
    /// Connections closed when accepted because the limit was reached.
    pub fn over_limit(&self) -> u64 {
        self.over_limit.load(Ordering::Relaxed)
    }
    /// Connections closed for being idle.
    pub fn idle_closed(&self) -> u64 {
        self.idle_closed.load(Ordering::Relaxed)
    }
    /// Calls read by a worker following its connection (not by the
    /// reactor): a client sending one call at a time.
    pub fn followed(&self) -> u64 {
        self.followed.load(Ordering::Relaxed)
    }
    /// Calls answered over TCP.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The counters in one line, for the service's last log line.
    pub fn summary(&self) -> String {
        format!(
            "{} connections, {} calls ({} read by a following worker), {} refused peers, \
             {} over the limit, {} idle closed, {} closed for bad input, {} I/O errors",
            self.accepted(),
            self.calls(),
            self.followed(),
            self.refused_peers(),
            self.over_limit(),
            self.idle_closed(),
            self.closed_bad_input(),
            self.io_errors()
        )
    }
}
