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
use lifeboat_engine::{backup_vm, DiskSource};
use lifeboat_formats::{AllowedPaths, ImageFormat, LinkRefused, OpenOptions};
use lifeboat_repo::SourceFormat;
use std::path::Path;

/// The format names a disk argument may start with (`auto`: choose).
const FORMAT_NAMES: [&str; 5] = ["raw", "qcow2", "vmdk", "vhdx", "auto"];

/// Parses a format name; `auto` is `None` (choose by device, name, content).
fn parse_format(name: &str) -> anyhow::Result<Option<ImageFormat>> {
    if name.eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    match ImageFormat::from_name(name) {
        Some(f) if FORMAT_NAMES.contains(&name.to_ascii_lowercase().as_str()) => Ok(Some(f)),
        _ => bail!("unknown disk format {name:?}: expected raw, qcow2, vmdk, vhdx or auto"),
    }
}

/// Splits `NAME=[FORMAT:]PATH`; a disk without FORMAT: takes `default`.
/// A PATH that itself starts with `raw:` (etc.) is written `./raw:...`.
fn parse_disk(
    spec: &str,
    default: Option<ImageFormat>,
) -> anyhow::Result<(&str, Option<ImageFormat>, &Path)> {
    let (name, rest) = spec.split_once('=').with_context(|| {
        format!("disk {spec:?}: expected NAME=[FORMAT:]PATH, e.g. disk0=/vms/web01.qcow2 or disk0=raw:/dev/vg0/web01")
    })?;
    if let Some((prefix, path)) = rest.split_once(':') {
        if FORMAT_NAMES.contains(&prefix.to_ascii_lowercase().as_str()) {
            return Ok((name, parse_format(prefix)?, Path::new(path)));
        }
    }
    Ok((name, default, Path::new(rest)))
}

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
        let (name, format, path) = parse_disk(spec, default_format)?;
        let options = OpenOptions {
            format,
            allowed: allowed.clone(),
        };
        let (source, warning) = open_disk(name, path, &options)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_arguments_take_an_optional_format_prefix() {
        let (n, f, p) = parse_disk("disk0=/vms/a.qcow2", None).unwrap();
        assert_eq!((n, f, p), ("disk0", None, Path::new("/vms/a.qcow2")));
        let (_, f, p) = parse_disk("d=qcow2:/dev/vg/x", Some(ImageFormat::Raw)).unwrap();
        assert_eq!((f, p), (Some(ImageFormat::Qcow2), Path::new("/dev/vg/x")));
        let (_, f, p) = parse_disk("d=AUTO:/v/x.img", Some(ImageFormat::Raw)).unwrap();
        assert_eq!((f, p), (None, Path::new("/v/x.img")));
        // A colon that is not after a format name is part of the path.
        let (_, f, p) = parse_disk("d=/v/a:b.raw", Some(ImageFormat::Raw)).unwrap();
        assert_eq!((f, p), (Some(ImageFormat::Raw), Path::new("/v/a:b.raw")));
        assert!(parse_disk("no-equals", None).is_err());
        assert!(parse_format("img").is_err());
        assert!(parse_format("vpc").is_err());
        assert_eq!(parse_format("VMDK").unwrap(), Some(ImageFormat::Vmdk));
    }
}
