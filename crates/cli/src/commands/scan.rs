//! `lifeboat scan`: malware scanning of restore points. Each restore point
//! is published read-only under a private mount root, scanned with ClamAV
//! and/or YARA (see `scan_point`), unpublished, and its outcome recorded in
//! its manifest (`Repository::record_scan`), which `list` and `show` print.
//!
//! Engines: `--clamav` and `--yara FILE` (the built-in rules plus FILE)
//! select engines; with neither, every available engine runs: the built-in
//! YARA rules, and ClamAV when `clamscan` is installed. `--clamav-db` only
//! says which database ClamAV uses.
//!
//! Verdicts: ClamAV scans only with a usable signature database (present,
//! and dated within `--clamav-max-age` days); otherwise it is reported and
//! recorded as not scanned, with the reason (`--clamav` then fails). The
//! report and the manifest's scan record name every engine with its
//! version and signatures (database version and date, rule files and
//! digest). Nothing found is `clean` only when ClamAV scanned; by YARA
//! alone it is `unproven` (exit 8), which `--find-clean` passes over.
//!
//! Without root (or /dev/fuse, loop devices), or with `--no-publish`, files
//! are read from the repository in userspace (`scan_userspace`) and scanned
//! with YARA only.
//!
//! `--find-clean VM` scans the VM's restore points newest first and stops at
//! the first clean one; each scanned point's state is recorded. The scan
//! cache (per repository id, under `--scan-cache`) lets later scans skip
//! content already scanned with the same engines and rules; on published
//! ext2/3/4 and XFS volumes an unchanged file is recognised by its extents
//! and the repository chunk digests under them, without being read.
//!
//! The scan cache's lines are authenticated (see `lifeboat_scan::cache`)
//! with a key derived from the repository's key ([`CACHE_KEY_PURPOSE`]),
//! or for an unencrypted repository a random key in `cache.key` (0600)
//! beside the cache; the cache directory is made 0700.
//!
//! Exit codes: 0 clean (or a clean point found), 7 infected, 3 incomplete
//! (unreadable files or volumes), 8 unproven, 5 `--find-clean` found no
//! clean point, 130 interrupted (SIGINT/SIGTERM; the session is
//! unpublished first).

use super::publish::StateArgs;
use super::scan_point::{scan_point, Engines, PointScan, PublishPlace};
use super::scan_userspace::scan_point_userspace;
use crate::args::{AgentTargetArgs, LocalRepoArgs, OutputArgs, RemoteArgs};
use crate::exit;
use crate::output::{bytes, print_json};
use crate::passphrase::passphrase;
use anyhow::{bail, Context};
use clap::Args;
use lifeboat_repo::{LocalKey, Manifest, Repository, ScanEngine, ScanRecord, ScanStatus};
use lifeboat_scan::{
    ClamAvScanner, LoadingCache, ScanReport, ScanState, YaraScanner, BUILTIN_RULES,
};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Default mount root of scan sessions.
pub const DEFAULT_SCAN_MOUNT_ROOT: &str = "/run/lifeboat/scan";
/// Purpose of the repository-derived key of the scan cache.
pub const CACHE_KEY_PURPOSE: &str = "lifeboat scan cache v1";
/// The scan cache's key file for an unencrypted repository.
const CACHE_KEY_FILE: &str = "cache.key";

