//! A proxy's own files in its data dir: its key (`proxy.key`, 0600), the
//! certificate the server issued it (`proxy.pem`), the server's CA
//! (`ca.pem`) and the server's URL (`server`). Written once at
//! enrollment; later starts read them and need no secret.

use crate::error::{Error, Result};
use crate::fsutil::write_file;
use rcgen::KeyPair;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub const KEY_FILE: &str = "proxy.key";
pub const CERT_FILE: &str = "proxy.pem";
pub const CA_FILE: &str = "ca.pem";
pub const SERVER_FILE: &str = "server";

/// An enrolled proxy's files.
#[derive(Debug, Clone)]
pub struct Identity {
    pub dir: PathBuf,
    /// The server's URL it enrolled with.
    pub server: String,
}

impl Identity {
    pub fn key(&self) -> PathBuf {
        self.dir.join(KEY_FILE)
    }
    pub fn cert(&self) -> PathBuf {
        self.dir.join(CERT_FILE)
    }
    pub fn ca(&self) -> PathBuf {
        self.dir.join(CA_FILE)
    }

    /// The identity in `dir`, if the proxy enrolled there.
    pub fn load(dir: &Path) -> Result<Option<Identity>> {
        let server_path = dir.join(SERVER_FILE);
        if !dir.join(CERT_FILE).exists() || !dir.join(KEY_FILE).exists() {
            return Ok(None);
        }
        let server = std::fs::read_to_string(&server_path)
            .map_err(|e| Error::io(&server_path, e))?
            .trim()
            .to_string();
        Ok(Some(Identity {
            dir: dir.to_path_buf(),
            server,
        }))
    }

    /// Writes the files of a new enrollment (the key first, 0600, in a
    /// 0700 folder).
    pub fn save(
        dir: &Path,
        key: &KeyPair,
        cert_pem: &str,
        ca_pem: &[u8],
        server: &str,
    ) -> Result<Identity> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(dir, e))?;
        write_file(&dir.join(KEY_FILE), key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&dir.join(CERT_FILE), cert_pem.as_bytes(), 0o644)?;
        write_file(&dir.join(CA_FILE), ca_pem, 0o644)?;
        write_file(
            &dir.join(SERVER_FILE),
            format!("{server}\n").as_bytes(),
            0o644,
        )?;
        Ok(Identity {
            dir: dir.to_path_buf(),
            server: server.to_string(),
        })
    }
}

/// A new P-256 key pair for a proxy.
pub fn new_key() -> Result<KeyPair> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| Error::tls("proxy key", e))
}
