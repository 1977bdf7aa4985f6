//! `lifeboat backup`: back up image files as one restore point of a VM.
//!
//! Each disk is `NAME=[FORMAT:]PATH`; FORMAT (or `--format`, default
//! `auto`) says how to read it, and `--allow-backing` lists the only files
//! an image may make the backup open besides itself (see
//! `lifeboat_formats::follow`): a header inside a guest's disk never makes
//! us read a host file nobody named.

use super::open_repo;
use crate::args::BackupArgs;
use crate::exit;
use crate::output::{bytes, error_message, print_json, rate};
use crate::progress::Bars;
use anyhow::{bail, Context};
use lifeboat_engine::{backup_vm, parse_format, DiskSource, DiskSpec};
use lifeboat_formats::{AllowedPaths, LinkRefused, OpenOptions};
use lifeboat_repo::SourceFormat;
use std::path::Path;

/// What to tell the user when an image named a file nobody allowed.
fn refusal_hint(refused: &LinkRefused, name: &str, path: &Path) -> String {
    format!(
        "if disk {name} really is an image using {}, allow it with --allow-backing {} \
         (or its directory); if {} is a raw disk, give {name}=raw:{} (or --format raw)",
        refused.resolved.display(),
        refused.resolved.display(),
        path.display(),
        path.display()
    )
}

fn open_disk(
    name: &str,
    path: &Path,
    options: &OpenOptions,
) -> anyhow::Result<(DiskSource, Option<String>)> {
    DiskSource::open_file(name, path, options).map_err(|e| {
        let err = anyhow::Error::new(e).context(format!("opening disk {name}"));
        match err.chain().find_map(|c| c.downcast_ref::<LinkRefused>()) {
            Some(refused) => anyhow::anyhow!(
                "{}; {}",
                error_message(&err),
                refusal_hint(refused, name, path)
            ),
            None => err,
        }
    })
}

/// `raw (file name)`, `qcow2 (content), read /vms/base.qcow2`, ...
pub(crate) fn describe_format(f: &SourceFormat) -> String {
    let mut out = format!("{} ({})", f.format, f.chosen_by.as_str());
    if let Some(looks) = &f.content_looks_like {
        out.push_str(&format!(", first bytes look like {looks}"));
    }
    if !f.followed.is_empty() {
        out.push_str(&format!(", read {}", f.followed.join(", ")));
    }
    out
}

pub fn run(a: BackupArgs) -> anyhow::Result<i32> {
    if let Some(socket) = a.disks.iter().find_map(|d| d.strip_prefix("qmp:")) {
        if a.disks.len() != 1 {
            bail!("qmp:{socket} backs up every disk of the VM: give it alone, without NAME=PATH disks");
        }
        return super::backup_live::run(&a, Path::new(socket));
    }
    let default_format = parse_format(&a.format)?;
    let mut allowed = AllowedPaths::none();
    for p in &a.allow_backing {
        allowed
            .allow(p)
            .with_context(|| format!("--allow-backing {}", p.display()))?;
    }
    let mut repo = open_repo(&a.repo)?;
    if let Some(level) = a.compression_level {
        repo = repo
            .with_compression_level(level)
            .context("--compression-level")?;
    }
    let mut sources = Vec::new();
    for spec in &a.disks {
        let DiskSpec { name, format, path } = DiskSpec::parse(spec, default_format)?;
        let name = name.as_str();
        let options = OpenOptions {
            format,
            allowed: allowed.clone(),
        };
        let (source, warning) = open_disk(name, &path, &options)?;
        if let Some(w) = warning {
            eprintln!("lifeboat: warning: disk {name}: {w}");
        }
        sources.push(source);
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
        if let Some(f) = &d.format {
            println!("  {:<10} format {}", "", describe_format(f));
        }
    }
    let total: u64 = m.disks.iter().map(|d| d.size).sum();
    println!("  {:.2} s, {} of disk", secs, rate(total, secs));
    Ok(exit::OK)
}
