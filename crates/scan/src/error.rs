//! The error type of the scanning crate: every variant names the thing it is
//! about (the tool, the path, the database).

use std::path::PathBuf;

/// Errors from scanners, reports and the scan cache.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// A scanner binary is not installed.
    #[error("`{tool}` not found: install clamav (apt-get install -y clamav)")]
    ToolMissing { tool: String },
    /// Running a scanner binary failed before it produced a result.
    #[error("running `{tool}`: {source}")]
    Spawn {
        tool: String,
        #[source]
        source: std::io::Error,
    },
    /// The scanner ran and reported an error (exit code 2 or unexpected).
    #[error("`{tool}` failed with exit code {code:?}: {stderr}")]
    ToolFailed {
        tool: String,
        code: Option<i32>,
        stderr: String,
    },
    /// A file or directory of the tree or of the database could not be read.
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// YARA rules did not compile.
    #[error("compiling YARA rules `{name}`: {message}")]
    YaraCompile { name: String, message: String },
    /// A YARA scan failed (e.g. timeout).
    #[error("YARA scan of {name}: {message}")]
    YaraScan { name: String, message: String },
    /// The crate was built without a feature the caller asked for.
    #[error("{what} is not built in: rebuild lifeboat-scan with the `{feature}` feature")]
    NotBuilt { what: String, feature: String },
    /// The scan was asked for without a suitable engine.
    #[error("{what}")]
    NoEngine { what: String },
    /// The scan was stopped (its cancel flag was set, e.g. by Ctrl-C).
    #[error("{what}: cancelled")]
    Cancelled { what: String },
}

/// Result alias of this crate.
pub type Result<T, E = ScanError> = std::result::Result<T, E>;

impl ScanError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ScanError::Io {
            path: path.into(),
            source,
        }
    }
}
