//! Restore: copy a restore point's disk (or any disk) into a target.
//!
//! To a file, the target is written as `<name>.lifeboat-partial` and renamed
//! into place only when every chunk was read, authenticated and written, so
//! a failed restore (a missing or corrupt chunk) never leaves a file that
//! looks complete. Raw targets stay sparse: zero chunks and zero 64 KiB runs
//! inside data chunks are not written. A block device is written in place,
//! zeros included, and flushed before the restore reports success. A file
//! is left to the page cache like `cp`, restic and borg do (run `sync` to
//! wait for the disk); the rename happens only after every byte was written.

use crate::parallel::{default_workers, for_each_chunk};
use crate::{is_zero, Error, Progress, Result};
use lifeboat_formats::qcow2::Qcow2Writer;
use lifeboat_vdisk::{ExtentKind, FileDisk, ReadDisk, WriteDisk, DIRECT_ALIGN};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Granularity at which zero runs inside a data chunk are skipped on a
/// fresh (all-zero) target.
const SPARSE_GRANULE: usize = 64 * 1024;

/// The image format a restore writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreFormat {
    Raw,
    Qcow2,
}

/// What a restore did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RestoreSummary {
    pub path: PathBuf,
    pub size: u64,
    pub bytes_written: u64,
    #[serde(skip)]
    pub elapsed: Duration,
}

/// Restores `source` to the file (or block device) at `path`.
pub fn restore_to_file(
    source: &dyn ReadDisk,
    path: &Path,
    format: RestoreFormat,
    chunk_size: u64,
    progress: &dyn Progress,
) -> Result<RestoreSummary> {
    let started = Instant::now();
    let size = source.size();
    let is_device = std::fs::metadata(path)
        .map(|m| {
            use std::os::unix::fs::FileTypeExt;
            m.file_type().is_block_device()
        })
        .unwrap_or(false);
    let target_err = |e: lifeboat_vdisk::Error| Error::Disk {
        disk: path.display().to_string(),
        source: e,
    };
    if is_device {
        if format != RestoreFormat::Raw {
            return Err(Error::Invalid(format!(
                "{} is a block device: only raw can be written to it",
                path.display()
            )));
        }
        let target = FileDisk::open_rw(path).map_err(target_err)?;
        if target.size() < size {
            return Err(Error::Invalid(format!(
                "{} holds {} bytes, the disk needs {size}",
                path.display(),
                target.size()
            )));
        }
        let written = copy_disk(source, &target, chunk_size, false, progress)?;
        target.flush().map_err(target_err)?;
        return Ok(RestoreSummary {
            path: path.to_path_buf(),
            size,
            bytes_written: written,
            elapsed: started.elapsed(),
        });
    }

    let partial = partial_path(path);
    let result = (|| -> Result<u64> {
        match format {
            RestoreFormat::Raw => {
                let target = FileDisk::create_direct(&partial, size).map_err(target_err)?;
                copy_disk(source, &target, chunk_size, true, progress)
            }
            RestoreFormat::Qcow2 => {
                let target = Qcow2Writer::create(&partial, size).map_err(target_err)?;
                let written = copy_disk(source, &target, chunk_size, true, progress)?;
                target.finish().map_err(target_err)?;
                Ok(written)
            }
        }
    })();
    match result {
        Ok(written) => {
            std::fs::rename(&partial, path).map_err(|e| Error::Target {
                path: path.display().to_string(),
                source: e,
            })?;
            Ok(RestoreSummary {
                path: path.to_path_buf(),
                size,
                bytes_written: written,
                elapsed: started.elapsed(),
            })
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lifeboat-partial");
    path.with_file_name(name)
}

/// Copies every byte of `source` into `target` (same size or larger) in
/// `chunk_size` pieces on all cores. With `target_is_zeroed`, zero pieces
/// are skipped. Returns the bytes written.
pub fn copy_disk(
    source: &dyn ReadDisk,
    target: &dyn WriteDisk,
    chunk_size: u64,
    target_is_zeroed: bool,
    progress: &dyn Progress,
) -> Result<u64> {
    let size = source.size();
    let cs = chunk_size.max(SPARSE_GRANULE as u64);
    let written = AtomicU64::new(0);
    let src_err = |e| Error::Disk {
        disk: source.describe(),
        source: e,
    };
    let dst_err = |e| Error::Disk {
        disk: target.describe(),
        source: e,
    };
    progress.start(&source.describe(), size);
    for_each_chunk(
        size.div_ceil(cs),
        default_workers(),
        || AlignedBuf::new(cs as usize),
        |buf: &mut AlignedBuf, n| {
            let offset = n * cs;
            let len = cs.min(size - offset);
            for e in source.extents(offset, len).map_err(src_err)? {
                if e.kind == ExtentKind::Zero && target_is_zeroed {
                    continue;
                }
                let data = buf.zeroed(e.length as usize);
                if e.kind != ExtentKind::Zero {
                    source.read_at(data, e.offset).map_err(src_err)?;
                }
                for (start, end) in data_runs(data, target_is_zeroed) {
                    target
                        .write_at(&data[start..end], e.offset + start as u64)
                        .map_err(dst_err)?;
                    written.fetch_add((end - start) as u64, Ordering::Relaxed);
                }
            }
            progress.advance(len);
            Ok::<(), Error>(())
        },
    )?;
    progress.finish();
    Ok(written.into_inner())
}

/// The byte ranges of `data` to write: all of it, or with `skip_zeros` the
/// runs of [`SPARSE_GRANULE`] pieces that are not all zero, each run as one
/// range (one large write instead of many small ones: `O_DIRECT` writes
/// wait for the device, so their count matters).
fn data_runs(data: &[u8], skip_zeros: bool) -> Vec<(usize, usize)> {
    if !skip_zeros {
        return vec![(0, data.len())];
    }
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let end = (pos + SPARSE_GRANULE).min(data.len());
        if !is_zero(&data[pos..end]) {
            match runs.last_mut() {
                Some(last) if last.1 == pos => last.1 = end,
                _ => runs.push((pos, end)),
            }
        }
        pos = end;
    }
    runs
}

/// A reusable buffer whose start is aligned for `O_DIRECT` writes
/// ([`DIRECT_ALIGN`]), made without `unsafe` by over-allocating.
struct AlignedBuf {
    bytes: Vec<u8>,
}

impl AlignedBuf {
    fn new(capacity: usize) -> Self {
        AlignedBuf {
            bytes: vec![0; capacity + DIRECT_ALIGN],
        }
    }

    /// An aligned slice of `len` zero bytes.
    fn zeroed(&mut self, len: usize) -> &mut [u8] {
        if self.bytes.len() < len + DIRECT_ALIGN {
            self.bytes.resize(len + DIRECT_ALIGN, 0);
        }
        let start = self.bytes.as_ptr().align_offset(DIRECT_ALIGN);
        let slice = &mut self.bytes[start..start + len];
        slice.fill(0);
        slice
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_runs_join_non_zero_granules_and_skip_zero_ones() {
        let g = SPARSE_GRANULE;
        let mut data = vec![0u8; 5 * g + 100];
        data[1] = 1; // granule 0
        data[g + 5] = 1; // granule 1
        data[3 * g] = 1; // granule 3
        data[5 * g + 99] = 1; // short tail
        assert_eq!(
            data_runs(&data, true),
            vec![(0, 2 * g), (3 * g, 4 * g), (5 * g, 5 * g + 100)]
        );
        assert_eq!(data_runs(&data, false), vec![(0, data.len())]);
        assert!(data_runs(&vec![0u8; 3 * g], true).is_empty());
    }
}
