//! The `config` file: JSON, written at init (atomic rename) and rewritten
//! only to add its MAC to a legacy config.
//!
//! ```json
//! { "format_version": 1, "id": "<32 hex>", "chunk_size": 4194304, "zstd_level": 3,
//!   "created": "2026-11-22T11:09:30Z",
//!   "encryption": { "kdf": "argon2id", "m_cost_kib": 65536, "t_cost": 3, "p_cost": 4,
//!                   "salt": "<64 hex>", "wrapped_key": "<96 hex>" },   // or null
//!   "config_mac": "<64 hex>" }                                          // encrypted only
//! ```
//!
//! `format_version` is read first, alone, so a future layout is refused with
//! `UnknownVersion` rather than a parse error. `wrapped_key` is the 32-byte
//! master secret sealed with AES-256-GCM under the Argon2id KEK (48 bytes).
//!
//! Authentication: whoever can write the repository's storage can rewrite
//! this file, so an encrypted repository's config is believed only once the
//! key it wraps vouches for it. `config_mac` is
//! `blake3::keyed_hash(derive_key("lifeboat v1 config mac", master),
//! canonical JSON of the config without config_mac)`, checked right after
//! the master key is unwrapped: a changed chunk size, zstd level, id or
//! KDF parameter is refused with [`Error::ConfigTampered`]. The key of such
//! a config is wrapped with the AAD `KEY_WRAP_AAD_MAC || id`, so stripping
//! the MAC does not make it pass as a legacy config (below). The Argon2id
//! parameters are bounds-checked before Argon2id runs with them (the MAC
//! can only be checked after): [`check_kdf`].
//!
//! Legacy configs (written before the MAC existed) wrap the key with the
//! AAD `KEY_WRAP_AAD || id` and have no `config_mac`. They still open;
//! `Repository::open` with the passphrase rewrites them with a fresh salt,
//! the MAC AAD and a MAC ([`Config::authenticated`]). Until then their
//! chunk size and zstd level are not authenticated.
//!
//! Every key slot (`keyslot.rs`) holds a full copy of this file with its
//! own wrap of the same master; opening falls back to them when this file
//! is damaged (`unlock.rs`).
//!
//! An unencrypted repository has no key to authenticate anything with: its
//! config is believed as read, and opening it with a passphrase is refused
//! ([`Error::NotEncrypted`]), so a config replaced by an unencrypted one
//! cannot make backups go out in plaintext.

use crate::crypto::{self, KdfParams, Keys};
use crate::digest::{hex, unhex};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::layout::{
    ARGON2_MAX_M_COST_KIB, ARGON2_MAX_P_COST, ARGON2_MAX_T_COST, ARGON2_MIN_M_COST_KIB,
    ARGON2_MIN_T_COST, CHUNK_ALIGN, CONFIG_FILE, FORMAT_VERSION, KDF_CONTEXT_CONFIG_MAC,
    KEY_WRAP_AAD, KEY_WRAP_AAD_MAC, MASTER_KEY_LEN, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, SALT_LEN,
    TAG_LEN,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// An unlocked repository: its keys, the key-encryption key that unwrapped
/// them (see [`Config::unlock_with_kek`]), the master secret, and whether
/// the config is a legacy one without a MAC.
pub(crate) struct Unlocked {
    pub keys: Keys,
    pub kek: [u8; 32],
    pub master: [u8; MASTER_KEY_LEN],
    pub legacy: bool,
    /// The key wrap the KEK opened (of the config or of a key slot).
    pub wrap: EncryptionConfig,
}

/// Encryption parameters stored in the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct EncryptionConfig {
    pub kdf: String,
    #[serde(flatten)]
    pub params: KdfParams,
    pub salt: String,
    pub wrapped_key: String,
}

/// The parsed `config` file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Config {
    pub format_version: u32,
    pub id: String,
    pub chunk_size: u32,
    pub zstd_level: i32,
    pub created: DateTime<Utc>,
    pub encryption: Option<EncryptionConfig>,
    /// The MAC of the rest (see the module doc); absent on unencrypted and
    /// legacy configs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_mac: Option<String>,
}

