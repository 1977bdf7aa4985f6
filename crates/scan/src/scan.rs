//! The scan driver: runs the configured engines (ClamAV, YARA) over a
//! directory tree or over (path, reader) items, consults and fills the
//! [`ScanCache`], and builds the [`ScanReport`] of a restore point.
//!
//! Tree scans list the files with a few threads and take them in inode
//! order (see [`crate::walk`]), then read each regular file once: the
//! bytes give the content key and feed YARA in memory; files whose content
//! ClamAV has not seen (in the cache or earlier in this run) are passed to one
//! `clamscan --file-list` run. A file counts as skipped when every engine had
//! its content already; a read error lists the file as unreadable and it is
//! never cached. Item scans (for file contents read from the repository)
//! run YARA only: ClamAV needs files on disk.
//!
//! With the volume's place on a restore-point disk
//! ([`Scan::scan_tree_mapped`]), every file is first opened and mapped by a
//! few threads (see [`crate::mapping`]), and each file's extent key (FIEMAP
//! and chunk digests, see [`crate::extent_key`]) is looked up: when every engine
//! has a result for it the file is skipped unread (`skipped_unread_*` in the
//! report); a file that is read gets its results stored under its extent
//! key as well, after ClamAV ran.
//!
//! Windowed re-scan: given also the same volume on an older restore point
//! of the VM (the *base*), a file whose extent key misses is compared with
//! the base (see [`VolumeChunks::against`]). When YARA is the only engine
//! (ClamAV needs whole files), its rule set is local (see
//! [`crate::locality`]) and the base key has a clean YARA result, only the
//! windows around the file ranges whose chunks changed are read (positioned
//! reads) and scanned; the union of the rules matching in them is the
//! file's result, stored under its extent key. Such files count in
//! `files_scanned` with the bytes read as `bytes_scanned`, and in
//! `window_scanned_*`. A read error makes the file unreadable, as always.
//! These files are scanned after the walk, read by a few threads in the
//! order of their first window's place on the volume (see
//! [`crate::windowed`]).
//!
//! The report names each engine with the signatures or rules it used (see
//! [`EngineRun`]); [`Scan::not_scanned`] adds one that did not scan.
//!
//! A cancel flag ([`Scan::with_cancel`], e.g. set by SIGINT) is checked
//! before each file; once set, scans end with [`ScanError::Cancelled`].

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::cache::{ContentKey, ScanCache};
use crate::clamav::ClamAvScanner;
use crate::error::{Result, ScanError};
use crate::ext4list::VolumeBytes;
use crate::extent_key::VolumeChunks;
use crate::listing::{list_tree, TreeFiles};
use crate::locality::windows;
use crate::mapping::{MappedFile, Mapping};
use crate::report::{Detection, Engine, EngineRun, Location, ScanReport, Unreadable};
use crate::windowed::{read_windows, Windowed};
use crate::yara::{YaraScanner, YaraSession};

