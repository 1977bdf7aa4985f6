//! Keys and ciphers of an encrypted repository.
//!
//! ```text
//! passphrase --Argon2id(salt, m, t, p)--> KEK (32 B)
//! KEK --AES-256-GCM(nonce 0, AAD "lifeboat v1 key wrap" || repo id)--> wrapped master (48 B, in config)
//! master (32 random B) --blake3::derive_key("lifeboat v1 chunk id")--------> id key
//!                      --blake3::derive_key("lifeboat v1 blob encryption")-> enc key
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

use crate::layout::{
    ARGON2_M_COST_KIB, ARGON2_P_COST, ARGON2_T_COST, KDF_CONTEXT_BLOB_ENCRYPTION,
    KDF_CONTEXT_CHUNK_ID, MASTER_KEY_LEN, SALT_LEN, TAG_LEN,
};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

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
    /// The strong defaults of [`crate::layout`] (64 MiB, t=3, p=1).
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

/// The keys derived from the master secret.
pub(crate) struct Keys {
    pub id_key: [u8; 32],
    pub enc_key: [u8; 32],
}

impl Keys {
    pub fn derive(master: &[u8; MASTER_KEY_LEN]) -> Keys {
        Keys {
            id_key: blake3::derive_key(KDF_CONTEXT_CHUNK_ID, master),
            enc_key: blake3::derive_key(KDF_CONTEXT_BLOB_ENCRYPTION, master),
        }
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
    fn derived_keys_differ_and_blob_keys_depend_on_salt() {
        let k = Keys::derive(&[1u8; 32]);
        assert_ne!(k.id_key, k.enc_key);
        assert_ne!(
            blob_key(&k.enc_key, &[0; 32]),
            blob_key(&k.enc_key, &[1; 32])
        );
    }
}
