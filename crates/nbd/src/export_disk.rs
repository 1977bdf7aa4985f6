//! [`NbdExportDisk`]: an NBD export read as a [`ReadDisk`], so the backup
//! engine reads a running VM's point in time (QEMU's own export of a
//! fleecing node) like any other disk: data through READ, holes through
//! `base:allocation` block status (they are never read; the map is asked
//! for in 64 MiB windows and the last few are remembered), and the dirty
//! extents of an exported bitmap (`qemu:dirty-bitmap:NAME`) for an
//! incremental backup.
//!
//! The engine reads with several threads; each read takes a free
//! connection of a small pool (one request in flight per connection, so
//! several connections give several requests in flight), opened at the
//! start. A connection that breaks is opened again and the request
//! retried ([`RETRIES`] times); a server that stays away fails the read.

use crate::client::{ClientError, NbdClient};
use crate::proto::consts::{BASE_ALLOCATION, MAX_PAYLOAD, NBD_STATE_HOLE, NBD_STATE_ZERO};
use lifeboat_vdisk::{Extent, ReadDisk, Result};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Largest range one BLOCK_STATUS request asks about.
const STATUS_SPAN: u64 = 1 << 30;

/// The allocation map is asked for and remembered in aligned windows of
/// this size: a backup asks about every chunk in turn, and one request per
/// window instead of one per chunk halves its round trips to the server.
const STATUS_WINDOW: u64 = 64 << 20;
/// Windows remembered (the backup's workers read neighbouring chunks).
const STATUS_WINDOWS_KEPT: usize = 8;

/// How often a request whose connection broke is retried on a new one.
const RETRIES: u32 = 3;
/// The pause before the first retry; each next one waits 4 times longer
/// (0.1 s, 0.4 s, 1.6 s: a QEMU that went away is given up on in about 2 s).
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// An NBD export on a unix socket, read-only.
pub struct NbdExportDisk {
    socket: PathBuf,
    export: String,
    size: u64,
    timeout: Duration,
    pool: Vec<Mutex<NbdClient<UnixStream>>>,
    next: AtomicUsize,
    /// Whether the server gave `base:allocation` (else every byte is data).
    allocation: bool,
    /// The last windows' allocation maps: (window start, its extents). The
    /// export is a point in time, so a map read once stays true.
    windows: Mutex<Vec<(u64, Vec<Extent>)>>,
}

impl NbdExportDisk {
    /// Opens `connections` (at least 1) connections to `export` on `socket`.
    pub fn open(
        socket: &Path,
        export: &str,
        connections: usize,
        timeout: Duration,
    ) -> std::result::Result<NbdExportDisk, ClientError> {
        let mut pool = Vec::with_capacity(connections.max(1));
        for _ in 0..connections.max(1) {
            pool.push(NbdClient::connect_unix(
                socket,
                export,
                &[BASE_ALLOCATION],
                timeout,
            )?);
        }
        let size = pool[0].size();
        let allocation = pool[0].context_id(BASE_ALLOCATION).is_some();
        Ok(NbdExportDisk {
            socket: socket.to_path_buf(),
            export: export.to_string(),
            size,
            timeout,
            pool: pool.into_iter().map(Mutex::new).collect(),
            next: AtomicUsize::new(0),
            allocation,
            windows: Mutex::new(Vec::with_capacity(STATUS_WINDOWS_KEPT)),
        })
    }

    /// The ranges `(offset, length)` that metadata context `context`
    /// (a dirty bitmap: `qemu:dirty-bitmap:NAME`) marks with flag 1, over
    /// the whole export, merged. Fails when the server does not offer the
    /// context: the caller then reads everything.
    pub fn marked_ranges(
        &self,
        context: &str,
    ) -> std::result::Result<Vec<(u64, u64)>, ClientError> {
        let mut c = NbdClient::connect_unix(&self.socket, &self.export, &[context], self.timeout)?;
        let Some(id) = c.context_id(context) else {
            return Err(ClientError::Protocol {
                what: format!("NBD export {:?} on {}", self.export, self.socket.display()),
                detail: format!("the server does not offer {context}"),
            });
        };
        let mut out: Vec<(u64, u64)> = Vec::new();
        let mut at = 0;
        while at < self.size {
            let len = (self.size - at).min(STATUS_SPAN) as u32;
            for e in c.block_status(id, at, len)? {
                let end = (e.offset + e.length).min(self.size);
                if e.flags & 1 != 0 {
                    match out.last_mut() {
                        Some((o, l)) if *o + *l == e.offset => *l = end - *o,
                        _ => out.push((e.offset, end - e.offset)),
                    }
                }
                at = end;
            }
        }
        let _ = c.disconnect();
        Ok(out)
    }

