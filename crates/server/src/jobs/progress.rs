//! A running session's progress ([`lifeboat_engine::Progress`]): bytes read
//! so far, written to the catalog at most every [`FLUSH_EVERY`] (and when a
//! disk is done), and a log line per disk.

use super::execute::SessionLog;
use crate::catalog::Catalog;
use lifeboat_engine::Progress;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the bytes read are written to the catalog while a disk runs.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// The progress of session `id`.
pub struct SessionProgress<'a> {
    catalog: &'a Catalog,
    id: i64,
    read: AtomicU64,
    total: AtomicU64,
    flushed: Mutex<Instant>,
    /// Set when the session is cancelled: the engine stops.
    cancel: Arc<AtomicBool>,
}

impl<'a> SessionProgress<'a> {
    pub fn new(catalog: &'a Catalog, id: i64, cancel: Arc<AtomicBool>) -> SessionProgress<'a> {
        SessionProgress {
            catalog,
            id,
            read: AtomicU64::new(0),
            total: AtomicU64::new(0),
            flushed: Mutex::new(Instant::now()),
            cancel,
        }
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// Appends a line to the session's log (a failure is only logged: a
    /// full catalog disk must not fail a backup).
    pub fn log(&self, line: &str) {
        SessionLog::log(self, line)
    }

    fn write_line(&self, line: &str) {
        tracing::info!(session = self.id, line, "session log");
        if let Err(e) = self.catalog.log_line(self.id, line) {
            tracing::warn!(session = self.id, error = %e, "writing the session log");
        }
    }

    fn flush(&self) {
        let total = self.total.load(Ordering::Relaxed);
        if let Err(e) = self.catalog.set_progress(self.id, self.bytes_read(), total) {
            tracing::warn!(session = self.id, error = %e, "writing the session's progress");
        }
    }
}

impl SessionLog for SessionProgress<'_> {
    fn log(&self, line: &str) {
        self.write_line(line)
    }
}

impl Progress for SessionProgress<'_> {
    fn start(&self, label: &str, total: u64) {
        self.total.fetch_add(total, Ordering::Relaxed);
        self.flush();
        self.log(&format!("reading {label}: {total} bytes"));
    }

    fn advance(&self, bytes: u64) {
        self.read.fetch_add(bytes, Ordering::Relaxed);
        // One writer at a time; the others go on reading.
        let Ok(mut last) = self.flushed.try_lock() else {
            return;
        };
        if last.elapsed() >= FLUSH_EVERY {
            *last = Instant::now();
            drop(last);
            self.flush();
        }
    }

    fn finish(&self) {
        self.flush();
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::sessions::{Queued, Trigger};

    #[test]
    fn progress_reaches_the_catalog_and_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        let Queued::Queued(s) = c
            .queue_session("web01", Trigger::Manual, 1, "2026-01-01T00:00:00Z")
            .unwrap()
        else {
            panic!()
        };
        let p = SessionProgress::new(&c, s.id, Arc::default());
        p.start("disk0", 8192);
        p.advance(4096);
        p.advance(4096);
        p.finish();
        let got = c.session(s.id).unwrap().unwrap();
        assert_eq!((got.bytes_read, got.bytes_total), (8192, 8192));
        assert_eq!(got.log.unwrap()[0].line, "reading disk0: 8192 bytes");
    }
}
