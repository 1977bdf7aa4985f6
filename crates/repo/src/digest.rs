//! [`Digest`]: the 32-byte BLAKE3 name of a chunk, shown as lowercase hex.

use crate::layout::DIGEST_LEN;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// The content address of a chunk: BLAKE3 of its plaintext, keyed with the
/// repository's id key when the repository is encrypted.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; DIGEST_LEN]);

impl Digest {
    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// The chunk prefix directory index (first byte).
    pub fn prefix(&self) -> usize {
        usize::from(self.0[0])
    }

    /// True for the all-zero digest that indexes use for zero chunks.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; DIGEST_LEN]
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Parses lowercase or uppercase hex into bytes; `None` on odd length or a
/// non-hex character.
pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks(2)
        .map(|p| Some((val(p[0])? << 4) | val(p[1])?))
        .collect()
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why a string is not a digest.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a digest (64 hex digits)")]
pub struct ParseDigestError(String);

impl FromStr for Digest {
    type Err = ParseDigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = unhex(s).ok_or_else(|| ParseDigestError(s.to_string()))?;
        let arr: [u8; DIGEST_LEN] = bytes
            .try_into()
            .map_err(|_| ParseDigestError(s.to_string()))?;
        Ok(Digest(arr))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_hex_roundtrip_and_rejects_bad_input() {
        let d = Digest(*blake3::hash(b"abc").as_bytes());
        let s = d.to_string();
        assert_eq!(s.len(), 64);
        assert_eq!(s, blake3::hash(b"abc").to_hex().as_str());
        assert_eq!(s.parse::<Digest>().unwrap(), d);
        assert_eq!(format!("{d:?}"), s);
        assert!("abc".parse::<Digest>().is_err());
        assert!(s.replace('a', "g").parse::<Digest>().is_err() || !s.contains('a'));
        assert!(format!("{s}00").parse::<Digest>().is_err());
    }
}
