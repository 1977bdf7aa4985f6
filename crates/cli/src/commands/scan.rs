//! `lifeboat scan`: malware scanning of restore points. Each restore point
//! is published read-only under a private mount root, scanned with ClamAV
//! and/or YARA, unpublished, and its outcome recorded in its manifest
//! (`Repository::record_scan`), which `list` and `show` print: all of it
//! `lifeboat_scanjob::scan_and_record`, which agents call too. This
//! command parses the flags, resolves the restore points, installs the
//! signal handlers, prints and maps verdicts to exit codes.
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
//! are read from the repository in userspace (`lifeboat_scanjob::userspace`)
//! and scanned with YARA only.
//!
//! `--find-clean VM` scans the VM's restore points newest first and stops at
//! the first clean one; each scanned point's state is recorded. The scan
//! cache (per repository id, under `--scan-cache`) lets later scans skip
//! content already scanned with the same engines and rules; on published
//! ext2/3/4 and XFS volumes an unchanged file is recognised by its extents
//! and the repository chunk digests under them, without being read.
//!
//! The scan cache's lines are authenticated (see `lifeboat_scan::cache`)
//! with a key derived from the repository's key, or for an unencrypted
//! repository a random key in `cache.key` (0600) beside the cache; the
//! cache directory is made 0700 (`lifeboat_scanjob::cache`).
//!
//! Exit codes: 0 clean (or a clean point found), 7 infected, 3 incomplete
//! (unreadable files or volumes), 8 unproven, 5 `--find-clean` found no
//! clean point, 130 interrupted (SIGINT/SIGTERM; the session is
//! unpublished first).

use super::publish::StateArgs;
use crate::args::{AgentTargetArgs, LocalRepoArgs, OutputArgs, RemoteArgs};
use crate::exit;
use crate::output::{bytes, print_json};
use crate::passphrase::passphrase;
use anyhow::{bail, Context};
use clap::Args;
use lifeboat_repo::{Manifest, Repository};
use lifeboat_scan::{LoadingCache, ScanReport, ScanState};
use lifeboat_scanjob::{
    cache_root, choose_engines, open_cache_dir, rejected_warning, scan_and_record, EngineChoice,
    PointOut, PointScan, PublishPlace, ScanSetup,
};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Default mount root of scan sessions.
pub const DEFAULT_SCAN_MOUNT_ROOT: &str = "/run/lifeboat/scan";

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
    let mut notes = Vec::new();
    let engines = choose_engines(&engine_choice(&a), userspace, &mut notes)?;
    for n in &notes {
        eprintln!("note: {n}");
    }
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
    let setup = ScanSetup {
        engines,
        place: PublishPlace {
            repo: local.repo.clone(),
            mount_root: a.mount_root.clone(),
            state_dir: a.state.state_dir.clone(),
            block_store: Some(cache_dir.join("blocks")),
            group: a
                .group
                .as_deref()
                .map(lifeboat_publish::resolve_group)
                .transpose()?,
        },
        userspace,
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
        let result = scan_and_record(&repo, m, &setup, &mut cache, &cancel);
        if !warned_rejected {
            warned_rejected = true;
            if let Some(w) = rejected_warning(&mut cache) {
                eprintln!("lifeboat: warning: {w}");
            }
        }
        let p = match result {
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
        if let Some(why) = &p.not_recorded {
            eprintln!(
                "lifeboat: warning: scan state of {} not recorded: {why}",
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

/// The exit code of one scan's state.
pub(crate) fn code_of(state: ScanState) -> i32 {
    match state {
        ScanState::Clean => exit::OK,
        ScanState::Infected => exit::INFECTED,
        ScanState::Unproven => exit::UNPROVEN,
        ScanState::Incomplete | ScanState::NotScanned => exit::DAMAGE,
    }
}

/// The scan column of `list` and the state line of `show`.
pub fn state_text(m: &Manifest) -> &'static str {
    m.scan.as_ref().map_or("not scanned", |s| s.state.as_str())
}

/// The engines the flags ask for.
fn engine_choice(a: &ScanArgs) -> EngineChoice {
    EngineChoice {
        clamav: a.clamav,
        clamav_db: a.clamav_db.clone(),
        clamav_max_age_days: a.clamav_max_age,
        yara: a.yara.clone(),
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
