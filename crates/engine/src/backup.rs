//! Backup: read each disk of a VM in chunk-aligned pieces, skip what reads
//! as zero, store new chunks, and commit one restore point.
//!
//! Every restore point is logically full: the index lists a digest for every
//! chunk of the disk. What is already in the repository (from an earlier
//! backup of this or any other disk) is only marked live, never rewritten, so
//! a re-backup stores only new chunks.

use crate::parallel::{default_workers, for_each_chunk};
use crate::target::ChunkSink;
use crate::{is_zero, Error, Progress, Result};
use lifeboat_formats::{ChosenBy, OpenOptions};
use lifeboat_repo::{
    Consistency, Digest, DiskIndex, DiskStats, FormatChosenBy, LiveRead, Manifest, NewDisk,
    Repository, SourceFormat, Stored,
};
use lifeboat_vdisk::{ExtentKind, ReadDisk};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One disk of a VM to back up.
///
/// An image file comes in through [`DiskSource::open_file`], which chooses
/// its format, follows only allowed backing files and records both in the
/// restore point. Any other source (an NBD export, a live VM's disk, a
/// restore point) comes in already opened through [`DiskSource::from_disk`]
/// and is never probed: no header it holds is ever interpreted.
pub struct DiskSource {
    /// The disk's name inside the restore point (`disk0`).
    pub name: String,
    /// The opened disk.
    pub disk: Arc<dyn ReadDisk>,
    /// How an image file was read (`None`: not an image file).
    pub format: Option<SourceFormat>,
    /// An incremental read: what the disk's previous restore point holds
    /// and what changed since (`None`: read the whole disk).
    pub base: Option<IncrementalBase>,
    /// How a running VM's disk is read, recorded in the restore point.
    pub live: Option<LiveRead>,
    /// Worker threads for this disk (`None`: [`default_workers`]). A disk
    /// whose reads wait on a server (a running VM's NBD export) wants
    /// more reads in flight than there are cores, so the server works
    /// while the workers hash, compress and encrypt.
    pub workers: Option<usize>,
}

/// What an incremental backup of a disk starts from: the disk's index in
/// the previous restore point and the byte ranges written since (from a
/// dirty bitmap). A chunk that no range touches takes the previous digest
/// without being read (its chunk is marked live for gc; a chunk gone from
/// the repository, e.g. quarantined, is read after all). Used only when the
/// index has the disk's size and the repository's chunk size.
#[derive(Debug, Clone)]
pub struct IncrementalBase {
    pub index: DiskIndex,
    /// `(offset, length)` ranges written since the previous restore point.
    pub changed: Vec<(u64, u64)>,
}

impl IncrementalBase {
    /// Whether any changed range touches `[offset, offset + len)`.
    fn touches(&self, offset: u64, len: u64) -> bool {
        let end = offset + len;
        // Ranges are sorted: the first range ending after `offset` decides.
        let i = self.changed.partition_point(|&(o, l)| o + l <= offset);
        self.changed.get(i).is_some_and(|&(o, _)| o < end)
    }
}

impl DiskSource {
    /// A disk that is not an image file (read as it is, never probed).
    pub fn from_disk(name: impl Into<String>, disk: Arc<dyn ReadDisk>) -> Self {
        DiskSource {
            name: name.into(),
            disk,
            format: None,
            base: None,
            live: None,
            workers: None,
        }
    }

