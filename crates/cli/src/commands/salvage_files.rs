//! The files a salvaged restore point's unreadable ranges hit, for its
//! salvage record: every regular file of every recognised filesystem of
//! the damaged restore point it came from is read whole, and each one
//! whose read fails on a missing or corrupt chunk is named
//! (`volume:/path`), as is a directory that does not list (`volume:/dir/`)
//! and a volume whose filesystem cannot be opened (`volume:`). This reads
//! the whole damaged restore point once: as long as a restore of it.

use lifeboat_browse::{open_restore_point, EntryKind, Filesystem};
use lifeboat_repo::{Manifest, Repository};
use std::collections::BTreeMap;

/// Directory depth at which the walk stops (a corrupt filesystem may loop).
const MAX_DEPTH: usize = 256;

/// Per disk of `damaged`, the files that do not read whole. A volume
/// spanning disks (an LVM volume) is listed under each of them. Disks
/// without a recognised filesystem have no entry.
pub fn files_hit(repo: &Repository, damaged: &Manifest) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let volumes = match open_restore_point(repo, damaged) {
        Ok(v) => v,
        Err(e) => {
            eprintln!(
                "lifeboat: note: cannot look for the files {} lost: {e}",
                damaged.name()
            );
            return out;
        }
    };
    for info in volumes.volumes() {
        let mut hit = Vec::new();
        match (&info.fs, &info.probe_error) {
            (Some(_), _) => {
                match volumes
                    .select(None, Some(&info.name))
                    .and_then(|v| v.open())
                {
                    Ok(fs) => walk(fs.as_ref(), "/", &info.name, 0, &mut hit),
                    Err(_) => hit.push(format!("{}:", info.name)),
                }
            }
            (None, Some(_)) => hit.push(format!("{}:", info.name)),
            (None, None) => continue,
        }
        for disk in info.disk.split('+') {
            out.entry(disk.to_string())
                .or_default()
                .extend(hit.iter().cloned());
        }
    }
    out
}

/// Reads every file under `dir`, naming in `hit` those that fail on damage.
fn walk(fs: &dyn Filesystem, dir: &str, volume: &str, depth: usize, hit: &mut Vec<String>) {
    let entries = match fs.list(dir) {
        Ok(e) => e,
        Err(e) => {
            if e.is_damage() {
                hit.push(format!("{volume}:{}/", dir.trim_end_matches('/')));
            }
            return;
        }
    };
    for e in entries {
        match e.kind {
            EntryKind::Dir if depth < MAX_DEPTH => walk(fs, &e.path, volume, depth + 1, hit),
            EntryKind::File => {
                let damaged = match fs.read_file(&e.path) {
                    Ok(mut r) => std::io::copy(&mut r, &mut std::io::sink())
                        .err()
                        .is_some_and(|io| {
                            io.get_ref()
                                .and_then(|inner| inner.downcast_ref::<lifeboat_browse::Error>())
                                .is_some_and(|b| b.is_damage())
                        }),
                    Err(b) => b.is_damage(),
                };
                if damaged {
                    hit.push(format!("{volume}:{}", e.path));
                }
            }
            _ => {}
        }
    }
}
