//! The certificate the server's CA issues an enrolling proxy or agent:
//! for its P-256 public key, CN and DNS SAN its name, valid one year; a
//! proxy's has the clientAuth purpose only, an agent's serverAuth too (it
//! is also the certificate of the agent's listener, which the server
//! calls by the agent's name); and the SHA-256 fingerprint a proxy or
//! agent is known by.
//!
//! The proxy sends its public key (a PEM `PUBLIC KEY`), not a PKCS#10
//! request: reading a CSR would take an X.509 parser (rcgen's
//! `x509-parser` feature) for one signature check, while the key's
//! possession is proved at every TLS handshake anyway (the certificate is
//! useless without it), and the one-time secret authenticates the request.

use crate::catalog::proxies::PeerKind;
use crate::error::{Error, Result};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, PublicKeyData, SignatureAlgorithm,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::SubjectPublicKeyInfoDer;

/// How many years a proxy certificate is valid.
pub const VALID_YEARS: i32 = 1;

/// The DER prefix of a P-256 SubjectPublicKeyInfo: SEQUENCE { SEQUENCE {
/// id-ecPublicKey, prime256v1 }, BIT STRING (66 bytes, no unused bits) },
/// followed by the 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// A proxy's P-256 public key (the uncompressed point).
struct P256Key(Vec<u8>);

impl PublicKeyData for P256Key {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// Reads a PEM `PUBLIC KEY` that must be P-256 (what
/// [`super::identity`] makes).
fn p256_key(pem: &str) -> Result<P256Key> {
    let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| Error::bad_request(format!("public_key is not a PEM public key: {e}")))?;
    let der = spki.as_ref();
    match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
        Some(point) if point.len() == 65 && point[0] == 0x04 => Ok(P256Key(point.to_vec())),
        _ => Err(Error::bad_request(
            "public_key must be an ECDSA P-256 key (uncompressed point)",
        )),
    }
}

/// An issued certificate.
#[derive(Debug, Clone)]
pub struct Issued {
    pub pem: String,
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint: String,
    /// RFC 3339, UTC.
    pub not_after: String,
}

/// Issues the certificate of the `kind` peer `name` for
/// `public_key_pem`, signed by `issuer` (the server's CA) with `ca_key`.
pub fn issue(
    kind: PeerKind,
    name: &str,
    public_key_pem: &str,
    issuer: &rcgen::Certificate,
    ca_key: &KeyPair,
) -> Result<Issued> {
    let key = p256_key(public_key_pem)?;
    let mut params = CertificateParams::new(vec![name.to_string()])
        .map_err(|e| Error::bad_request(format!("{kind} name {name:?}: {e}")))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, format!("Lifeboat {kind}"));
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = match kind {
        PeerKind::Proxy => vec![ExtendedKeyUsagePurpose::ClientAuth],
        PeerKind::Agent => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    let last_day = crate::tls::set_validity(&mut params, VALID_YEARS);
    let cert = params
        .signed_by(&key, issuer, ca_key)
        .map_err(|e| Error::tls(format!("{kind} certificate"), e))?;
    Ok(Issued {
        pem: cert.pem(),
        fingerprint: fingerprint(cert.der()),
        not_after: format!("{last_day}T00:00:00Z"),
    })
}

/// SHA-256 of a certificate's DER, lower-case hex.
pub fn fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_p256_key_gets_a_client_certificate_and_others_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        crate::tls::server_config(dir.path(), "127.0.0.1".parse().unwrap(), None).unwrap();
        let (issuer, ca_key) = crate::tls::own_ca(dir.path()).unwrap().unwrap();
        let proxy_key = KeyPair::generate().unwrap();
        let issued = issue(
            PeerKind::Proxy,
            "p1",
            &proxy_key.public_key_pem(),
            &issuer,
            &ca_key,
        )
        .unwrap();
        assert!(issued.pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(issued.fingerprint.len(), 64);
        let e = issue(PeerKind::Proxy, "p1", "not a key", &issuer, &ca_key).unwrap_err();
        assert!(e.to_string().contains("PEM public key"), "{e}");
        let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let e = issue(
            PeerKind::Proxy,
            "p1",
            &ed.public_key_pem(),
            &issuer,
            &ca_key,
        )
        .unwrap_err();
        assert!(e.to_string().contains("P-256"), "{e}");
    }
}