#[derive(Args)]
pub struct ScanArgs {
    #[command(flatten)]
    pub repo: LocalRepoArgs,
    #[command(flatten)]
    pub on: AgentTargetArgs,
    /// Restore point (VM@ID, VM@latest), or a VM name with --find-clean
    pub target: String,
    /// Scan the VM's restore points newest first; stop at the first clean one
    #[arg(long)]
    pub find_clean: bool,
    /// Scan with ClamAV (clamscan, or clamdscan when clamd runs)
    #[arg(long)]
    pub clamav: bool,
    /// ClamAV signature database (file or directory) for clamscan
    #[arg(long, value_name = "PATH")]
    pub clamav_db: Option<PathBuf>,
    /// Oldest ClamAV signature database (in days) that counts: an older
    /// one is not used and the scan cannot be clean
    #[arg(long, default_value_t = 7, value_name = "DAYS")]
    pub clamav_max_age: u32,
    /// Scan with YARA: the built-in rules plus the rules in FILE (repeatable)
    #[arg(long, value_name = "FILE")]
    pub yara: Vec<PathBuf>,
    /// Do not publish: read files from the repository in userspace (no
    /// root needed; YARA only). Also the fallback when publishing is impossible
    #[arg(long, conflicts_with = "clamav")]
    pub no_publish: bool,
    /// Scan cache directory (default: /var/cache/lifeboat/scan as root, else
    /// $XDG_CACHE_HOME/lifeboat/scan or ~/.cache/lifeboat/scan)
    #[arg(long, value_name = "DIR")]
    pub scan_cache: Option<PathBuf>,
    /// Where restore points are published while they are scanned
    #[arg(long, default_value = DEFAULT_SCAN_MOUNT_ROOT, value_name = "DIR")]
    pub mount_root: PathBuf,
    /// Group (name or gid) that may read the published restore point
    /// besides root (default: root alone)
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The JSON of one scanned restore point: the scan report (with its
/// engines) plus notes.
#[derive(Serialize)]
struct PointOut {
    #[serde(flatten)]
    report: ScanReport,
    notes: Vec<String>,
}

impl From<PointScan> for PointOut {
    fn from(p: PointScan) -> Self {
        PointOut {
            report: p.report,
            notes: p.notes,
        }
    }
}

pub fn run(a: ScanArgs, remote: &RemoteArgs) -> anyhow::Result<i32> {
    if let Some(agent) = &a.on.agent {
        if a.find_clean {
            bail!("--find-clean runs here only, not with --target");
        }
        return super::publications::scan(remote, agent, &a);
    }
    let local = a.repo.local()?;
    let pass = passphrase(local.passphrase_file.as_deref())?;
    let repo = Repository::open(&local.repo, pass.as_deref())
        .map(|r| r.with_heal_on_read(true))
        .with_context(|| format!("opening repository {}", local.repo.display()))?;
    let points = if a.find_clean {
        if a.target.contains('@') {
            bail!(
                "--find-clean takes a VM name, not a restore point ({})",
                a.target
            );
        }
        let mut list = repo.list(Some(&a.target))?;
        if list.is_empty() {
            return Err(lifeboat_repo::Error::NotFound {
                what: format!("restore points of VM {}", a.target),
            }
            .into());
        }
        list.reverse();
        list
    } else {
        vec![super::resolve(&repo, &a.target)?]
    };
    let userspace = if a.no_publish {
        true
    } else if let Err(e) = lifeboat_publish::system::preflight() {
        if a.clamav {
            return Err(anyhow::Error::new(e).context(
                "`lifeboat scan --clamav` publishes the restore point to read its files: \
                 run it as root on a machine with /dev/fuse and loop devices \
                 (without --clamav it falls back to YARA over files read in userspace)",
            ));
        }
        eprintln!("note: {e}: reading files in userspace instead, YARA only");
        true
    } else {
        false
    };
    let engines = choose_engines(&a, userspace)?;
    let cache_dir = cache_root(a.scan_cache.as_deref())?.join(repo.id());
    let cache_key = open_cache_dir(&repo, &cache_dir)?;
    // Read while the restore point is being published.
    let mut cache = LoadingCache::start(&cache_dir, cache_key);
    let mut warned_rejected = false;
    let cancel = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, cancel.clone())
            .with_context(|| format!("installing the handler of signal {sig}"))?;
    }
    let place = PublishPlace {
        repo: local.repo.clone(),
        mount_root: a.mount_root.clone(),
        state_dir: a.state.state_dir.clone(),
        block_store: Some(cache_dir.join("blocks")),
        group: a
            .group
            .as_deref()
            .map(lifeboat_publish::resolve_group)
            .transpose()?,
    };
    let mut tried = Vec::new();
    let mut clean = None;
    for m in &points {
        if cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(lifeboat_scan::ScanError::Cancelled {
                what: format!("scan of {}", m.name()),
            }
            .into());
        }
        let result = match (&engines.yara, userspace) {
            (Some(yara), true) => cache
                .get()
                .map_err(anyhow::Error::from)
                .and_then(|c| scan_point_userspace(&repo, m, yara, &engines, c, &cancel)),
            _ => scan_point(&repo, &place, m, &engines, &mut cache, &cancel),
        };
        if !warned_rejected {
            warned_rejected = true;
            warn_rejected(&mut cache);
        }
        // Results of the files scanned so far are valid even after an error.
        let saved = cache.save();
        let mut p = match result {
            Ok(p) => p,
            Err(_) if cancel.load(std::sync::atomic::Ordering::Relaxed) => {
                eprintln!(
                    "lifeboat: scan of {} interrupted (unpublished, nothing recorded)",
                    m.name()
                );
                return Ok(exit::INTERRUPTED);
            }
            Err(e) => return Err(e),
        };
        let unpublished = p.unpublishing.take().map_or(Ok(()), |u| u.wait());
        saved?;
        unpublished?;
        // The report is the product; a repository this user may not write
        // (a read-only scan without root) only loses the record.
        if let Err(e) = repo.record_scan(m, record_of(&p)) {
            eprintln!(
                "lifeboat: warning: scan state of {} not recorded: {e}",
                m.name()
            );
        }
        if !a.output.json {
            print_point(&p);
        }
        let is_clean = p.report.state == ScanState::Clean;
        tried.push(PointOut::from(p));
        if is_clean {
            clean = Some(m.name());
            break;
        }
    }
    if a.find_clean {
        return find_clean_result(&a, tried, clean);
    }
    let code = tried
        .first()
        .map_or(exit::ERROR, |p| code_of(p.report.state));
    if a.output.json {
        if let Some(p) = tried.first() {
            print_json(p)?;
        }
    }
    Ok(code)
}

