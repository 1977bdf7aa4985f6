//! A proxy's or an agent's own files in its data dir: its key
//! (`proxy.key` or `agent.key`, 0600), the certificate the server issued
//! it (`proxy.pem` or `agent.pem`), the server's CA (`ca.pem`) and the
//! server's URL (`server`). Written once at enrollment ([`enroll`]: the
//! one code path of both); later starts read them and need no secret.

use crate::api::proxies::{Enroll, EnrolledProxy};
use crate::catalog::proxies::PeerKind;
use crate::client::{Client, ClientError};
use crate::error::{Error, Result};
use crate::fsutil::write_file;
use rcgen::KeyPair;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub const CA_FILE: &str = "ca.pem";
pub const SERVER_FILE: &str = "server";

/// An enrolled proxy's or agent's files.
#[derive(Debug, Clone)]
pub struct Identity {
    pub dir: PathBuf,
    pub kind: PeerKind,
    /// The server's URL it enrolled with.
    pub server: String,
}

impl Identity {
    pub fn key(&self) -> PathBuf {
        key_file(&self.dir, self.kind)
    }
    pub fn cert(&self) -> PathBuf {
        cert_file(&self.dir, self.kind)
    }
    pub fn ca(&self) -> PathBuf {
        self.dir.join(CA_FILE)
    }

    /// The `kind` identity in `dir`, if one enrolled there.
    pub fn load(dir: &Path, kind: PeerKind) -> Result<Option<Identity>> {
        let server_path = dir.join(SERVER_FILE);
        if !cert_file(dir, kind).exists() || !key_file(dir, kind).exists() {
            return Ok(None);
        }
        let server = std::fs::read_to_string(&server_path)
            .map_err(|e| Error::io(&server_path, e))?
            .trim()
            .to_string();
        Ok(Some(Identity {
            dir: dir.to_path_buf(),
            kind,
            server,
        }))
    }

    /// Writes the files of a new enrollment (the key first, 0600, in a
    /// 0700 folder).
    pub fn save(
        dir: &Path,
        kind: PeerKind,
        key: &KeyPair,
        cert_pem: &str,
        ca_pem: &[u8],
        server: &str,
    ) -> Result<Identity> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(dir, e))?;
        write_file(&key_file(dir, kind), key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&cert_file(dir, kind), cert_pem.as_bytes(), 0o644)?;
        write_file(&dir.join(CA_FILE), ca_pem, 0o644)?;
        write_file(
            &dir.join(SERVER_FILE),
            format!("{server}\n").as_bytes(),
            0o644,
        )?;
        Ok(Identity {
            dir: dir.to_path_buf(),
            kind,
            server: server.to_string(),
        })
    }
}

fn key_file(dir: &Path, kind: PeerKind) -> PathBuf {
    dir.join(format!("{kind}.key"))
}

fn cert_file(dir: &Path, kind: PeerKind) -> PathBuf {
    dir.join(format!("{kind}.pem"))
}

/// A new P-256 key pair for a proxy or an agent.
pub fn new_key() -> Result<KeyPair> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| Error::tls("key pair", e))
}

/// What enrolling can fail with: the server's refusal, or keeping the
/// files.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("enrolling with the server")]
    Server(#[source] ClientError),
    #[error("keeping the enrollment's files")]
    Files(#[source] Error),
}

/// Enrolls as the `kind` peer `name` with the one-time `secret` at the
/// server `url` (trusting `ca`, else the system's roots): makes the key
/// pair, has the server sign its certificate and keeps the files in
/// `dir`.
pub fn enroll(
    url: &str,
    ca: Option<&Path>,
    kind: PeerKind,
    secret: String,
    name: String,
    dir: &Path,
) -> std::result::Result<(Identity, EnrolledProxy), EnrollError> {
    let unauthenticated = Client::new(url, ca, None).map_err(EnrollError::Server)?;
    let key = new_key().map_err(EnrollError::Files)?;
    let enrolled = unauthenticated
        .enroll(&Enroll {
            secret,
            name,
            public_key: key.public_key_pem(),
            kind,
        })
        .map_err(EnrollError::Server)?;
    let identity = Identity::save(
        dir,
        kind,
        &key,
        &enrolled.certificate,
        enrolled.ca.as_bytes(),
        url.trim_end_matches('/'),
    )
    .map_err(EnrollError::Files)?;
    Ok((identity, enrolled))
}
