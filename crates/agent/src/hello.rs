//! The agent checking in: `POST /api/v1/agent/hello` with its certificate
//! and the port it listens on, at start (a refusal stops the agent) and
//! then every [`HELLO_EVERY`] (the server's "last seen", and a port or
//! address it lost). The answer names the server's client certificate by
//! fingerprint: the one caller the agent serves ([`Trusted`]).

use crate::error::AgentError;
use lifeboat_server::agents::wire::{Hello, HelloReply};
use lifeboat_server::proxies::identity::Identity;
use lifeboat_server::Client;
use std::sync::RwLock;
use std::time::Duration;

/// How often a running agent checks in.
pub const HELLO_EVERY: Duration = Duration::from_secs(30);

/// The fingerprint of the server's client certificate, as the server last
/// said it.
#[derive(Debug, Default)]
pub struct Trusted(RwLock<Option<String>>);

impl Trusted {
    /// Whether `fingerprint` is the server's.
    pub fn is(&self, fingerprint: &str) -> bool {
        let known = self.0.read().unwrap_or_else(|e| e.into_inner());
        known.as_deref() == Some(fingerprint)
    }

    fn set(&self, fingerprint: String) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(fingerprint);
    }
}

/// The agent's client of its server (its certificate, the CA it got).
pub fn client(identity: &Identity) -> Result<Client, AgentError> {
    Client::for_proxy(identity).map_err(AgentError::Hello)
}

/// One hello; remembers whom to trust.
pub fn say_hello(
    client: &Client,
    port: u16,
    host: Option<&str>,
    trusted: &Trusted,
) -> Result<HelloReply, AgentError> {
    let reply = client
        .agent_hello(&Hello {
            port,
            host: host.map(str::to_string),
        })
        .map_err(AgentError::Hello)?;
    trusted.set(reply.server_fingerprint.clone());
    Ok(reply)
}

/// Says hello every [`HELLO_EVERY`] on a thread of its own; failures are
/// logged (the server may be restarting).
pub fn keep_saying_hello(
    client: Client,
    port: u16,
    host: Option<String>,
    trusted: std::sync::Arc<Trusted>,
) {
    let spawned = std::thread::Builder::new()
        .name("agent-hello".into())
        .spawn(move || loop {
            std::thread::sleep(HELLO_EVERY);
            if let Err(e) = say_hello(&client, port, host.as_deref(), &trusted) {
                tracing::warn!(error = %lifeboat_server::error_chain(&e), "checking in with the server");
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no hello thread: the server's last-seen time goes stale");
    }
}
