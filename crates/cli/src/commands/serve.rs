//! `lifeboat serve`: the backup server in the foreground. Parses the
//! arguments, installs the JSON-lines log subscriber (stderr), and hands
//! over to lifeboat_server, which stops cleanly on SIGTERM or SIGINT.

use crate::exit;
use crate::passphrase::passphrase;
use anyhow::Context;
use clap::Args;
use lifeboat_server::jobs::schedule::DEFAULT_RETRY_BASE;
use lifeboat_server::jobs::{check_webhook, JobsConfig, DEFAULT_MAX_JOBS, DEFAULT_PROXY_LEASE};
use lifeboat_server::serve::{DEFAULT_DATA_DIR, DEFAULT_LISTEN};
use lifeboat_server::{ServerConfig, TlsFiles};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Args)]
pub struct ServeArgs {
    /// Address and port the HTTPS API listens on
    #[arg(long, default_value = DEFAULT_LISTEN, value_name = "ADDR:PORT")]
    pub listen: SocketAddr,
    /// The server's folder: catalog, certificates, the bootstrap admin token
    #[arg(long, default_value = DEFAULT_DATA_DIR, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// The operator's certificate chain (PEM) instead of the server's own CA
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The key (PEM) of --tls-cert
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A repository the server serves, by name (repeatable)
    #[arg(long = "repo", value_name = "NAME=PATH")]
    pub repos: Vec<String>,
    /// File holding the repositories' passphrase (else LIFEBOAT_PASSPHRASE)
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Sessions the server runs at once itself (each proxy has its own limit)
    #[arg(long, default_value_t = DEFAULT_MAX_JOBS as u32, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_jobs: u32,
    /// Wait before a failed run's first retry, doubled for each retry (at most an hour)
    #[arg(long, default_value_t = DEFAULT_RETRY_BASE.as_secs(), value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub retry_base_secs: u64,
    /// POST a JSON document here when a session ends (repeatable; https://,
    /// or http:// to a loopback address only)
    #[arg(long = "webhook", value_name = "URL")]
    pub webhooks: Vec<String>,
    /// A proxy's session fails (and is retried) when the proxy has not
    /// reported progress for this long
    #[arg(long, default_value_t = DEFAULT_PROXY_LEASE.as_secs(), value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub proxy_lease_secs: u64,
}

pub fn run(a: ServeArgs) -> anyhow::Result<i32> {
    let mut repositories: Vec<(String, PathBuf)> = Vec::new();
    for spec in &a.repos {
        let (name, path) = spec
            .split_once('=')
            .with_context(|| format!("--repo {spec:?}: expected NAME=PATH"))?;
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid {
            anyhow::bail!("--repo {spec:?}: NAME must be 1-64 letters, digits, '-', '_' or '.'");
        }
        if repositories.iter().any(|(n, _)| n == name) {
            anyhow::bail!("--repo {spec:?}: the name {name:?} is given twice");
        }
        repositories.push((name.to_string(), PathBuf::from(path)));
    }
    for url in &a.webhooks {
        check_webhook(url).map_err(|e| anyhow::anyhow!("--webhook: {e}"))?;
    }
    let tls = match (a.tls_cert, a.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        _ => None,
    };
    crate::output::install_json_logs();
    lifeboat_server::run_until_signal(ServerConfig {
        listen: a.listen,
        data_dir: a.data_dir,
        tls,
        repositories,
        passphrase: passphrase(a.passphrase_file.as_deref())?,
        jobs: JobsConfig {
            max_jobs: a.max_jobs as usize,
            retry_base: std::time::Duration::from_secs(a.retry_base_secs),
            webhooks: a.webhooks,
            proxy_lease: std::time::Duration::from_secs(a.proxy_lease_secs),
        },
    })?;
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_listen_port_is_the_port_tables() {
        let listen: SocketAddr = DEFAULT_LISTEN.parse().unwrap();
        assert_eq!(
            listen.port(),
            lifeboat_preflight::PortConfig::DEFAULT.api,
            "`lifeboat ports` and `lifeboat serve` must agree"
        );
    }
}
