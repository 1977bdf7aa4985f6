//! Blob files: the one container of chunks, indexes and manifests.
//!
//! A blob is a 48-byte header (layout in [`crate::layout`]) and a body. The
//! payload is zstd-compressed when that shrinks it, then (in an encrypted
//! repository) sealed with AES-256-GCM under a one-time key derived from the
//! header's random salt. The AAD is the whole header plus a *context* the
//! caller supplies: the chunk digest, `vm@id/disk` for an index, `vm@id` for
//! a manifest. So a file moved to another name (a chunk swapped for another,
//! an index of another restore point) fails authentication. In an
//! unencrypted repository the salt field holds
//! `blake3(header[0..16] || context || body)` instead, which catches the same
//! damage (but not a deliberate forgery).
//!
//! Decoding refuses blobs whose encryption flag disagrees with the
//! repository, so nobody can slip a plaintext blob into an encrypted one.
//!
//! Encoding compresses straight into the output buffer with a zstd context
//! kept per thread (at the default level with the tuned parameters of
//! [`crate::layout`]) and encrypts in place: compression is ~75% of a
//! backup's CPU, so nothing around it copies or allocates per chunk.

use crate::crypto::{self, ChunkKeys};
use crate::layout::{
    BLOB_HEADER_LEN, BLOB_MAGIC_CHUNK, BLOB_MAGIC_INDEX, BLOB_MAGIC_MANIFEST, BLOB_VERSION,
    DEFAULT_ZSTD_LEVEL, FLAG_COMPRESSED, FLAG_ENCRYPTED, SALT_LEN, TAG_LEN, TUNED_ZSTD_CHAIN_LOG,
    TUNED_ZSTD_HASH_LOG, TUNED_ZSTD_WINDOW_LOG,
};
use std::cell::RefCell;
use std::io::Cursor;
use zstd::bulk::Compressor;
use zstd::zstd_safe::CParameter;

/// What a blob holds; selects the magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlobKind {
    Chunk,
    Index,
    Manifest,
}

impl BlobKind {
    fn magic(self) -> [u8; 4] {
        match self {
            BlobKind::Chunk => BLOB_MAGIC_CHUNK,
            BlobKind::Index => BLOB_MAGIC_INDEX,
            BlobKind::Manifest => BLOB_MAGIC_MANIFEST,
        }
    }
}

thread_local! {
    /// This thread's zstd context and the level it is set up for. Kept
    /// across blobs: a context made per chunk allocates and clears its match
    /// tables every time (a backup's workers each keep one).
    static COMPRESSOR: RefCell<Option<(i32, Compressor<'static>)>> = const { RefCell::new(None) };
}

/// A zstd context for `level`. At [`DEFAULT_ZSTD_LEVEL`] zstd's own
/// parameters are replaced by the tuned ones of [`crate::layout`] (found by
/// the parameter search in docs/performance.md); decoding needs none of
/// them, a zstd frame decodes whatever parameters made it.
fn new_compressor(level: i32) -> std::io::Result<Compressor<'static>> {
    let mut c = Compressor::new(level)?;
    if level == DEFAULT_ZSTD_LEVEL {
        c.set_parameter(CParameter::WindowLog(TUNED_ZSTD_WINDOW_LOG))?;
        c.set_parameter(CParameter::HashLog(TUNED_ZSTD_HASH_LOG))?;
        c.set_parameter(CParameter::ChainLog(TUNED_ZSTD_CHAIN_LOG))?;
    }
    Ok(c)
}

