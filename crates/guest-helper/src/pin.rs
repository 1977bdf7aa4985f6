//! Mutual certificate pinning for the proxy-helper TLS session.
//!
//! The proxy makes two fresh key pairs and certificates for each backup: one
//! for the helper and one for itself. Each side then accepts exactly the
//! other's certificate: [`Pinned`] compares the peer's end-entity
//! certificate with the pinned DER byte for byte, and checks the handshake
//! signature against it (so the peer holds the private key). There is no
//! CA, no name check and no validity-date check: the pin is the whole trust.
//! TLS 1.2 and 1.3 only, on rustls's `ring` provider.

use std::sync::Arc;

use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, ClientConfig, DistinguishedName, Error, ServerConfig};

/// A TLS setting that could not be built (a bad certificate or key).
#[derive(Debug, thiserror::Error)]
#[error("TLS setup ({what}): {source}")]
pub struct PinError {
    what: &'static str,
    #[source]
    source: Error,
}

/// One side's identity: its certificate and PKCS#8 private key (DER).
#[derive(Clone)]
pub struct Identity {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("cert", &format_args!("{} bytes", self.cert.len()))
            .finish_non_exhaustive()
    }
}

impl Identity {
    fn chain_and_key(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (
            vec![CertificateDer::from(self.cert.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone())),
        )
    }
}

/// Accepts exactly one peer certificate.
#[derive(Debug)]
pub struct Pinned {
    cert: Vec<u8>,
    provider: Arc<CryptoProvider>,
}

impl Pinned {
    fn new(cert: &[u8], provider: &Arc<CryptoProvider>) -> Pinned {
        Pinned {
            cert: cert.to_vec(),
            provider: Arc::clone(provider),
        }
    }

    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), Error> {
        if end_entity.as_ref() == self.cert.as_slice() {
            Ok(())
        } else {
            Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }
}

/// The handshake-signature methods of rustls's verifier traits
/// (`ServerCertVerifier`, `ClientCertVerifier`), checked against the
/// peer's certificate with the algorithms of `self.provider` (an
/// `Arc<CryptoProvider>` field of the verifier). Exported for the other
/// crates' verifiers (preflight's TLS probe).
#[macro_export]
macro_rules! signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &::rustls::pki_types::CertificateDer<'_>,
            dss: &::rustls::DigitallySignedStruct,
        ) -> ::std::result::Result<
            ::rustls::client::danger::HandshakeSignatureValid,
            ::rustls::Error,
        > {
            ::rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &::rustls::pki_types::CertificateDer<'_>,
            dss: &::rustls::DigitallySignedStruct,
        ) -> ::std::result::Result<
            ::rustls::client::danger::HandshakeSignatureValid,
            ::rustls::Error,
        > {
            ::rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> ::std::vec::Vec<::rustls::SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    signature_checks!();
}

impl ClientCertVerifier for Pinned {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    signature_checks!();
}

/// rustls's `ring` provider. rustls 0.23.48 deprecates it for lacking
/// post-quantum key exchange (see docs/dependencies.md).
fn provider() -> Arc<CryptoProvider> {
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

fn err(what: &'static str) -> impl FnOnce(Error) -> PinError {
    move |source| PinError { what, source }
}

/// The helper's side: presents `own`, requires the client certificate `peer`.
pub fn server_config(own: &Identity, peer: &[u8]) -> Result<Arc<ServerConfig>, PinError> {
    let p = provider();
    let (chain, key) = own.chain_and_key();
    let config = ServerConfig::builder_with_provider(Arc::clone(&p))
        .with_safe_default_protocol_versions()
        .map_err(err("protocol versions"))?
        .with_client_cert_verifier(Arc::new(Pinned::new(peer, &p)))
        .with_single_cert(chain, key)
        .map_err(err("the helper's certificate and key"))?;
    Ok(Arc::new(config))
}

/// The proxy's side: presents `own`, requires the server certificate `peer`.
pub fn client_config(own: &Identity, peer: &[u8]) -> Result<Arc<ClientConfig>, PinError> {
    let p = provider();
    let (chain, key) = own.chain_and_key();
    let config = ClientConfig::builder_with_provider(Arc::clone(&p))
        .with_safe_default_protocol_versions()
        .map_err(err("protocol versions"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned::new(peer, &p)))
        .with_client_auth_cert(chain, key)
        .map_err(err("the proxy's certificate and key"))?;
    Ok(Arc::new(config))
}

/// Whether a TLS failure is the peer's certificate failing its pin (ours
/// refusing it, or the peer's alert that it refused ours).
pub fn is_pin_failure(e: &Error) -> bool {
    use rustls::AlertDescription as A;
    matches!(
        e,
        Error::InvalidCertificate(_)
            | Error::AlertReceived(
                A::BadCertificate
                    | A::AccessDenied
                    | A::CertificateUnknown
                    | A::CertificateRequired
                    | A::UnknownCA
                    | A::DecryptError
            )
    )
}

/// The rustls error inside an I/O error from a TLS stream, if any.
pub fn tls_error(e: &std::io::Error) -> Option<&Error> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<Error>())
}
