//! `lifeboat serve`: the backup server in the foreground. Parses the
//! arguments, installs the JSON-lines log subscriber (stderr), and hands
//! over to lifeboat_server, which stops cleanly on SIGTERM or SIGINT.

use super::serve_config::ServeConfig;
use crate::exit;
use crate::passphrase::passphrase;
use anyhow::Context;
use clap::Args;
use lifeboat_server::jobs::schedule::DEFAULT_RETRY_BASE;
use lifeboat_server::jobs::source::SourceRoots;
use lifeboat_server::jobs::{check_webhook, JobsConfig, DEFAULT_MAX_JOBS, DEFAULT_PROXY_LEASE};
use lifeboat_server::serve::{DEFAULT_DATA_DIR, DEFAULT_LISTEN};
use lifeboat_server::{ServerConfig, TlsFiles};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Args)]
pub struct ServeArgs {
    /// Settings in a TOML file (the flags' names; flags given here win)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address and port the HTTPS API listens on [default: 0.0.0.0:8443]
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// The server's folder: catalog, certificates, the bootstrap admin
    /// token [default: /var/lib/lifeboat]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The operator's certificate chain (PEM) instead of the server's own CA
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The key (PEM) of --tls-cert
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A repository the server serves, by name (repeatable)
    #[arg(long = "repo", value_name = "NAME=PATH")]
    pub repos: Vec<String>,
    /// The NFS service of a served repository, by the cache folder of its
    /// `lifeboat nfs serve` on this host: instant recovery through the API
    /// runs there (repeatable)
    #[arg(long = "nfs", value_name = "NAME=CACHE_DIR")]
    pub nfs: Vec<String>,
    /// File holding the repositories' passphrase (else LIFEBOAT_PASSPHRASE)
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Sessions the server runs at once itself (each proxy has its own
    /// limit) [default: 2]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_jobs: Option<u32>,
    /// Wait before a failed run's first retry, doubled for each retry (at
    /// most an hour) [default: 60]
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub retry_base_secs: Option<u64>,
    /// POST a JSON document here when a session ends (repeatable; https://,
    /// or http:// to a loopback address only)
    #[arg(long = "webhook", value_name = "URL")]
    pub webhooks: Vec<String>,
    /// A proxy's session fails (and is retried) when the proxy has not
    /// reported progress for this long [default: 60]
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub proxy_lease_secs: Option<u64>,
    /// A folder whose image files and QMP sockets the server's own jobs may
    /// read (repeatable); without one, jobs read no host path of the server
    #[arg(long = "source-root", value_name = "DIR")]
    pub source_roots: Vec<PathBuf>,
}

/// The `NAME=PATH` values of `flag`, each name once.
fn named_paths(flag: &str, specs: &[String]) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    for spec in specs {
        let (name, path) = spec
            .split_once('=')
            .with_context(|| format!("{flag} {spec:?}: expected NAME=PATH"))?;
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid {
            anyhow::bail!("{flag} {spec:?}: NAME must be 1-64 letters, digits, '-', '_' or '.'");
        }
        if out.iter().any(|(n, _)| n == name) {
            anyhow::bail!("{flag} {spec:?}: the name {name:?} is given twice");
        }
        out.push((name.to_string(), PathBuf::from(path)));
    }
    Ok(out)
}

pub fn run(a: ServeArgs) -> anyhow::Result<i32> {
    let file = match &a.config {
        Some(path) => ServeConfig::load(path)?,
        None => ServeConfig::default(),
    };
    let both = |from_file: Vec<String>, flags: Vec<String>| [from_file, flags].concat();
    let repositories = named_paths(
        "--repo",
        &both(ServeConfig::named(&file.repositories), a.repos),
    )?;
    let nfs = named_paths("--nfs", &both(ServeConfig::named(&file.nfs), a.nfs))?;
    let webhooks = both(file.webhooks, a.webhooks);
    for url in &webhooks {
        check_webhook(url).map_err(|e| anyhow::anyhow!("--webhook: {e}"))?;
    }
    let source_roots = SourceRoots::new(
        "lifeboat serve",
        &[file.source_roots, a.source_roots].concat(),
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let tls = match (a.tls_cert.or(file.tls_cert), a.tls_key.or(file.tls_key)) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (None, None) => None,
        _ => anyhow::bail!("tls_cert and tls_key go together (flags or config)"),
    };
    let default_listen: SocketAddr = DEFAULT_LISTEN
        .parse()
        .context("the default listen address")?;
    let passphrase_file = a.passphrase_file.or(file.passphrase_file);
    crate::output::install_json_logs();
    lifeboat_server::run_until_signal(ServerConfig {
        listen: a.listen.or(file.listen).unwrap_or(default_listen),
        data_dir: a
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        tls,
        repositories,
        nfs,
        passphrase: passphrase(passphrase_file.as_deref())?,
        jobs: JobsConfig {
            max_jobs: a
                .max_jobs
                .or(file.max_jobs)
                .unwrap_or(DEFAULT_MAX_JOBS as u32) as usize,
            retry_base: std::time::Duration::from_secs(
                a.retry_base_secs
                    .or(file.retry_base_secs)
                    .unwrap_or(DEFAULT_RETRY_BASE.as_secs()),
            ),
            webhooks,
            proxy_lease: std::time::Duration::from_secs(
                a.proxy_lease_secs
                    .or(file.proxy_lease_secs)
                    .unwrap_or(DEFAULT_PROXY_LEASE.as_secs()),
            ),
            source_roots,
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
