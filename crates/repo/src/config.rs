//! The `config` file: JSON, written once at init (atomic rename).
//!
//! ```json
//! { "format_version": 1, "id": "<32 hex>", "chunk_size": 4194304, "zstd_level": 3,
//!   "created": "2026-11-22T11:09:30Z",
//!   "encryption": { "kdf": "argon2id", "m_cost_kib": 65536, "t_cost": 3, "p_cost": 1,
//!                   "salt": "<64 hex>", "wrapped_key": "<96 hex>" } }   // or null
//! ```
//!
//! `format_version` is read first, alone, so a future layout is refused with
//! `UnknownVersion` rather than a parse error. `wrapped_key` is the 32-byte
//! master secret sealed with AES-256-GCM under the Argon2id KEK (48 bytes).

use crate::crypto::{self, KdfParams, Keys};
use crate::digest::{hex, unhex};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::layout::{
    CHUNK_ALIGN, CONFIG_FILE, FORMAT_VERSION, KEY_WRAP_AAD, MASTER_KEY_LEN, MAX_CHUNK_SIZE,
    MIN_CHUNK_SIZE, SALT_LEN, TAG_LEN,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The keys of an unlocked repository and the key-encryption key that
/// unwrapped them (see [`Config::unlock_with_kek`]).
pub(crate) type Unlocked = (Keys, [u8; 32]);

/// Encryption parameters stored in the config.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EncryptionConfig {
    pub kdf: String,
    #[serde(flatten)]
    pub params: KdfParams,
    pub salt: String,
    pub wrapped_key: String,
}

/// The parsed `config` file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Config {
    pub format_version: u32,
    pub id: String,
    pub chunk_size: u32,
    pub zstd_level: i32,
    pub created: DateTime<Utc>,
    pub encryption: Option<EncryptionConfig>,
}

/// Fails unless `size` is a valid chunk size.
pub(crate) fn check_chunk_size(size: u32) -> std::result::Result<(), String> {
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&size) || !size.is_multiple_of(CHUNK_ALIGN) {
        return Err(format!(
            "chunk size {size} must be a multiple of {CHUNK_ALIGN} between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE}"
        ));
    }
    Ok(())
}

fn wrap_aad(id: &str) -> Vec<u8> {
    let mut a = KEY_WRAP_AAD.to_vec();
    a.extend_from_slice(id.as_bytes());
    a
}

impl Config {
    /// A new config; generates and wraps a master secret when `passphrase`
    /// is given, and returns its keys with the key-encryption key (as
    /// [`Config::unlock`] does).
    pub fn new(
        chunk_size: u32,
        zstd_level: i32,
        passphrase: Option<&str>,
        kdf: KdfParams,
    ) -> Result<(Config, Option<Unlocked>)> {
        check_chunk_size(chunk_size).map_err(|e| Error::invalid("init", e))?;
        let id = fsutil::random_hex(32)?;
        let (encryption, keys) = match passphrase {
            None => (None, None),
            Some(pass) => {
                let rnd = |e: String| Error::invalid("init", e);
                let master: [u8; MASTER_KEY_LEN] = crypto::random_array().map_err(rnd)?;
                let salt: [u8; SALT_LEN] = crypto::random_array().map_err(rnd)?;
                let kek = crypto::kek(pass, &salt, kdf).map_err(rnd)?;
                let mut wrapped = master.to_vec();
                let tag = crypto::seal(&kek, &wrap_aad(&id), &mut wrapped).map_err(rnd)?;
                wrapped.extend_from_slice(&tag);
                let enc = EncryptionConfig {
                    kdf: "argon2id".into(),
                    params: kdf,
                    salt: hex(&salt),
                    wrapped_key: hex(&wrapped),
                };
                (Some(enc), Some((Keys::derive(&master), kek)))
            }
        };
        let config = Config {
            format_version: FORMAT_VERSION,
            id,
            chunk_size,
            zstd_level,
            created: Utc::now(),
            encryption,
        };
        Ok((config, keys))
    }