fn find_clean_result(
    a: &ScanArgs,
    tried: Vec<PointOut>,
    clean: Option<String>,
) -> anyhow::Result<i32> {
    if a.output.json {
        print_json(&serde_json::json!({
            "vm": a.target,
            "clean": clean,
            "tried": tried,
        }))?;
    } else {
        match &clean {
            Some(c) => println!("newest clean restore point: {c}"),
            None => println!(
                "no clean restore point of {} ({} scanned; unproven ones are not clean)",
                a.target,
                tried.len()
            ),
        }
    }
    Ok(if clean.is_some() {
        exit::OK
    } else {
        exit::NOT_FOUND
    })
}

/// The scan cache's key (see the module doc), after making `dir` (0700).
fn open_cache_dir(repo: &Repository, dir: &Path) -> anyhow::Result<[u8; 32]> {
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

/// Warns about scan cache lines dropped on load (their content is
/// scanned again).
fn warn_rejected(cache: &mut LoadingCache) {
    let Ok(c) = cache.get() else {
        return;
    };
    let r = c.rejected();
    if r.count > 0 {
        let lines: Vec<String> = r.first_lines.iter().map(usize::to_string).collect();
        eprintln!(
            "lifeboat: warning: scan cache {}: {} entries failed authentication or could not \
             be read (lines {}{}): dropped, their files are scanned again",
            c.path().map_or(String::new(), |p| p.display().to_string()),
            r.count,
            lines.join(", "),
            if r.count > lines.len() { ", ..." } else { "" }
        );
    }
}

/// The exit code of one scan's state.
pub(crate) fn code_of(state: ScanState) -> i32 {
    match state {
        ScanState::Clean => exit::OK,
        ScanState::Infected => exit::INFECTED,
        ScanState::Unproven => exit::UNPROVEN,
        ScanState::Incomplete | ScanState::NotScanned => exit::DAMAGE,
    }
}

/// What the manifest records of a scan.
fn record_of(p: &PointScan) -> ScanRecord {
    ScanRecord {
        state: match p.report.state {
            ScanState::Clean => ScanStatus::Clean,
            ScanState::Infected => ScanStatus::Infected,
            ScanState::Unproven => ScanStatus::Unproven,
            ScanState::Incomplete | ScanState::NotScanned => ScanStatus::Incomplete,
        },
        time: chrono::Utc::now(),
        engines: p
            .report
            .engines
            .iter()
            .map(|e| ScanEngine {
                name: e.name.as_str().to_string(),
                fingerprint: e.fingerprint.clone(),
                version: Some(e.version.clone()),
                signatures: (!e.signatures.is_empty()).then(|| e.signatures.clone()),
                db_version: e.db_version,
                db_time: e.db_time,
                not_scanned: e.not_scanned.clone(),
            })
            .collect(),
        detections: p.report.detections.len() as u64,
        unreadable: p.report.unreadable.len() as u64,
    }
}

/// The scan column of `list` and the state line of `show`.
pub fn state_text(m: &Manifest) -> &'static str {
    m.scan.as_ref().map_or("not scanned", |s| s.state.as_str())
}