/// Compresses `payload` into `out` after its current length (growing it by
/// the compressed size, which is returned) with this thread's context.
fn compress_after(level: i32, payload: &[u8], out: &mut Vec<u8>) -> Result<usize, String> {
    let failed = |e: std::io::Error| format!("zstd compression failed: {e}");
    COMPRESSOR.with(|cell| {
        let mut slot = cell
            .try_borrow_mut()
            .map_err(|_| "zstd context of this thread is in use".to_string())?;
        if !matches!(&*slot, Some((l, _)) if *l == level) {
            *slot = Some((level, new_compressor(level).map_err(failed)?));
        }
        let Some((_, ctx)) = slot.as_mut() else {
            return Err("zstd context missing".to_string());
        };
        let start = out.len();
        out.reserve(zstd::zstd_safe::compress_bound(payload.len()));
        let mut cursor = Cursor::new(&mut *out);
        cursor.set_position(start as u64);
        match ctx.compress_to_buffer(payload, &mut cursor) {
            Ok(n) => Ok(n),
            Err(e) => {
                // A failed frame leaves the context mid-stream: start afresh.
                *slot = None;
                Err(failed(e))
            }
        }
    })
}

fn checksum(header16: &[u8], context: &[u8], body: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(header16);
    h.update(context);
    h.update(body);
    *h.finalize().as_bytes()
}

fn aad(header: &[u8], context: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(header.len() + context.len());
    a.extend_from_slice(header);
    a.extend_from_slice(context);
    a
}

/// Encodes `payload` as a blob of `kind`.
pub(crate) fn encode(
    kind: BlobKind,
    keys: Option<&ChunkKeys>,
    zstd_level: i32,
    context: &[u8],
    payload: &[u8],
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    encode_into(kind, keys, zstd_level, context, payload, &mut out)?;
    Ok(out)
}

/// Encodes `payload` as a blob of `kind` and appends it to `out`, which
/// may already hold a prefix (the chunk writer puts alignment padding
/// there so the blob starts on an `O_DIRECT` boundary). Compresses straight
/// into `out` and encrypts in place: no copy of the payload or the body.
pub(crate) fn encode_into(
    kind: BlobKind,
    keys: Option<&ChunkKeys>,
    zstd_level: i32,
    context: &[u8],
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let base = out.len();
    let body_start = base + BLOB_HEADER_LEN;
    out.reserve(BLOB_HEADER_LEN + zstd::zstd_safe::compress_bound(payload.len()) + TAG_LEN);
    out.resize(body_start, 0);
    let compressed_len = compress_after(zstd_level, payload, out)?;
    let use_compressed = compressed_len < payload.len();
    if !use_compressed {
        out.truncate(body_start);
        out.extend_from_slice(payload);
    }
    let mut flags = 0u8;
    if use_compressed {
        flags |= FLAG_COMPRESSED;
    }
    if keys.is_some() {
        flags |= FLAG_ENCRYPTED;
    }
    let mut header = [0u8; BLOB_HEADER_LEN];
    header[0..4].copy_from_slice(&kind.magic());
    header[4] = BLOB_VERSION;
    header[5] = flags;
    header[8..16].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    match keys {
        Some(keys) => {
            let salt: [u8; SALT_LEN] = crypto::random_array()?;
            header[16..].copy_from_slice(&salt);
            let key = crypto::blob_key(&keys.enc_key, &salt);
            let tag = crypto::seal(&key, &aad(&header, context), &mut out[body_start..])?;
            out.extend_from_slice(&tag);
        }
        None => {
            let sum = checksum(&header[..16], context, &out[body_start..]);
            header[16..].copy_from_slice(&sum);
        }
    }
    out[base..body_start].copy_from_slice(&header);
    Ok(())
}

/// What a blob's header says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub flags: u8,
    pub plain_len: u64,
}

/// Checks the header of blob `data` of `kind` (magic, version, flags,
/// reserved bytes, `plain_len` <= `max_plain`): what it says, or why not.
pub(crate) fn parse_header(kind: BlobKind, data: &[u8], max_plain: u64) -> Result<Header, String> {
    let Some(header) = data.get(..BLOB_HEADER_LEN) else {
        return Err(format!(
            "{} bytes is shorter than the {BLOB_HEADER_LEN}-byte blob header",
            data.len()
        ));
    };
    if header[0..4] != kind.magic() {
        return Err(format!(
            "bad magic {:?}, expected {:?}",
            String::from_utf8_lossy(&header[0..4]),
            String::from_utf8_lossy(&kind.magic())
        ));
    }
    if header[4] != BLOB_VERSION {
        return Err(format!("unknown blob version {}", header[4]));
    }
    let flags = header[5];
    if flags & !(FLAG_COMPRESSED | FLAG_ENCRYPTED) != 0 || header[6..8] != [0, 0] {
        return Err(format!(
            "unknown flags {flags:#x} or non-zero reserved bytes"
        ));
    }
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&header[8..16]);
    let plain_len = u64::from_le_bytes(len_bytes);
    if plain_len > max_plain {
        return Err(format!(
            "payload length {plain_len} exceeds the limit {max_plain}"
        ));
    }
    Ok(Header { flags, plain_len })
}

