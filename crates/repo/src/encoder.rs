//! Chunks encoded away from the repository: the chunk keys a server hands
//! an enrolled proxy over mutual TLS ([`Repository::chunk_keys`], sent as
//! [`ChunkKeys::to_hex`], taken back with [`ChunkKeys::from_hex`]) and
//! [`ChunkEncoder`], which digests and encodes chunk blobs with them
//! exactly as [`crate::BackupWriter::store_chunk`] does, so the blob a
//! proxy uploads is the file the repository keeps
//! ([`crate::BackupWriter::store_encoded`]).
//!
//! The chunk keys name and seal chunks; they do not unwrap the master
//! key, so they open no key slot and derive no local key. Whoever holds
//! them can read and forge chunks of this repository: they go only to an
//! enrolled proxy, which keeps them in memory (zeroed when dropped).

use crate::blob::{self, BlobKind};
use crate::crypto::ChunkKeys;
use crate::digest::{hex, unhex, Digest};
use crate::error::{Error, Result};
use crate::layout::{BLOB_HEADER_LEN, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, TAG_LEN};
use crate::Repository;

impl Repository {
    /// A copy of the keys that name and seal this repository's chunks,
    /// for a proxy that encodes chunks of an upload; `None` when the
    /// repository is not encrypted.
    pub fn chunk_keys(&self) -> Option<ChunkKeys> {
        self.keys().cloned()
    }
}

impl ChunkKeys {
    /// Both keys as 128 hex digits (id key, then encryption key), for the
    /// wire only: never a file, a log or a command line.
    pub fn to_hex(&self) -> String {
        let mut both = [0u8; 64];
        both[..32].copy_from_slice(&self.id_key);
        both[32..].copy_from_slice(&self.enc_key);
        let text = hex(&both);
        zeroize::Zeroize::zeroize(&mut both);
        text
    }

    /// The keys of [`ChunkKeys::to_hex`].
    pub fn from_hex(text: &str) -> Result<ChunkKeys> {
        let bad = || Error::invalid("chunk keys", "not 128 hex digits");
        let mut bytes = unhex(text.trim()).ok_or_else(bad)?;
        let keys = match bytes.len() {
            64 => {
                let mut k = ChunkKeys {
                    id_key: [0; 32],
                    enc_key: [0; 32],
                };
                k.id_key.copy_from_slice(&bytes[..32]);
                k.enc_key.copy_from_slice(&bytes[32..]);
                Ok(k)
            }
            _ => Err(bad()),
        };
        zeroize::Zeroize::zeroize(bytes.as_mut_slice());
        keys
    }
}

/// Digests and encodes chunks as a repository does, without the
/// repository: from its chunk keys (`None`: unencrypted), chunk size and
/// a zstd level.
#[derive(Debug, Clone)]
pub struct ChunkEncoder {
    keys: Option<ChunkKeys>,
    chunk_size: u32,
    zstd_level: i32,
}

impl ChunkEncoder {
    /// An encoder; refuses a chunk size or zstd level a repository would.
    pub fn new(keys: Option<ChunkKeys>, chunk_size: u32, zstd_level: i32) -> Result<Self> {
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
            return Err(Error::invalid(
                "chunk encoder",
                format!("chunk size {chunk_size} is outside {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE}"),
            ));
        }
        crate::check_zstd_level(zstd_level).map_err(|e| Error::invalid("chunk encoder", e))?;
        Ok(ChunkEncoder {
            keys,
            chunk_size,
            zstd_level,
        })
    }

    /// The chunk size of the repository the keys belong to.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// The zstd level new chunks are compressed at.
    pub fn zstd_level(&self) -> i32 {
        self.zstd_level
    }

    /// A chunk's digest, as [`Repository::digest`] gives it.
    pub fn digest(&self, plain: &[u8]) -> Digest {
        crate::repository::digest_with(self.keys.as_ref(), plain)
    }

    /// The blob of chunk `digest` (whose plaintext is `plain`), appended
    /// to `out`.
    pub fn encode_into(&self, digest: &Digest, plain: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if plain.len() > self.chunk_size as usize {
            return Err(Error::invalid(
                format!("chunk {digest}"),
                format!(
                    "{} bytes exceeds the chunk size {}",
                    plain.len(),
                    self.chunk_size
                ),
            ));
        }
        blob::encode_into(
            BlobKind::Chunk,
            self.keys.as_ref(),
            self.zstd_level,
            &digest.0,
            plain,
            out,
        )
        .map_err(|e| Error::invalid(format!("chunk {digest}"), e))
    }
}

/// The largest blob of a chunk of `chunk_size` bytes: header, zstd's bound
/// of the payload, tag.
pub fn max_chunk_blob_len(chunk_size: u32) -> usize {
    BLOB_HEADER_LEN + zstd::zstd_safe::compress_bound(chunk_size as usize) + TAG_LEN
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keys;

    #[test]
    fn keys_cross_the_wire_and_encode_as_the_repository_does() {
        let keys = Keys::derive(&[5u8; 32]).chunk.clone();
        let back = ChunkKeys::from_hex(&keys.to_hex()).unwrap();
        assert_eq!(back.id_key, keys.id_key);
        assert_eq!(back.enc_key, keys.enc_key);
        assert!(ChunkKeys::from_hex("abcd").is_err());
        assert!(ChunkKeys::from_hex(&"zz".repeat(64)).is_err());
        assert_eq!(format!("{back:?}"), "ChunkKeys(<redacted>)");
        let plain: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        for k in [None, Some(keys)] {
            let e = ChunkEncoder::new(k.clone(), 1 << 20, 3).unwrap();
            let d = e.digest(&plain);
            let mut out = Vec::new();
            e.encode_into(&d, &plain, &mut out).unwrap();
            assert!(out.len() <= max_chunk_blob_len(1 << 20));
            blob::check_chunk(&out, k.is_some(), 1 << 20).unwrap();
            let back = blob::decode(BlobKind::Chunk, k.as_ref(), &d.0, out, 1 << 20).unwrap();
            assert_eq!(back, plain);
        }
        assert!(ChunkEncoder::new(None, 100, 3).is_err());
        assert!(ChunkEncoder::new(None, 1 << 20, 99).is_err());
    }
}
