//! Keys and ciphers of an encrypted repository.
//!
//! ```text
//! passphrase --Argon2id(salt, m, t, p)--> KEK (32 B)
//! KEK --AES-256-GCM(nonce 0, AAD "lifeboat v1 key wrap" || repo id)--> wrapped master (48 B, in config and in each key slot)
//! master (32 random B) --blake3::derive_key("lifeboat v1 chunk id")--------> id key
//!                      --blake3::derive_key("lifeboat v1 blob encryption")-> enc key
//!                      --blake3::derive_key("lifeboat v1 local keys")------> local root
//! local root --blake3::derive_key(PURPOSE)--> LocalKey (scan cache, block store)
//! digest      = blake3::keyed_hash(id key, plaintext)
//! blob key    = blake3::keyed_hash(enc key, 32-byte random salt of the blob)
//! blob body   = AES-256-GCM(blob key, nonce 0, AAD = header || context)
//! ```
//!
//! Every blob gets its own key from a fresh 256-bit salt, so the all-zero
//! nonce is used once per key: no nonce-reuse bound however many chunks are
//! written (random 96-bit nonces would cap a single key at ~2^32 messages).
//! The KEK is derived from a fresh salt each time a key is wrapped, so its
//! zero nonce is also single-use.
//!
//! A [`LocalKey`] protects data the host keeps beside a repository (the
//! scan cache, the publisher's block store): derived from the master key
//! through the local root, one per purpose string, so it is as secret as
//! the repository and knowing one purpose's key says nothing of another's
//! or of the repository's keys. An unencrypted repository has no secret:
//! callers then keep a random key in a 0600 file of their own
//! ([`LocalKey::load_or_create`]).

use crate::layout::{
    ARGON2_M_COST_KIB, ARGON2_P_COST, ARGON2_T_COST, KDF_CONTEXT_BLOB_ENCRYPTION,
    KDF_CONTEXT_CHUNK_ID, MASTER_KEY_LEN, SALT_LEN, TAG_LEN,
};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use zeroize::Zeroize;

/// Argon2id cost parameters, recorded in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// The strong defaults of [`crate::layout`] (64 MiB, t=3, p=4).
    fn default() -> Self {
        KdfParams {
            m_cost_kib: ARGON2_M_COST_KIB,
            t_cost: ARGON2_T_COST,
            p_cost: ARGON2_P_COST,
        }
    }
}

impl KdfParams {
    /// Cheap parameters (8 MiB, t=1) for tests only: never for real data.
    pub fn insecure_for_tests() -> Self {
        KdfParams {
            m_cost_kib: 8 * 1024,
            t_cost: 1,
            p_cost: 1,
        }
    }
}

/// The keys derived from the master secret. Zeroed when dropped.
pub(crate) struct Keys {
    /// What blobs and digests need.
    pub chunk: ChunkKeys,
    /// The root of the [`LocalKey`]s.
    pub local_root: [u8; 32],
}

/// The two keys chunks are named and sealed with: the id key (keyed
/// BLAKE3 digests) and the blob encryption key. Neither unwraps the
/// master key nor derives the [`LocalKey`]s. This is what a server hands
/// an enrolled proxy for an upload (`crate::encoder`); zeroed when dropped.
pub struct ChunkKeys {
    pub(crate) id_key: [u8; 32],
    pub(crate) enc_key: [u8; 32],
}

impl Clone for ChunkKeys {
    fn clone(&self) -> Self {
        ChunkKeys {
            id_key: self.id_key,
            enc_key: self.enc_key,
        }
    }
}

impl std::fmt::Debug for ChunkKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChunkKeys(<redacted>)")
    }
}

impl Drop for ChunkKeys {
    fn drop(&mut self) {
        self.id_key.zeroize();
        self.enc_key.zeroize();
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        self.local_root.zeroize();
    }
}

/// KDF context of the root of the local keys.
const KDF_CONTEXT_LOCAL_ROOT: &str = "lifeboat v1 local keys";

impl Keys {
    pub fn derive(master: &[u8; MASTER_KEY_LEN]) -> Keys {
        Keys {
            chunk: ChunkKeys {
                id_key: blake3::derive_key(KDF_CONTEXT_CHUNK_ID, master),
                enc_key: blake3::derive_key(KDF_CONTEXT_BLOB_ENCRYPTION, master),
            },
            local_root: blake3::derive_key(KDF_CONTEXT_LOCAL_ROOT, master),
        }
    }
}

