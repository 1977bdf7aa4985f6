//! `lifeboat backup`: back up image files as one restore point of a VM.

use super::open_repo;
use crate::args::BackupArgs;
use crate::exit;
use crate::output::{bytes, print_json, rate};
use crate::progress::Bars;
use anyhow::Context;
use lifeboat_engine::{backup_vm, DiskSource};
use std::path::Path;

pub fn run(a: BackupArgs) -> anyhow::Result<i32> {
    let repo = open_repo(&a.repo)?;
    let mut sources = Vec::new();
    for spec in &a.disks {
        let (name, path) = spec.split_once('=').with_context(|| {
            format!("disk {spec:?}: expected NAME=PATH, e.g. disk0=/vms/web01.qcow2")
        })?;
        let disk = lifeboat_formats::open_image(Path::new(path))
            .with_context(|| format!("opening disk {name}"))?;
        sources.push(DiskSource {
            name: name.to_string(),
            disk,
        });
    }
    let summary = backup_vm(&repo, &a.vm, &sources, &Bars::new())
        .with_context(|| format!("backup of {}", a.vm))?;
    let m = &summary.manifest;
    let secs = summary.elapsed.as_secs_f64();
    if a.output.json {
        print_json(&serde_json::json!({
            "restore_point": m.name(),
            "seconds": secs,
            "manifest": m,
        }))?;
        return Ok(exit::OK);
    }
    println!("created restore point {}", m.name());
    for d in &m.disks {
        println!(
            "  {:<10} {:>10}  read {:>10}  chunks {} data / {} zero / {} new  stored {}",
            d.name,
            bytes(d.size),
            bytes(d.stats.bytes_read),
            d.stats.data_chunks,
            d.stats.zero_chunks,
            d.stats.new_chunks,
            bytes(d.stats.new_stored_bytes),
        );
    }
    let total: u64 = m.disks.iter().map(|d| d.size).sum();
    println!("  {:.2} s, {} of disk", secs, rate(total, secs));
    Ok(exit::OK)
}
