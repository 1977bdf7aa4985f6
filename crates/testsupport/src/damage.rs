//! Real damage to a real file, the five kinds the reliability tests apply
//! to every kind of repository file: flipped bytes, truncation to half,
//! truncation to zero, deletion, and replacement by another file of the
//! same kind (another restore point's manifest, another repository's
//! config, ...).

use std::path::Path;

/// One way a file gets damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// One byte in the middle XORed with 0x5a.
    Flip,
    /// Truncated to half its length.
    Half,
    /// Truncated to zero bytes.
    Zero,
    /// Removed.
    Delete,
    /// Overwritten with the bytes of another file of the same kind.
    Swap,
}

impl Damage {
    /// Every kind, in a fixed order.
    pub const ALL: [Damage; 5] = [
        Damage::Flip,
        Damage::Half,
        Damage::Zero,
        Damage::Delete,
        Damage::Swap,
    ];

    /// Applies the damage to `path`; `Swap` copies `other` over it.
    pub fn apply(self, path: &Path, other: &Path) {
        let fail = |what: &str, e: std::io::Error| -> ! {
            panic!("damaging {}: {what}: {e}", path.display())
        };
        match self {
            Damage::Flip => {
                let mut bytes = std::fs::read(path).unwrap_or_else(|e| fail("read", e));
                assert!(!bytes.is_empty(), "{} is empty", path.display());
                let at = bytes.len() / 2;
                bytes[at] ^= 0x5a;
                std::fs::write(path, &bytes).unwrap_or_else(|e| fail("write", e));
            }
            Damage::Half | Damage::Zero => {
                let len = std::fs::metadata(path)
                    .unwrap_or_else(|e| fail("stat", e))
                    .len();
                let to = if self == Damage::Half { len / 2 } else { 0 };
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .unwrap_or_else(|e| fail("open", e));
                f.set_len(to).unwrap_or_else(|e| fail("truncate", e));
            }
            Damage::Delete => std::fs::remove_file(path).unwrap_or_else(|e| fail("remove", e)),
            Damage::Swap => {
                assert_ne!(path, other, "swap needs another file");
                std::fs::copy(other, path).unwrap_or_else(|e| fail("copy", e));
            }
        }
    }
}