/// Fails unless the Argon2id parameters lie within the bounds of
/// `layout.rs` (checked before Argon2id runs with them).
pub(crate) fn check_kdf(p: &KdfParams) -> std::result::Result<(), String> {
    let bad = |what: &str, v: u32, lo: u32, hi: u32| {
        format!("Argon2id {what} {v} is outside the accepted {lo}..={hi} (the config may have been altered)")
    };
    if !(ARGON2_MIN_M_COST_KIB..=ARGON2_MAX_M_COST_KIB).contains(&p.m_cost_kib) {
        return Err(bad(
            "memory cost (KiB)",
            p.m_cost_kib,
            ARGON2_MIN_M_COST_KIB,
            ARGON2_MAX_M_COST_KIB,
        ));
    }
    if !(ARGON2_MIN_T_COST..=ARGON2_MAX_T_COST).contains(&p.t_cost) {
        return Err(bad(
            "passes",
            p.t_cost,
            ARGON2_MIN_T_COST,
            ARGON2_MAX_T_COST,
        ));
    }
    if !(1..=ARGON2_MAX_P_COST).contains(&p.p_cost) {
        return Err(bad("lanes", p.p_cost, 1, ARGON2_MAX_P_COST));
    }
    Ok(())
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

/// The zstd levels a repository writes with.
pub const ZSTD_LEVELS: std::ops::RangeInclusive<i32> = 1..=19;

/// Fails unless `level` is a zstd level a repository writes with.
pub fn check_zstd_level(level: i32) -> std::result::Result<(), String> {
    if !ZSTD_LEVELS.contains(&level) {
        return Err(format!(
            "zstd level {level} must be between {} and {}",
            ZSTD_LEVELS.start(),
            ZSTD_LEVELS.end()
        ));
    }
    Ok(())
}

fn wrap_aad(prefix: &[u8], id: &str) -> Vec<u8> {
    let mut a = prefix.to_vec();
    a.extend_from_slice(id.as_bytes());
    a
}

impl EncryptionConfig {
    /// The key-encryption key `passphrase` gives for this wrap: the KDF
    /// and its parameters are checked first (`path` names the file).
    pub fn kek(&self, path: &Path, passphrase: &str) -> Result<[u8; 32]> {
        if self.kdf != "argon2id" {
            return Err(Error::corrupt_file(
                path,
                format!("unknown kdf {:?}", self.kdf),
            ));
        }
        check_kdf(&self.params).map_err(|detail| Error::KdfRefused {
            path: path.into(),
            detail,
        })?;
        let salt = self
            .salt_bytes()
            .map_err(|e| Error::corrupt_file(path, e))?;
        crypto::kek(passphrase, &salt, self.params).map_err(|e| Error::corrupt_file(path, e))
    }

    /// The 32-byte salt.
    pub fn salt_bytes(&self) -> std::result::Result<Vec<u8>, String> {
        unhex(&self.salt)
            .filter(|s| s.len() == SALT_LEN)
            .ok_or_else(|| "bad encryption salt".to_string())
    }

    /// Unwraps the master secret of repository `id` with `kek`: with the
    /// MAC AAD, then (when `legacy_too`) the legacy one. `Ok(None)` when
    /// the key does not open it (a wrong key, or a damaged wrap); the bool
    /// says the legacy AAD opened it.
    pub fn unwrap_master(
        &self,
        id: &str,
        kek: &[u8; 32],
        legacy_too: bool,
    ) -> std::result::Result<Option<([u8; MASTER_KEY_LEN], bool)>, String> {
        let wrapped = unhex(&self.wrapped_key)
            .filter(|w| w.len() == MASTER_KEY_LEN + TAG_LEN)
            .ok_or("bad wrapped_key")?;
        let open = |prefix: &[u8]| -> Option<[u8; MASTER_KEY_LEN]> {
            let mut w = wrapped.clone();
            let n = crypto::open(kek, &wrap_aad(prefix, id), &mut w).ok()?;
            w.get(..n)?.try_into().ok()
        };
        if let Some(m) = open(KEY_WRAP_AAD_MAC) {
            return Ok(Some((m, false)));
        }
        if legacy_too {
            if let Some(m) = open(KEY_WRAP_AAD) {
                return Ok(Some((m, true)));
            }
        }
        Ok(None)
    }
}

impl Config {
    /// A new config; generates and wraps a master secret when `passphrase`
    /// is given, and returns it unlocked (as [`Config::unlock`] does). The
    /// caller has checked `kdf` ([`check_kdf`]).
    pub fn new(
        chunk_size: u32,
        zstd_level: i32,
        passphrase: Option<&str>,
        kdf: KdfParams,
    ) -> Result<(Config, Option<Unlocked>)> {
        check_chunk_size(chunk_size).map_err(|e| Error::invalid("init", e))?;
        check_zstd_level(zstd_level).map_err(|e| Error::invalid("init", e))?;
        let config = Config {
            format_version: FORMAT_VERSION,
            id: fsutil::random_hex(32)?,
            chunk_size,
            zstd_level,
            created: Utc::now(),
            encryption: None,
            config_mac: None,
        };
        match passphrase {
            None => Ok((config, None)),
            Some(pass) => {
                let master: [u8; MASTER_KEY_LEN] =
                    crypto::random_array().map_err(|e| Error::invalid("init", e))?;
                let (config, unlocked) = config.authenticated(pass, master, kdf)?;
                Ok((config, Some(unlocked)))
            }
        }
    }

    /// This config with `master` wrapped under `passphrase` (a fresh salt,
    /// Argon2id with `kdf`, the MAC AAD) and its `config_mac`: how init
    /// writes a config, and how a legacy one is upgraded.
    pub fn authenticated(
        &self,
        passphrase: &str,
        master: [u8; MASTER_KEY_LEN],
        kdf: KdfParams,
    ) -> Result<(Config, Unlocked)> {
        let fail = |e: String| Error::invalid("repository config", e);
        let salt: [u8; SALT_LEN] = crypto::random_array().map_err(fail)?;
        let kek = crypto::kek(passphrase, &salt, kdf).map_err(fail)?;
        let mut wrapped = master.to_vec();
        let tag = crypto::seal(&kek, &wrap_aad(KEY_WRAP_AAD_MAC, &self.id), &mut wrapped)
            .map_err(fail)?;
        wrapped.extend_from_slice(&tag);
        let wrap = EncryptionConfig {
            kdf: "argon2id".into(),
            params: kdf,
            salt: hex(&salt),
            wrapped_key: hex(&wrapped),
        };
        let config = self.with_wrap(wrap.clone(), &master)?;
        let unlocked = Unlocked {
            keys: Keys::derive(&master),
            kek,
            master,
            legacy: false,
            wrap,
        };
        Ok((config, unlocked))
    }

    /// This config's parameters with the key wrap `wrap` (of the same
    /// master, under the MAC AAD) and a fresh `config_mac`.
    pub fn with_wrap(
        &self,
        wrap: EncryptionConfig,
        master: &[u8; MASTER_KEY_LEN],
    ) -> Result<Config> {
        let mut config = Config {
            encryption: Some(wrap),
            config_mac: None,
            ..self.clone()
        };
        config.config_mac = Some(hex(config.mac(master)?.as_bytes()));
        Ok(config)
    }

    /// Checks `config_mac` against `master`; the reason when it fails.
    pub fn check_mac(&self, master: &[u8; MASTER_KEY_LEN]) -> std::result::Result<(), String> {
        let stored = self
            .config_mac
            .as_deref()
            .ok_or("its config_mac is missing")?;
        let stored: [u8; 32] = unhex(stored)
            .filter(|m| hex(m) == stored)
            .and_then(|m| m.try_into().ok())
            .ok_or("its config_mac is not 64 lowercase hex digits")?;
        let mac = self.mac(master).map_err(|e| e.to_string())?;
        // blake3::Hash compares in constant time.
        if mac != blake3::Hash::from(stored) {
            return Err("its config_mac does not match its contents (chunk size, compression, id or KDF parameters changed)".into());
        }
        Ok(())
    }

    /// The same repository parameters (format, id, chunk size, zstd
    /// level, creation time, encrypted or not), whatever the key wrap.
    pub fn same_parameters(&self, other: &Config) -> bool {
        self.format_version == other.format_version
            && self.id == other.id
            && self.chunk_size == other.chunk_size
            && self.zstd_level == other.zstd_level
            && self.created == other.created
            && self.encryption.is_some() == other.encryption.is_some()
    }

    /// The MAC of this config's canonical JSON without `config_mac`.
    fn mac(&self, master: &[u8; MASTER_KEY_LEN]) -> Result<blake3::Hash> {
        let bare = Config {
            config_mac: None,
            ..self.clone()
        };
        let bytes = serde_json::to_vec(&bare).map_err(|e| Error::invalid("config", e))?;
        let key = blake3::derive_key(KDF_CONTEXT_CONFIG_MAC, master);
        Ok(blake3::keyed_hash(&key, &bytes))
    }

    /// Writes the config atomically into `repo`.
    pub fn save(&self, repo: &Path) -> Result<()> {
        let json = crate::keyslot::encode(self)
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
        Config::from_value(&path, value)
    }

    /// Checks and parses a config read from `path` (the config file or
    /// the copy inside a key slot).
    pub fn from_value(path: &Path, value: serde_json::Value) -> Result<Config> {
        let path = path.to_path_buf();
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
        check_zstd_level(config.zstd_level).map_err(|e| Error::corrupt_file(&path, e))?;
        Ok(config)
    }

    /// Unwraps the master secret with `passphrase` and authenticates the
    /// config with it; `None` for an unencrypted repository (opened
    /// without a passphrase). The KDF parameters are bounds-checked before
    /// Argon2id runs.
    pub fn unlock(&self, repo: &Path, passphrase: Option<&str>) -> Result<Option<Unlocked>> {
        let Some(enc) = &self.encryption else {
            return match passphrase {
                Some(_) => Err(Error::NotEncrypted { path: repo.into() }),
                None => Ok(None),
            };
        };
        let pass = passphrase.ok_or_else(|| Error::PassphraseRequired { path: repo.into() })?;
        let kek = enc.kek(&repo.join(CONFIG_FILE), pass)?;
        self.unlock_checked(repo, enc, kek).map(Some)
    }

    /// Unwraps the master secret with a key-encryption key from
    /// [`Config::unlock`] and authenticates the config; `None` for an
    /// unencrypted repository (and no key given). A wrong key is refused
    /// ([`Error::WrongKey`]), as a wrong passphrase is.
    pub fn unlock_with_kek(&self, repo: &Path, kek: Option<[u8; 32]>) -> Result<Option<Unlocked>> {
        let Some(enc) = &self.encryption else {
            return match kek {
                Some(_) => Err(Error::NotEncrypted { path: repo.into() }),
                None => Ok(None),
            };
        };
        let kek = kek.ok_or_else(|| Error::PassphraseRequired { path: repo.into() })?;
        self.unlock_checked(repo, enc, kek).map(Some)
    }

    /// Unwraps the master secret (MAC AAD first, then the legacy one) and,
    /// for a config with a MAC, checks it.
    fn unlock_checked(
        &self,
        repo: &Path,
        enc: &EncryptionConfig,
        kek: [u8; 32],
    ) -> Result<Unlocked> {
        let path = repo.join(CONFIG_FILE);
        let (master, legacy) = enc
            .unwrap_master(&self.id, &kek, true)
            .map_err(|e| Error::corrupt_file(&path, e))?
            .ok_or_else(|| Error::WrongKey { path: repo.into() })?;
        if !legacy {
            self.check_mac(&master)
                .map_err(|detail| Error::ConfigTampered {
                    path: path.clone(),
                    detail,
                })?;
        }
        Ok(Unlocked {
            keys: Keys::derive(&master),
            kek,
            master,
            legacy,
            wrap: enc.clone(),
        })
    }

    /// The KDF parameters of an encrypted config.
    pub fn kdf(&self) -> Option<KdfParams> {
        self.encryption.as_ref().map(|e| e.params)
    }
}