    /// Writes the config atomically into `repo`.
    pub fn save(&self, repo: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::corrupt_file(repo.join(CONFIG_FILE), e))?;
        fsutil::atomic_write(&repo.join(CONFIG_FILE), &json)
    }

    /// Reads and checks the config of `repo`.
    pub fn load(repo: &Path) -> Result<Config> {
        let path = repo.join(CONFIG_FILE);
        let bytes = fsutil::read_optional(&path)?
            .ok_or_else(|| Error::NotARepository { path: repo.into() })?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| Error::corrupt_file(&path, e))?;
        let found = value
            .get("format_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| Error::corrupt_file(&path, "no format_version"))?;
        if found != u64::from(FORMAT_VERSION) {
            return Err(Error::UnknownVersion {
                path,
                found: u32::try_from(found).unwrap_or(u32::MAX),
                supported: FORMAT_VERSION,
            });
        }
        let config: Config =
            serde_json::from_value(value).map_err(|e| Error::corrupt_file(&path, e))?;
        check_chunk_size(config.chunk_size).map_err(|e| Error::corrupt_file(&path, e))?;
        Ok(config)
    }

    /// Unwraps the master secret with `passphrase`; returns the keys and
    /// the key-encryption key derived from the passphrase (Argon2id), which
    /// [`Config::unlock_with_kek`] takes instead.
    pub fn unlock(&self, repo: &Path, passphrase: Option<&str>) -> Result<Option<Unlocked>> {
        let Some(enc) = &self.encryption else {
            return Ok(None);
        };
        let path = repo.join(CONFIG_FILE);
        let pass = passphrase.ok_or_else(|| Error::PassphraseRequired { path: repo.into() })?;
        if enc.kdf != "argon2id" {
            return Err(Error::corrupt_file(
                &path,
                format!("unknown kdf {:?}", enc.kdf),
            ));
        }
        let salt = unhex(&enc.salt)
            .filter(|s| s.len() == SALT_LEN)
            .ok_or_else(|| Error::corrupt_file(&path, "bad encryption salt"))?;
        let kek =
            crypto::kek(pass, &salt, enc.params).map_err(|e| Error::corrupt_file(&path, e))?;
        Ok(Some((self.unwrap_master(repo, enc, &kek)?, kek)))
    }

    /// Unwraps the master secret with a key-encryption key from
    /// [`Config::unlock`]; `None` for an unencrypted repository. A wrong
    /// key is refused ([`Error::WrongKey`]), as a wrong passphrase is.
    pub fn unlock_with_kek(&self, repo: &Path, kek: Option<[u8; 32]>) -> Result<Option<Unlocked>> {
        let Some(enc) = &self.encryption else {
            return Ok(None);
        };
        let kek = kek.ok_or_else(|| Error::PassphraseRequired { path: repo.into() })?;
        Ok(Some((self.unwrap_master(repo, enc, &kek)?, kek)))
    }

    fn unwrap_master(&self, repo: &Path, enc: &EncryptionConfig, kek: &[u8; 32]) -> Result<Keys> {
        let path = repo.join(CONFIG_FILE);
        let mut wrapped = unhex(&enc.wrapped_key)
            .filter(|w| w.len() == MASTER_KEY_LEN + TAG_LEN)
            .ok_or_else(|| Error::corrupt_file(&path, "bad wrapped_key"))?;
        let n = crypto::open(kek, &wrap_aad(&self.id), &mut wrapped)
            .map_err(|_| Error::WrongKey { path: repo.into() })?;
        let master: [u8; MASTER_KEY_LEN] = wrapped
            .get(..n)
            .and_then(|m| m.try_into().ok())
            .ok_or_else(|| Error::corrupt_file(&path, "wrapped key has the wrong length"))?;
        Ok(Keys::derive(&master))
    }
}
