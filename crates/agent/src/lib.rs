//! The Lifeboat agent (`lifeboat agent`): on a publish target, it
//! publishes, unpublishes and scans restore points for the server, which
//! alone may call it.
//!
//! ```text
//!  start: clean up what a previous run left (cleanup.rs)
//!         bind --port (8082), or a free port when taken (listen.rs)
//!         POST /api/v1/agent/hello {port} with its certificate (hello.rs)
//!           <- the server's client fingerprint; again every 30 s
//!  serve: HTTPS, mutual TLS (the server's TLS setup and accept loop),
//!         only the server's client certificate (api.rs)
//!         /agent/v1/publications  GET list, POST publish     (publications.rs)
//!         /agent/v1/publications/{session}  DELETE unpublish
//!         /agent/v1/scans         POST scan, answers when done (scans.rs)
//! ```
//!
//! The agent's certificate (from the server's CA, enrolled like a proxy:
//! `lifeboat_server::proxies::identity`) is both its listener's
//! certificate and its client certificate. It opens the repository at
//! the path the server names (shared storage, like proxies) with the
//! passphrase from its own environment; chunk reads from the server's
//! repository endpoint are not built yet.

mod api;
mod cleanup;
mod error;
mod hello;
mod listen;
mod publications;
mod scans;

pub use error::AgentError;
pub use listen::DEFAULT_PORT;

use lifeboat_server::proxies::identity::Identity;
use std::path::PathBuf;
use std::sync::Arc;

/// The agent's data dir unless `--data-dir` says otherwise.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/lifeboat-agent";

/// How an agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Its identity (key, certificate, CA, server) and its state.
    pub data_dir: PathBuf,
    /// The port to listen on; a free one when it is taken.
    pub port: u16,
    /// The address the server should call (default: the one its hello
    /// comes from).
    pub host: Option<String>,
    /// Where publications are mounted: `<mount-root>/<session>/<vm>/<volume>`.
    pub mount_root: PathBuf,
    /// The repositories' passphrase, from the agent's environment.
    pub passphrase: Option<String>,
    /// The ClamAV signature database scans use (default: ClamAV's own).
    pub clamav_db: Option<PathBuf>,
    /// The `lifeboat` executable: it runs `publish-daemon` (the publisher
    /// processes).
    pub program: PathBuf,
}

impl AgentConfig {
    /// The state files of the agent's publications.
    fn publish_state(&self) -> PathBuf {
        self.data_dir.join("publications")
    }

    /// Where scans publish, keep their state and their cache.
    fn scan_dir(&self) -> PathBuf {
        self.data_dir.join("scans")
    }
}

/// Runs the agent with `identity` until SIGTERM or SIGINT.
pub fn run(config: AgentConfig, identity: &Identity) -> Result<(), AgentError> {
    cleanup::at_start(&config)?;
    let listener = listen::bind(config.port)?;
    let port = listener
        .local_addr()
        .map_err(|source| AgentError::Listen {
            port: config.port,
            source,
        })?
        .port();
    let client = hello::client(identity)?;
    let trusted = Arc::new(hello::Trusted::default());
    let me = hello::say_hello(&client, port, config.host.as_deref(), &trusted)?.agent;
    tracing::info!(
        agent = me.name,
        server = identity.server,
        port,
        "checked in with the server"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("lifeboat-agent")
        .build()
        .map_err(|source| AgentError::Runtime { source })?;
    let tls = lifeboat_server::tls::agent_config(&identity.cert(), &identity.key(), &identity.ca())
        .map_err(AgentError::Setup)?;
    let config = Arc::new(config);
    hello::keep_saying_hello(client, port, config.host.clone(), trusted.clone());
    runtime.block_on(async move {
        let stop = lifeboat_server::serve::stop_signal().map_err(AgentError::Setup)?;
        listener
            .set_nonblocking(true)
            .map_err(|source| AgentError::Listen { port, source })?;
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|source| AgentError::Listen { port, source })?;
        tracing::info!(port, "serving the server over mutual TLS");
        lifeboat_server::listener::serve(
            listener,
            tls,
            api::router(config, &me.name, trusted),
            |_client_certificate| {},
            stop,
        )
        .await;
        Ok(())
    })
}