/// One scan of a restore point, possibly over several disks and volumes.
pub struct Scan<'a> {
    restore_point: String,
    clamav: Option<(&'a ClamAvScanner, String)>,
    yara: Option<(YaraSession<'a>, String)>,
    /// Longest match of the YARA rules when they are local.
    yara_local: Option<u64>,
    cache: &'a mut ScanCache,
    report: ScanReport,
    cancel: Option<Arc<AtomicBool>>,
}

/// A file of a tree waiting for ClamAV.
struct Pending {
    path: PathBuf,
    rel: String,
    key: ContentKey,
}

impl<'a> Scan<'a> {
    /// Starts a scan of `restore_point` with the given engines (at least one).
    pub fn new(
        restore_point: &str,
        clamav: Option<&'a ClamAvScanner>,
        yara: Option<&'a YaraScanner>,
        cache: &'a mut ScanCache,
    ) -> Result<Self> {
        if clamav.is_none() && yara.is_none() {
            return Err(ScanError::NoEngine {
                what: format!("scan of {restore_point}: no engine chosen (ClamAV or YARA)"),
            });
        }
        let mut report = ScanReport::new(restore_point);
        let clamav = match clamav {
            Some(c) => {
                let fingerprint = c.fingerprint()?;
                let sig = c.signatures()?;
                report.engines.push(EngineRun {
                    name: Engine::Clamav,
                    version: sig.engine.clone(),
                    signatures: sig.describe(),
                    db_version: sig.version(),
                    db_time: sig.time(),
                    fingerprint: fingerprint.clone(),
                    not_scanned: None,
                });
                Some((c, fingerprint))
            }
            None => None,
        };
        if let Some(y) = yara {
            report.engines.push(EngineRun {
                name: Engine::Yara,
                version: YaraScanner::engine_version(),
                signatures: y.name().to_string(),
                db_version: None,
                db_time: None,
                fingerprint: y.fingerprint().to_string(),
                not_scanned: None,
            });
        }
        let yara_local = yara.and_then(|y| y.local_match_len());
        let yara = yara.map(|y| (y.session(), y.fingerprint().to_string()));
        Ok(Scan {
            restore_point: restore_point.to_string(),
            clamav,
            yara,
            yara_local,
            cache,
            report,
            cancel: None,
        })
    }

    /// Records that `engine` (`version`) did not scan, and why: the
    /// report names it, and without a ClamAV scan nothing found is not
    /// clean (see [`ScanReport::finish`]).
    pub fn not_scanned(&mut self, engine: Engine, version: &str, reason: &str) {
        self.report
            .engines
            .push(EngineRun::skipped(engine, version, reason));
    }

    /// Stops scans with [`ScanError::Cancelled`] once `flag` is set.
    pub fn with_cancel(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancel = Some(flag);
        self
    }

    /// The engines in use with the fingerprints of their signatures/rules.
    pub fn engines(&self) -> Vec<(Engine, String)> {
        let mut out = Vec::new();
        if let Some((_, fp)) = &self.clamav {
            out.push((Engine::Clamav, fp.clone()));
        }
        if let Some((_, fp)) = &self.yara {
            out.push((Engine::Yara, fp.clone()));
        }
        out
    }

    fn check_cancel(&self) -> Result<()> {
        match &self.cancel {
            Some(f) if f.load(Ordering::Relaxed) => Err(ScanError::Cancelled {
                what: format!("scan of {}", self.restore_point),
            }),
            _ => Ok(()),
        }
    }

    fn location(&self, disk: &str, volume: &str) -> Location {
        Location {
            restore_point: self.restore_point.clone(),
            disk: disk.to_string(),
            volume: volume.to_string(),
        }
    }

    fn unreadable(&mut self, loc: &Location, path: &str, reason: String) {
        self.report.unreadable.push(Unreadable {
            disk: loc.disk.clone(),
            volume: loc.volume.clone(),
            path: path.to_string(),
            reason,
        });
    }

    /// YARA over `data`, through the cache; returns true on a cache hit.
    fn yara_bytes(
        &mut self,
        loc: &Location,
        path: &str,
        key: &ContentKey,
        data: &[u8],
    ) -> Result<bool> {
        let Some((session, fp)) = self.yara.as_mut() else {
            return Ok(true);
        };
        let (sigs, hit) = match self.cache.get(Engine::Yara, fp, key) {
            Some(s) => (s.to_vec(), true),
            None => {
                let s = session.scan_bytes(path, data)?;
                self.cache.insert(Engine::Yara, fp, key, s.clone());
                (s, false)
            }
        };
        for s in sigs {
            self.report
                .detections
                .push(Detection::new(loc, path, Engine::Yara, &s));
        }
        Ok(hit)
    }

    /// Scans a file read from elsewhere (e.g. the repository) with YARA.
    /// `content` (key from repository chunk digests, and the file size) lets
    /// a cache hit skip reading; else BLAKE3 of the bytes is the key. A read error lists the file as unreadable.
    pub fn scan_item(
        &mut self,
        disk: &str,
        volume: &str,
        path: &str,
        reader: &mut dyn Read,
        content: Option<(ContentKey, u64)>,
    ) -> Result<()> {
        if self.yara.is_none() {
            return Err(ScanError::NoEngine {
                what: format!("scanning item {path} needs YARA rules; ClamAV scans trees on disk"),
            });
        }
        self.check_cancel()?;
        let loc = self.location(disk, volume);
        if let (Some((key, size)), Some((_, fp))) = (&content, &self.yara) {
            if let Some(sigs) = self.cache.get(Engine::Yara, fp, key) {
                for s in sigs {
                    self.report
                        .detections
                        .push(Detection::new(&loc, path, Engine::Yara, s));
                }
                self.count(true, *size);
                return Ok(());
            }
        }
        let mut data = Vec::new();
        if let Err(e) = reader.read_to_end(&mut data) {
            self.unreadable(&loc, path, e.to_string());
            return Ok(());
        }
        let key = match content {
            Some((k, _)) => k,
            None => ContentKey::of_bytes(&data),
        };
        let hit = self.yara_bytes(&loc, path, &key, &data)?;
        self.count(hit, data.len() as u64);
        Ok(())
    }

    fn count(&mut self, skipped: bool, len: u64) {
        if skipped {
            self.report.skipped_unchanged_files += 1;
            self.report.skipped_unchanged_bytes =
                self.report.skipped_unchanged_bytes.saturating_add(len);
        } else {
            self.report.files_scanned += 1;
            self.report.bytes_scanned = self.report.bytes_scanned.saturating_add(len);
        }
    }

    fn count_unread(&mut self, len: u64) {
        self.count(true, len);
        self.report.skipped_unread_files += 1;
        self.report.skipped_unread_bytes = self.report.skipped_unread_bytes.saturating_add(len);
    }

    /// Scans every regular file under `root` (a mounted volume); paths in
    /// the report are relative to `root`, starting with `/`.
    pub fn scan_tree(&mut self, disk: &str, volume: &str, root: &Path) -> Result<()> {
        self.scan_tree_mapped(disk, volume, root, None, None, None)
    }

    /// [`Scan::scan_tree`] over a volume whose place on a restore-point disk
    /// is `chunks`: a file whose extent key (see [`crate::extent_key`]) has
    /// a result for every engine in the cache is counted as skipped without
    /// being read; a file that is read has its results stored under its
    /// extent key too. Files without an extent map are read as usual.
    ///
    /// `base` is the same volume on an older restore point of the VM (same
    /// disk layout): with local YARA rules alone, a changed file whose base
    /// copy was scanned clean has only the windows around its changed
    /// chunks read and scanned (see the module doc).
    ///
    /// `device`, the volume's bytes, lets an ext4 volume be listed and
    /// mapped in userspace (see [`crate::listing`]).
    pub fn scan_tree_mapped(
        &mut self,
        disk: &str,
        volume: &str,
        root: &Path,
        chunks: Option<&VolumeChunks<'_>>,
        base: Option<&VolumeChunks<'_>>,
        device: Option<&VolumeBytes>,
    ) -> Result<()> {
        let loc = self.location(disk, volume);
        let TreeFiles {
            paths,
            mappings,
            errors: dir_errors,
            userspace_files,
        } = list_tree(root, chunks, device, self.cancel.as_deref());
        self.report.files_listed_in_userspace += userspace_files;
        for (dir, e) in dir_errors {
            let rel = rel_path(root, &dir);
            self.unreadable(&loc, &rel, e);
        }
        let mut pending: Vec<Pending> = Vec::new();
        let mut pending_keys: HashMap<ContentKey, ()> = HashMap::new();
        let mut waiting: Vec<(String, ContentKey)> = Vec::new();
        // (extent key, content key) of the files read.
        let mut aliases: Vec<(ContentKey, ContentKey)> = Vec::new();
        let mut windowed: Vec<Windowed> = Vec::new();
        for (i, path) in paths.into_iter().enumerate() {
            self.check_cancel()?;
            let rel = rel_path(root, &path);
            let mut mapped = None;
            match (chunks, mappings.as_ref().and_then(|m| m.get(i))) {
                (_, Some(Mapping::Unopenable(e))) => {
                    self.unreadable(&loc, &rel, e.clone());
                    continue;
                }
                (Some(c), Some(Mapping::Mapped(m))) => {
                    if self.replay_cached(&loc, &rel, &m.key) {
                        self.count_unread(m.size);
                        continue;
                    }
                    if let Some(windows) = base.and_then(|b| self.windows_to_scan(c, b, m)) {
                        windowed.push(Windowed::new(path, rel, m.key.clone(), &m.extents, windows));
                        continue;
                    }
                    mapped = Some(m);
                }
                _ => {}
            }
            let mut file = match File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    self.unreadable(&loc, &rel, e.to_string());
                    continue;
                }
            };
            let extent = mapped.map(|m| m.key.clone());
            let mut data = Vec::new();
            if let Err(e) = file.read_to_end(&mut data) {
                self.unreadable(&loc, &rel, e.to_string());
                continue;
            }
            drop(file);
            let key = ContentKey::of_bytes(&data);
            if let Some(ek) = extent {
                aliases.push((ek, key.clone()));
            }
            let mut skipped = self.yara_bytes(&loc, &rel, &key, &data)?;
            if let Some((_, fp)) = &self.clamav {
                if let Some(sigs) = self.cache.get(Engine::Clamav, fp, &key) {
                    for s in sigs {
                        self.report
                            .detections
                            .push(Detection::new(&loc, &rel, Engine::Clamav, s));
                    }
                } else if pending_keys.contains_key(&key) {
                    waiting.push((rel.clone(), key.clone()));
                } else {
                    pending_keys.insert(key.clone(), ());
                    pending.push(Pending {
                        path,
                        rel: rel.clone(),
                        key: key.clone(),
                    });
                    skipped = false;
                }
            }
            self.count(skipped, data.len() as u64);
        }
        windowed.sort_by_key(|w| w.at);
        read_windows(&windowed, |w, read| {
            self.check_cancel()?;
            match read {
                Ok(buffers) => self.scan_windows(&loc, &w.rel, &w.key, &buffers),
                Err(reason) => {
                    self.unreadable(&loc, &w.rel, reason);
                    Ok(())
                }
            }
        })?;
        self.run_clamav(&loc, root, pending, waiting)?;
        self.store_aliases(&aliases);
        Ok(())
    }

    /// The windows to read of a mapped file whose extent key missed, when
    /// YARA with local rules is the only engine and the file's base copy
    /// (the same extents over `base`'s digests) was scanned clean.
    fn windows_to_scan(
        &self,
        chunks: &VolumeChunks<'_>,
        base: &VolumeChunks<'_>,
        file: &MappedFile,
    ) -> Option<Vec<Range<u64>>> {
        if self.clamav.is_some() {
            return None;
        }
        let max = self.yara_local?;
        let (_, fp) = self.yara.as_ref()?;
        let rebased = chunks.against(base, file.size, &file.extents)?;
        let clean = self
            .cache
            .get(Engine::Yara, fp, &rebased.base_key)?
            .is_empty();
        clean.then(|| windows(&rebased.changed, max, file.size))
    }

    /// Scans the window `buffers` of a file with YARA; the union of the
    /// matches is the file's result, reported at `path` and stored under
    /// its extent key `key`.
    fn scan_windows(
        &mut self,
        loc: &Location,
        path: &str,
        key: &ContentKey,
        buffers: &[Vec<u8>],
    ) -> Result<()> {
        let Some((session, fp)) = self.yara.as_mut() else {
            return Ok(());
        };
        let mut found: Vec<String> = Vec::new();
        let mut read = 0u64;
        for buf in buffers {
            found.extend(session.scan_bytes(path, buf)?);
            read = read.saturating_add(buf.len() as u64);
        }
        found.sort();
        found.dedup();
        let fp = fp.clone();
        for s in &found {
            self.report
                .detections
                .push(Detection::new(loc, path, Engine::Yara, s));
        }
        self.cache.insert(Engine::Yara, &fp, key, found);
        self.count(false, read);
        self.report.window_scanned_files += 1;
        self.report.window_scanned_bytes = self.report.window_scanned_bytes.saturating_add(read);
        Ok(())
    }

    /// When every engine has a cached result for `key`, reports its
    /// detections at `path` and returns true.
    fn replay_cached(&mut self, loc: &Location, path: &str, key: &ContentKey) -> bool {
        let mut found: Vec<(Engine, &[String])> = Vec::new();
        if let Some((_, fp)) = &self.clamav {
            match self.cache.get(Engine::Clamav, fp, key) {
                Some(s) => found.push((Engine::Clamav, s)),
                None => return false,
            }
        }
        if let Some((_, fp)) = &self.yara {
            match self.cache.get(Engine::Yara, fp, key) {
                Some(s) => found.push((Engine::Yara, s)),
                None => return false,
            }
        }
        for (engine, sigs) in found {
            for s in sigs {
                self.report
                    .detections
                    .push(Detection::new(loc, path, engine, s));
            }
        }
        true
    }

    /// Stores each content key's results (every engine that has one) under
    /// its extent key as well.
    fn store_aliases(&mut self, aliases: &[(ContentKey, ContentKey)]) {
        let engines = self.engines();
        for (extent, content) in aliases {
            for (engine, fp) in &engines {
                if let Some(sigs) = self.cache.get(*engine, fp, content) {
                    let sigs = sigs.to_vec();
                    self.cache.insert(*engine, fp, extent, sigs);
                }
            }
        }
    }

    fn run_clamav(
        &mut self,
        loc: &Location,
        root: &Path,
        pending: Vec<Pending>,
        waiting: Vec<(String, ContentKey)>,
    ) -> Result<()> {
        let Some((clam, fp)) = &self.clamav else {
            return Ok(());
        };
        let fp = fp.clone();
        let list: Vec<PathBuf> = pending.iter().map(|p| p.path.clone()).collect();
        self.check_cancel()?;
        let outcome = clam.scan_files(&list)?;
        let mut by_path: HashMap<&Path, &Pending> = HashMap::new();
        for p in &pending {
            by_path.insert(p.path.as_path(), p);
        }
        let mut sigs: HashMap<ContentKey, Vec<String>> = HashMap::new();
        let mut bad: HashMap<ContentKey, String> = HashMap::new();
        for u in &outcome.unreadable {
            match by_path.get(u.path.as_path()) {
                Some(p) => {
                    bad.insert(p.key.clone(), u.reason.clone());
                }
                None => {
                    let rel = rel_path(root, &u.path);
                    self.unreadable(loc, &rel, u.reason.clone());
                }
            }
        }
        for h in &outcome.detections {
            match by_path.get(h.path.as_path()) {
                Some(p) => sigs
                    .entry(p.key.clone())
                    .or_default()
                    .push(h.signature.clone()),
                None => {
                    let rel = rel_path(root, &h.path);
                    self.report.detections.push(Detection::new(
                        loc,
                        &rel,
                        Engine::Clamav,
                        &h.signature,
                    ));
                }
            }
        }
        let all = pending
            .iter()
            .map(|p| (p.rel.clone(), p.key.clone()))
            .chain(waiting);
        for (rel, key) in all {
            if let Some(reason) = bad.get(&key) {
                self.unreadable(loc, &rel, format!("clamav: {reason}"));
                continue;
            }
            let found = sigs.get(&key).cloned().unwrap_or_default();
            for s in &found {
                self.report
                    .detections
                    .push(Detection::new(loc, &rel, Engine::Clamav, s));
            }
        }
        for p in &pending {
            if !bad.contains_key(&p.key) {
                let found = sigs.get(&p.key).cloned().unwrap_or_default();
                self.cache.insert(Engine::Clamav, &fp, &p.key, found);
            }
        }
        Ok(())
    }

    /// Ends the scan: sets the state and returns the report.
    pub fn finish(mut self) -> ScanReport {
        self.report.finish();
        self.report
    }
}

