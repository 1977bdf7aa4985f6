//! The demo's file-level browse step: the latest restore point's ext4
//! filesystem read in userspace through `lifeboat-browse` (what `lifeboat
//! files ls/get` do): its volumes, one directory listed, and one file copied
//! out and compared byte for byte with the file the demo put in the image.

use crate::output::bytes;
use anyhow::{bail, Context};
use lifeboat_browse::{open_restore_point, EntryKind};
use lifeboat_repo::Repository;
use std::io::Write;
use std::path::Path;

/// A file of the guest and the local copy the demo wrote into the image.
pub struct Expected<'a> {
    pub guest_path: &'a str,
    pub local: &'a Path,
}

/// Lists `dir_path` of restore point `spec` and copies `file` out to `to`.
pub fn run(
    repo: &Repository,
    spec: &str,
    dir_path: &str,
    file: Expected<'_>,
    to: &Path,
) -> anyhow::Result<()> {
    let m = repo.resolve(spec)?;
    let rp = open_restore_point(repo, &m).with_context(|| format!("opening {}", m.name()))?;
    for v in rp.volumes() {
        println!(
            "    {} {}: {} {}{}",
            v.disk,
            v.name,
            bytes(v.size),
            v.fs.map(|f| f.name()).unwrap_or("-"),
            v.label
                .as_deref()
                .map(|l| format!(", label {l}"))
                .unwrap_or_default()
        );
    }
    let fs = rp.select(None, None)?.open()?;
    let entries = fs.list(dir_path)?;
    println!("    files ls {spec} {dir_path}:");
    for e in &entries {
        let kind = match e.kind {
            EntryKind::Dir => 'd',
            EntryKind::File => '-',
            EntryKind::Symlink => 'l',
            EntryKind::Other => '?',
        };
        println!("      {kind} {:>10}  {}", bytes(e.size), e.name);
    }
    let wanted = Path::new(file.guest_path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !entries.iter().any(|e| e.name == wanted) {
        bail!("{dir_path} of {spec} does not list {wanted}, which the demo wrote into the image");
    }

    let mut reader = fs.read_file(file.guest_path)?;
    let mut got = Vec::new();
    std::io::copy(&mut reader, &mut got)
        .with_context(|| format!("reading {} out of {spec}", file.guest_path))?;
    std::fs::File::create(to)
        .and_then(|mut f| f.write_all(&got))
        .with_context(|| format!("writing {}", to.display()))?;
    let original =
        std::fs::read(file.local).with_context(|| format!("reading {}", file.local.display()))?;
    let hash = blake3::hash(&got).to_hex()[..16].to_string();
    if got != original {
        bail!(
            "{} copied out of {spec} ({} bytes) differs from {} ({} bytes)",
            file.guest_path,
            got.len(),
            file.local.display(),
            original.len()
        );
    }
    println!(
        "    files get {spec} {} -> {} ({}): BLAKE3 {hash}, identical to the file put in the image",
        file.guest_path,
        to.display(),
        bytes(got.len() as u64)
    );
    Ok(())
}