/// The engines `a` asks for (or every available one when it names none).
/// `userspace`: files are not on disk, so ClamAV is left out. ClamAV
/// whose signature database is unusable is left out too, with the reason
/// (an error with `--clamav`).
fn choose_engines(a: &ScanArgs, userspace: bool) -> anyhow::Result<Engines> {
    if let Some(db) = &a.clamav_db {
        if !db.exists() {
            bail!("--clamav-db {}: no such file or directory", db.display());
        }
    }
    let auto = !a.clamav && a.yara.is_empty();
    let installed = lifeboat_publish::system::which("clamscan").is_some();
    if a.clamav && !installed {
        bail!("--clamav: `clamscan` not found: install clamav (apt-get install -y clamav)");
    }
    let mut clamav = None;
    let skipped = |why: &str| Some(("ClamAV".to_string(), why.to_string()));
    let clamav_skipped = if !a.clamav && !auto {
        skipped("not asked for (--yara without --clamav)")
    } else if userspace {
        skipped("files read in userspace (not published): ClamAV needs them on disk")
    } else if !installed {
        skipped("clamscan not installed (apt-get install -y clamav)")
    } else {
        let c = ClamAvScanner::new(a.clamav_db.clone());
        let sig = c.signatures()?;
        let max_age = chrono::Duration::days(i64::from(a.clamav_max_age));
        match sig.unusable(max_age, chrono::Utc::now()) {
            Some(why) if a.clamav => bail!("--clamav: {why}"),
            Some(why) => {
                eprintln!("note: ClamAV not used: {why}");
                Some((sig.engine.clone(), why))
            }
            None => {
                clamav = Some(c);
                None
            }
        }
    };
    let yara = if auto || !a.yara.is_empty() {
        Some(yara_rules(&a.yara)?)
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

/// The scan cache directory (before the per-repository part).
fn cache_root(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
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

/// The human summary of one scanned restore point.
fn print_point(p: &PointScan) {
    print_report(&p.report, &p.notes);
}

/// The human summary of one scan report and its notes.
pub(crate) fn print_report(r: &ScanReport, notes: &[String]) {
    println!(
        "{}: {} ({} detections, {} unreadable)",
        r.restore_point,
        r.state.as_words(),
        r.detections.len(),
        r.unreadable.len()
    );
    for e in &r.engines {
        match &e.not_scanned {
            None => println!(
                "  engine {}: {}, {} ({})",
                e.name.as_str(),
                e.version,
                e.signatures,
                short(&e.fingerprint)
            ),
            Some(why) => println!("  engine {}: not scanned: {why}", e.name.as_str()),
        }
    }
    if r.state == ScanState::Unproven {
        println!("  nothing found, but ClamAV did not scan: not proven clean");
    }
    println!(
        "  scanned {} files ({}); skipped {} unchanged files ({}) already scanned, \
         {} of them ({}) not even read",
        r.files_scanned,
        bytes(r.bytes_scanned),
        r.skipped_unchanged_files,
        bytes(r.skipped_unchanged_bytes),
        r.skipped_unread_files,
        bytes(r.skipped_unread_bytes)
    );
    for d in &r.detections {
        println!(
            "  DETECTED   {}/{}:{}  {} {}",
            d.disk,
            d.volume,
            d.path,
            d.engine.as_str(),
            d.signature
        );
    }
    for u in &r.unreadable {
        println!(
            "  UNREADABLE {}/{}:{}  {}",
            u.disk, u.volume, u.path, u.reason
        );
    }
    for n in notes {
        println!("  note: {n}");
    }
}

/// The first 12 characters of a fingerprint after its `engine:` prefix.
fn short(fp: &str) -> &str {
    let body = fp.rsplit(':').next().unwrap_or(fp);
    body.get(..12).unwrap_or(body)
}
