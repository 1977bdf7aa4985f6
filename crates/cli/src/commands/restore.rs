//! `lifeboat restore`: one disk of a restore point to a raw or qcow2 file.

use super::open_repo;
use crate::args::RestoreArgs;
use crate::exit;
use crate::output::{bytes, print_json, rate};
use crate::progress::Bars;
use anyhow::Context;
use lifeboat_engine::{restore_to_file, RestoreFormat};

pub fn run(a: RestoreArgs) -> anyhow::Result<i32> {
    let repo = open_repo(&a.repo)?;
    let m = super::resolve(&repo, &a.restore_point)?;
    let disk_name = match (&a.disk, m.disks.as_slice()) {
        (Some(d), _) => d.clone(),
        (None, [only]) => only.name.clone(),
        (None, disks) => {
            let names: Vec<&str> = disks.iter().map(|d| d.name.as_str()).collect();
            anyhow::bail!(
                "{} has {} disks ({}): choose one with --disk",
                m.name(),
                names.len(),
                names.join(", ")
            );
        }
    };
    let entry = m
        .disks
        .iter()
        .find(|d| d.name == disk_name)
        .with_context(|| format!("{} has no disk named {disk_name}", m.name()))?;
    let format = restore_format(a.format.as_deref(), &a.to)?;
    let disk = repo.open_disk(&m, &disk_name)?;
    let summary = restore_to_file(
        &disk,
        &a.to,
        format,
        u64::from(entry.chunk_size),
        &Bars::new(),
    )
    .with_context(|| {
        format!(
            "restore of {} disk {disk_name} to {}",
            m.name(),
            a.to.display()
        )
    })?;
    let secs = summary.elapsed.as_secs_f64();
    if a.output.json {
        print_json(&serde_json::json!({
            "restore_point": m.name(),
            "disk": disk_name,
            "path": summary.path,
            "size": summary.size,
            "bytes_written": summary.bytes_written,
            "seconds": secs,
        }))?;
    } else {
        println!(
            "restored {} disk {disk_name} to {} ({}, {} written, {:.2} s, {})",
            m.name(),
            summary.path.display(),
            bytes(summary.size),
            bytes(summary.bytes_written),
            secs,
            rate(summary.size, secs)
        );
    }
    Ok(exit::OK)
}

fn restore_format(given: Option<&str>, to: &std::path::Path) -> anyhow::Result<RestoreFormat> {
    let name = match given {
        Some(f) => f.to_ascii_lowercase(),
        None => to
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .filter(|e| e == "qcow2")
            .unwrap_or_else(|| "raw".into()),
    };
    match name.as_str() {
        "raw" | "img" => Ok(RestoreFormat::Raw),
        "qcow2" => Ok(RestoreFormat::Qcow2),
        other => anyhow::bail!("--format {other}: restore writes raw or qcow2"),
    }
}
