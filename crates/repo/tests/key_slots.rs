//! The config and the key slots survive damage: for flipped bytes,
//! truncation to half and to zero, deletion, and replacement by another
//! repository's file of the same kind, applied to the config and to a key
//! slot, the repository opens with its passphrase, every restore point
//! restores bit-exact, `verify_keys` names the damaged file, a wrong
//! passphrase is still `WrongKey`, and `repair_keys` leaves nothing to
//! report. With every copy damaged, the open fails naming them.

mod common;
use common::*;
use lifeboat_repo::*;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy)]
enum Damage {
    Flip,
    Half,
    Zero,
    Delete,
    Foreign,
}

const DAMAGES: [Damage; 5] = [
    Damage::Flip,
    Damage::Half,
    Damage::Zero,
    Damage::Delete,
    Damage::Foreign,
];

/// Applies `d` to `file`; `foreign` is the same kind of file of another
/// repository.
fn damage(file: &Path, foreign: &Path, d: Damage) {
    let bytes = std::fs::read(file).unwrap();
    match d {
        Damage::Flip => {
            let mut b = bytes;
            let at = b.len() / 2;
            b[at] ^= 0x01;
            std::fs::write(file, b).unwrap();
        }
        Damage::Half => std::fs::write(file, &bytes[..bytes.len() / 2]).unwrap(),
        Damage::Zero => std::fs::write(file, b"").unwrap(),
        Damage::Delete => std::fs::remove_file(file).unwrap(),
        Damage::Foreign => std::fs::copy(foreign, file).map(|_| ()).unwrap(),
    }
}

/// The one key slot file of `repo`.
fn only_slot(repo: &Path) -> PathBuf {
    let slots: Vec<PathBuf> = std::fs::read_dir(repo.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(slots.len(), 1, "{slots:?}");
    slots.into_iter().next().unwrap()
}

struct Setup {
    _dir: tempfile::TempDir,
    path: PathBuf,
    foreign: PathBuf,
    points: Vec<(Manifest, Vec<u8>)>,
}

/// A repository with three restore points of two VMs, and another
/// repository made with the same passphrase (its files are the swaps).
fn setup(encrypted: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    let repo = init(&path, encrypted);
    let mut points = Vec::new();
    for (i, vm) in ["web01", "web01", "db01"].iter().enumerate() {
        let data = noise(3 * CHUNK as usize + 100, i as u64 + 1);
        points.push((backup(&repo, vm, &data), data));
    }
    let foreign = dir.path().join("other");
    init(&foreign, encrypted);
    Setup {
        _dir: dir,
        path,
        foreign,
        points,
    }
}

fn pass(encrypted: bool) -> Option<&'static str> {
    encrypted.then_some(PASS)
}

fn assert_all_restore(repo: &Repository, s: &Setup, what: &str) {
    for (m, data) in &s.points {
        assert!(read_back(repo, m, "disk0") == *data, "{what}: {}", m.name());
    }
}

#[test]
fn every_damage_to_the_config_or_a_key_slot_is_named_survived_and_repaired() {
    for encrypted in [true, false] {
        let s = setup(encrypted);
        let config = s.path.join("config");
        let slot = only_slot(&s.path);
        let foreign_slot = only_slot(&s.foreign);
        let names: Vec<String> = {
            let mut n: Vec<String> = s.points.iter().map(|(m, _)| m.name()).collect();
            n.sort();
            n
        };
        for (target, kind, foreign) in [
            (&config, FileKind::Config, s.foreign.join("config")),
            (&slot, FileKind::KeySlot, foreign_slot.clone()),
        ] {
            for d in DAMAGES {
                let what = format!("encrypted={encrypted} {kind:?} {d:?}");
                let (config_bytes, slot_bytes) = (
                    std::fs::read(&config).unwrap(),
                    std::fs::read(&slot).unwrap(),
                );
                damage(target, &foreign, d);

                let repo = Repository::open(&s.path, pass(encrypted))
                    .unwrap_or_else(|e| panic!("{what}: open: {e}"));
                assert_all_restore(&repo, &s, &what);
                if let Some(secret) = repo.unlock_secret_hex() {
                    let helper = Repository::open_unlocked(&s.path, Some(&secret))
                        .unwrap_or_else(|e| panic!("{what}: open_unlocked: {e}"));
                    assert_all_restore(&helper, &s, &what);
                }
                if encrypted {
                    match Repository::open(&s.path, Some("wrong passphrase")) {
                        Err(Error::WrongKey { .. }) => {}
                        other => panic!("{what}: wrong passphrase: {other:?}"),
                    }
                }

                let found = repo.verify_keys().unwrap();
                assert_eq!(found.len(), 1, "{what}: {found:?}");
                let f = &found[0];
                assert_eq!((f.kind, &f.path), (kind, target), "{what}: {f}");
                let state = match d {
                    Damage::Delete => DamageState::Missing,
                    _ => DamageState::Corrupt,
                };
                assert_eq!(f.state, state, "{what}: {f}");
                assert!(f.all_restore_points, "{what}");
                assert_eq!(f.restore_points, names, "{what}");
                assert!(f.to_string().contains(&target.display().to_string()));

                // A dry run says what it would do and does nothing.
                let plan = repo.repair_keys(true).unwrap();
                assert_eq!(plan.len(), 1, "{what}: {plan:?}");
                assert!(plan[0].contains("would"), "{what}: {plan:?}");
                assert_eq!(repo.verify_keys().unwrap().len(), 1, "{what}");
                let done = repo.repair_keys(false).unwrap();
                assert_eq!(done.len(), 1, "{what}: {done:?}");
                assert!(
                    done[0].contains(&target.display().to_string()) && done[0].contains("rewrote"),
                    "{what}: {done:?}"
                );
                assert!(repo.verify_keys().unwrap().is_empty(), "{what}");
                let repaired = Repository::open(&s.path, pass(encrypted)).unwrap();
                assert!(repaired.verify_keys().unwrap().is_empty(), "{what}");
                assert_all_restore(&repaired, &s, &what);

                std::fs::write(&config, config_bytes).unwrap();
                std::fs::write(&slot, slot_bytes).unwrap();
            }
        }
    }
}

