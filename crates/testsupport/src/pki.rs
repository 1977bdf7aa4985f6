//! Test certificates made with the real `openssl` CLI: a CA, a server
//! certificate for 127.0.0.1 / localhost, a client certificate, and a client
//! certificate from another ("rogue") CA. Client folders use the layout QEMU
//! (`tls-creds-x509,dir=`) and libnbd (`tls-certificates=`) read:
//! `ca-cert.pem`, `client-cert.pem`, `client-key.pem`.

use crate::{run, tool};
use std::path::{Path, PathBuf};

const CONFIG: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = lifeboat test
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = CA:FALSE
keyUsage = digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = CA:FALSE
keyUsage = digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// The files [`Pki::create`] made.
pub struct Pki {
    /// The CA certificate (server side: `--tls-ca`).
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// CA + a client certificate and key from that CA.
    pub client_dir: PathBuf,
    /// CA only: a client that trusts the server but has no certificate.
    pub anonymous_dir: PathBuf,
    /// CA + a client certificate from another CA.
    pub rogue_dir: PathBuf,
}

fn openssl() -> std::process::Command {
    tool("openssl", "openssl")
}

/// A self-signed CA in `dir`: (cert, key).
fn ca(dir: &Path, config: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    run(openssl()
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .arg("-config")
        .arg(config)
        .args(["-extensions", "ca", "-subj", &format!("/CN={name}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    (cert, key)
}

/// A certificate for `cn` with the `ext` section, issued by `ca`.
fn issue(dir: &Path, config: &Path, ca: &(PathBuf, PathBuf), ext: &str, cn: &str, stem: &str) {
    let csr = dir.join(format!("{stem}.csr"));
    run(openssl()
        .args(["req", "-new", "-newkey", "rsa:2048", "-nodes"])
        .arg("-config")
        .arg(config)
        .args(["-subj", &format!("/CN={cn}")])
        .arg("-keyout")
        .arg(dir.join(format!("{stem}-key.pem")))
        .arg("-out")
        .arg(&csr));
    run(openssl()
        .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
        .arg("-in")
        .arg(&csr)
        .arg("-CA")
        .arg(&ca.0)
        .arg("-CAkey")
        .arg(&ca.1)
        .arg("-extfile")
        .arg(config)
        .args(["-extensions", ext])
        .arg("-out")
        .arg(dir.join(format!("{stem}-cert.pem"))));
}

impl Pki {
    /// Makes the CA, the certificates and the client folders in `d`.
    pub fn create(d: &Path) -> Pki {
        let config = d.join("openssl.cnf");
        std::fs::write(&config, CONFIG).unwrap();
        let ca_pair = ca(d, &config, "ca-cert");
        let rogue = ca(d, &config, "rogue-ca");
        issue(d, &config, &ca_pair, "server", "localhost", "server");
        let client_dir = d.join("client");
        let anonymous_dir = d.join("anonymous");
        let rogue_dir = d.join("rogue");
        for sub in [&client_dir, &anonymous_dir, &rogue_dir] {
            std::fs::create_dir(sub).unwrap();
            std::fs::copy(&ca_pair.0, sub.join("ca-cert.pem")).unwrap();
        }
        issue(
            &client_dir,
            &config,
            &ca_pair,
            "client",
            "lifeboat-test-client",
            "client",
        );
        issue(
            &rogue_dir,
            &config,
            &rogue,
            "client",
            "lifeboat-test-client",
            "client",
        );
        Pki {
            ca: ca_pair.0.clone(),
            server_cert: d.join("server-cert.pem"),
            server_key: d.join("server-key.pem"),
            client_dir,
            anonymous_dir,
            rogue_dir,
        }
    }
}
