//! The server's certificates and its rustls configuration.
//!
//! Without the operator's PEM files the server is its own CA: on first
//! start it makes a CA key and certificate (`<data-dir>/tls/ca.pem`,
//! `ca.key`); at every start it issues a fresh server certificate signed by
//! that CA for the names it answers to (localhost, 127.0.0.1, ::1, the
//! host name, the listen address unless unspecified) and writes it beside
//! (`server.pem`, `server.key`), so a changed host name or listen address
//! never leaves a stale certificate while clients keep trusting the same
//! CA. Keys are written 0600 in a 0700 folder, atomically (temp + rename).
//!
//! TLS 1.3 and 1.2 only (1.3 preferred, the rustls default order), on the
//! `ring` provider the workspace builds; ALPN offers HTTP/1.1. With its own
//! CA the server also asks for an optional client certificate issued by
//! that CA (enrolled proxies, see [`crate::proxies`]), and keeps a client
//! certificate of its own from that CA (`client.pem`, `client.key`, made
//! once), the identity it calls agents with. An agent's listener
//! ([`agent_config`]) is the same setup with its own certificate and a
//! client certificate required.

use crate::error::{Error, Result};
use crate::fsutil::write_file;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The certificate folder inside the data dir.
pub const TLS_DIR: &str = "tls";
/// The CA certificate clients pass as `--ca`.
pub const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
const SERVER_CERT: &str = "server.pem";
const SERVER_KEY: &str = "server.key";
const CLIENT_CERT: &str = "client.pem";
const CLIENT_KEY: &str = "client.key";
/// The common name of the server's own client certificate.
const CLIENT_COMMON_NAME: &str = "Lifeboat server";
const CA_COMMON_NAME: &str = "Lifeboat server CA";

/// The operator's certificate chain and key (PEM).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Where the server's certificate came from.
#[derive(Debug, Clone)]
pub enum CertSource {
    /// The operator's files.
    Operator(TlsFiles),
    /// Issued by the server's own CA; clients trust `ca`.
    OwnCa { ca: PathBuf, names: Vec<String> },
}

/// The rustls server configuration for `listen`: the operator's files, or
/// the server's own CA in `data_dir` (made on first start).
pub fn server_config(
    data_dir: &Path,
    listen: IpAddr,
    operator: Option<&TlsFiles>,
) -> Result<(Arc<rustls::ServerConfig>, CertSource)> {
    let (chain, key, source) = match operator {
        Some(files) => {
            let chain = read_chain(&files.cert)?;
            let key = PrivateKeyDer::from_pem_file(&files.key)
                .map_err(|e| Error::tls(format!("key {}", files.key.display()), e))?;
            (chain, key, CertSource::Operator(files.clone()))
        }
        None => {
            let dir = data_dir.join(TLS_DIR);
            let names = server_names(listen);
            own_ca_certificate(&dir, &names)?;
            let chain = read_chain(&dir.join(SERVER_CERT))?;
            let key_path = dir.join(SERVER_KEY);
            let key = PrivateKeyDer::from_pem_file(&key_path)
                .map_err(|e| Error::tls(format!("key {}", key_path.display()), e))?;
            (
                chain,
                key,
                CertSource::OwnCa {
                    ca: dir.join(CA_CERT),
                    names,
                },
            )
        }
    };
    let verifier = match &source {
        CertSource::Operator(_) => None,
        CertSource::OwnCa { ca, .. } => Some(client_verifier(ca, true)?),
    };
    Ok((listener_config(chain, key, verifier)?, source))
}

/// The configuration of an agent's listener: its certificate and key,
/// and a client certificate from the CA `ca` required (which one may call
/// it, the agent decides by fingerprint).
pub fn agent_config(cert: &Path, key: &Path, ca: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::tls(format!("key {}", key.display()), e))?;
    listener_config(read_chain(cert)?, key, Some(client_verifier(ca, false)?))
}

