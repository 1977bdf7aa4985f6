//! The body of fuzz target `repo_blob`: the decoders of repository files
//! (blob container, index payload, manifest JSON). `fuzz/fuzz_targets/
//! repo_blob.rs` calls [`repo_blob`], and so does `tests/fuzz_corpus.rs`
//! for every committed corpus input.
//!
//! Input layout:
//!
//! ```text
//! byte 0   mode: bits 0-1  blob kind: 0 chunk, 1 index, 2/3 manifest
//!                bit 2     encrypted repository (fixed master key [7; 32])
//!                bit 3     fix the checksum first (unencrypted blobs): the
//!                          salt field is set to blake3(header[0..16] ||
//!                          context || body) as blob.rs documents, so that
//!                          mutated blobs get past the checksum to the zstd
//!                          and payload decoders
//!                bit 4     round trip: the rest is a payload; encode it as a
//!                          blob, decode it back, it must be identical
//!                bit 5     the rest is a bare payload: index decoder and
//!                          manifest JSON directly, no blob container
//! bytes 1..
//! ```
//!
//! A decoded payload goes on to the decoder of its kind: `DiskIndex::decode`
//! for an index, and for a manifest the steps of `read_manifest` (JSON
//! value, `format_version`, `Manifest`), plus name and digest parsing.

use crate::blob::BlobKind;
use crate::crypto::Keys;
use crate::layout::{
    BLOB_HEADER_LEN, FORMAT_VERSION, MAX_CHUNK_SIZE, MAX_INDEX_PLAIN, MAX_MANIFEST_PLAIN,
};
use crate::{check_name, Digest, DiskIndex, Manifest};

const MASTER: [u8; 32] = [7; 32];
const CONTEXT: &[u8] = b"vm@fuzz";

fn kind(k: u8) -> BlobKind {
    [BlobKind::Chunk, BlobKind::Index]
        .get(usize::from(k))
        .copied()
        .unwrap_or(BlobKind::Manifest)
}

fn manifest(json: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(json) else {
        return;
    };
    let version = value.get("format_version").and_then(|v| v.as_u64());
    if version != Some(u64::from(FORMAT_VERSION)) {
        return;
    }
    let Ok(m) = serde_json::from_value::<Manifest>(value) else {
        return;
    };
    let _ = m.name();
    let _ = check_name(&m.vm);
    for d in &m.disks {
        let _ = check_name(&d.name);
        let _ = m.disk(&d.name);
    }
    let _ = m.is_locked(m.time);
}

fn payload(kind: u8, plain: &[u8]) {
    match kind {
        0 => {}
        1 => {
            if let Ok(idx) = DiskIndex::decode(plain) {
                let n = DiskIndex::chunk_count(idx.disk_size, idx.chunk_size);
                assert_eq!(n, idx.digests.len() as u64, "index count unchecked");
                for i in 0..n.min(4) {
                    let _ = idx.chunk_len(i);
                }
            }
        }
        _ => manifest(plain),
    }
}

/// One fuzz input (see the module doc). Panics on a broken invariant.
pub fn repo_blob(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let k = mode & 3;
    let keys = (mode & 4 != 0).then(|| Keys::derive(&MASTER).chunk.clone());
    if mode & 0x20 != 0 {
        let _ = DiskIndex::decode(rest);
        manifest(rest);
        if let Ok(s) = std::str::from_utf8(rest) {
            let _ = s.parse::<Digest>();
            let _ = check_name(s);
        }
        return;
    }
    if mode & 0x10 != 0 {
        let blob =
            crate::blob::encode(kind(k), keys.as_ref(), 1, CONTEXT, rest).expect("encoding a blob");
        let back = crate::blob::decode(kind(k), keys.as_ref(), CONTEXT, blob, u64::MAX)
            .expect("decoding it back");
        assert_eq!(back, rest, "blob round trip changed the payload");
        return;
    }
    let mut blob = rest.to_vec();
    if mode & 8 != 0 && keys.is_none() && blob.len() >= BLOB_HEADER_LEN {
        let mut h = blake3::Hasher::new();
        h.update(&blob[..16]);
        h.update(CONTEXT);
        h.update(&blob[BLOB_HEADER_LEN..]);
        blob[16..BLOB_HEADER_LEN].copy_from_slice(h.finalize().as_bytes());
    }
    let max = match k {
        0 => u64::from(MAX_CHUNK_SIZE),
        1 => MAX_INDEX_PLAIN,
        _ => MAX_MANIFEST_PLAIN,
    };
    if let Ok(plain) = crate::blob::decode(kind(k), keys.as_ref(), CONTEXT, blob, max) {
        payload(k, &plain);
    }
}
