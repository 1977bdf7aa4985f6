//! Resolving `host:port` and connecting with a timeout.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The addresses `host:port` resolves to; an error that names it.
pub fn resolve(target: &str) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = target
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {target}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{target} resolves to no address"));
    }
    Ok(addrs)
}

/// A connection to the first address of `target` that accepts one.
pub fn connect(target: &str, timeout: Duration) -> Result<TcpStream, String> {
    let mut last = String::new();
    for addr in resolve(target)? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("connecting to {addr}: {e}"),
        }
    }
    Err(last)
}

/// `host:port` from `host` or `host:port` and a default port. IPv6
/// addresses are given in brackets (`[::1]:2049`).
pub fn with_port(host: &str, default_port: u16) -> String {
    let bare_v6 = host.matches(':').count() > 1 && !host.starts_with('[');
    if bare_v6 {
        return format!("[{host}]:{default_port}");
    }
    if host.starts_with('[') {
        if host.contains("]:") {
            return host.to_string();
        }
        return format!("{host}:{default_port}");
    }
    if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:{default_port}")
    }
}

#[cfg(test)]
mod tests {
    use super::with_port;

    #[test]
    fn a_default_port_is_added_only_when_none_is_given() {
        assert_eq!(with_port("ntp.example", 123), "ntp.example:123");
        assert_eq!(with_port("127.0.0.1:1123", 123), "127.0.0.1:1123");
        assert_eq!(with_port("::1", 123), "[::1]:123");
        assert_eq!(with_port("[::1]", 123), "[::1]:123");
        assert_eq!(with_port("[::1]:99", 123), "[::1]:99");
    }
}

/// What a TCP connect found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Something accepted the connection.
    Open,
    /// The host answered with a reset: reachable, nothing listening.
    Refused,
    /// No answer (filtered, down, no route) or no address.
    Unreachable(String),
}

/// Connects to `target` once and says what happened.
pub fn reach(target: &str, timeout: Duration) -> Reach {
    let addrs = match resolve(target) {
        Ok(a) => a,
        Err(e) => return Reach::Unreachable(e),
    };
    let mut last = Reach::Unreachable(format!("{target}: no address answered"));
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(_) => return Reach::Open,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => last = Reach::Refused,
            Err(e) => {
                if last != Reach::Refused {
                    last = Reach::Unreachable(format!("connecting to {addr}: {e}"));
                }
            }
        }
    }
    last
}