/// TLS 1.3 and 1.2, HTTP/1.1, `chain` and `key`, and client certificates
/// checked by `verifier` (none asked for without one).
fn listener_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> Result<Arc<rustls::ServerConfig>> {
    let builder = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::tls("TLS versions", e))?;
    let builder = match verifier {
        None => builder.with_no_client_auth(),
        Some(v) => builder.with_client_cert_verifier(v),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| Error::tls("server certificate and key", e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client certificate that is sent must chain to the CA `ca` and carry
/// the clientAuth purpose, or the handshake fails. On the server it is
/// `optional` (people with bearer tokens connect without one); which
/// proxy or agent it is, and whether it is still enrolled, the routes
/// decide ([`crate::proxies::auth`]).
fn client_verifier(
    ca: &Path,
    optional: bool,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_chain(ca)? {
        roots
            .add(cert)
            .map_err(|e| Error::tls(format!("CA {}", ca.display()), e))?;
    }
    let builder = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        crypto_provider(),
    );
    let builder = if optional {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    builder
        .build()
        .map_err(|e| Error::tls("client certificate verifier", e))
}

/// The files of a client certificate: what [`crate::Client`] presents.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA the other side's certificate must chain to.
    pub ca: PathBuf,
    /// SHA-256 of the certificate's DER, lower-case hex.
    pub fingerprint: String,
}

/// The server's own client certificate from its CA in `data_dir` (made
/// on the first call, then kept: agents know the server by its
/// fingerprint); `None` without the server's own CA.
pub fn server_client_identity(data_dir: &Path) -> Result<Option<ClientIdentity>> {
    let dir = data_dir.join(TLS_DIR);
    let (cert, key) = (dir.join(CLIENT_CERT), dir.join(CLIENT_KEY));
    if !(cert.exists() && key.exists()) {
        let Some((issuer, ca_key)) = own_ca(data_dir)? else {
            return Ok(None);
        };
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(|e| Error::tls("server client certificate", e))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, CLIENT_COMMON_NAME);
        dn.push(DnType::OrganizationName, "Lifeboat");
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        set_validity(&mut params, 10);
        let new_key = KeyPair::generate().map_err(|e| Error::tls("server client key", e))?;
        let signed = params
            .signed_by(&new_key, &issuer, &ca_key)
            .map_err(|e| Error::tls("server client certificate", e))?;
        write_file(&key, new_key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&cert, signed.pem().as_bytes(), 0o644)?;
        tracing::info!(cert = %cert.display(), "made the server's client certificate (it calls agents with it)");
    }
    Ok(Some(ClientIdentity {
        fingerprint: file_fingerprint(&cert)?,
        cert,
        key,
        ca: dir.join(CA_CERT),
    }))
}

/// The SHA-256 fingerprint of the first certificate of the PEM file
/// `path`.
pub fn file_fingerprint(path: &Path) -> Result<String> {
    let leaf = read_chain(path)?.remove(0);
    Ok(crate::proxies::certificate::fingerprint(leaf.as_ref()))
}

/// The `ring` provider, for the server and the client. rustls deprecates
/// it for lacking post-quantum key exchange (only the aws-lc-rs provider
/// has it); the workspace keeps ring, see docs/dependencies.md.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file, at least one.
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let what = || format!("certificate {}", path.display());
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::tls(what(), e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::tls(what(), e))?;
    if chain.is_empty() {
        return Err(Error::tls(what(), "no certificate in the file"));
    }
    Ok(chain)
}

/// The names the server certificate is issued for.
pub fn server_names(listen: IpAddr) -> Vec<String> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    // A host name that is not a valid DNS name (an underscore, say) is
    // left out rather than failing the start.
    let dns_name = |h: &str| {
        !h.is_empty()
            && h.len() <= 253
            && h.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    };
    if dns_name(&host) {
        names.push(host);
    }
    if !listen.is_unspecified() {
        names.push(listen.to_string());
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// Makes the CA in `dir` unless it is there, then issues the server
/// certificate for `names` with it.
fn own_ca_certificate(dir: &Path, names: &[String]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(dir, e))?;
    let ca_key_path = dir.join(CA_KEY);
    let ca_cert_path = dir.join(CA_CERT);
    let ca_key = if ca_key_path.exists() && ca_cert_path.exists() {
        let pem = std::fs::read_to_string(&ca_key_path).map_err(|e| Error::io(&ca_key_path, e))?;
        KeyPair::from_pem(&pem)
            .map_err(|e| Error::tls(format!("CA key {}", ca_key_path.display()), e))?
    } else {
        let key = KeyPair::generate().map_err(|e| Error::tls("CA key", e))?;
        let cert = ca_params()
            .self_signed(&key)
            .map_err(|e| Error::tls("CA certificate", e))?;
        write_file(&ca_key_path, key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&ca_cert_path, cert.pem().as_bytes(), 0o644)?;
        tracing::info!(ca = %ca_cert_path.display(), "made the server's CA");
        key
    };
    let issuer = issuer_of(&ca_key)?;
    let mut params =
        CertificateParams::new(names.to_vec()).map_err(|e| Error::tls("server names", e))?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.last().cloned().unwrap_or_default(),
    );
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    set_validity(&mut params, 1);
    let key = KeyPair::generate().map_err(|e| Error::tls("server key", e))?;
    let cert = params
        .signed_by(&key, &issuer, &ca_key)
        .map_err(|e| Error::tls("server certificate", e))?;
    write_file(&dir.join(SERVER_KEY), key.serialize_pem().as_bytes(), 0o600)?;
    write_file(&dir.join(SERVER_CERT), cert.pem().as_bytes(), 0o644)?;
    Ok(())
}

