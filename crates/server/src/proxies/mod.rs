//! Backup proxies: enrollment with a one-time secret, the client
//! certificates the server's CA issues them, and who is calling on a
//! proxy route (mutual TLS).
//!
//! ```text
//!  admin: POST /api/v1/proxies/enrollments -> secret lbe_... (once, stored hashed, 1 h)
//!  proxy: makes a P-256 key pair (identity.rs), POST /api/v1/proxies/enroll
//!         {secret, name, public_key (PEM)}           (no bearer token)
//!  server: certificate.rs signs a client certificate from its own CA
//!          (clientAuth, CN and SAN = name, 1 year); catalog: proxy + fingerprint
//!  proxy -> server, TLS with that certificate: tls.rs verifies the chain,
//!          auth.rs matches the SHA-256 fingerprint to an enrolled proxy
//!  proxy: worker.rs pulls sessions (POST /api/v1/proxy/work) and runs them
//!         with the server's own job code, reporting progress and results
//! ```

pub mod auth;
pub mod certificate;
pub mod identity;
pub mod remote;
pub mod worker;

/// The longest proxy name (a DNS label: it is the certificate's SAN).
pub const MAX_NAME_LEN: usize = 63;

/// Checks a proxy's or agent's name: 1-63 lower-case letters, digits or `-`, not
/// starting or ending with `-` (a DNS label, as the certificate's SAN).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name {name:?} (a proxy's or agent's): 1 to {MAX_NAME_LEN} lower-case letters, digits or '-', not starting or ending with '-'"
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_dns_labels() {
        for ok in ["p1", "proxy-a", "0"] {
            assert!(super::check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-p", "p-", "P1", "p_1", "p.1", &"a".repeat(64)] {
            assert!(super::check_name(bad).is_err(), "{bad}");
        }
    }
}
