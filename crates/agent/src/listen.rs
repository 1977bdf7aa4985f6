//! The agent's port: [`DEFAULT_PORT`] (or `--port`) on every address; when
//! that port is taken, a free one the kernel picks, logged. Either way the
//! port is what the agent reports to the server.

use crate::error::AgentError;
use std::net::{Ipv4Addr, TcpListener};

/// The agent's port unless `--port` says otherwise.
pub const DEFAULT_PORT: u16 = 8082;

/// Listens on `port`, or on a free port when `port` is taken.
pub fn bind(port: u16) -> Result<TcpListener, AgentError> {
    match TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)) {
        Ok(listener) => Ok(listener),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0))
                .map_err(|source| AgentError::Listen { port: 0, source })?;
            let got = listener
                .local_addr()
                .map_err(|source| AgentError::Listen { port: 0, source })?
                .port();
            tracing::warn!(
                wanted = port,
                port = got,
                "port {port} is taken: listening on port {got} instead (reported to the server)"
            );
            Ok(listener)
        }
        Err(source) => Err(AgentError::Listen { port, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_falls_back_to_a_free_one() {
        let taken = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        let port = taken.local_addr().unwrap().port();
        let got = bind(port).unwrap().local_addr().unwrap().port();
        assert_ne!(got, port);
        assert_ne!(got, 0);
    }
}