/// Checks an encoded chunk blob without its keys (a server does not
/// decrypt what a proxy uploads): its header (see [`parse_header`]), that
/// it is encrypted exactly when the repository is, and that its body's
/// length fits its payload's: the payload's own length when stored as is,
/// at most zstd's bound when compressed, plus the tag when encrypted.
pub(crate) fn check_chunk(data: &[u8], encrypted: bool, max_plain: u64) -> Result<(), String> {
    let h = parse_header(BlobKind::Chunk, data, max_plain)?;
    if (h.flags & FLAG_ENCRYPTED != 0) != encrypted {
        return Err(if encrypted {
            "unencrypted blob in an encrypted repository".into()
        } else {
            "encrypted blob in an unencrypted repository".into()
        });
    }
    let plain = usize::try_from(h.plain_len).map_err(|_| "payload too large".to_string())?;
    let tag = if encrypted { TAG_LEN } else { 0 };
    let body = data.len() - BLOB_HEADER_LEN;
    let fits = if h.flags & FLAG_COMPRESSED != 0 {
        body >= tag && body - tag <= zstd::zstd_safe::compress_bound(plain)
    } else {
        body == plain + tag
    };
    if !fits {
        return Err(format!(
            "a body of {body} bytes does not fit a payload of {plain} bytes"
        ));
    }
    Ok(())
}

