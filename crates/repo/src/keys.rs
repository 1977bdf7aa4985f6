//! The config and the key slots of an opened repository: checking them
//! ([`Repository::verify_keys`]), repairing them from an intact copy
//! ([`Repository::repair_keys`]), and the passphrases (key slots) a user
//! manages: [`Repository::key_slots`], [`Repository::add_key`],
//! [`Repository::remove_key`]. The slot file format is in `keyslot.rs`;
//! opening from any intact copy in `unlock.rs`.
//!
//! Changes take `locks/snapshots.lock`, so two key changes (or a key
//! change and a repair) do not interleave.

use crate::config::Config;
use crate::crypto::KdfParams;
use crate::damage::{DamageState, FileDamage, FileKind};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::keyslot::{self, KeySlot, SlotFile};
use crate::layout::{CONFIG_FILE, KEY_SLOT_SUFFIX, MANIFEST_SUFFIX, QUARANTINE_KEYS_DIR};
use crate::model::{check_name, is_valid_id};
use crate::repository::dir_names;
use crate::Repository;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One key slot as `lifeboat key list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KeySlotInfo {
    /// 16 hex digits, the file name without `.key`.
    pub id: String,
    pub path: PathBuf,
    /// When the slot was written (`None` when it does not parse).
    pub added: Option<DateTime<Utc>>,
    /// Argon2id parameters of its passphrase (`None`: unencrypted or damaged).
    pub kdf: Option<KdfParams>,
    /// The config's own key wrap is this slot's.
    pub config_key: bool,
    /// The passphrase (or secret) this handle was opened with unlocks it.
    pub in_use: bool,
    /// Why the slot is damaged; `None` when intact.
    pub damage: Option<String>,
}

/// Why a file whose content parses and authenticates is still damaged.
fn not_exact() -> String {
    "its bytes differ from what Lifeboat wrote, though what they say is intact (a flipped letter case or whitespace)".into()
}

/// The words of a repository error without the path it names.
fn detail_of(e: &Error) -> String {
    match e {
        Error::CorruptFile { detail, .. } => detail.clone(),
        other => other.to_string(),
    }
}

impl Repository {
    fn master(&self) -> Option<&[u8; crate::layout::MASTER_KEY_LEN]> {
        self.inner.master.as_ref()
    }

    /// The master for a key change named `what`, or why there is none.
    fn master_for(&self, what: &str) -> Result<&[u8; crate::layout::MASTER_KEY_LEN]> {
        self.master().ok_or_else(|| {
            Error::invalid(
                what,
                format!(
                    "repository {} is not encrypted: it has no key and no passphrases",
                    self.path().display()
                ),
            )
        })
    }

    /// Why slot file `sf` is damaged; `None` when it is an intact copy of
    /// this repository's parameters and key.
    fn slot_problem(&self, sf: &SlotFile) -> Option<String> {
        let slot = match &sf.slot {
            Ok(s) => s,
            Err(e) => return Some(detail_of(e)),
        };
        let trusted = &self.inner.config;
        if slot.config.id != trusted.id {
            return Some(format!(
                "it is a key slot of repository {}, this is {}",
                slot.config.id, trusted.id
            ));
        }
        if !slot.config.same_parameters(trusted) {
            return Some(
                "its parameters (chunk size, compression, creation time or encryption) differ from the repository's"
                    .into(),
            );
        }
        let problem = match self.master() {
            Some(m) => slot.check(m).err(),
            None => (slot.config != *trusted).then(|| "it differs from the config".to_string()),
        };
        problem.or_else(|| (!sf.exact).then(not_exact))
    }

    /// Why the `config` file is damaged; `None` when intact.
    fn config_problem(&self) -> Option<(DamageState, String)> {
        let trusted = &self.inner.config;
        let config = match Config::load(self.path()) {
            Ok(c) => c,
            Err(Error::NotARepository { .. }) => {
                return Some((DamageState::Missing, "the file is missing".into()))
            }
            Err(e) => return Some((DamageState::Corrupt, detail_of(&e))),
        };
        if config.id != trusted.id {
            return Some((
                DamageState::Corrupt,
                format!(
                    "it is the config of repository {}, the key slots are of {}",
                    config.id, trusted.id
                ),
            ));
        }
        let problem = match self.master() {
            // A legacy config opened from itself: authenticated by its wrap.
            Some(_) if config.config_mac.is_none() && config == *trusted => None,
            Some(m) => config
                .check_mac(m)
                .err()
                .map(|d| format!("it fails authentication: {d}")),
            None => (config != *trusted).then(|| "it differs from the key slots".to_string()),
        };
        let problem = problem.or_else(|| {
            let bytes = fsutil::read_optional(&self.path().join(CONFIG_FILE)).ok()??;
            let written = keyslot::encode(&config).ok()?;
            (bytes != written).then(not_exact)
        });
        problem.map(|p| (DamageState::Corrupt, p))
    }

    /// The slot the trusted config's own key wrap belongs to, when it is a
    /// config that has one (legacy configs have none).
    fn config_slot_id(&self) -> Option<String> {
        let c = &self.inner.config;
        if c.encryption.is_some() && c.config_mac.is_none() {
            return None;
        }
        keyslot::slot_id(c).ok()
    }

    /// Every restore point (`vm@id`) whose manifest file exists, without
    /// reading it: the config and the key slots are needed by all.
    fn restore_point_names(&self) -> Result<Vec<String>> {
        let root = self.snapshots_dir();
        let mut out = Vec::new();
        for vm in dir_names(&root)? {
            if check_name(&vm).is_err() {
                continue;
            }
            for name in dir_names(&root.join(&vm))? {
                if let Some(id) = name
                    .strip_suffix(MANIFEST_SUFFIX)
                    .filter(|i| is_valid_id(i))
                {
                    out.push(format!("{vm}@{id}"));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Checks `config` and every `keys/*.key` against the parameters and
    /// the master key this repository was opened with: each damaged or
    /// missing one is returned (kind [`FileKind::Config`] or
    /// [`FileKind::KeySlot`], all restore points affected). A slot is
    /// missing when the config's own key wrap has no slot beside it; a
    /// repository from before key slots (no `keys/`) is not damaged.
    pub fn verify_keys(&self) -> Result<Vec<FileDamage>> {
        let points = self.restore_point_names()?;
        let damage = |kind, path: PathBuf, state, detail: String| FileDamage {
            kind,
            path,
            state,
            detail,
            all_restore_points: true,
            restore_points: points.clone(),
            used_by: Vec::new(),
        };
        let mut out = Vec::new();
        if let Some((state, detail)) = self.config_problem() {
            out.push(damage(
                FileKind::Config,
                self.path().join(CONFIG_FILE),
                state,
                detail,
            ));
        }
        if !keyslot::has_keys_dir(self.path()) {
            return Ok(out);
        }
        let slots = keyslot::load_all(self.path())?;
        for sf in &slots {
            if let Some(detail) = self.slot_problem(sf) {
                out.push(damage(
                    FileKind::KeySlot,
                    sf.path.clone(),
                    DamageState::Corrupt,
                    detail,
                ));
            }
        }
        if let Some(id) = self.config_slot_id() {
            if !slots.iter().any(|s| s.id == id) {
                out.push(damage(
                    FileKind::KeySlot,
                    keyslot::slot_path(self.path(), &id),
                    DamageState::Missing,
                    "the key slot of the config's key is missing".into(),
                ));
            }
        }
        Ok(out)
    }

    /// The slot with id `id` as this handle can rebuild it: from the
    /// trusted config's key wrap, or from the wrap the secret in hand
    /// opened; `None` when it is another passphrase's slot.
    fn rebuild_slot(&self, id: &str) -> Result<Option<KeySlot>> {
        let trusted = &self.inner.config;
        if self.config_slot_id().as_deref() == Some(id) {
            return KeySlot::new(trusted, self.master()).map(Some);
        }
        if let (Some(wrap), Some(m)) = (&self.inner.wrap, self.master()) {
            let config = trusted.with_wrap(wrap.clone(), m)?;
            if keyslot::slot_id(&config).ok().as_deref() == Some(id) {
                return KeySlot::new(&config, Some(m)).map(Some);
            }
        }
        Ok(None)
    }

    /// Repairs what [`Repository::verify_keys`] finds: a damaged or
    /// missing config is rewritten from the intact copy this handle was
    /// opened from; a damaged or missing slot whose key wrap this handle
    /// holds (the config's, or the passphrase's in hand) is rewritten
    /// from the master key; any other damaged slot is moved to
    /// `quarantine/keys/` (its passphrase no longer opens the repository).
    /// A repository from before key slots gets its first slot. One line
    /// per action; `dry_run` says what it would do and changes nothing.
    pub fn repair_keys(&self, dry_run: bool) -> Result<Vec<String>> {
        let _guard = if dry_run {
            None
        } else {
            Some(self.snapshots_lock("key repair")?)
        };
        let verb = |done: &str, would: &str| {
            if dry_run {
                format!("would {would}")
            } else {
                done.to_string()
            }
        };
        let root = self.path();
        let mut out = Vec::new();
        if !keyslot::has_keys_dir(root) {
            if let Some(id) = self.config_slot_id() {
                if !dry_run {
                    let dir = keyslot::keys_dir(root);
                    std::fs::create_dir(&dir).at(&dir)?;
                    KeySlot::new(&self.inner.config, self.master())?.save(root)?;
                    fsutil::fsync_dir(root)?;
                }
                out.push(format!(
                    "{}: {} (the repository had no key slot)",
                    keyslot::slot_path(root, &id).display(),
                    verb(
                        "added a copy of the config and its key",
                        "add a copy of the config and its key"
                    )
                ));
            }
        }
        for d in self.verify_keys()? {
            match d.kind {
                FileKind::Config => {
                    if !dry_run {
                        self.inner.config.save(root)?;
                    }
                    let from = self
                        .config_slot_id()
                        .map(|id| {
                            format!(" from key slot {}", keyslot::slot_path(root, &id).display())
                        })
                        .unwrap_or_default();
                    out.push(format!(
                        "{} ({}): {}{from}",
                        d.path.display(),
                        d.detail,
                        verb("rewrote it", "rewrite it")
                    ));
                }
                FileKind::KeySlot => {
                    let id = d
                        .path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|n| n.strip_suffix(KEY_SLOT_SUFFIX))
                        .unwrap_or_default()
                        .to_string();
                    if let Some(slot) = self.rebuild_slot(&id)? {
                        if !dry_run {
                            std::fs::create_dir_all(keyslot::keys_dir(root))
                                .at(keyslot::keys_dir(root))?;
                            slot.save(root)?;
                        }
                        out.push(format!(
                            "{} ({}): {} from the master key",
                            d.path.display(),
                            d.detail,
                            verb("rewrote it", "rewrite it")
                        ));
                    } else if d.state == DamageState::Missing {
                        out.push(format!(
                            "{} ({}): cannot rewrite it",
                            d.path.display(),
                            d.detail
                        ));
                    } else {
                        let to = if dry_run {
                            root.join(QUARANTINE_KEYS_DIR)
                                .join(d.path.file_name().unwrap_or_default())
                        } else {
                            quarantine(root, &d.path)?
                        };
                        out.push(format!(
                            "{} ({}): its passphrase is not the one given, so it cannot be rewritten: {} {} (that passphrase no longer opens the repository; add it again with `lifeboat key add`)",
                            d.path.display(),
                            d.detail,
                            verb("moved it to", "move it to"),
                            to.display()
                        ));
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Every key slot, intact or not.
    pub fn key_slots(&self) -> Result<Vec<KeySlotInfo>> {
        let config_slot = self.config_slot_id();
        let in_use = match (&self.inner.wrap, self.master()) {
            (Some(w), Some(m)) => {
                keyslot::slot_id(&self.inner.config.with_wrap(w.clone(), m)?).ok()
            }
            _ => None,
        };
        Ok(keyslot::load_all(self.path())?
            .into_iter()
            .map(|sf| {
                let damage = self.slot_problem(&sf);
                let (added, kdf) = match &sf.slot {
                    Ok(s) => (Some(s.added), s.config.kdf()),
                    Err(_) => (None, None),
                };
                KeySlotInfo {
                    config_key: config_slot.as_deref() == Some(sf.id.as_str()),
                    in_use: in_use.as_deref() == Some(sf.id.as_str()),
                    id: sf.id,
                    path: sf.path,
                    added,
                    kdf,
                    damage,
                }
            })
            .collect())
    }

    /// Adds a key slot for `passphrase` (a fresh salt, the repository's
    /// Argon2id parameters); returns its id. The repository must be
    /// encrypted and opened with a secret.
    pub fn add_key(&self, passphrase: &str) -> Result<String> {
        let master = *self.master_for("key add")?;
        let _guard = self.snapshots_lock("key add")?;
        let root = self.path();
        let trusted = &self.inner.config;
        if !keyslot::has_keys_dir(root) {
            let dir = keyslot::keys_dir(root);
            std::fs::create_dir(&dir).at(&dir)?;
            if trusted.config_mac.is_some() {
                KeySlot::new(trusted, Some(&master))?.save(root)?;
            }
            fsutil::fsync_dir(root)?;
        }
        let kdf = trusted.kdf().unwrap_or_default();
        let (config, _) = trusted.authenticated(passphrase, master, kdf)?;
        let slot = KeySlot::new(&config, Some(&master))?;
        slot.save(root)?;
        Ok(slot.slot)
    }

    /// Removes key slot `id`: its passphrase no longer opens the
    /// repository. Refused when no other intact slot would be left. When
    /// the config carries this slot's key wrap, the config is first
    /// rewritten with another intact slot's (so the passphrase is gone
    /// from the config too).
    pub fn remove_key(&self, id: &str) -> Result<()> {
        self.master_for("key remove")?;
        let _guard = self.snapshots_lock("key remove")?;
        let root = self.path();
        let slots = keyslot::load_all(root)?;
        let target = slots
            .iter()
            .find(|s| s.id == id)
            .ok_or_else(|| Error::NotFound {
                what: format!("key slot {id}"),
            })?;
        let other = slots.iter().find_map(|s| match &s.slot {
            Ok(slot) if s.id != id && self.slot_problem(s).is_none() => Some(slot),
            _ => None,
        });
        let Some(other) = other else {
            return Err(Error::invalid(
                format!("key slot {id}"),
                "it is the last intact key slot: without it no passphrase opens the repository (add another with `lifeboat key add` first)",
            ));
        };
        let config_wrap = Config::load(root)
            .ok()
            .and_then(|c| keyslot::slot_id(&c).ok());
        if config_wrap.is_none() || config_wrap.as_deref() == Some(id) {
            other.config.save(root)?;
        }
        std::fs::remove_file(&target.path).at(&target.path)?;
        fsutil::fsync_dir(&keyslot::keys_dir(root))
    }
}

/// Moves `path` into `quarantine/keys/` of `repo` (a free name), returns
/// where it went.
fn quarantine(repo: &Path, path: &Path) -> Result<PathBuf> {
    let dir = repo.join(QUARANTINE_KEYS_DIR);
    std::fs::create_dir_all(&dir).at(&dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid(path.display(), "has no file name"))?
        .to_string_lossy()
        .into_owned();
    let mut to = dir.join(&name);
    let mut n = 1;
    while to.exists() {
        to = dir.join(format!("{name}.{n}"));
        n += 1;
    }
    std::fs::rename(path, &to).at(path)?;
    fsutil::fsync_dir(&dir)?;
    if let Some(parent) = path.parent() {
        fsutil::fsync_dir(parent)?;
    }
    Ok(to)
}