    /// Opens the image file `path` as disk `name` the way `options` say
    /// (see [`lifeboat_formats::open_image_with`]). Returns the source and,
    /// when the file's first bytes look like another format than the one it
    /// is read as, a warning (also logged) for the user.
    pub fn open_file(
        name: impl Into<String>,
        path: &Path,
        options: &OpenOptions,
    ) -> Result<(Self, Option<String>)> {
        let name = name.into();
        let opened =
            lifeboat_formats::open_image_with(path, options).map_err(|source| Error::Disk {
                disk: name.clone(),
                source,
            })?;
        let warning = opened.mismatch(path);
        if let Some(w) = &warning {
            tracing::warn!(disk = %name, "{w}");
        }
        let chosen_by = match opened.chosen_by {
            ChosenBy::Given => FormatChosenBy::Given,
            ChosenBy::BlockDevice => FormatChosenBy::BlockDevice,
            ChosenBy::FileName => FormatChosenBy::FileName,
            ChosenBy::Content => FormatChosenBy::Content,
        };
        let format = SourceFormat {
            format: opened.format.name().to_string(),
            chosen_by,
            content_looks_like: (opened.content != opened.format)
                .then(|| opened.content.name().to_string()),
            followed: opened
                .followed
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
        };
        let source = DiskSource {
            name,
            disk: opened.disk,
            format: Some(format),
            base: None,
            live: None,
            workers: None,
        };
        Ok((source, warning))
    }
}

/// What a backup did.
#[derive(Debug)]
pub struct BackupSummary {
    pub manifest: Manifest,
    pub elapsed: Duration,
}

/// Backs up `sources` as one restore point of `vm`.
pub fn backup_vm(
    repo: &Repository,
    vm: &str,
    sources: &[DiskSource],
    progress: &dyn Progress,
) -> Result<BackupSummary> {
    backup_vm_to(repo.begin_backup()?, vm, sources, None, progress)
}

/// [`backup_vm`] of a running VM's point in time: the restore point records
/// `consistency` (how the guest was quiesced for it).
pub fn backup_vm_consistent(
    repo: &Repository,
    vm: &str,
    sources: &[DiskSource],
    consistency: Consistency,
    progress: &dyn Progress,
) -> Result<BackupSummary> {
    backup_vm_to(
        repo.begin_backup()?,
        vm,
        sources,
        Some(consistency),
        progress,
    )
}

/// Backs up `sources` through `sink` (a started backup of a local
/// repository, or a proxy's upload) as one restore point of `vm`,
/// recording `consistency` when given.
pub fn backup_vm_to<S: ChunkSink>(
    sink: S,
    vm: &str,
    sources: &[DiskSource],
    consistency: Option<Consistency>,
    progress: &dyn Progress,
) -> Result<BackupSummary> {
    let started = Instant::now();
    if sources.is_empty() {
        return Err(Error::Invalid(format!("backup of {vm}: no disk given")));
    }
    for (i, s) in sources.iter().enumerate() {
        if sources[..i].iter().any(|o| o.name == s.name) {
            return Err(Error::Invalid(format!(
                "backup of {vm}: disk name {} given twice",
                s.name
            )));
        }
    }
    let mut disks = Vec::with_capacity(sources.len());
    for source in sources {
        let (index, stats) = backup_disk(&sink, source, progress)?;
        disks.push(NewDisk {
            name: source.name.clone(),
            source: source.disk.describe(),
            index,
            stats,
            format: source.format.clone(),
            live: source.live.clone(),
        });
    }
    let manifest = sink.commit(vm, disks, consistency)?;
    Ok(BackupSummary {
        manifest,
        elapsed: started.elapsed(),
    })
}

#[derive(Default)]
struct Counters {
    bytes_read: AtomicU64,
    data_chunks: AtomicU64,
    zero_chunks: AtomicU64,
    new_chunks: AtomicU64,
    new_stored_bytes: AtomicU64,
}

