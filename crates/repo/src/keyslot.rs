//! Key slots: `keys/<16 hex>.key`, each a full copy of the config with its
//! own wrapping of the master key, so a damaged, truncated, missing or
//! swapped `config` (or slot) loses nothing while one copy is intact.
//!
//! ```json
//! { "format_version": 1, "slot": "<16 hex>", "added": "2026-12-07T10:49:36Z",
//!   "config": { ...exactly a config file, its own "encryption" wrap and "config_mac"... },
//!   "slot_mac": "<64 hex>" }
//! ```
//!
//! - `config.encryption` is this slot's wrap of the master key: its own
//!   salt (Argon2id of its passphrase), wrapped with the AAD
//!   `KEY_WRAP_AAD_MAC || repo id` like the config's, so `config` alone is
//!   a valid config file: repair restores the config by writing it.
//! - The slot id is derived from the wrap's salt (unencrypted: from the
//!   repository id), `derive_key(KDF_CONTEXT_KEY_SLOT_ID, salt)[..8]` as
//!   hex, and must equal both `slot` and the file name. The config's own
//!   wrap is always the wrap of one slot (init writes them together; `key
//!   remove` moves the config to another slot's wrap), so the config
//!   names the slot that must exist beside it.
//! - `slot_mac = keyed_hash(derive_key(KDF_CONTEXT_KEY_SLOT_MAC, master),
//!   canonical JSON without slot_mac)`: whoever holds the master checks
//!   every slot, whatever its passphrase. It binds the slot id and (in
//!   `config`) the repository id, so a slot renamed or copied from
//!   another repository fails.
//! - An unencrypted repository has one slot, an unauthenticated copy of
//!   its config, checked by parsing and equality; its `slot_mac` is the
//!   unkeyed BLAKE3 of the same bytes, checked when it is read, so a
//!   damaged slot never outranks an intact config (it detects damage, not
//!   forgery: there is no key).

use crate::config::Config;
use crate::digest::{hex, unhex};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::layout::{
    FORMAT_VERSION, KDF_CONTEXT_KEY_SLOT_ID, KDF_CONTEXT_KEY_SLOT_MAC, KEYS_DIR, KEY_SLOT_ID_HEX,
    KEY_SLOT_SUFFIX, MASTER_KEY_LEN, TMP_PREFIX,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One parsed key slot file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct KeySlot {
    pub format_version: u32,
    pub slot: String,
    pub added: DateTime<Utc>,
    pub config: Config,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_mac: Option<String>,
}

/// A key slot file as found in `keys/`: parsed, or why not.
pub(crate) struct SlotFile {
    pub id: String,
    pub path: PathBuf,
    pub slot: Result<KeySlot>,
    /// The file holds exactly the bytes [`KeySlot::save`] writes for it
    /// (a flipped letter case parses the same but is damage all the same).
    pub exact: bool,
}

/// The bytes `save` writes for `value` (config files and key slots).
pub(crate) fn encode<T: Serialize>(value: &T) -> std::result::Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec_pretty(value)
}

/// The slot id of `config`'s key wrap (see the module doc).
pub(crate) fn slot_id(config: &Config) -> std::result::Result<String, String> {
    let material = match &config.encryption {
        Some(enc) => enc.salt_bytes()?,
        None => config.id.as_bytes().to_vec(),
    };
    let key = blake3::derive_key(KDF_CONTEXT_KEY_SLOT_ID, &material);
    Ok(hex(&key[..KEY_SLOT_ID_HEX / 2]))
}

/// `keys/` of `repo`.
pub(crate) fn keys_dir(repo: &Path) -> PathBuf {
    repo.join(KEYS_DIR)
}

/// `keys/<id>.key` of `repo`.
pub(crate) fn slot_path(repo: &Path, id: &str) -> PathBuf {
    keys_dir(repo).join(format!("{id}{KEY_SLOT_SUFFIX}"))
}

