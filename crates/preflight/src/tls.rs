//! The TLS probe: a handshake with TLS 1.2 or 1.3 only (rustls offers
//! nothing older), then the server's certificate: checked against the CA
//! the operator gives (chain and name), or, without one, not checked and
//! said so.

use crate::check::Check;
use crate::tcp;
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// rustls's `ring` provider (the one the workspace builds; rustls 0.23.48
/// deprecates it for lacking post-quantum key exchange, see
/// docs/dependencies.md).
fn provider() -> Arc<CryptoProvider> {
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Handshakes with `target` (`host:port`) as `name` and reports the
/// protocol, the cipher suite and how far the certificate was checked.
pub fn check_tls(name: &str, target: &str, ca: Option<&Path>, timeout: Duration) -> Check {
    match handshake(target, ca, timeout) {
        Ok(done) if ca.is_some() => Check::pass(
            name,
            target,
            format!(
                "{} with {}; certificate chain and name verified against {}",
                done.version,
                done.suite,
                ca.map(|p| p.display().to_string()).unwrap_or_default()
            ),
        ),
        Ok(done) => Check::warn(
            name,
            target,
            format!(
                "{} with {}; the certificate was not checked (no CA given)",
                done.version, done.suite
            ),
            "give the CA certificate (--ca FILE, PEM) to check the server's certificate",
        ),
        Err(Failure { detail, fix }) => Check::fail(name, target, detail, fix),
    }
}

struct Done {
    version: String,
    suite: String,
}

struct Failure {
    detail: String,
    fix: String,
}

fn handshake(target: &str, ca: Option<&Path>, timeout: Duration) -> Result<Done, Failure> {
    let host = target
        .rsplit_once(':')
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
        .unwrap_or(target);
    let server_name = ServerName::try_from(host.to_string()).map_err(|e| Failure {
        detail: format!("{host:?} is not a host name or address: {e}"),
        fix: "give the server as HOST:PORT".into(),
    })?;
    let config = client_config(ca)?;
    let mut sock = tcp::connect(target, timeout).map_err(|detail| Failure {
        detail,
        fix: format!("open TCP {target} from this host to the server, and check it listens"),
    })?;
    let io_setup = |e: std::io::Error| Failure {
        detail: format!("setting socket timeouts: {e}"),
        fix: String::new(),
    };
    sock.set_read_timeout(Some(timeout)).map_err(io_setup)?;
    sock.set_write_timeout(Some(timeout)).map_err(io_setup)?;
    let mut conn = ClientConnection::new(Arc::new(config), server_name).map_err(|e| Failure {
        detail: format!("starting TLS: {e}"),
        fix: String::new(),
    })?;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut sock) {
            return Err(explain(target, &e));
        }
    }
    let version = conn
        .protocol_version()
        .map(|v| format!("{v:?}").replace("TLSv1_", "TLS 1."))
        .unwrap_or_else(|| "TLS".into());
    let suite = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_default();
    conn.send_close_notify();
    let _ = conn.complete_io(&mut sock);
    Ok(Done { version, suite })
}

/// What a failed handshake means, and what to do.
fn explain(target: &str, e: &std::io::Error) -> Failure {
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let (detail, fix) = match tls {
        Some(rustls::Error::InvalidCertificate(why)) => (
            format!("the server's certificate is not trusted: {why:?}"),
            "give the CA that issued the server's certificate (--ca), or fix the certificate's name or dates".to_string(),
        ),
        Some(rustls::Error::AlertReceived(alert)) => (
            format!("the server refused the handshake (alert {alert:?}): it offers no TLS 1.2 or 1.3 this client accepts"),
            "enable TLS 1.2 or 1.3 on the server (TLS 1.0 and 1.1 are refused)".to_string(),
        ),
        Some(rustls::Error::InvalidMessage(m)) => (
            format!("the server does not speak TLS on this port ({m:?})"),
            format!("check that {target} is the TLS port (plain HTTP is refused)"),
        ),
        Some(rustls::Error::PeerIncompatible(why)) => (
            format!("the server is incompatible: {why:?}"),
            "enable TLS 1.2 or 1.3 with a modern cipher suite on the server".to_string(),
        ),
        Some(other) => (format!("TLS handshake failed: {other}"), String::new()),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => (
            "the server closed the connection during the handshake".to_string(),
            "enable TLS 1.2 or 1.3 on the server (TLS 1.0 and 1.1 are refused)".to_string(),
        ),
        None => (format!("TLS handshake failed: {e}"), String::new()),
    };
    let fix = if fix.is_empty() {
        format!("check the TLS service on {target}")
    } else {
        fix
    };
    Failure { detail, fix }
}

fn client_config(ca: Option<&Path>) -> Result<ClientConfig, Failure> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure {
            detail: format!("TLS set-up: {e}"),
            fix: String::new(),
        })?;
    let bad_ca = |path: &Path, detail: String| Failure {
        detail: format!("CA file {}: {detail}", path.display()),
        fix: "give a PEM file holding the CA certificate".into(),
    };
    let config = match ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| bad_ca(path, e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad_ca(path, e.to_string()))?;
            if certs.is_empty() {
                return Err(bad_ca(path, "no PEM CERTIFICATE found".into()));
            }
            for c in certs {
                roots.add(c).map_err(|e| bad_ca(path, e.to_string()))?;
            }
            let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| bad_ca(path, e.to_string()))?;
            builder.with_webpki_verifier(verifier).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unchecked { provider }))
            .with_no_client_auth(),
    };
    Ok(config)
}

/// Accepts any certificate (the probe then says it was not checked) but
/// still checks the handshake's signatures with the certificate's key.
#[derive(Debug)]
struct Unchecked {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    lifeboat_guest_helper::signature_checks!();
}
