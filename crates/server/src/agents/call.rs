//! The server calling an agent: a [`Client::for_agent`] with the server's
//! own client certificate, to the address and port the agent last
//! reported, its certificate checked for the agent's name. Blocking (run
//! it on a blocking thread). The agent's refusals keep their kind with
//! the agent named; a connection that fails, or an agent that fails, is
//! [`Error::Agent`] (502) naming the agent and its address.

use crate::catalog::agents::Agent;
use crate::client::{Client, ClientError};
use crate::error::{Error, ErrorKind, Result};
use crate::state::Shared;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// A listing or a small change.
pub const SHORT: Duration = Duration::from_secs(30);
/// Publishing: resolving, mounting every volume.
pub const PUBLISH: Duration = Duration::from_secs(10 * 60);
/// A scan answers when it is done.
pub const SCAN: Duration = Duration::from_secs(6 * 60 * 60);

const NO_CA: &str = "this server uses the operator's certificate (--tls-cert/--tls-key) and has no CA of its own: agents work only with a server that runs on its own CA";

/// Agent `name`, enrolled and with a reported address.
pub fn find(shared: &Shared, name: &str) -> Result<Agent> {
    shared.catalog.agent(name)?.ok_or_else(|| Error::NotFound {
        what: format!("agent {name:?}"),
    })
}

/// Where `agent` listens: `host:port`.
pub fn address_text(agent: &Agent) -> Option<String> {
    let (host, port) = (agent.host.as_deref()?, agent.port?);
    Some(if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

/// One request to `agent`, taking at most `timeout`.
pub fn call<B: Serialize, T: DeserializeOwned>(
    shared: &Shared,
    agent: &Agent,
    method: &str,
    path: &str,
    body: Option<&B>,
    timeout: Duration,
) -> Result<T> {
    let identity = shared.client_identity.as_ref().ok_or(Error::Request {
        kind: ErrorKind::Conflict,
        message: NO_CA.into(),
    })?;
    let Some(address) = address_text(agent) else {
        return Err(Error::Request {
            kind: ErrorKind::Conflict,
            message: format!(
                "agent {} has not reported where it listens yet (is `lifeboat agent` running?)",
                agent.name
            ),
        });
    };
    let failed = |detail: String| Error::Agent {
        name: agent.name.clone(),
        address: address.clone(),
        detail,
    };
    let socket = resolve(&address).map_err(&failed)?;
    let client = Client::for_agent(&agent.name, socket, identity, timeout)
        .map_err(|e| failed(e.to_string()))?;
    client
        .send(method, path, body)
        .map_err(|e| refusal(&agent.name, e, &failed))
}

/// The first address of `host:port`.
fn resolve(address: &str) -> std::result::Result<SocketAddr, String> {
    address
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?
        .next()
        .ok_or_else(|| "the name has no address".to_string())
}

/// The server's error for the agent's: a refusal keeps its kind (the
/// agent named), anything else is the agent failing.
fn refusal(name: &str, e: ClientError, failed: &dyn Fn(String) -> Error) -> Error {
    match e {
        ClientError::Connect { source, .. } => failed(format!("not reachable: {source}")),
        // Not the caller's token: the agent refused the server itself.
        ClientError::Server {
            status: 401 | 403,
            message,
            ..
        } => failed(format!("refused the server: {message}")),
        ClientError::Server {
            status,
            kind,
            message,
            ..
        } if status < 500 => Error::Request {
            kind: kind.unwrap_or(ErrorKind::BadRequest),
            message: format!("agent {name}: {message}"),
        },
        ClientError::Server { message, .. } => failed(format!("failed: {message}")),
        other => failed(other.to_string()),
    }
}