fn is_slot_id(s: &str) -> bool {
    s.len() == KEY_SLOT_ID_HEX
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl KeySlot {
    /// The slot of `config`'s wrap; `master` signs it (`None`:
    /// unencrypted).
    pub fn new(config: &Config, master: Option<&[u8; MASTER_KEY_LEN]>) -> Result<KeySlot> {
        let mut slot = KeySlot {
            format_version: FORMAT_VERSION,
            slot: slot_id(config).map_err(|e| Error::invalid("key slot", e))?,
            added: Utc::now(),
            config: config.clone(),
            slot_mac: None,
        };
        slot.slot_mac = Some(hex(slot.mac(master)?.as_bytes()));
        Ok(slot)
    }

    /// The MAC (keyed from `master`) or, unencrypted, the checksum.
    fn mac(&self, master: Option<&[u8; MASTER_KEY_LEN]>) -> Result<blake3::Hash> {
        let bare = KeySlot {
            slot_mac: None,
            ..self.clone()
        };
        let bytes = serde_json::to_vec(&bare).map_err(|e| Error::invalid("key slot", e))?;
        Ok(match master {
            Some(m) => blake3::keyed_hash(&blake3::derive_key(KDF_CONTEXT_KEY_SLOT_MAC, m), &bytes),
            None => blake3::hash(&bytes),
        })
    }

    /// Checks `slot_mac` against `master` (`None`: the checksum).
    fn check_slot_mac(
        &self,
        master: Option<&[u8; MASTER_KEY_LEN]>,
    ) -> std::result::Result<(), String> {
        let stored: [u8; 32] = self
            .slot_mac
            .as_deref()
            .and_then(|s| unhex(s).filter(|m| hex(m) == s))
            .and_then(|m| m.try_into().ok())
            .ok_or("its slot_mac is missing or not 64 lowercase hex digits")?;
        let mac = self.mac(master).map_err(|e| e.to_string())?;
        if mac != blake3::Hash::from(stored) {
            return Err(
                "its slot_mac does not match its contents (damaged, or a slot of another repository)"
                    .into(),
            );
        }
        Ok(())
    }

    /// Checks `slot_mac` and the inner `config_mac` against `master`.
    pub fn check(&self, master: &[u8; MASTER_KEY_LEN]) -> std::result::Result<(), String> {
        self.check_slot_mac(Some(master))?;
        self.config.check_mac(master)
    }

    /// Writes the slot atomically to `keys/<slot>.key` of `repo`.
    pub fn save(&self, repo: &Path) -> Result<PathBuf> {
        let path = slot_path(repo, &self.slot);
        let json = encode(self).map_err(|e| Error::corrupt_file(&path, e))?;
        fsutil::atomic_write(&path, &json)?;
        Ok(path)
    }

    /// Parses slot `id` read from `path`; the name, the `slot` field and
    /// the wrap's salt must agree.
    fn parse(path: &Path, id: &str, bytes: &[u8]) -> Result<KeySlot> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| Error::corrupt_file(path, e))?;
        let found = value
            .get("format_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| Error::corrupt_file(path, "no format_version"))?;
        if found != u64::from(FORMAT_VERSION) {
            return Err(Error::UnknownVersion {
                path: path.into(),
                found: u32::try_from(found).unwrap_or(u32::MAX),
                supported: FORMAT_VERSION,
            });
        }
        let config = value
            .get("config")
            .cloned()
            .ok_or_else(|| Error::corrupt_file(path, "no config"))?;
        Config::from_value(path, config)?;
        let slot: KeySlot =
            serde_json::from_value(value).map_err(|e| Error::corrupt_file(path, e))?;
        if slot.slot != id {
            return Err(Error::corrupt_file(
                path,
                format!("holds key slot {:?}, not {id:?} (renamed?)", slot.slot),
            ));
        }
        let derived = slot_id(&slot.config).map_err(|e| Error::corrupt_file(path, e))?;
        if derived != id {
            return Err(Error::corrupt_file(
                path,
                format!("its key wrap belongs to slot {derived}, not {id} (damaged salt, or a slot of another repository)"),
            ));
        }
        if slot.config.encryption.is_none() {
            slot.check_slot_mac(None)
                .map_err(|e| Error::corrupt_file(path, e))?;
        }
        Ok(slot)
    }
}

/// Whether `repo` has a `keys/` directory (repositories made before key
/// slots have none).
pub(crate) fn has_keys_dir(repo: &Path) -> bool {
    keys_dir(repo).is_dir()
}

/// Every `keys/<16 hex>.key` file of `repo`, by id, parsed or with the
/// reason it does not parse. Other names (temporary files) are skipped.
pub(crate) fn load_all(repo: &Path) -> Result<Vec<SlotFile>> {
    let dir = keys_dir(repo);
    let mut out = Vec::new();
    for name in crate::repository::dir_names(&dir)? {
        if name.starts_with(TMP_PREFIX) {
            continue;
        }
        let Some(id) = name.strip_suffix(KEY_SLOT_SUFFIX) else {
            continue;
        };
        let path = dir.join(&name);
        let (slot, exact) = if is_slot_id(id) {
            match fsutil::read_optional(&path)? {
                Some(bytes) => {
                    let slot = KeySlot::parse(&path, id, &bytes);
                    let exact = slot
                        .as_ref()
                        .is_ok_and(|s| encode(s).is_ok_and(|e| e == bytes));
                    (slot, exact)
                }
                None => continue, // removed meanwhile
            }
        } else {
            let e = Error::corrupt_file(&path, "not a key slot name (16 hex digits)");
            (Err(e), false)
        };
        out.push(SlotFile {
            id: id.to_string(),
            path,
            slot,
            exact,
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}
