//! TLS for the NBD server: [`TlsConfig`] loads a certificate chain, its
//! private key and optionally a CA that client certificates must chain to
//! (PEM files), into a rustls server configuration with the `ring` crypto
//! provider. A server given one runs TLS-only (see
//! [`crate::proto::options`]): clients upgrade with NBD_OPT_STARTTLS.
//!
//! Only the socket layer ([`crate::transport`]) uses the configuration; the
//! protocol core never sees TLS.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing of what was expected.
    #[error("TLS {what} {}: {detail}", path.display())]
    Pem {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    /// rustls refused the certificates or the key (a key that does not
    /// match the certificate, an unsupported algorithm).
    #[error("TLS {what}: {source}")]
    Rustls {
        what: &'static str,
        #[source]
        source: rustls::Error,
    },
    /// The client CA could not become a verifier.
    #[error("TLS client CA {}: {detail}", path.display())]
    ClientCa { path: PathBuf, detail: String },
}

/// The server side of TLS: a rustls configuration, shared by every
/// connection.
#[derive(Clone)]
pub struct TlsConfig {
    config: Arc<ServerConfig>,
    client_certs: bool,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("client_certs", &self.client_certs)
            .finish_non_exhaustive()
    }
}

fn certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |detail: String| TlsError::Pem {
        what,
        path: path.to_owned(),
        detail,
    };
    let list = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(e.to_string()))?;
    if list.is_empty() {
        return Err(pem("no PEM CERTIFICATE found".into()));
    }
    Ok(list)
}

impl TlsConfig {
    /// Reads the server's certificate chain (`cert`: PEM, leaf first) and
    /// private key (`key`: PEM, PKCS#8, PKCS#1 or SEC1); with `client_ca`,
    /// every client must present a certificate that chains to one of the
    /// CA certificates in that PEM file.
    pub fn from_pem_files(
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
    ) -> Result<TlsConfig, TlsError> {
        let chain = certs("certificate", cert)?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Pem {
            what: "private key",
            path: key.to_owned(),
            detail: e.to_string(),
        })?;
        // The ring provider (built with the repository's ring already):
        // rustls 0.23.48 deprecates it because it has no post-quantum key
        // exchange, which only aws-lc-rs (a long C build) offers; see
        // docs/dependencies.md.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Rustls {
                what: "protocol versions",
                source,
            })?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for c in certs("client CA", ca)? {
                    roots.add(c).map_err(|e| TlsError::ClientCa {
                        path: ca.to_owned(),
                        detail: e.to_string(),
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| TlsError::ClientCa {
                            path: ca.to_owned(),
                            detail: e.to_string(),
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(chain, key)
            .map_err(|source| TlsError::Rustls {
                what: "certificate and key",
                source,
            })?;
        Ok(TlsConfig {
            config: Arc::new(config),
            client_certs: client_ca.is_some(),
        })
    }

    /// Whether clients must present a certificate.
    pub fn requires_client_certs(&self) -> bool {
        self.client_certs
    }

    pub(crate) fn server_config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }
}
