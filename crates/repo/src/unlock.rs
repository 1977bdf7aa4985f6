//! Opening a repository that has key slots: the config and every slot
//! are copies of the repository's parameters and key; the first copy that
//! the secret unlocks and that authenticates wins, so a damaged, missing or
//! swapped config or slot blocks nothing while one intact copy is left.
//!
//! Order: the config first (one Argon2id run when it is intact), then the
//! slots (a KEK is derived once per salt and reused). A config that
//! unlocks is used as it is when it equals one of the slots' copies (or no
//! slot parses); otherwise it may be another repository's config, so the
//! slots are tried first and it is used only when none unlocks. When a
//! slot unlocks, the config file is still used if it authenticates under
//! the same master (a second passphrase's slot), else the slot's copy.
//!
//! Nothing is rewritten here (that is `repo repair`, see keys.rs).
//! Failures: no copy readable at all, or every readable copy damaged (it
//! unwraps but fails its MAC, or its wrap is malformed):
//! [`Error::KeysDamaged`] naming each file. At least one well-formed copy
//! that the secret does not unwrap: [`Error::WrongKey`], as before slots.
//! A copy claiming a newer format version refuses the open
//! ([`Error::UnknownVersion`]): a newer Lifeboat wrote here.

use crate::config::{Config, Unlocked};
use crate::crypto::{KdfParams, Keys};
use crate::error::{Error, Result};
use crate::keyslot::{self, KeySlot};
use crate::layout::{CONFIG_FILE, SNAPSHOTS_DIR};
use std::path::Path;

/// What unlocks the repository.
pub(crate) enum Secret<'a> {
    /// Nothing: only an unencrypted repository opens.
    None,
    Passphrase(&'a str),
    /// The key-encryption key of `Repository::unlock_secret_hex`.
    Kek([u8; 32]),
}

impl Secret<'_> {
    fn given(&self) -> bool {
        !matches!(self, Secret::None)
    }
}

/// One readable copy of the parameters: the config file or a slot.
struct Copy<'a> {
    path: &'a Path,
    config: &'a Config,
    slot: Option<&'a KeySlot>,
}

/// Refuses the open when `e` says a newer format version wrote the file.
fn refuse_newer(e: &Error) -> Result<()> {
    if let Error::UnknownVersion {
        path,
        found,
        supported,
    } = e
    {
        if found > supported {
            return Err(Error::UnknownVersion {
                path: path.clone(),
                found: *found,
                supported: *supported,
            });
        }
    }
    Ok(())
}