/// The issuer as rcgen needs it: the same name and key as the stored CA
/// certificate, so what it signs chains to that file.
fn issuer_of(ca_key: &KeyPair) -> Result<rcgen::Certificate> {
    ca_params()
        .self_signed(ca_key)
        .map_err(|e| Error::tls("CA certificate", e))
}

/// The server's own CA in `data_dir` (its issuer and key), to sign proxy
/// certificates; `None` when it has none (the operator's certificate).
pub fn own_ca(data_dir: &Path) -> Result<Option<(rcgen::Certificate, KeyPair)>> {
    let path = data_dir.join(TLS_DIR).join(CA_KEY);
    if !path.exists() {
        return Ok(None);
    }
    let pem = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let key =
        KeyPair::from_pem(&pem).map_err(|e| Error::tls(format!("CA key {}", path.display()), e))?;
    Ok(Some((issuer_of(&key)?, key)))
}

/// The CA's parameters (deterministic but for the validity, which the
/// issuer object rebuilt at each start does not carry into what it signs).
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(DnType::OrganizationName, "Lifeboat");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut params, 10);
    params
}

/// Valid from yesterday (clock skew) to `years` years from today; the
/// last day (UTC midnight).
pub(crate) fn set_validity(params: &mut CertificateParams, years: i32) -> chrono::NaiveDate {
    use chrono::Datelike;
    let from = chrono::Utc::now().date_naive() - chrono::Days::new(1);
    // Day 28 at most, so every year has that date.
    let day = |add: i32| {
        chrono::NaiveDate::from_ymd_opt(from.year() + add, from.month(), from.day().min(28))
            .expect("day 28 exists in every month")
    };
    let ymd = |d: chrono::NaiveDate| rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8);
    params.not_before = ymd(day(0));
    params.not_after = ymd(day(years));
    day(years)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_loopback_and_a_specific_listen_address() {
        let any = server_names("0.0.0.0".parse().unwrap());
        for n in ["localhost", "127.0.0.1", "::1"] {
            assert!(any.iter().any(|x| x == n), "{any:?}");
        }
        assert!(!any.iter().any(|x| x == "0.0.0.0"), "{any:?}");
        let one = server_names("192.0.2.7".parse().unwrap());
        assert!(one.iter().any(|x| x == "192.0.2.7"), "{one:?}");
        let mut sorted = one.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), one.len(), "no name twice: {one:?}");
    }

    #[test]
    fn the_servers_client_certificate_is_made_once_from_its_ca() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        assert!(
            server_client_identity(dir.path()).unwrap().is_none(),
            "no CA yet"
        );
        server_config(dir.path(), "127.0.0.1".parse().unwrap(), None).unwrap();
        let first = server_client_identity(dir.path()).unwrap().unwrap();
        let again = server_client_identity(dir.path()).unwrap().unwrap();
        assert_eq!(first.fingerprint, again.fingerprint, "kept, not reissued");
        assert_eq!(first.fingerprint.len(), 64);
        let mode = std::fs::metadata(&first.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        agent_config(&first.cert, &first.key, &first.ca).unwrap();
    }

    #[test]
    fn the_ca_is_made_once_and_keys_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ip = "127.0.0.1".parse().unwrap();
        server_config(dir.path(), ip, None).unwrap();
        let ca = std::fs::read(dir.path().join(TLS_DIR).join(CA_CERT)).unwrap();
        let leaf = std::fs::read(dir.path().join(TLS_DIR).join(SERVER_CERT)).unwrap();
        server_config(dir.path(), ip, None).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join(TLS_DIR).join(CA_CERT)).unwrap(),
            ca
        );
        assert_ne!(
            std::fs::read(dir.path().join(TLS_DIR).join(SERVER_CERT)).unwrap(),
            leaf,
            "the server certificate is issued anew at each start"
        );
        for key in [CA_KEY, SERVER_KEY] {
            let mode = std::fs::metadata(dir.path().join(TLS_DIR).join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
    }
}
