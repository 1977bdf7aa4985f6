//! `lifeboat list` and `lifeboat show`: what the repository holds, with
//! each restore point's retention lock, malware scan state and (live
//! backups) consistency level.

use super::open_repo;
use super::scan::state_text;
use crate::args::{ListArgs, ShowArgs};
use crate::exit;
use crate::output::{bytes, print_json};
use lifeboat_engine::restore_point_usage;
use lifeboat_repo::ListedPoint;

pub fn list(a: ListArgs) -> anyhow::Result<i32> {
    let repo = open_repo(&a.repo)?;
    // A restore point is damaged when its manifest or one of its indexes
    // does not read; the rest are listed as usual.
    let report = repo.list_report(a.vm.as_deref())?;
    if a.output.json {
        print_json(&report)?;
        return Ok(exit::OK);
    }
    print_listing(&report);
    Ok(exit::OK)
}

/// The table of a listing (`list`, `restore-point list`): one row per
/// readable restore point, then a line per damaged file, lost manifests
/// first.
pub fn print_listing(report: &[ListedPoint]) {
    if report.is_empty() {
        println!("no restore points");
        return;
    }
    println!(
        "{:<40} {:<20} {:>6} {:>12}  {:<16} scan",
        "restore point", "time (UTC)", "disks", "size", "locked until"
    );
    let now = chrono::Utc::now();
    for point in report {
        let ListedPoint::Readable {
            manifest: m,
            damaged,
            ..
        } = point
        else {
            continue;
        };
        let size: u64 = m.disks.iter().map(|d| d.size).sum();
        let lock = match m.locked_until {
            Some(t) if t > now => t.format("%Y-%m-%d %H:%M").to_string(),
            _ => "-".into(),
        };
        println!(
            "{:<40} {:<20} {:>6} {:>12}  {:<16} {}{}{}{}",
            m.name(),
            m.time.format("%Y-%m-%d %H:%M:%S"),
            m.disks.len(),
            bytes(size),
            lock,
            state_text(m),
            if damaged.is_empty() { "" } else { "  DAMAGED" },
            m.consistency
                .as_ref()
                .map_or(String::new(), |c| format!("  {}", c.level.as_str())),
            m.salvage.as_ref().map_or(String::new(), |s| format!(
                "  SALVAGED from {}",
                s.salvaged_from
            ))
        );
    }
    let (unreadable, readable): (Vec<&ListedPoint>, Vec<&ListedPoint>) = report
        .iter()
        .partition(|p| matches!(p, ListedPoint::Unreadable { .. }));
    for d in unreadable.iter().chain(&readable).flat_map(|p| p.damaged()) {
        println!(
            "DAMAGED {}: {d}",
            d.restore_points.first().map_or("", String::as_str)
        );
    }
}

pub fn show(a: ShowArgs) -> anyhow::Result<i32> {
    let repo = open_repo(&a.repo)?;
    let m = super::resolve(&repo, &a.restore_point)?;
    let usage = restore_point_usage(&repo, &m)?;
    if a.output.json {
        print_json(&serde_json::json!({
            "manifest": m,
            "usage": usage,
            "scan_state": m.scan_state(),
        }))?;
        return Ok(exit::OK);
    }
    println!("restore point {}", m.name());
    println!("  time          {}", m.time.format("%Y-%m-%d %H:%M:%S UTC"));
    if let Some(t) = m.locked_until {
        println!("  locked until  {}", t.format("%Y-%m-%d %H:%M:%S UTC"));
    }
    if let Some(c) = &m.consistency {
        println!("  consistency   {}", c.describe());
    }
    match &m.scan {
        Some(s) => {
            let engines: Vec<&str> = s.engines.iter().map(|e| e.name.as_str()).collect();
            println!(
                "  scan          {} at {} ({}; {} detections, {} unreadable)",
                s.state.as_str(),
                s.time.format("%Y-%m-%d %H:%M:%S UTC"),
                engines.join(", "),
                s.detections,
                s.unreadable
            );
        }
        None => println!("  scan          not scanned"),
    }
    if let Some(s) = &m.salvage {
        println!(
            "  salvaged from {} at {} ({}); unreadable ranges read as zeros:",
            s.salvaged_from,
            s.time.format("%Y-%m-%d %H:%M:%S UTC"),
            s.reason
        );
        for d in &s.disks {
            let ranges: Vec<String> = d
                .unreadable
                .iter()
                .map(|r| format!("{}+{}", r.offset, r.length))
                .collect();
            println!(
                "    disk {:<8} {} unreadable{}{}",
                d.disk,
                bytes(d.unreadable_bytes),
                if ranges.is_empty() { "" } else { ": " },
                ranges.join(", ")
            );
            for f in d.files.iter().flatten() {
                println!("      file hit: {f}");
            }
        }
        for d in &s.lost_disks {
            println!("    disk {d:<8} lost: its index does not read and its manifest is gone");
        }
    }
    for d in &m.disks {
        println!(
            "  disk {:<8} {:>10}  chunk {}  from {}",
            d.name,
            bytes(d.size),
            bytes(u64::from(d.chunk_size)),
            d.source
        );
        if let Some(f) = &d.format {
            println!("       format {}", super::backup::describe_format(f));
        }
        println!(
            "       this backup read {}, {} new chunks, {} stored new",
            bytes(d.stats.bytes_read),
            d.stats.new_chunks,
            bytes(d.stats.new_stored_bytes)
        );
    }
    println!(
        "  logical {}  data {}  unique chunks {}  stored {}  reduction {:.2}x",
        bytes(usage.logical_bytes),
        bytes(usage.data_bytes),
        usage.unique_chunks,
        bytes(usage.stored_bytes),
        usage.reduction_ratio
    );
    Ok(exit::OK)
}
