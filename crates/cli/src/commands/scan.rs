//! `lifeboat scan`: malware scanning of restore points. Each restore point
//! is published read-only under a private mount root, scanned with ClamAV
//! and/or YARA (see `scan_point`), unpublished, and its outcome recorded in
//! its manifest (`Repository::record_scan`), which `list` and `show` print.
//!
//! Engines: `--clamav` and `--yara FILE` (the built-in rules plus FILE)
//! select engines; with neither, every available engine runs: the built-in
//! YARA rules, and ClamAV when `clamscan` is installed and has signatures
//! (`--clamav-db`, clamd answering, or files in /var/lib/clamav).
//! `--clamav-db` only says which database ClamAV uses.
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
//! Exit codes: 0 clean (or a clean point found), 7 infected, 3 incomplete
//! (unreadable files or volumes), 5 `--find-clean` found no clean point,
//! 130 interrupted (SIGINT/SIGTERM; the session is unpublished first).

use super::publish::StateArgs;
use super::scan_point::{scan_point, Engines, PointScan, PublishPlace};
use super::scan_userspace::scan_point_userspace;
use crate::args::{OutputArgs, RepoArgs};
use crate::exit;
use crate::output::{bytes, print_json};
use crate::passphrase::passphrase;
use anyhow::{bail, Context};
use clap::Args;
use lifeboat_repo::{Manifest, Repository, ScanEngine, ScanRecord, ScanStatus};
use lifeboat_scan::{
    ClamAvScanner, LoadingCache, ScanReport, ScanState, YaraScanner, BUILTIN_RULES,
};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Default mount root of scan sessions.
pub const DEFAULT_SCAN_MOUNT_ROOT: &str = "/run/lifeboat/scan";
/// ClamAV's default signature directory on Debian.
const CLAMAV_DEFAULT_DB: &str = "/var/lib/clamav";

#[derive(Args)]
pub struct ScanArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
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

/// One engine as printed in reports.
#[derive(Serialize)]
struct EngineOut {
    name: String,
    fingerprint: String,
}

/// The JSON of one scanned restore point: the scan report plus engines.
#[derive(Serialize)]
struct PointOut {
    #[serde(flatten)]
    report: ScanReport,
    engines: Vec<EngineOut>,
    notes: Vec<String>,
}

impl From<PointScan> for PointOut {
    fn from(p: PointScan) -> Self {
        PointOut {
            report: p.report,
            engines: p
                .engines
                .into_iter()
                .map(|(e, fp)| EngineOut {
                    name: e.as_str().to_string(),
                    fingerprint: fp,
                })
                .collect(),
            notes: p.notes,
        }
    }
}

pub fn run(a: ScanArgs) -> anyhow::Result<i32> {
    let pass = passphrase(a.repo.passphrase_file.as_deref())?;
    let repo = Repository::open(&a.repo.repo, pass.as_deref())
        .with_context(|| format!("opening repository {}", a.repo.repo.display()))?;
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
        vec![repo.resolve(&a.target)?]
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
    std::fs::create_dir_all(&cache_dir)
        .with_context(|| format!("creating the scan cache {}", cache_dir.display()))?;
    // Read while the restore point is being published.
    let mut cache = LoadingCache::start(&cache_dir);
    let cancel = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, cancel.clone())
            .with_context(|| format!("installing the handler of signal {sig}"))?;
    }
    let place = PublishPlace {
        repo: a.repo.repo.clone(),
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
                .and_then(|c| scan_point_userspace(&repo, m, yara, c, &cancel)),
            _ => scan_point(&repo, &place, m, &engines, &mut cache, &cancel),
        };
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
                "no clean restore point of {} ({} scanned)",
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

/// The exit code of one scan's state.
fn code_of(state: ScanState) -> i32 {
    match state {
        ScanState::Clean => exit::OK,
        ScanState::Infected => exit::INFECTED,
        ScanState::Incomplete | ScanState::NotScanned => exit::DAMAGE,
    }
}

/// What the manifest records of a scan.
fn record_of(p: &PointScan) -> ScanRecord {
    ScanRecord {
        state: match p.report.state {
            ScanState::Clean => ScanStatus::Clean,
            ScanState::Infected => ScanStatus::Infected,
            ScanState::Incomplete | ScanState::NotScanned => ScanStatus::Incomplete,
        },
        time: chrono::Utc::now(),
        engines: p
            .engines
            .iter()
            .map(|(e, fp)| ScanEngine {
                name: e.as_str().to_string(),
                fingerprint: fp.clone(),
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
/// `userspace`: files are not on disk, so ClamAV is left out.
fn choose_engines(a: &ScanArgs, userspace: bool) -> anyhow::Result<Engines> {
    if let Some(db) = &a.clamav_db {
        if !db.exists() {
            bail!("--clamav-db {}: no such file or directory", db.display());
        }
    }
    let auto = !a.clamav && a.yara.is_empty();
    let installed = lifeboat_publish::system::which("clamscan").is_some();
    let clamav = if a.clamav {
        if !installed {
            bail!("--clamav: `clamscan` not found: install clamav (apt-get install -y clamav)");
        }
        Some(ClamAvScanner::new(a.clamav_db.clone()))
    } else if auto && installed && !userspace {
        let c = ClamAvScanner::new(a.clamav_db.clone());
        let has_db =
            a.clamav_db.is_some() || c.uses_clamd() || has_clamav_db(Path::new(CLAMAV_DEFAULT_DB));
        if !has_db {
            eprintln!(
                "note: ClamAV not used: no signature database in {CLAMAV_DEFAULT_DB} \
                 (run freshclam, or pass --clamav-db)"
            );
        }
        has_db.then_some(c)
    } else {
        None
    };
    let yara = if auto || !a.yara.is_empty() {
        Some(yara_rules(&a.yara)?)
    } else {
        None
    };
    Ok(Engines { clamav, yara })
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

/// True when `dir` holds ClamAV signature files.
fn has_clamav_db(dir: &Path) -> bool {
    const EXT: &[&str] = &[
        "cvd", "cld", "cud", "ndb", "hdb", "hsb", "ldb", "mdb", "msb",
    ];
    std::fs::read_dir(dir).is_ok_and(|rd| {
        rd.flatten().any(|e| {
            e.path()
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| EXT.contains(&x))
        })
    })
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
    let r = &p.report;
    println!(
        "{}: {} ({} detections, {} unreadable)",
        r.restore_point,
        state_word(r.state),
        r.detections.len(),
        r.unreadable.len()
    );
    let engines: Vec<String> = p
        .engines
        .iter()
        .map(|(e, fp)| format!("{} {}", e.as_str(), short(fp)))
        .collect();
    println!("  engines: {}", engines.join(", "));
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
    for n in &p.notes {
        println!("  note: {n}");
    }
}

fn state_word(s: ScanState) -> &'static str {
    match s {
        ScanState::Clean => "clean",
        ScanState::Infected => "infected",
        ScanState::Incomplete => "incomplete",
        ScanState::NotScanned => "not scanned",
    }
}

/// The first 12 characters of a fingerprint after its `engine:` prefix.
fn short(fp: &str) -> &str {
    let body = fp.rsplit(':').next().unwrap_or(fp);
    body.get(..12).unwrap_or(body)
}
