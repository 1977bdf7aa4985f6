//! `repo repair`: quarantine damaged files, salvage what still reads, and
//! `--purge-quarantine` (see crates/repo/src/repair.rs for what it does).

use super::open_repo;
use crate::args::RepairArgs;
use crate::exit;
use crate::output::print_json;
use lifeboat_repo::{RepairOptions, RepairReport, RepairStep};
use std::collections::BTreeMap;

pub fn run(a: RepairArgs) -> anyhow::Result<i32> {
    let repo = open_repo(&a.repo)?;
    if let Some(days) = a.purge_quarantine {
        let before = chrono::Utc::now() - chrono::Duration::days(i64::from(days));
        let purged = repo.purge_quarantine(before, a.dry_run)?;
        if a.output.json {
            print_json(&serde_json::json!({ "dry_run": a.dry_run, "purged": purged }))?;
        } else {
            let verb = if a.dry_run { "would remove" } else { "removed" };
            for n in &purged {
                println!(
                    "{verb} quarantined {} {} ({})",
                    n.kind.as_str(),
                    n.original,
                    n.time.format("%Y-%m-%d %H:%M:%S UTC")
                );
            }
            println!("{verb} {} quarantine entries", purged.len());
        }
        return Ok(exit::OK);
    }
    let report = repo.repair(&RepairOptions {
        dry_run: a.dry_run,
        salvage: a.salvage,
    })?;
    let files = record_files(&repo, &report)?;
    if a.output.json {
        let mut v = serde_json::to_value(&report)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("salvaged_files".into(), serde_json::to_value(&files)?);
        }
        print_json(&v)?;
    } else {
        print_report(&report);
        for (point, disks) in &files {
            for (disk, list) in disks {
                println!(
                    "{point} disk {disk}: {} files hit by the unreadable ranges{}",
                    list.len(),
                    if list.is_empty() { "" } else { ":" }
                );
                for f in list {
                    println!("    {f}");
                }
            }
        }
    }
    Ok(exit::OK)
}

/// For each salvaged restore point written: the files of the damaged one
/// that its unreadable ranges hit, per disk with such ranges, recorded in
/// its manifest. Keyed by the salvaged restore point.
fn record_files(
    repo: &lifeboat_repo::Repository,
    report: &RepairReport,
) -> anyhow::Result<BTreeMap<String, BTreeMap<String, Vec<String>>>> {
    let mut out = BTreeMap::new();
    for a in &report.actions {
        let (RepairStep::Salvage, Some(name)) = (a.step, &a.result) else {
            continue;
        };
        let Ok(salvaged) = repo.resolve(name) else {
            continue;
        };
        // The damaged restore point still reads where only chunks are lost.
        let Ok(damaged) = repo.resolve(&a.target) else {
            continue;
        };
        let Some(record) = &salvaged.salvage else {
            continue;
        };
        let partly: Vec<&str> = record
            .disks
            .iter()
            .filter(|d| !d.unreadable.is_empty())
            .map(|d| d.disk.as_str())
            .collect();
        let mut hit = super::salvage_files::files_hit(repo, &damaged);
        hit.retain(|disk, _| partly.contains(&disk.as_str()));
        if hit.is_empty() {
            continue;
        }
        repo.record_salvaged_files(&salvaged, &hit)?;
        out.insert(salvaged.name(), hit);
    }
    Ok(out)
}

fn print_report(r: &RepairReport) {
    for line in &r.keys {
        println!("{line}");
    }
    if r.damage.is_empty() && r.keys.is_empty() {
        println!("no damage found: nothing to repair");
        return;
    }
    if r.damage.is_empty() && r.dry_run {
        println!("dry run: nothing changed");
    }
    if r.damage.is_empty() {
        return;
    }
    let would = if r.dry_run { "would " } else { "" };
    for a in &r.actions {
        let what = match a.step {
            RepairStep::QuarantinePoint => format!("{would}quarantine restore point"),
            RepairStep::RebuildManifest => {
                format!("{would}rebuild from its indexes the manifest of")
            }
            RepairStep::QuarantineChunk => format!("{would}quarantine chunk"),
            RepairStep::RememberMissingChunk => format!("{would}remember missing chunk"),
            RepairStep::Salvage => format!("{would}salvage restore point"),
            RepairStep::Skip => "skip restore point".to_string(),
        };
        match &a.result {
            Some(to) => println!("{what} {} -> {to}", a.target),
            None => println!("{what} {}", a.target),
        }
        println!("    {}", a.detail);
    }
    if !r.still_damaged.is_empty() {
        println!(
            "left in place, using damaged chunks (whole again when a backup stores the same data; \
             or forget them): {}",
            r.still_damaged.join(", ")
        );
    }
    if r.dry_run {
        println!("dry run: nothing changed");
    }
}