#[test]
fn with_every_copy_damaged_the_open_fails_naming_them() {
    for encrypted in [true, false] {
        let s = setup(encrypted);
        let config = s.path.join("config");
        let slot = only_slot(&s.path);
        damage(&config, &config, Damage::Half);
        damage(&slot, &slot, Damage::Zero);
        match Repository::open(&s.path, pass(encrypted)) {
            Err(e @ Error::KeysDamaged { .. }) => {
                let msg = e.to_string();
                for f in [&config, &slot] {
                    assert!(msg.contains(&f.display().to_string()), "{msg}");
                }
            }
            other => panic!("encrypted={encrypted}: expected KeysDamaged, got {other:?}"),
        }
        std::fs::remove_file(&config).unwrap();
        std::fs::remove_file(&slot).unwrap();
        match Repository::open(&s.path, pass(encrypted)) {
            Err(e @ Error::KeysDamaged { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("config is missing"), "{msg}");
                assert!(msg.contains("holds no key slot"), "{msg}");
            }
            other => panic!("encrypted={encrypted}: expected KeysDamaged, got {other:?}"),
        }
    }
    // A directory that merely holds a `keys/` is no repository.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    assert!(matches!(
        Repository::open(dir.path(), Some(PASS)),
        Err(Error::NotARepository { .. })
    ));
}