/// A key for data the host keeps beside a repository (see the module doc):
/// a MAC ([`LocalKey::mac`]) and an AEAD with one key per item
/// ([`LocalKey::seal`], [`LocalKey::open`]).
#[derive(Clone)]
pub struct LocalKey([u8; 32]);

impl std::fmt::Debug for LocalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalKey(<redacted>)")
    }
}

impl crate::Repository {
    /// The [`LocalKey`] of `purpose` (e.g. `"lifeboat scan cache v1"`),
    /// derived from the master key; `None` when the repository is not
    /// encrypted.
    pub fn local_key(&self, purpose: &str) -> Option<LocalKey> {
        self.inner
            .keys
            .as_ref()
            .map(|k| LocalKey(blake3::derive_key(purpose, &k.local_root)))
    }
}

impl LocalKey {
    /// The key in file `path` (32 random bytes, hex), made with mode 0600
    /// when absent. Refused when the file is readable or writable by group
    /// or others, or is not 64 hex digits.
    pub fn load_or_create(path: &Path) -> std::io::Result<LocalKey> {
        let bad = |why: &str| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("key file {}: {why}", path.display()),
            )
        };
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(mut f) => {
                let key: [u8; 32] = random_array().map_err(|e| bad(&e))?;
                f.write_all(crate::digest::hex(&key).as_bytes())?;
                f.sync_all()?;
                return Ok(LocalKey(key));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let meta = std::fs::symlink_metadata(path)?;
        if !meta.is_file() || meta.permissions().mode() & 0o077 != 0 {
            return Err(bad("not a regular file of mode 0600"));
        }
        let text = std::fs::read_to_string(path)?;
        crate::digest::unhex(text.trim())
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .map(LocalKey)
            .ok_or_else(|| bad("not 64 hex digits"))
    }

    /// The key's bytes, for a crate that keys BLAKE3 with it without
    /// depending on this one (the scan cache).
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// Keyed BLAKE3 of `data`.
    pub fn mac(&self, data: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.0, data).as_bytes()
    }

    /// The key of `item`, e.g. a block's address.
    fn item_key(&self, item: &[u8]) -> [u8; 32] {
        self.mac(item)
    }

    /// Encrypts `data` in place with AES-256-GCM under the key of `item`
    /// and `nonce` (unique per item: a random one, or any fixed one when an
    /// item's plaintext never changes); returns the tag.
    pub fn seal(
        &self,
        item: &[u8],
        nonce: [u8; 12],
        aad: &[u8],
        data: &mut [u8],
    ) -> Result<[u8; TAG_LEN], String> {
        let tag = aead_key(&self.item_key(item))?
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), data)
            .map_err(|_| "AES-256-GCM encryption failed".to_string())?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Decrypts `data` in place when `tag` authenticates it (see
    /// [`LocalKey::seal`]); on failure `data` is garbage.
    pub fn open(
        &self,
        item: &[u8],
        nonce: [u8; 12],
        aad: &[u8],
        data: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), String> {
        aead_key(&self.item_key(item))?
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                ring::aead::Tag::from(*tag),
                data,
                0..,
            )
            .map(|_| ())
            .map_err(|_| "authentication failed (wrong key, damaged or planted)".to_string())
    }

    /// `N` random bytes (nonces), from the system CSPRNG.
    pub fn random<const N: usize>() -> Result<[u8; N], String> {
        random_array()
    }
}

/// Fills `buf` from the system CSPRNG.
pub(crate) fn random_bytes(buf: &mut [u8]) -> Result<(), String> {
    SystemRandom::new()
        .fill(buf)
        .map_err(|_| "the system random number generator failed".to_string())
}

/// A fresh random array.
pub(crate) fn random_array<const N: usize>() -> Result<[u8; N], String> {
    let mut a = [0u8; N];
    random_bytes(&mut a)?;
    Ok(a)
}

