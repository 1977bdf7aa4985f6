//! What stops the agent: its port, the server refusing its hello, its
//! TLS setup, or cleaning up after a previous run. (Requests to its API
//! fail with `lifeboat_server::Error`, the JSON errors the server's
//! client reads.)

use std::path::PathBuf;

/// An error that ends `lifeboat agent`.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("listening on port {port}")]
    Listen {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("checking in with the server")]
    Hello(#[source] lifeboat_server::ClientError),
    #[error("setting up the agent")]
    Setup(#[source] lifeboat_server::Error),
    #[error("starting the async runtime")]
    Runtime {
        #[source]
        source: std::io::Error,
    },
    #[error("cleaning up what the previous run left in {dir}")]
    Cleanup {
        dir: PathBuf,
        #[source]
        source: lifeboat_publish::Error,
    },
}
