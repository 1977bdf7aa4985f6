//! Which engines a scan runs ([`EngineChoice`] → [`Engines`]): ClamAV
//! asked for, or every available engine when none is named (the built-in
//! YARA rules, and ClamAV when `clamscan` is installed). ClamAV whose
//! signature database is missing or older than the allowed age does not
//! scan: the report then names it as not scanned, with the reason (so
//! nothing found is at best `unproven`), and asking for it explicitly is
//! an error.

use crate::point::Engines;
use anyhow::{bail, Context};
use lifeboat_scan::{ClamAvScanner, YaraScanner, BUILTIN_RULES};
use std::path::PathBuf;

/// What the caller asks for (`lifeboat scan`'s flags).
#[derive(Debug, Clone, Default)]
pub struct EngineChoice {
    /// ClamAV, required (an error when it cannot scan).
    pub clamav: bool,
    /// ClamAV's signature database (file or directory).
    pub clamav_db: Option<PathBuf>,
    /// The oldest signature database (days) that counts.
    pub clamav_max_age_days: u32,
    /// YARA rule files, added to the built-in rules.
    pub yara: Vec<PathBuf>,
}

/// The engines `choice` asks for (or every available one when it names
/// none). `userspace`: files are not on disk, so ClamAV is left out.
/// Notes for the user (ClamAV left out, and why) go to `notes`.
pub fn choose_engines(
    choice: &EngineChoice,
    userspace: bool,
    notes: &mut Vec<String>,
) -> anyhow::Result<Engines> {
    if let Some(db) = &choice.clamav_db {
        if !db.exists() {
            bail!("--clamav-db {}: no such file or directory", db.display());
        }
    }
    let auto = !choice.clamav && choice.yara.is_empty();
    let installed = lifeboat_publish::system::which("clamscan").is_some();
    if choice.clamav && !installed {
        bail!("--clamav: `clamscan` not found: install clamav (apt-get install -y clamav)");
    }
    let mut clamav = None;
    let skipped = |why: &str| Some(("ClamAV".to_string(), why.to_string()));
    let clamav_skipped = if !choice.clamav && !auto {
        skipped("not asked for (--yara without --clamav)")
    } else if userspace {
        skipped("files read in userspace (not published): ClamAV needs them on disk")
    } else if !installed {
        skipped("clamscan not installed (apt-get install -y clamav)")
    } else {
        let c = ClamAvScanner::new(choice.clamav_db.clone());
        let sig = c.signatures()?;
        let max_age = chrono::Duration::days(i64::from(choice.clamav_max_age_days));
        match sig.unusable(max_age, chrono::Utc::now()) {
            Some(why) if choice.clamav => bail!("--clamav: {why}"),
            Some(why) => {
                notes.push(format!("ClamAV not used: {why}"));
                Some((sig.engine.clone(), why))
            }
            None => {
                clamav = Some(c);
                None
            }
        }
    };
    let yara = if auto || !choice.yara.is_empty() {
        Some(yara_rules(&choice.yara)?)
    } else {
        None
    };
    Ok(Engines {
        clamav,
        clamav_skipped,
        yara,
    })
}

/// The built-in rules plus each file's (each file is compiled alone first,
/// so its errors carry its own line numbers).
fn yara_rules(files: &[PathBuf]) -> anyhow::Result<YaraScanner> {
    if files.is_empty() {
        return Ok(YaraScanner::builtin()?);
    }
    let mut text = BUILTIN_RULES.to_string();
    let mut names = vec!["builtin.yar".to_string()];
    for f in files {
        let t = std::fs::read_to_string(f)
            .with_context(|| format!("reading YARA rules {}", f.display()))?;
        let name = f.display().to_string();
        YaraScanner::from_rules_named(&name, &t)?;
        text.push('\n');
        text.push_str(&t);
        names.push(name);
    }
    Ok(YaraScanner::from_rules_named(&names.join(" + "), &text)?)
}
