//! The repository config is authenticated by the key it wraps: someone who
//! can write the repository but has no key cannot change its chunk size,
//! compression, KDF parameters or encryption unnoticed; KDF parameters
//! outside the bounds are refused before Argon2id runs; a legacy config
//! (no MAC) still opens and gets its MAC, and cannot be faked by stripping
//! the MAC from a new one.
//!
//! These tests look at the config alone, as in a repository from before
//! key slots: they remove `keys/` (with a slot beside it, a damaged config
//! is taken from the slot instead: tests/key_slots.rs).

mod common;
use common::*;
use lifeboat_repo::*;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

fn read_config(repo: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(repo.join("config")).unwrap()).unwrap()
}

/// Removes the key slots: the config is then the only copy.
fn remove_key_slots(repo: &Path) {
    std::fs::remove_dir_all(repo.join("keys")).unwrap();
}

fn write_config(repo: &Path, v: &Value) {
    std::fs::write(repo.join("config"), serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

/// Opens `repo` with the test passphrase after `change` was applied to a
/// copy of its config `original`.
fn open_changed(repo: &Path, original: &Value, change: impl Fn(&mut Value)) -> Result<Repository> {
    let mut v = original.clone();
    change(&mut v);
    write_config(repo, &v);
    Repository::open(repo, Some(PASS))
}

fn assert_tampered(r: Result<Repository>, what: &str) {
    match r {
        Err(e @ Error::ConfigTampered { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("config") && msg.contains("fails authentication"),
                "{msg}"
            );
        }
        other => panic!("{what}: expected ConfigTampered, got {other:?}"),
    }
}

#[test]
fn a_changed_chunk_size_compression_or_missing_mac_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    init(&path, true);
    remove_key_slots(&path);
    let original = read_config(&path);
    assert!(original["config_mac"].is_string(), "{original}");
    let chunk = |v: &mut Value| v["chunk_size"] = json!(CHUNK * 2);
    assert_tampered(open_changed(&path, &original, chunk), "chunk size");
    let zstd = |v: &mut Value| v["zstd_level"] = json!(19);
    assert_tampered(open_changed(&path, &original, zstd), "zstd level");
    let created = |v: &mut Value| v["created"] = json!("2020-01-01T00:00:00Z");
    assert_tampered(open_changed(&path, &original, created), "created");
    let no_mac = |v: &mut Value| {
        v.as_object_mut().unwrap().remove("config_mac");
    };
    assert_tampered(open_changed(&path, &original, no_mac), "MAC removed");
    // Stripping the MAC and changing the chunk size does not pass either:
    // the key's wrap says a MAC is required.
    let both = |v: &mut Value| {
        v.as_object_mut().unwrap().remove("config_mac");
        v["chunk_size"] = json!(CHUNK * 4);
    };
    assert_tampered(
        open_changed(&path, &original, both),
        "MAC removed + chunk size",
    );
    let bad_mac = |v: &mut Value| v["config_mac"] = json!("00".repeat(32));
    assert_tampered(open_changed(&path, &original, bad_mac), "MAC replaced");
    // A changed id changes the key wrap's AAD: the key no longer unwraps.
    let id = |v: &mut Value| v["id"] = json!("0".repeat(32));
    assert!(matches!(
        open_changed(&path, &original, id),
        Err(Error::WrongKey { .. })
    ));
    // A raised cost within the bounds gives another KEK: no unwrap either.
    let m_cost = |v: &mut Value| v["encryption"]["m_cost_kib"] = json!(16 * 1024);
    assert!(matches!(
        open_changed(&path, &original, m_cost),
        Err(Error::WrongKey { .. })
    ));
    // The untouched config still opens.
    write_config(&path, &original);
    assert_eq!(
        Repository::open(&path, Some(PASS)).unwrap().chunk_size(),
        CHUNK
    );
}

#[test]
fn kdf_parameters_outside_the_bounds_are_refused_before_argon2_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    init(&path, true);
    remove_key_slots(&path);
    let original = read_config(&path);
    let cases: [(&str, u64); 4] = [
        ("m_cost_kib", 8),       // lowered far below the floor
        ("m_cost_kib", 4 << 20), // 4 GiB: an allocation bomb
        ("t_cost", 100_000),     // hours of Argon2id
        ("p_cost", 0),
    ];
    for (field, value) in cases {
        let start = Instant::now();
        let r = open_changed(&path, &original, |v| v["encryption"][field] = json!(value));
        match r {
            Err(e @ Error::KdfRefused { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("Argon2id") && msg.contains("config"), "{msg}");
            }
            other => panic!("{field}={value}: expected KdfRefused, got {other:?}"),
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{field}={value}: Argon2id ran before the check"
        );
    }
    // And at init: a repository cannot be made with a cost below the floor.
    let weak = KdfParams {
        m_cost_kib: 1024,
        t_cost: 1,
        p_cost: 1,
    };
    let opts = InitOptions::new(Some(PASS.into()));
    assert!(matches!(
        Repository::init_with_kdf(&dir.path().join("weak"), opts, weak),
        Err(Error::KdfRefused { .. })
    ));
    assert!(!dir.path().join("weak").exists());
}