/// Opens `repo` from its config and key slots; `None` when it has no
/// `keys/` directory (a repository from before key slots: the caller
/// opens it from the config alone, as before).
pub(crate) fn open_with_slots(
    repo: &Path,
    secret: &Secret,
) -> Result<Option<(Config, Option<Unlocked>)>> {
    if !keyslot::has_keys_dir(repo) {
        return Ok(None);
    }
    let config_path = repo.join(CONFIG_FILE);
    let mut problems: Vec<String> = Vec::new();
    let config = match Config::load(repo) {
        Ok(c) => Some(c),
        Err(Error::NotARepository { .. }) => {
            problems.push(format!("{} is missing", config_path.display()));
            None
        }
        Err(e) => {
            refuse_newer(&e)?;
            problems.push(e.to_string());
            None
        }
    };
    let slots = keyslot::load_all(repo)?;
    let mut copies: Vec<Copy> = Vec::new();
    if let Some(c) = &config {
        copies.push(Copy {
            path: &config_path,
            config: c,
            slot: None,
        });
    }
    for s in &slots {
        match &s.slot {
            Ok(slot) => copies.push(Copy {
                path: &s.path,
                config: &slot.config,
                slot: Some(slot),
            }),
            Err(e) => {
                refuse_newer(e)?;
                problems.push(e.to_string());
            }
        }
    }
    if config.is_none() && slots.is_empty() && !repo.join(SNAPSHOTS_DIR).is_dir() {
        // Nothing of a repository here, only a directory named keys.
        return Err(Error::NotARepository { path: repo.into() });
    }
    if slots.is_empty() {
        problems.push(format!(
            "{} holds no key slot",
            keyslot::keys_dir(repo).display()
        ));
    }
    let damaged = |problems: &[String]| Error::KeysDamaged {
        path: repo.into(),
        detail: problems.join("; "),
    };
    if copies.is_empty() {
        return Err(damaged(&problems));
    }
    let slot_copies: Vec<&Config> = copies
        .iter()
        .filter(|c| c.slot.is_some())
        .map(|c| c.config)
        .collect();
    // The config is vouched for by the slots when one holds it verbatim.
    let config_matches_a_slot = |c: &Config| slot_copies.is_empty() || slot_copies.contains(&c);

    if !secret.given() {
        if copies.iter().any(|c| c.config.encryption.is_some()) {
            return Err(Error::PassphraseRequired { path: repo.into() });
        }
        let chosen = match &config {
            Some(c) if config_matches_a_slot(c) => c.clone(),
            _ => slot_copies
                .first()
                .map_or_else(|| copies[0].config.clone(), |s| (*s).clone()),
        };
        return Ok(Some((chosen, None)));
    }
    if copies.iter().all(|c| c.config.encryption.is_none()) {
        return Err(Error::NotEncrypted { path: repo.into() });
    }

    let mut keks: Vec<((String, KdfParams), [u8; 32])> = Vec::new();
    let mut wrong_key = false;
    let mut config_unlocked: Option<Unlocked> = None;
    for c in &copies {
        let Some(enc) = &c.config.encryption else {
            problems.push(format!(
                "{} says the repository is not encrypted, other copies say it is",
                c.path.display()
            ));
            continue;
        };
        let kek = match secret {
            Secret::Kek(k) => *k,
            Secret::Passphrase(pass) => {
                let cache_key = (enc.salt.clone(), enc.params);
                match keks.iter().find(|(k, _)| *k == cache_key) {
                    Some((_, kek)) => *kek,
                    None => match enc.kek(c.path, pass) {
                        Ok(kek) => {
                            keks.push((cache_key, kek));
                            kek
                        }
                        Err(e) => {
                            problems.push(e.to_string());
                            continue;
                        }
                    },
                }
            }
            Secret::None => unreachable!("handled above"),
        };
        // Slots are always written with the MAC AAD; only the config may
        // be a legacy one.
        let (master, legacy) = match enc.unwrap_master(&c.config.id, &kek, c.slot.is_none()) {
            Ok(Some(m)) => m,
            Ok(None) => {
                wrong_key = true;
                continue;
            }
            Err(e) => {
                problems.push(format!("{}: {e}", c.path.display()));
                continue;
            }
        };
        let authentic = match c.slot {
            Some(slot) => slot.check(&master),
            None if legacy => Ok(()),
            None => c.config.check_mac(&master),
        };
        if let Err(detail) = authentic {
            problems.push(format!(
                "{} fails authentication: {detail}",
                c.path.display()
            ));
            continue;
        }
        let unlocked = Unlocked {
            keys: Keys::derive(&master),
            kek,
            master,
            legacy,
            wrap: enc.clone(),
        };
        match c.slot {
            None if config_matches_a_slot(c.config) => {
                return Ok(Some((c.config.clone(), Some(unlocked))));
            }
            // Perhaps another repository's config: the slots decide.
            None => config_unlocked = Some(unlocked),
            Some(slot) => {
                let trusted = match &config {
                    Some(cf)
                        if cf.encryption.is_some()
                            && cf.same_parameters(&slot.config)
                            && cf.check_mac(&master).is_ok() =>
                    {
                        cf.clone()
                    }
                    _ => slot.config.clone(),
                };
                return Ok(Some((trusted, Some(unlocked))));
            }
        }
    }
    if let (Some(u), Some(c)) = (config_unlocked, config) {
        return Ok(Some((c, Some(u))));
    }
    if wrong_key {
        return Err(Error::WrongKey { path: repo.into() });
    }
    Err(damaged(&problems))
}