fn aead_key(key: &[u8; 32]) -> Result<LessSafeKey, String> {
    UnboundKey::new(&AES_256_GCM, key)
        .map(LessSafeKey::new)
        .map_err(|_| "AES-256-GCM key setup failed".to_string())
}

/// Encrypts `data` in place under a single-use `key`; returns the tag.
pub(crate) fn seal(key: &[u8; 32], aad: &[u8], data: &mut [u8]) -> Result<[u8; TAG_LEN], String> {
    let tag = aead_key(key)?
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key([0; 12]), Aad::from(aad), data)
        .map_err(|_| "AES-256-GCM encryption failed".to_string())?;
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(tag.as_ref());
    Ok(out)
}

/// Decrypts `data` (ciphertext || tag) in place; returns the plaintext length.
/// Fails when the tag does not authenticate `data` and `aad`.
pub(crate) fn open(key: &[u8; 32], aad: &[u8], data: &mut [u8]) -> Result<usize, String> {
    aead_key(key)?
        .open_in_place(Nonce::assume_unique_for_key([0; 12]), Aad::from(aad), data)
        .map(|plain| plain.len())
        .map_err(|_| "authentication failed (wrong key, damaged or swapped file)".to_string())
}

/// The single-use key of a blob with `salt`.
pub(crate) fn blob_key(enc_key: &[u8; 32], salt: &[u8; SALT_LEN]) -> [u8; 32] {
    *blake3::keyed_hash(enc_key, salt).as_bytes()
}

/// Argon2id(passphrase, salt) -> 32-byte key-encryption key.
pub(crate) fn kek(passphrase: &str, salt: &[u8], params: KdfParams) -> Result<[u8; 32], String> {
    let p = argon2::Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(32))
        .map_err(|e| format!("invalid Argon2id parameters {params:?}: {e}"))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
    let mut out = [0u8; 32];
    a.hash_password_into(passphrase.as_bytes(), salt, &mut out)
        .map_err(|e| format!("Argon2id failed: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_roundtrip_and_tamper_detection() {
        let key = [7u8; 32];
        let mut data = b"hello chunk".to_vec();
        let tag = seal(&key, b"aad", &mut data).unwrap();
        data.extend_from_slice(&tag);
        assert_eq!(data.len(), 11 + 16);
        let mut copy = data.clone();
        let n = open(&key, b"aad", &mut copy).unwrap();
        assert_eq!(&copy[..n], b"hello chunk");
        let mut copy = data.clone();
        assert!(open(&key, b"other", &mut copy).is_err());
        let mut copy = data.clone();
        copy[0] ^= 1;
        assert!(open(&key, b"aad", &mut copy).is_err());
    }

    #[test]
    fn local_keys_seal_per_item_and_mac() {
        let k = LocalKey(blake3::derive_key(
            "test",
            &Keys::derive(&[1u8; 32]).local_root,
        ));
        let mut data = b"block".to_vec();
        let nonce = [3u8; 12];
        let tag = k.seal(b"item1", nonce, b"aad", &mut data).unwrap();
        assert_ne!(data, b"block");
        let mut copy = data.clone();
        k.open(b"item1", nonce, b"aad", &mut copy, &tag).unwrap();
        assert_eq!(copy, b"block");
        for (item, n, aad) in [
            (&b"item2"[..], nonce, &b"aad"[..]),
            (b"item1", [4; 12], b"aad"),
            (b"item1", nonce, b"other"),
        ] {
            let mut copy = data.clone();
            assert!(k.open(item, n, aad, &mut copy, &tag).is_err());
        }
        assert_ne!(k.mac(b"x"), k.mac(b"y"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let a = LocalKey::load_or_create(&path).unwrap();
        let b = LocalKey::load_or_create(&path).unwrap();
        assert_eq!(a.mac(b"x"), b.mac(b"x"));
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = LocalKey::load_or_create(&path).unwrap_err();
        assert!(e.to_string().contains("mode 0600"), "{e}");
    }

    #[test]
    fn derived_keys_differ_and_blob_keys_depend_on_salt() {
        let k = Keys::derive(&[1u8; 32]).chunk.clone();
        assert_ne!(k.id_key, k.enc_key);
        assert_ne!(
            blob_key(&k.enc_key, &[0; 32]),
            blob_key(&k.enc_key, &[1; 32])
        );
    }
}
