//! The two identities of one application-aware backup: a fresh ECDSA P-256
//! key pair and self-signed certificate for the guest helper, and one for
//! the proxy. Neither outlives the backup; each side pins the other's
//! certificate (`lifeboat_guest_helper::pin`).

use lifeboat_guest_helper::layout::TLS_NAME;
use lifeboat_guest_helper::pin::Identity;

/// The helper's and the proxy's identities.
#[derive(Debug, Clone)]
pub struct BackupIdentities {
    pub helper: Identity,
    pub proxy: Identity,
}

fn identity(name: &str) -> Result<Identity, rcgen::Error> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec![TLS_NAME.to_string()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key)?;
    Ok(Identity {
        cert: cert.der().to_vec(),
        key: key.serialize_der(),
    })
}

/// Two fresh identities.
pub fn make_identities() -> Result<BackupIdentities, rcgen::Error> {
    Ok(BackupIdentities {
        helper: identity("lifeboat guest helper")?,
        proxy: identity("lifeboat backup proxy")?,
    })
}
