//! The demo's scan step: a small YARA rule run over every file of each
//! restore point of web01, read in userspace through `lifeboat-browse` (what
//! `lifeboat scan --no-publish` does). The demo plants [`PLANTED_CONTENT`]
//! between the two backups, so the first restore point must come out with
//! no detection (`unproven`: YARA alone proves nothing) and the second
//! infected, with the planted file's path. One in-memory scan
//! cache serves both points: files unchanged since the first scan are not
//! scanned again.

use crate::output::bytes;
use anyhow::{bail, Context};
use lifeboat_browse::{open_restore_point, EntryKind, Filesystem};
use lifeboat_repo::Repository;
use lifeboat_scan::{Scan, ScanCache, ScanReport, ScanState, YaraScanner};

/// What the demo plants in the VM before the second backup.
pub const PLANTED_CONTENT: &str =
    "Invoice 2024-117\nplease open the attachment\nLIFEBOAT-DEMO-DROPPER-5e1c\n";

/// The demo's rule: matches the planted file and nothing else.
const RULE: &str = r#"
rule Demo_Planted_Dropper
{
    strings:
        $m = "LIFEBOAT-DEMO-DROPPER-5e1c"
    condition:
        $m
}
"#;
const RULE_NAME: &str = "Demo_Planted_Dropper";

/// Scans `clean` and `infected` (restore point names) and checks that only
/// `infected` has a detection, at `planted_path`.
pub fn run(
    repo: &Repository,
    clean: &str,
    infected: &str,
    planted_path: &str,
) -> anyhow::Result<()> {
    let yara = YaraScanner::from_rules_named("demo.yar", RULE)?;
    let mut cache = ScanCache::in_memory();
    println!("    rule {RULE_NAME} (YARA, built into the demo)");

    let first = scan_point(repo, clean, &yara, &mut cache)?;
    print_report(&first);
    // YARA alone finds nothing but proves nothing: `unproven`, not clean.
    if first.state != ScanState::Unproven {
        bail!(
            "scan of {clean}: expected no detections, got {:?}",
            first.state
        );
    }

    let second = scan_point(repo, infected, &yara, &mut cache)?;
    print_report(&second);
    let hit = second
        .detections
        .iter()
        .any(|d| d.path == planted_path && d.signature == RULE_NAME);
    if second.state != ScanState::Infected || second.detections.len() != 1 || !hit {
        bail!(
            "scan of {infected}: expected one detection of {RULE_NAME} at {planted_path}, got {:?} with {:?}",
            second.state,
            second.detections
        );
    }
    Ok(())
}

fn print_report(r: &ScanReport) {
    let state = match r.state {
        ScanState::Infected => "INFECTED",
        ScanState::Unproven => "nothing found (YARA only: unproven)",
        s => s.as_words(),
    };
    println!(
        "    {}: {state}, {} files ({}) scanned, {} unchanged files skipped",
        r.restore_point,
        r.files_scanned,
        bytes(r.bytes_scanned),
        r.skipped_unchanged_files
    );
    for d in &r.detections {
        println!(
            "      detection: {} {}:{} matches {}",
            d.disk, d.volume, d.path, d.signature
        );
    }
}

/// Scans every file of every filesystem of restore point `spec`.
fn scan_point(
    repo: &Repository,
    spec: &str,
    yara: &YaraScanner,
    cache: &mut ScanCache,
) -> anyhow::Result<ScanReport> {
    let m = repo.resolve(spec)?;
    let rp = open_restore_point(repo, &m).with_context(|| format!("opening {}", m.name()))?;
    let mut scan = Scan::new(&m.name(), None, Some(yara), cache)?;
    for v in rp.volumes() {
        if v.fs.is_none() {
            continue;
        }
        let fs = rp.select(Some(&v.disk), Some(&v.name))?.open()?;
        walk(fs.as_ref(), "/", &v.disk, &v.name, &mut scan)
            .with_context(|| format!("scanning {} {}", m.name(), v.name))?;
    }
    let report = scan.finish();
    if let Some(u) = report.unreadable.first() {
        bail!(
            "scan of {}: {} of {} could not be read: {}",
            m.name(),
            u.path,
            u.volume,
            u.reason
        );
    }
    Ok(report)
}

/// Depth-first over `path`; a directory or file that cannot be read is an
/// error here (the demo's own disk has none), never a clean result.
fn walk(
    fs: &dyn Filesystem,
    path: &str,
    disk: &str,
    volume: &str,
    scan: &mut Scan<'_>,
) -> anyhow::Result<()> {
    for e in fs.list(path)? {
        match e.kind {
            EntryKind::Dir => walk(fs, &e.path, disk, volume, scan)?,
            EntryKind::File => {
                let mut r = fs.read_file(&e.path)?;
                scan.scan_item(disk, volume, &e.path, &mut r, None)?;
            }
            EntryKind::Symlink | EntryKind::Other => {}
        }
    }
    Ok(())
}
