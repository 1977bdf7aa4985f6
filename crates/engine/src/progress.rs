//! Progress reporting: jobs call a [`Progress`]; the CLI draws bars on a
//! terminal and nothing otherwise.

/// Receives progress of a job. Called from worker threads.
pub trait Progress: Sync {
    /// A disk of `total` bytes starts.
    fn start(&self, label: &str, total: u64);
    /// `bytes` more bytes of the current disk are done.
    fn advance(&self, bytes: u64);
    /// The current disk is done.
    fn finish(&self);
    /// True when the job is to stop: a backup asks before each chunk and
    /// ends with [`crate::Error::Cancelled`] and no restore point.
    fn cancelled(&self) -> bool {
        false
    }
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _label: &str, _total: u64) {}
    fn advance(&self, _bytes: u64) {}
    fn finish(&self) {}
}