/// Decodes a blob of `kind`; `max_plain` bounds the payload size taken from
/// the (untrusted) header. Errors are plain descriptions; the caller names
/// the chunk or file.
pub(crate) fn decode(
    kind: BlobKind,
    keys: Option<&ChunkKeys>,
    context: &[u8],
    mut data: Vec<u8>,
    max_plain: u64,
) -> Result<Vec<u8>, String> {
    let Header { flags, plain_len } = parse_header(kind, &data, max_plain)?;
    let header = &data[..BLOB_HEADER_LEN];
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(&header[16..BLOB_HEADER_LEN]);
    let encrypted = flags & FLAG_ENCRYPTED != 0;
    let body_len = match (encrypted, keys) {
        (true, Some(keys)) => {
            let aad = aad(&data[..BLOB_HEADER_LEN], context);
            let key = crypto::blob_key(&keys.enc_key, &salt);
            crypto::open(&key, &aad, &mut data[BLOB_HEADER_LEN..])?
        }
        (false, None) => {
            let body = &data[BLOB_HEADER_LEN..];
            if checksum(&data[..16], context, body) != salt {
                return Err("checksum mismatch (damaged or swapped file)".into());
            }
            body.len()
        }
        (true, None) => return Err("encrypted blob in an unencrypted repository".into()),
        (false, Some(_)) => return Err("unencrypted blob in an encrypted repository".into()),
    };
    let body = &data[BLOB_HEADER_LEN..BLOB_HEADER_LEN + body_len];
    // plain_len <= max_plain, which fits in usize on every supported target.
    let plain_len = usize::try_from(plain_len).map_err(|_| "payload too large".to_string())?;
    if flags & FLAG_COMPRESSED != 0 {
        let plain = zstd::bulk::decompress(body, plain_len)
            .map_err(|e| format!("zstd decompression failed: {e}"))?;
        if plain.len() != plain_len {
            return Err(format!(
                "decompressed to {} bytes, header says {plain_len}",
                plain.len()
            ));
        }
        Ok(plain)
    } else {
        if body_len != plain_len {
            return Err(format!(
                "body holds {body_len} bytes, header says {plain_len}"
            ));
        }
        data.truncate(BLOB_HEADER_LEN + body_len);
        data.drain(..BLOB_HEADER_LEN);
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::crypto::Keys;

    fn keys() -> ChunkKeys {
        Keys::derive(&[9u8; 32]).chunk.clone()
    }

    #[test]
    fn roundtrip_all_modes() {
        let compressible = vec![42u8; 100_000];
        let random: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for payload in [&compressible[..], &random[..], &[][..]] {
            for k in [None, Some(keys())] {
                let b = encode(BlobKind::Chunk, k.as_ref(), 3, b"ctx", payload).unwrap();
                let back = decode(BlobKind::Chunk, k.as_ref(), b"ctx", b, 1 << 20).unwrap();
                assert_eq!(back, payload);
            }
        }
        let b = encode(BlobKind::Chunk, None, 3, b"", &compressible).unwrap();
        assert!(b.len() < 1000, "compressible payload was not compressed");
    }

    #[test]
    fn encode_into_appends_after_a_prefix_and_switches_levels() {
        let payload: Vec<u8> = (0..300_000u32)
            .map(|i| (i % 97) as u8 ^ (i >> 12) as u8)
            .collect();
        for k in [None, Some(keys())] {
            // Alternate levels on this thread's reused context, including
            // the tuned default, and check every blob against `encode`.
            for level in [3, 1, 3, 19, 3] {
                let mut out = vec![7u8; 13];
                encode_into(BlobKind::Chunk, k.as_ref(), level, b"c", &payload, &mut out).unwrap();
                assert_eq!(&out[..13], &[7u8; 13]);
                let blob = out.split_off(13);
                assert!(
                    blob.len() < payload.len() / 4,
                    "level {level} did not compress"
                );
                let back =
                    decode(BlobKind::Chunk, k.as_ref(), b"c", blob.clone(), 1 << 20).unwrap();
                assert_eq!(back, payload);
                let again = encode(BlobKind::Chunk, k.as_ref(), level, b"c", &payload).unwrap();
                // Same length (same compression); encrypted blobs differ by salt.
                assert_eq!(again.len(), blob.len());
                if k.is_none() {
                    assert_eq!(again, blob);
                }
            }
        }
    }

    #[test]
    fn damage_context_kind_and_mode_mismatches_are_refused() {
        let payload = b"some manifest json".to_vec();
        for k in [None, Some(keys())] {
            let b = encode(BlobKind::Manifest, k.as_ref(), 3, b"vm@1", &payload).unwrap();
            assert!(decode(BlobKind::Manifest, k.as_ref(), b"vm@2", b.clone(), 1 << 20).is_err());
            assert!(decode(BlobKind::Index, k.as_ref(), b"vm@1", b.clone(), 1 << 20).is_err());
            assert!(decode(BlobKind::Manifest, k.as_ref(), b"vm@1", b.clone(), 4).is_err());
            for i in [5, 9, 20, b.len() - 1] {
                let mut bad = b.clone();
                bad[i] ^= 0x10;
                assert!(
                    decode(BlobKind::Manifest, k.as_ref(), b"vm@1", bad, 1 << 20).is_err(),
                    "flip at {i}"
                );
            }
            assert!(decode(
                BlobKind::Manifest,
                k.as_ref(),
                b"vm@1",
                b[..40].to_vec(),
                1 << 20
            )
            .is_err());
        }
        let plain = encode(BlobKind::Chunk, None, 3, b"", &payload).unwrap();
        assert!(decode(BlobKind::Chunk, Some(&keys()), b"", plain, 1 << 20).is_err());
        let enc = encode(BlobKind::Chunk, Some(&keys()), 3, b"", &payload).unwrap();
        assert!(decode(BlobKind::Chunk, None, b"", enc.clone(), 1 << 20).is_err());
        assert!(decode(
            BlobKind::Chunk,
            Some(&Keys::derive(&[1; 32]).chunk),
            b"",
            enc,
            1 << 20
        )
        .is_err());
    }
}
