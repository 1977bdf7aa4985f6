//! What opening does with a [`super::BlockStore`] whose data file reached
//! its cap, and the compaction that keeps only the entries the previous
//! run hit (see the policy in the parent module's doc).
//!
//! Compaction is crash-safe by a commit rename: the kept blocks and their
//! records go to `blocks.dat.tmp` and `blocks.idx.tmp` (synced), the hits
//! file is removed (it numbers the old records), then `blocks.dat.tmp` is
//! renamed to `blocks.dat.next` and `blocks.idx.tmp` to `blocks.idx.next`:
//! that rename commits. Both `.next` files are then renamed over the
//! store's. [`recover`], run at every open under the lock, finishes a
//! committed compaction (`blocks.idx.next` exists) and discards the
//! leftovers of one that did not commit, so an interrupted compaction
//! leaves either the old store or the new one.

use super::index::{self, MAGIC};
use super::{hits, open_block, private_file, BlockKey, Slot, BLOCK, DATA_FILE, LOG_FILE};
use crate::error::{Error, Result};
use crate::fsutil::{rename, sync_dir};
use lifeboat_repo::LocalKey;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

pub(super) const DATA_TMP: &str = "blocks.dat.tmp";
pub(super) const LOG_TMP: &str = "blocks.idx.tmp";
pub(super) const DATA_NEXT: &str = "blocks.dat.next";
pub(super) const LOG_NEXT: &str = "blocks.idx.next";

/// Finishes a compaction that committed but was interrupted, and removes
/// the temp files of one that did not commit (both logged).
pub(super) fn recover(dir: &Path) -> Result<()> {
    if finish_committed(dir)? {
        eprintln!(
            "block store {}: finished an interrupted compaction",
            dir.display()
        );
    }
    for name in remove_leftovers(dir)? {
        eprintln!(
            "block store {}: removed {name}, left by an interrupted compaction",
            dir.display()
        );
    }
    Ok(())
}

/// Renames the `.next` files of a committed compaction over the store's;
/// false when there is none.
fn finish_committed(dir: &Path) -> Result<bool> {
    let log_next = dir.join(LOG_NEXT);
    if !log_next.exists() {
        return Ok(false);
    }
    let data_next = dir.join(DATA_NEXT);
    if data_next.exists() {
        rename(&data_next, &dir.join(DATA_FILE))?;
    }
    rename(&log_next, &dir.join(LOG_FILE))?;
    sync_dir(dir)?;
    Ok(true)
}

/// Removes the files of a compaction that did not commit; returns the
/// names of those that were there.
fn remove_leftovers(dir: &Path) -> Result<Vec<&'static str>> {
    let mut removed = Vec::new();
    for name in [DATA_TMP, LOG_TMP, DATA_NEXT] {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => removed.push(name),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
    }
    Ok(removed)
}

/// Applies the policy to a full store of `dir` (data file of `data_len`
/// bytes, at least `cap`): compacts it to the entries the previous run
/// hit, keeps it as it is when there is no hit information, starts it over
/// when nothing useful would remain.
pub(super) fn on_full(dir: &Path, cap: u64, data_len: u64, key: &LocalKey) -> Result<()> {
    let parsed = index::parse(&dir.join(LOG_FILE), data_len)?;
    let hit = hits::read(dir, parsed.records);
    let say = |what: String| {
        eprintln!(
            "block store {}: full ({data_len} bytes, {} blocks), {what}",
            dir.display(),
            parsed.map.len()
        );
    };
    if parsed.map.is_empty() {
        say("none usable: starting over empty".to_string());
        return start_over(dir);
    }
    let hit = match hit {
        Some(h) if !h.is_empty() => h,
        _ => {
            say("no hits by the previous publisher: kept as it is (served; at most chunk edges added)".into());
            return Ok(());
        }
    };
    let mut kept: Vec<(BlockKey, Slot)> = parsed
        .map
        .iter()
        .filter(|(_, s)| hit.binary_search(&s.rec).is_ok())
        .map(|(k, s)| (*k, *s))
        .collect();
    kept.sort_unstable_by_key(|(_, s)| s.rec);
    let kept_bytes = (kept.len() as u64).saturating_mul(BLOCK as u64);
    if kept.is_empty() || kept_bytes >= cap / 10 * 9 {
        say(format!(
            "{} blocks hit by the previous publisher: starting over empty",
            kept.len()
        ));
        return start_over(dir);
    }
    match compact(dir, &kept, key) {
        Ok(0) => {
            say("no hit block read back intact: starting over empty".into());
            start_over(dir)
        }
        Ok(n) => {
            say(format!(
                "compacted to the {n} blocks hit by the previous publisher ({} MiB)",
                (n as u64 * BLOCK as u64) >> 20
            ));
            Ok(())
        }
        Err(e) => {
            say(format!("compaction failed ({e}): kept as it is"));
            recover(dir)
        }
    }
}

/// Removes the store's files (absent ones are fine).
pub(super) fn start_over(dir: &Path) -> Result<()> {
    hits::remove(dir)?;
    for name in [LOG_FILE, DATA_FILE] {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
    }
    Ok(())
}

/// Rewrites the store of `dir` with only `kept` (in that order), each
/// block authenticated on the way (and copied as it is stored: its
/// authentication does not depend on its place); returns how many were
/// kept.
fn compact(dir: &Path, kept: &[(BlockKey, Slot)], store_key: &LocalKey) -> Result<usize> {
    let data_path = dir.join(DATA_FILE);
    let data = File::open(&data_path).map_err(|e| Error::io(&data_path, e))?;
    let data_tmp = dir.join(DATA_TMP);
    let log_tmp = dir.join(LOG_TMP);
    let create = |p: &Path| private_file(p, true);
    let mut new_data = BufWriter::with_capacity(1 << 20, create(&data_tmp)?);
    let mut new_log = BufWriter::with_capacity(1 << 20, create(&log_tmp)?);
    new_log
        .write_all(MAGIC)
        .map_err(|e| Error::io(&log_tmp, e))?;
    let mut block = [0u8; BLOCK];
    let mut plain = [0u8; BLOCK];
    let mut n = 0usize;
    let mut bad = 0usize;
    for (key, slot) in kept {
        let intact = data.read_exact_at(&mut block, slot.pos).is_ok() && {
            plain.copy_from_slice(&block);
            open_block(store_key, key, slot, &mut plain).is_ok()
        };
        if !intact {
            bad += 1;
            continue;
        }
        let new = Slot {
            pos: (n as u64) * BLOCK as u64,
            rec: n as u64,
            ..*slot
        };
        new_data
            .write_all(&block)
            .map_err(|e| Error::io(&data_tmp, e))?;
        new_log
            .write_all(&index::encode(key, &new))
            .map_err(|e| Error::io(&log_tmp, e))?;
        n += 1;
    }
    if bad > 0 {
        eprintln!(
            "block store {}: {bad} hit blocks did not authenticate; dropped",
            dir.display()
        );
    }
    for (w, path) in [(new_data, &data_tmp), (new_log, &log_tmp)] {
        let file = w
            .into_inner()
            .map_err(|e| Error::io(path, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(path, e))?;
    }
    if n == 0 {
        remove_leftovers(dir)?;
        return Ok(0);
    }
    // The hits name the old records: gone before the new ones can be seen.
    hits::remove(dir)?;
    sync_dir(dir)?;
    rename(&data_tmp, &dir.join(DATA_NEXT))?;
    rename(&log_tmp, &dir.join(LOG_NEXT))?;
    sync_dir(dir)?;
    finish_committed(dir)?;
    Ok(n)
}
