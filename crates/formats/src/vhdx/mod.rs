//! VHDX reader: [`VhdxDisk`] presents a fixed or dynamic VHDX image as a
//! [`ReadDisk`] ([MS-VHDX]; byte layout in [`layout`], open-time parsing in
//! `header`).
//!
//! ```text
//! virtual offset -> block b = offset / BlockSize
//!   BAT index = b + b / chunk_ratio     (a sector-bitmap entry follows
//!                                        every chunk_ratio payload entries)
//!   entry state NOT_PRESENT/UNDEFINED/ZERO/UNMAPPED -> zeros
//!               FULLY_PRESENT  -> bytes at (entry >> 20) MiB
//!               PARTIALLY_PRESENT -> differencing only: unsupported
//! ```
//!
//! The BAT is not loaded whole: each read fetches the entries of the blocks
//! it touches with one positioned read, so opening a 64 TiB image is cheap
//! and the disk needs no lock. Images with a non-empty log (not closed
//! cleanly) and differencing images are refused: replaying a log means
//! writing the image, and Lifeboat never writes a source image.

mod header;
pub mod layout;

use header::Geometry;
use layout as l;
use lifeboat_vdisk::{check_range, push_merged, Error, Extent, ReadDisk, Result};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Most BAT entries fetched by one positioned read.
const BAT_BATCH: u64 = 8192;

/// A VHDX image opened read-only.
pub struct VhdxDisk {
    path: PathBuf,
    file: File,
    file_size: u64,
    geo: Geometry,
}

/// Where one payload block's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Zero,
    At(u64),
}

impl VhdxDisk {
    /// Opens the VHDX image at `path` read-only.
    pub fn open(path: &Path) -> Result<Self> {
        let what = format!("vhdx {}", path.display());
        let file = File::open(path).map_err(|e| Error::io(&what, 0, e))?;
        let file_size = file.metadata().map_err(|e| Error::io(&what, 0, e))?.len();
        let geo = header::read_geometry(&what, &file, file_size)?;
        Ok(VhdxDisk {
            path: path.to_path_buf(),
            file,
            file_size,
            geo,
        })
    }

    /// Bytes per payload block.
    pub fn block_size(&self) -> u64 {
        self.geo.block_size
    }

    /// The logical sector size the guest sees (512 or 4096).
    pub fn logical_sector_size(&self) -> u32 {
        self.geo.logical_sector_size
    }

    /// Whether the image says its blocks are never unmapped (a fixed VHDX).
    pub fn is_fixed(&self) -> bool {
        self.geo.leave_blocks_allocated
    }

    /// The path the image was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where blocks `first..first+count` (count ≤ [`BAT_BATCH`]) are.
    fn blocks(&self, first: u64, count: u64) -> Result<Vec<Block>> {
        let what = self.describe();
        let ratio = self.geo.chunk_ratio;
        let last = first + count - 1;
        let start = first + first / ratio;
        let end = last + last / ratio + 1;
        if last >= self.geo.data_blocks || end > self.geo.bat_entries {
            return Err(Error::corrupt(
                &what,
                format!(
                    "block {last} lies past the BAT ({} entries)",
                    self.geo.bat_entries
                ),
            ));
        }
        let mut raw = vec![0u8; ((end - start) * 8) as usize];
        header::read_exact(
            &what,
            &self.file,
            self.file_size,
            &mut raw,
            self.geo.bat_offset + start * 8,
            &|| format!("BAT entries of blocks {first} to {last}"),
        )?;
        let mut out = Vec::with_capacity(count as usize);
        for block in first..=last {
            let at = ((block + block / ratio - start) * 8) as usize;
            let mut b = [0u8; 8];
            if let Some(s) = raw.get(at..at + 8) {
                b.copy_from_slice(s);
            }
            out.push(self.decode(block, u64::from_le_bytes(b))?);
        }
        Ok(out)
    }

    fn decode(&self, block: u64, entry: u64) -> Result<Block> {
        let what = || self.describe();
        match entry & l::BAT_STATE_MASK {
            l::PAYLOAD_NOT_PRESENT
            | l::PAYLOAD_UNDEFINED
            | l::PAYLOAD_ZERO
            | l::PAYLOAD_UNMAPPED => Ok(Block::Zero),
            l::PAYLOAD_FULLY_PRESENT => {
                let offset = (entry >> l::BAT_OFFSET_SHIFT) * l::MIB;
                if offset < l::MIB {
                    return Err(Error::corrupt(
                        what(),
                        format!(
                            "block {block} is present at file offset {offset}, inside the headers"
                        ),
                    ));
                }
                Ok(Block::At(offset))
            }
            l::PAYLOAD_PARTIALLY_PRESENT => Err(Error::unsupported(
                what(),
                format!(
                    "block {block} is partially present, which only a differencing VHDX may use"
                ),
            )),
            state => Err(Error::corrupt(
                what(),
                format!("block {block} has an unknown BAT state {state}"),
            )),
        }
    }
}

impl ReadDisk for VhdxDisk {
    fn size(&self) -> u64 {
        self.geo.disk_size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(
            &|| self.describe(),
            offset,
            buf.len() as u64,
            self.geo.disk_size,
        )?;
        if buf.is_empty() {
            return Ok(());
        }
        let bs = self.geo.block_size;
        let first = offset / bs;
        let last = (offset + buf.len() as u64 - 1) / bs;
        let mut done = 0usize;
        let mut batch_start = first;
        while batch_start <= last {
            let count = (last - batch_start + 1).min(BAT_BATCH);
            for (i, block) in self.blocks(batch_start, count)?.into_iter().enumerate() {
                let index = batch_start + i as u64;
                let pos = offset + done as u64;
                let within = pos - index * bs;
                let n = ((bs - within) as usize).min(buf.len() - done);
                let out = &mut buf[done..done + n];
                match block {
                    Block::Zero => out.fill(0),
                    Block::At(at) => header::read_exact(
                        &self.describe(),
                        &self.file,
                        self.file_size,
                        out,
                        at + within,
                        &|| format!("data of block {index}"),
                    )?,
                }
                done += n;
            }
            batch_start += count;
        }
        Ok(())
    }

    fn extents(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        let end = offset.saturating_add(len).min(self.geo.disk_size);
        let mut list = Vec::new();
        if end <= offset {
            return Ok(list);
        }
        let bs = self.geo.block_size;
        let last = (end - 1) / bs;
        let mut batch_start = offset / bs;
        while batch_start <= last {
            let count = (last - batch_start + 1).min(BAT_BATCH);
            for (i, block) in self.blocks(batch_start, count)?.into_iter().enumerate() {
                let index = batch_start + i as u64;
                let from = (index * bs).max(offset);
                let to = ((index + 1) * bs).min(end);
                let e = match block {
                    Block::Zero => Extent::zero(from, to - from),
                    Block::At(_) => Extent::data(from, to - from),
                };
                push_merged(&mut list, e);
            }
            batch_start += count;
        }
        Ok(list)
    }

    fn describe(&self) -> String {
        format!("vhdx {}", self.path.display())
    }
}

/// The factory's entry point (see `crate::detect`).
pub(crate) fn open(path: &Path) -> Result<Arc<dyn ReadDisk>> {
    Ok(Arc::new(VhdxDisk::open(path)?))
}
