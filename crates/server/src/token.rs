//! API tokens: roles, the secret format and how a secret is stored.
//!
//! A secret is 256 random bits from the system RNG, shown once as
//! `lbt_<64 hex>`. The catalog keeps only its BLAKE3 hash and finds a token
//! by looking that hash up in a unique index: no secret is ever compared
//! byte by byte, so response timing tells nothing about it (the hash is
//! not a password hash: a 256-bit random secret needs no slow KDF).

use serde::{Deserialize, Serialize};

/// The prefix of every token secret (so a leaked one is recognisable).
pub const SECRET_PREFIX: &str = "lbt_";

/// What a token may do. Ordered: each role may do what the ones below it
/// may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read: repositories, restore points.
    Viewer,
    /// Run and restore (jobs, when they exist) on top of viewer.
    Operator,
    /// Everything: tokens, the audit log.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may do what `needed` allows.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?}: expected admin, operator or viewer"
            )),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token as the catalog and the API show it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// The id of the token that created it (`None`: the bootstrap token).
    pub created_by: Option<i64>,
}

/// A new random secret, `lbt_` + 64 hex digits.
pub fn new_secret() -> String {
    format!("{SECRET_PREFIX}{}", random_hex())
}

/// 256 random bits as 64 hex digits.
pub fn random_hex() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system RNG failed");
    let mut s = String::with_capacity(64);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The stored form of a secret: its BLAKE3 hash.
pub fn secret_hash(secret: &str) -> [u8; 32] {
    *blake3::hash(secret.as_bytes()).as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_prefixed_hex() {
        let a = new_secret();
        let b = new_secret();
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 64);
        assert!(a.starts_with(SECRET_PREFIX));
        assert!(a[4..].bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(secret_hash(&a), secret_hash(&b));
    }

    #[test]
    fn roles_are_ordered_and_parse() {
        assert!(Role::Admin.allows(Role::Operator));
        assert!(Role::Operator.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Operator));
        assert!(!Role::Operator.allows(Role::Admin));
        assert_eq!("operator".parse::<Role>(), Ok(Role::Operator));
        assert!("root".parse::<Role>().is_err());
    }
}
