//! Where the passphrase comes from: `--passphrase-file`, else the
//! `LIFEBOAT_PASSPHRASE` environment variable. Never from the command line
//! itself, where other users could read it.

use anyhow::Context;
use std::path::Path;

/// The passphrase, if one was given.
pub fn passphrase(file: Option<&Path>) -> anyhow::Result<Option<String>> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading passphrase file {}", path.display()))?;
        let line = text.lines().next().unwrap_or("").to_string();
        if line.is_empty() {
            anyhow::bail!("passphrase file {} is empty", path.display());
        }
        return Ok(Some(line));
    }
    Ok(std::env::var("LIFEBOAT_PASSPHRASE")
        .ok()
        .filter(|p| !p.is_empty()))
}
