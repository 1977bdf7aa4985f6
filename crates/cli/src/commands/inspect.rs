//! `lifeboat list` and `lifeboat show`: what the repository holds.

use super::open_repo;
use crate::args::{ListArgs, ShowArgs};
use crate::exit;
use crate::output::{bytes, print_json};
use lifeboat_engine::restore_point_usage;

pub fn list(a: ListArgs) -> anyhow::Result<i32> {
    let repo = open_repo(&a.repo)?;
    let points = repo.list(a.vm.as_deref())?;
    if a.output.json {
        print_json(&points)?;
        return Ok(exit::OK);
    }
    if points.is_empty() {
        println!("no restore points");
        return Ok(exit::OK);
    }
    println!(
        "{:<40} {:<20} {:>6} {:>12}  locked until",
        "restore point", "time (UTC)", "disks", "size"
    );
    let now = chrono::Utc::now();
    for m in &points {
        let size: u64 = m.disks.iter().map(|d| d.size).sum();
        let lock = match m.locked_until {
            Some(t) if t > now => t.format("%Y-%m-%d %H:%M").to_string(),
            _ => "-".into(),
        };
        println!(
            "{:<40} {:<20} {:>6} {:>12}  {}",
            m.name(),
            m.time.format("%Y-%m-%d %H:%M:%S"),
            m.disks.len(),
            bytes(size),
            lock
        );
    }
    Ok(exit::OK)
}

pub fn show(a: ShowArgs) -> anyhow::Result<i32> {
    let repo = open_repo(&a.repo)?;
    let m = repo.resolve(&a.restore_point)?;
    let usage = restore_point_usage(&repo, &m)?;
    if a.output.json {
        print_json(&serde_json::json!({ "manifest": m, "usage": usage }))?;
        return Ok(exit::OK);
    }
    println!("restore point {}", m.name());
    println!("  time          {}", m.time.format("%Y-%m-%d %H:%M:%S UTC"));
    if let Some(t) = m.locked_until {
        println!("  locked until  {}", t.format("%Y-%m-%d %H:%M:%S UTC"));
    }
    for d in &m.disks {
        println!(
            "  disk {:<8} {:>10}  chunk {}  from {}",
            d.name,
            bytes(d.size),
            bytes(u64::from(d.chunk_size)),
            d.source
        );
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