/// `/`-prefixed path of `path` below `root` (lossy UTF-8).
fn rel_path(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let s = rel.to_string_lossy();
    if s.starts_with('/') {
        s.into_owned()
    } else {
        format!("/{s}")
    }
}

#[cfg(all(test, feature = "yara"))]
mod tests {
    use super::*;

    #[test]
    fn a_set_cancel_flag_stops_the_scan_and_engines_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"LIFEBOAT-TEST-MARKER-7f3a").unwrap();
        let yara = YaraScanner::builtin().unwrap();
        let mut cache = ScanCache::in_memory();
        let flag = Arc::new(AtomicBool::new(false));
        let mut scan = Scan::new("vm@1", None, Some(&yara), &mut cache)
            .unwrap()
            .with_cancel(flag.clone());
        assert_eq!(
            scan.engines(),
            vec![(Engine::Yara, yara.fingerprint().to_string())]
        );
        scan.scan_tree("disk0", "disk0p1", dir.path()).unwrap();
        flag.store(true, Ordering::Relaxed);
        let e = scan.scan_tree("disk0", "disk0p1", dir.path()).unwrap_err();
        assert!(matches!(e, ScanError::Cancelled { .. }), "{e:?}");
        assert!(e.to_string().contains("vm@1"), "{e}");
        let report = scan.finish();
        assert_eq!(report.detections.len(), 1);
        assert_eq!(report.detections[0].path, "/a.txt");
    }
}