#[test]
fn an_encrypted_config_replaced_by_an_unencrypted_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    init(&path, true);
    remove_key_slots(&path);
    let mut v = read_config(&path);
    v["encryption"] = Value::Null;
    v.as_object_mut().unwrap().remove("config_mac");
    write_config(&path, &v);
    // With the passphrase (a backup about to upload): refused, nothing
    // would be written in plaintext.
    match Repository::open(&path, Some(PASS)) {
        Err(e @ Error::NotEncrypted { .. }) => {
            assert!(e.to_string().contains("config was replaced"), "{e}")
        }
        other => panic!("expected NotEncrypted, got {other:?}"),
    }
    assert!(matches!(
        Repository::open_unlocked(&path, Some(&"ab".repeat(32))),
        Err(Error::NotEncrypted { .. })
    ));
}

/// Argon2id(PASS, salt) with the tests' parameters, as the library does.
fn kek(salt: &[u8; 32]) -> [u8; 32] {
    let p = KdfParams::insecure_for_tests();
    let params = argon2::Params::new(p.m_cost_kib, p.t_cost, p.p_cost, Some(32)).unwrap();
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; 32];
    a.hash_password_into(PASS.as_bytes(), salt, &mut out)
        .unwrap();
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A legacy config, as written before `config_mac` existed: the master
/// wrapped with the AAD "lifeboat v1 key wrap" || id, no MAC.
fn write_legacy(path: &Path, master: &[u8; 32], salt: &[u8; 32]) -> [u8; 32] {
    let id = "1234567890abcdef1234567890abcdef";
    let kek = kek(salt);
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &kek).unwrap());
    let mut wrapped = master.to_vec();
    let aad = [&b"lifeboat v1 key wrap"[..], id.as_bytes()].concat();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key([0; 12]),
        Aad::from(aad),
        &mut wrapped,
    )
    .unwrap();
    let p = KdfParams::insecure_for_tests();
    let v = json!({
        "format_version": 1, "id": id, "chunk_size": CHUNK, "zstd_level": 3,
        "created": "2026-11-22T11:09:30Z",
        "encryption": { "kdf": "argon2id", "m_cost_kib": p.m_cost_kib, "t_cost": p.t_cost,
                        "p_cost": p.p_cost, "salt": hex(salt), "wrapped_key": hex(&wrapped) }
    });
    write_config(path, &v);
    kek
}

#[test]
fn a_legacy_config_opens_keeps_its_key_and_gets_a_mac() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    init(&path, true); // the layout; the config is replaced below
    remove_key_slots(&path);
    let master = [0x42u8; 32];
    let kek = write_legacy(&path, &master, &[7u8; 32]);
    // A helper with the unlock secret opens it without rewriting it.
    let helper = Repository::open_unlocked(&path, Some(&hex(&kek))).unwrap();
    let data = noise(150_000, 9);
    let m = backup(&helper, "legacy", &data);
    assert!(read_config(&path).get("config_mac").is_none());
    // The same master: digests keyed by it.
    let id_key = blake3::derive_key("lifeboat v1 chunk id", &master);
    assert_eq!(
        helper.digest(b"x").0,
        *blake3::keyed_hash(&id_key, b"x").as_bytes()
    );
    drop(helper);
    // Opening with the passphrase adds the MAC (fresh salt, same master).
    let repo = Repository::open(&path, Some(PASS)).unwrap();
    let upgraded = read_config(&path);
    assert!(upgraded["config_mac"].is_string(), "{upgraded}");
    assert_ne!(upgraded["encryption"]["salt"], json!(hex(&[7u8; 32])));
    // ... and its first key slot, a copy of the upgraded config.
    let slots: Vec<_> = std::fs::read_dir(path.join("keys")).unwrap().collect();
    assert_eq!(slots.len(), 1);
    assert!(repo.verify_keys().unwrap().is_empty());
    assert_eq!(read_back(&repo, &m, "disk0"), data);
    assert_eq!(
        repo.digest(b"x").0,
        *blake3::keyed_hash(&id_key, b"x").as_bytes()
    );
    // The unlock secret of the upgraded config opens it.
    let secret = repo.unlock_secret_hex().unwrap();
    Repository::open_unlocked(&path, Some(&secret)).unwrap();
    // From now on it is authenticated.
    remove_key_slots(&path);
    let chunk = |v: &mut Value| v["chunk_size"] = json!(CHUNK * 2);
    assert_tampered(open_changed(&path, &upgraded, chunk), "upgraded chunk size");
    write_config(&path, &upgraded);
    assert_eq!(
        read_back(&Repository::open(&path, Some(PASS)).unwrap(), &m, "disk0"),
        data
    );
}