#[test]
fn a_tampered_config_is_not_believed_when_a_slot_is_intact() {
    let s = setup(true);
    let config = s.path.join("config");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    v["chunk_size"] = serde_json::json!(CHUNK * 4);
    std::fs::write(&config, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    let repo = Repository::open(&s.path, Some(PASS)).unwrap();
    assert_eq!(repo.chunk_size(), CHUNK);
    let found = repo.verify_keys().unwrap();
    assert_eq!(found.len(), 1);
    assert!(
        found[0].detail.contains("fails authentication"),
        "{}",
        found[0]
    );
    // An unencrypted config cannot make an encrypted repository open
    // without its passphrase.
    v["encryption"] = serde_json::Value::Null;
    std::fs::write(&config, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    assert!(matches!(
        Repository::open(&s.path, None),
        Err(Error::PassphraseRequired { .. })
    ));
    assert!(Repository::open(&s.path, Some(PASS)).unwrap().encrypted());
}

#[test]
fn passphrases_are_added_and_removed_and_another_ones_damaged_slot_is_quarantined() {
    let s = setup(true);
    let repo = Repository::open(&s.path, Some(PASS)).unwrap();
    let first = only_slot(&s.path);
    let second = repo.add_key("second passphrase").unwrap();
    let slots = repo.key_slots().unwrap();
    assert_eq!(slots.len(), 2);
    assert!(slots.iter().all(|k| k.damage.is_none()));
    assert!(slots.iter().any(|k| k.config_key && k.in_use));
    assert!(slots
        .iter()
        .any(|k| k.id == second && !k.config_key && !k.in_use));

    // The second passphrase opens, also with the config gone.
    let by_second = Repository::open(&s.path, Some("second passphrase")).unwrap();
    assert_all_restore(&by_second, &s, "second passphrase");
    let config = s.path.join("config");
    std::fs::remove_file(&config).unwrap();
    let by_second = Repository::open(&s.path, Some("second passphrase")).unwrap();
    assert_all_restore(&by_second, &s, "second passphrase, no config");
    assert_eq!(by_second.verify_keys().unwrap().len(), 1);
    by_second.repair_keys(false).unwrap();
    assert!(by_second.verify_keys().unwrap().is_empty());
    Repository::open(&s.path, Some(PASS)).unwrap();

    // The config now carries the second passphrase's wrap (it was
    // rewritten from that slot). A damaged slot of a passphrase that is
    // neither the config's nor the one in hand goes to quarantine.
    let other = repo.add_key("other passphrase").unwrap();
    let other_path = s.path.join("keys").join(format!("{other}.key"));
    damage(&other_path, &other_path, Damage::Half);
    let repo = Repository::open(&s.path, Some(PASS)).unwrap();
    let found = repo.verify_keys().unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, other_path);
    let done = repo.repair_keys(false).unwrap();
    assert_eq!(done.len(), 1, "{done:?}");
    assert!(done[0].contains("quarantine"), "{done:?}");
    assert!(s
        .path
        .join("quarantine/keys")
        .join(format!("{other}.key"))
        .exists());
    assert!(repo.verify_keys().unwrap().is_empty());
    assert!(matches!(
        Repository::open(&s.path, Some("other passphrase")),
        Err(Error::WrongKey { .. })
    ));

    // Remove the first passphrase, then the second (the config's): the
    // config moves to the wrap of the one left.
    let first_id = first.file_stem().unwrap().to_str().unwrap().to_string();
    repo.remove_key(&first_id).unwrap();
    assert!(!first.exists());
    assert!(matches!(
        Repository::open(&s.path, Some(PASS)),
        Err(Error::WrongKey { .. })
    ));
    let by_second = Repository::open(&s.path, Some("second passphrase")).unwrap();
    let third = by_second.add_key("third passphrase").unwrap();
    by_second.remove_key(&second).unwrap();
    assert!(matches!(
        Repository::open(&s.path, Some("second passphrase")),
        Err(Error::WrongKey { .. })
    ));
    let by_third = Repository::open(&s.path, Some("third passphrase")).unwrap();
    assert!(by_third.verify_keys().unwrap().is_empty());
    assert_all_restore(&by_third, &s, "third passphrase");
    // The last one that unlocks is kept.
    match by_third.remove_key(&third) {
        Err(e @ Error::Invalid { .. }) => assert!(e.to_string().contains("last"), "{e}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(matches!(
        by_third.remove_key("0123456789abcdef"),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn a_repository_from_before_key_slots_gets_one_when_opened_with_its_passphrase() {
    let s = setup(true);
    std::fs::remove_dir_all(s.path.join("keys")).unwrap();
    assert!(matches!(
        Repository::open(&s.path, None),
        Err(Error::PassphraseRequired { .. })
    ));
    assert!(
        !s.path.join("keys").exists(),
        "nothing written without the key"
    );
    let repo = Repository::open(&s.path, Some(PASS)).unwrap();
    only_slot(&s.path);
    assert!(repo.verify_keys().unwrap().is_empty());
    // Now it survives a lost config.
    std::fs::remove_file(s.path.join("config")).unwrap();
    assert_all_restore(
        &Repository::open(&s.path, Some(PASS)).unwrap(),
        &s,
        "no config",
    );
}

#[test]
fn a_flipped_bit_anywhere_in_the_config_or_the_slot_is_found_and_never_blocks_the_open() {
    for encrypted in [true, false] {
        let s = setup(encrypted);
        let slot = only_slot(&s.path);
        for target in [s.path.join("config"), slot] {
            let original = std::fs::read(&target).unwrap();
            for at in (0..original.len()).step_by(11) {
                for bit in [0x01u8, 0x20] {
                    let mut b = original.clone();
                    b[at] ^= bit;
                    std::fs::write(&target, &b).unwrap();
                    let what = format!(
                        "encrypted={encrypted} {} byte {at} ^ {bit:#x}",
                        target.display()
                    );
                    let repo = Repository::open(&s.path, pass(encrypted))
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert_eq!(repo.chunk_size(), CHUNK, "{what}");
                    let found = repo.verify_keys().unwrap();
                    assert_eq!(found.len(), 1, "{what}: {found:?}");
                    assert_eq!(found[0].path, target, "{what}: {}", found[0]);
                }
            }
            std::fs::write(&target, &original).unwrap();
            let (m, data) = &s.points[0];
            let repo = Repository::open(&s.path, pass(encrypted)).unwrap();
            assert!(repo.verify_keys().unwrap().is_empty());
            assert!(read_back(&repo, m, "disk0") == *data);
        }
    }
}
