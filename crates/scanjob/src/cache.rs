//! The scan cache of a repository: where it lives (per repository id,
//! under a root that defaults by user), its authentication key (derived
//! from the repository's key, [`CACHE_KEY_PURPOSE`], or for an unencrypted
//! repository a random key in `cache.key`, 0600, beside the cache), and
//! the directory made 0700.

use anyhow::{bail, Context};
use lifeboat_repo::{LocalKey, Repository};
use lifeboat_scan::LoadingCache;
use std::path::{Path, PathBuf};

/// Purpose of the repository-derived key of the scan cache.
pub const CACHE_KEY_PURPOSE: &str = "lifeboat scan cache v1";
/// The scan cache's key file for an unencrypted repository.
const CACHE_KEY_FILE: &str = "cache.key";

/// The scan cache directory (before the per-repository part): `flag`, or
/// /var/cache/lifeboat/scan as root, else $XDG_CACHE_HOME/lifeboat/scan or
/// ~/.cache/lifeboat/scan.
pub fn cache_root(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    let is_root = std::fs::metadata("/proc/self").is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid() == 0
    });
    if is_root {
        return Ok(PathBuf::from("/var/cache/lifeboat/scan"));
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("lifeboat/scan"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".cache/lifeboat/scan")),
        None => bail!("no HOME or XDG_CACHE_HOME: pass --scan-cache DIR"),
    }
}

/// The scan cache's key (see the module doc), after making `dir` (0700).
pub fn open_cache_dir(repo: &Repository, dir: &Path) -> anyhow::Result<[u8; 32]> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .with_context(|| format!("creating the scan cache {}", dir.display()))?;
    Ok(match repo.local_key(CACHE_KEY_PURPOSE) {
        Some(k) => k.to_bytes(),
        None => LocalKey::load_or_create(&dir.join(CACHE_KEY_FILE))
            .with_context(|| format!("the key of the scan cache {}", dir.display()))?
            .to_bytes(),
    })
}

/// The warning about scan cache lines dropped on load (their content is
/// scanned again), if any were.
pub fn rejected_warning(cache: &mut LoadingCache) -> Option<String> {
    let c = cache.get().ok()?;
    let r = c.rejected();
    if r.count == 0 {
        return None;
    }
    let lines: Vec<String> = r.first_lines.iter().map(usize::to_string).collect();
    Some(format!(
        "scan cache {}: {} entries failed authentication or could not \
         be read (lines {}{}): dropped, their files are scanned again",
        c.path().map_or(String::new(), |p| p.display().to_string()),
        r.count,
        lines.join(", "),
        if r.count > lines.len() { ", ..." } else { "" }
    ))
}