fn backup_disk<S: ChunkSink>(
    sink: &S,
    source: &DiskSource,
    progress: &dyn Progress,
) -> Result<(DiskIndex, DiskStats)> {
    let disk = source.disk.as_ref();
    let chunk_size = sink.chunk_size();
    let cs = u64::from(chunk_size);
    let size = disk.size();
    let count = size.div_ceil(cs);
    let digests: Mutex<Vec<Option<Digest>>> = Mutex::new(vec![None; count as usize]);
    let counters = Counters::default();
    // The previous index applies only to a disk of the same geometry.
    let base = source
        .base
        .as_ref()
        .filter(|b| b.index.chunk_size == chunk_size && b.index.disk_size == size);
    let disk_error = |e| Error::Disk {
        disk: source.name.clone(),
        source: e,
    };
    progress.start(&source.name, size);
    for_each_chunk(
        count,
        source.workers.unwrap_or_else(default_workers),
        || Vec::with_capacity(chunk_size as usize),
        |buf: &mut Vec<u8>, n| {
            if progress.cancelled() {
                return Err(Error::Cancelled);
            }
            let offset = n * cs;
            let len = cs.min(size - offset);
            if let Some(previous) = base.and_then(|b| unchanged_chunk(b, n, offset, len)) {
                let kept = match previous {
                    None => true,
                    Some(d) => sink.reuse_chunk(&d)?,
                };
                if kept {
                    let counter = if previous.is_some() {
                        &counters.data_chunks
                    } else {
                        &counters.zero_chunks
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    digests.lock().unwrap_or_else(|p| p.into_inner())[n as usize] = previous;
                    progress.advance(len);
                    return Ok(());
                }
            }
            let digest = read_chunk(disk, offset, len, buf, &counters).map_err(disk_error)?;
            let digest = match digest {
                None => {
                    counters.zero_chunks.fetch_add(1, Ordering::Relaxed);
                    None
                }
                Some(()) => {
                    let d = sink.digest(buf);
                    counters.data_chunks.fetch_add(1, Ordering::Relaxed);
                    if let Stored::New { stored_bytes } = sink.store_chunk(&d, buf)? {
                        counters.new_chunks.fetch_add(1, Ordering::Relaxed);
                        counters
                            .new_stored_bytes
                            .fetch_add(stored_bytes, Ordering::Relaxed);
                    }
                    Some(d)
                }
            };
            digests.lock().unwrap_or_else(|p| p.into_inner())[n as usize] = digest;
            progress.advance(len);
            Ok::<(), Error>(())
        },
    )?;
    progress.finish();
    let index = DiskIndex {
        chunk_size,
        disk_size: size,
        digests: digests.into_inner().unwrap_or_else(|p| p.into_inner()),
    };
    let stats = DiskStats {
        bytes_read: counters.bytes_read.into_inner(),
        data_chunks: counters.data_chunks.into_inner(),
        zero_chunks: counters.zero_chunks.into_inner(),
        new_chunks: counters.new_chunks.into_inner(),
        new_stored_bytes: counters.new_stored_bytes.into_inner(),
    };
    Ok((index, stats))
}

/// The previous digest of chunk `n` (`Some(None)`: it was all zeros) when
/// no changed range touches it; `None` when it must be read.
fn unchanged_chunk(
    base: &IncrementalBase,
    n: u64,
    offset: u64,
    len: u64,
) -> Option<Option<Digest>> {
    if base.touches(offset, len) {
        return None;
    }
    base.index.digests.get(usize::try_from(n).ok()?).copied()
}

/// Reads the chunk at `offset` into `buf`, reading only the data extents.
/// Returns `None` when the chunk reads as zeros (nothing to store).
///
/// `buf` keeps its length from chunk to chunk: every byte is either read
/// or zeroed below, so it is not cleared first (clearing 4 MiB per chunk
/// was ~1% of a backup's CPU).
fn read_chunk(
    disk: &dyn ReadDisk,
    offset: u64,
    len: u64,
    buf: &mut Vec<u8>,
    counters: &Counters,
) -> lifeboat_vdisk::Result<Option<()>> {
    let extents = disk.extents(offset, len)?;
    if extents.iter().all(|e| e.kind == ExtentKind::Zero) {
        return Ok(None);
    }
    let bad = |detail: String| lifeboat_vdisk::Error::invalid(disk.describe(), detail);
    buf.resize(len as usize, 0);
    let mut pos = 0u64;
    for e in &extents {
        let end = pos.checked_add(e.length);
        let piece = (e.offset.checked_sub(offset) == Some(pos))
            .then_some(end)
            .flatten()
            .and_then(|end| buf.get_mut(usize::try_from(pos).ok()?..usize::try_from(end).ok()?))
            .ok_or_else(|| {
                bad(format!(
                    "extent {}+{} does not continue the extents of {offset}+{len}",
                    e.offset, e.length
                ))
            })?;
        match e.kind {
            ExtentKind::Zero => piece.fill(0),
            _ => {
                disk.read_at(piece, e.offset)?;
                counters.bytes_read.fetch_add(e.length, Ordering::Relaxed);
            }
        }
        pos += e.length;
    }
    if pos != len {
        return Err(bad(format!("extents of {offset}+{len} cover {pos} bytes")));
    }
    Ok(if is_zero(buf) { None } else { Some(()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_vdisk::Extent;

    /// A disk whose extents alternate data and zero every 4 KiB, with
    /// non-zero bytes under the zero extents (which must not be read).
    struct Striped {
        size: u64,
    }

    impl ReadDisk for Striped {
        fn size(&self) -> u64 {
            self.size
        }
        fn read_at(&self, buf: &mut [u8], offset: u64) -> lifeboat_vdisk::Result<()> {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = ((offset + i as u64) % 251 + 1) as u8;
            }
            Ok(())
        }
        fn extents(&self, offset: u64, len: u64) -> lifeboat_vdisk::Result<Vec<Extent>> {
            let mut v = Vec::new();
            let mut pos = offset;
            while pos < offset + len {
                let end = ((pos / 4096 + 1) * 4096).min(offset + len);
                let kind = if (pos / 4096).is_multiple_of(2) {
                    ExtentKind::Data
                } else {
                    ExtentKind::Zero
                };
                v.push(Extent {
                    offset: pos,
                    length: end - pos,
                    kind,
                });
                pos = end;
            }
            Ok(v)
        }
        fn describe(&self) -> String {
            "striped test disk".into()
        }
    }

    /// Says "cancelled" once `after` chunks are done.
    struct CancelAfter {
        after: u64,
        done: AtomicU64,
    }

    impl Progress for CancelAfter {
        fn start(&self, _label: &str, _total: u64) {}
        fn advance(&self, _bytes: u64) {
            self.done.fetch_add(1, Ordering::Relaxed);
        }
        fn finish(&self) {}
        fn cancelled(&self) -> bool {
            self.done.load(Ordering::Relaxed) >= self.after
        }
    }

    #[test]
    fn a_cancelled_backup_stops_and_leaves_no_restore_point() {
        let dir = tempfile::tempdir().unwrap();
        let repo = lifeboat_testsupport::repo::init_repo(&dir.path().join("r"), None, 16_384);
        let source = DiskSource {
            name: "disk0".into(),
            disk: Arc::new(Striped { size: 64 * 16_384 }),
            format: None,
            base: None,
            live: None,
            workers: Some(1),
        };
        let progress = CancelAfter {
            after: 3,
            done: AtomicU64::new(0),
        };
        let e = backup_vm(&repo, "web01", std::slice::from_ref(&source), &progress).unwrap_err();
        assert!(matches!(e, Error::Cancelled), "{e}");
        assert_eq!(progress.done.load(Ordering::Relaxed), 3, "stopped at once");
        assert!(repo.list(None).unwrap().is_empty());
    }

    #[test]
    fn reused_buffer_holds_exactly_the_chunk_each_time() {
        let disk = Striped { size: 40_000 };
        let counters = Counters::default();
        let mut buf = vec![0xAA; 16_384];
        // A full chunk then a short last one, into the same (dirty) buffer.
        for (offset, len) in [(0u64, 16_384u64), (32_768, 7_232), (16_384, 16_384)] {
            assert!(read_chunk(&disk, offset, len, &mut buf, &counters)
                .unwrap()
                .is_some());
            assert_eq!(buf.len() as u64, len);
            for (i, &b) in buf.iter().enumerate() {
                let at = offset + i as u64;
                let want = if (at / 4096).is_multiple_of(2) {
                    (at % 251 + 1) as u8
                } else {
                    0
                };
                assert_eq!(b, want, "byte {at}");
            }
        }
    }
}
