//! Restore: copy a restore point's disk (or any disk) into a target.
//!
//! To a file, the target is written as `<name>.lifeboat-partial` and renamed
//! into place only when every chunk was read, authenticated and written, so
//! a failed restore (a missing or corrupt chunk) never leaves a file that
//! looks complete. Raw targets stay sparse: zero chunks and zero 64 KiB runs
//! inside data chunks are not written. A block device is written in place,
//! zeros included.

use crate::parallel::{default_workers, for_each_chunk};
use crate::{is_zero, Error, Progress, Result};
use lifeboat_formats::qcow2::Qcow2Writer;
use lifeboat_vdisk::{ExtentKind, FileDisk, ReadDisk, WriteDisk};
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
                let target = FileDisk::create(&partial, size).map_err(target_err)?;
                let written = copy_disk(source, &target, chunk_size, true, progress)?;
                target.flush().map_err(target_err)?;
                Ok(written)
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
        Vec::new,
        |buf: &mut Vec<u8>, n| {
            let offset = n * cs;
            let len = cs.min(size - offset);
            for e in source.extents(offset, len).map_err(src_err)? {
                if e.kind == ExtentKind::Zero && target_is_zeroed {
                    continue;
                }
                buf.clear();
                buf.resize(e.length as usize, 0);
                if e.kind != ExtentKind::Zero {
                    source.read_at(buf, e.offset).map_err(src_err)?;
                }
                let mut pos = 0usize;
                while pos < buf.len() {
                    let end = (pos + SPARSE_GRANULE).min(buf.len());
                    let piece = &buf[pos..end];
                    if !(target_is_zeroed && is_zero(piece)) {
                        target
                            .write_at(piece, e.offset + pos as u64)
                            .map_err(dst_err)?;
                        written.fetch_add(piece.len() as u64, Ordering::Relaxed);
                    }
                    pos = end;
                }
            }
            progress.advance(len);
            Ok::<(), Error>(())
        },
    )?;
    progress.finish();
    Ok(written.into_inner())
}