    /// The allocation map of the window starting at `window` (aligned to
    /// [`STATUS_WINDOW`]), remembered or asked for.
    fn window_map(&self, window: u64) -> Result<Vec<Extent>> {
        let remembered = |w: &Vec<(u64, Vec<Extent>)>| {
            w.iter()
                .find(|(at, _)| *at == window)
                .map(|(_, m)| m.clone())
        };
        if let Some(map) = remembered(&self.windows.lock().unwrap_or_else(|p| p.into_inner())) {
            return Ok(map);
        }
        let map = self.allocation_map(window, (window + STATUS_WINDOW).min(self.size))?;
        let mut kept = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if remembered(&kept).is_none() {
            if kept.len() == STATUS_WINDOWS_KEPT {
                kept.remove(0);
            }
            kept.push((window, map.clone()));
        }
        Ok(map)
    }

    /// `base:allocation` of `offset..end` from the server, merged.
    fn allocation_map(&self, offset: u64, end: u64) -> Result<Vec<Extent>> {
        let mut out: Vec<Extent> = Vec::new();
        let mut at = offset;
        while at < end {
            let ask = (end - at).min(STATUS_SPAN) as u32;
            let got = self.with_client(|c| {
                let id = c.context_id(BASE_ALLOCATION).unwrap_or_default();
                c.block_status(id, at, ask)
            })?;
            for e in got {
                let length = (e.offset + e.length).min(end) - e.offset;
                let zero = e.flags & (NBD_STATE_HOLE | NBD_STATE_ZERO) != 0;
                push_merged(
                    &mut out,
                    if zero {
                        Extent::zero(e.offset, length)
                    } else {
                        Extent::data(e.offset, length)
                    },
                );
                at = e.offset + length;
            }
        }
        Ok(out)
    }

    /// Runs `f` on a free connection (waiting for one when all are busy).
    /// A connection that broke (an I/O error: closed, reset, timed out) is
    /// opened again and `f` retried, [`RETRIES`] times at most with a
    /// growing pause; the last error is returned, naming the export.
    fn with_client<T>(
        &self,
        mut f: impl FnMut(&mut NbdClient<UnixStream>) -> std::result::Result<T, ClientError>,
    ) -> Result<T> {
        let n = self.pool.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut guard = (0..n)
            .find_map(|i| self.pool[(start + i) % n].try_lock().ok())
            .unwrap_or_else(|| {
                self.pool[start % n]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
            });
        let mut err = match f(&mut guard) {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        for attempt in 0..RETRIES {
            if !matches!(err, ClientError::Io { .. }) {
                break;
            }
            tracing::warn!(export = %self.describe(), error = %err, attempt = attempt + 1,
                "NBD connection broke: reconnecting and retrying");
            std::thread::sleep(RETRY_PAUSE * 4u32.pow(attempt));
            let reopened = NbdClient::connect_unix(
                &self.socket,
                &self.export,
                &[BASE_ALLOCATION],
                self.timeout,
            );
            err = match reopened {
                Ok(c) => {
                    *guard = c;
                    match f(&mut guard) {
                        Ok(v) => return Ok(v),
                        Err(e) => e,
                    }
                }
                Err(e) => e,
            };
        }
        Err(lifeboat_vdisk::Error::source(self.describe(), err))
    }
}

impl ReadDisk for NbdExportDisk {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.size) {
            return Err(lifeboat_vdisk::Error::OutOfRange {
                what: self.describe(),
                offset,
                len: buf.len() as u64,
                size: self.size,
            });
        }
        for (i, piece) in buf.chunks_mut(MAX_PAYLOAD as usize).enumerate() {
            let at = offset + (i as u64) * u64::from(MAX_PAYLOAD);
            self.with_client(|c| c.read_into(at, piece))?;
        }
        Ok(())
    }

    fn extents(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        let end = offset.saturating_add(len).min(self.size);
        if end <= offset {
            return Ok(Vec::new());
        }
        if !self.allocation {
            return Ok(vec![Extent::data(offset, end - offset)]);
        }
        let mut out: Vec<Extent> = Vec::new();
        let mut window = offset - offset % STATUS_WINDOW;
        while window < end {
            for e in self.window_map(window)? {
                let from = e.offset.max(offset);
                let to = (e.offset + e.length).min(end);
                if from < to {
                    push_merged(
                        &mut out,
                        Extent {
                            offset: from,
                            length: to - from,
                            ..e
                        },
                    );
                }
            }
            window += STATUS_WINDOW;
        }
        Ok(out)
    }

    fn describe(&self) -> String {
        format!("NBD export {:?} on {}", self.export, self.socket.display())
    }
}

/// Appends `next` to `out`, merged into the last extent when it continues
/// it with the same kind.
fn push_merged(out: &mut Vec<Extent>, next: Extent) {
    match out.last_mut() {
        Some(last) if last.kind == next.kind && last.offset + last.length == next.offset => {
            last.length += next.length
        }
        _ => out.push(next),
    }
}
