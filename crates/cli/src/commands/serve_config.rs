//! `lifeboat serve --config FILE`: the server's settings in a TOML file,
//! the same names as the flags (`listen`, `data_dir`, `max_jobs`, ...;
//! `[repositories]` and `[nfs]` tables of `NAME = "PATH"`). A flag given
//! on the command line wins over the file; list settings (repositories,
//! NFS services, webhooks, source roots) add up. An unknown key, a wrong
//! type or a value out of range is an error naming the file and the key.

use anyhow::Context;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The largest config file read.
const MAX_CONFIG: u64 = 1 << 20;

/// The settings of a config file; what it leaves out comes from the flags
/// or the defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub passphrase_file: Option<PathBuf>,
    pub max_jobs: Option<u32>,
    pub retry_base_secs: Option<u64>,
    pub proxy_lease_secs: Option<u64>,
    #[serde(default)]
    pub repositories: BTreeMap<String, PathBuf>,
    #[serde(default)]
    pub nfs: BTreeMap<String, PathBuf>,
    #[serde(default)]
    pub webhooks: Vec<String>,
    #[serde(default)]
    pub source_roots: Vec<PathBuf>,
}

impl ServeConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> anyhow::Result<ServeConfig> {
        let size = std::fs::metadata(path)
            .with_context(|| format!("config {}", path.display()))?
            .len();
        if size > MAX_CONFIG {
            anyhow::bail!(
                "config {}: {size} bytes, more than a config file holds ({MAX_CONFIG})",
                path.display()
            );
        }
        let text =
            std::fs::read_to_string(path).with_context(|| format!("config {}", path.display()))?;
        let config: ServeConfig =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?;
        for (key, value, lo, hi) in [
            ("max_jobs", config.max_jobs.map(u64::from), 1, 64),
            ("retry_base_secs", config.retry_base_secs, 1, 3600),
            ("proxy_lease_secs", config.proxy_lease_secs, 2, 3600),
        ] {
            if let Some(v) = value.filter(|v| !(lo..=hi).contains(v)) {
                anyhow::bail!("config {}: {key} = {v}: not in {lo}..={hi}", path.display());
            }
        }
        Ok(config)
    }

    /// The `[repositories]` (or `[nfs]`) table as `NAME=PATH` flag values.
    pub fn named(table: &BTreeMap<String, PathBuf>) -> Vec<String> {
        table
            .iter()
            .map(|(name, path)| format!("{name}={}", path.display()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> anyhow::Result<ServeConfig> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lifeboat.toml");
        std::fs::write(&path, text).unwrap();
        ServeConfig::load(&path)
    }

    #[test]
    fn a_config_file_reads_and_bad_ones_name_the_key() {
        let c = load(
            r#"
listen = "127.0.0.1:9443"
max_jobs = 4
source_roots = ["/vms"]
[repositories]
main = "/srv/repo"
"#,
        )
        .unwrap();
        assert_eq!(c.listen, Some("127.0.0.1:9443".parse().unwrap()));
        assert_eq!(c.max_jobs, Some(4));
        assert_eq!(ServeConfig::named(&c.repositories), ["main=/srv/repo"]);
        for (text, says) in [
            ("lisen = \"x\"", "lisen"),
            ("max_jobs = \"four\"", "max_jobs"),
            ("max_jobs = 0", "max_jobs = 0"),
            ("listen = \"nowhere\"", "listen"),
        ] {
            let e = format!("{:#}", load(text).unwrap_err());
            assert!(
                e.contains(says) && e.contains("lifeboat.toml"),
                "{text}: {e}"
            );
        }
    }
}
