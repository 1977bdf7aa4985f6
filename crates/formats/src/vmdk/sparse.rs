//! One hosted sparse extent (a file starting with "KDMV"): header, grain
//! directory, grain tables, plain and compressed grains.
//!
//! ```text
//! virtual offset -> grain = offset / grainSize
//!   GD[grain / numGTEsPerGT]  = sector of a grain table (0: none allocated)
//!   GT[grain % numGTEsPerGT]  = sector of the grain (0: unallocated, 1: zero grain)
//!   compressed extents: the grain starts with a marker {lba u64, size u32}
//!   followed by `size` bytes of zlib data inflating to one grain.
//! ```
//!
//! A grain table entry (or directory entry) of 1 reads as zeros whether or
//! not the header sets the zeroed-grain flag: sector 1 always holds
//! metadata (the descriptor or a grain directory), never a grain or a
//! grain table. Without parent support an unallocated grain also reads as
//! zeros.
//!
//! The grain directory is read at open; grain tables are read on demand and
//! kept in a bounded cache; the last inflated grain is kept so that small
//! sequential reads of a compressed extent inflate each grain once. All
//! state is behind mutexes and every read is positioned, so one extent is
//! shared by many threads.

use super::layout::{self, SparseHeader, HEADER_SIZE, SECTOR};
use lifeboat_vdisk::{push_merged, Error, Extent, Result};
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Grain tables kept in memory per extent before the cache is emptied.
const GT_CACHE_TABLES: usize = 1024;

/// Where a grain's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grain {
    /// Not allocated (no parent is supported, so zeros) or an explicit zero grain.
    Zero,
    /// At this sector of the file.
    At(u64),
}

/// A hosted sparse extent file.
pub(crate) struct SparseExtent {
    path: PathBuf,
    file: File,
    file_size: u64,
    header: SparseHeader,
    gd: Vec<u32>,
    gt_cache: Mutex<HashMap<u64, Arc<Vec<u32>>>>,
    last_grain: Mutex<Option<(u64, Arc<Vec<u8>>)>>,
}

pub(crate) use crate::fileio::read_exact;

impl SparseExtent {
    /// Opens and checks the sparse extent at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let what = format!("vmdk sparse extent {}", path.display());
        let file = File::open(path).map_err(|e| Error::io(&what, 0, e))?;
        let file_size = file.metadata().map_err(|e| Error::io(&what, 0, e))?.len();
        if file_size < HEADER_SIZE as u64 {
            return Err(Error::corrupt(
                &what,
                format!("truncated header: the file holds {file_size} bytes, the header needs {HEADER_SIZE}"),
            ));
        }
        let mut sector = [0u8; HEADER_SIZE];
        read_exact(&what, &file, file_size, &mut sector, 0, &|| "header".into())?;
        let mut header = SparseHeader::parse(&what, &sector)?;
        if header.gd_offset == layout::GD_AT_END {
            header = read_footer(&what, &file, file_size)?;
        }
        header.validate(&what)?;
        let gd = read_gd(&what, &file, file_size, &header)?;
        Ok(SparseExtent {
            path: path.to_path_buf(),
            file,
            file_size,
            header,
            gd,
            gt_cache: Mutex::new(HashMap::new()),
            last_grain: Mutex::new(None),
        })
    }

    fn what(&self) -> String {
        format!("vmdk sparse extent {}", self.path.display())
    }

    /// Virtual size of the extent in sectors.
    pub(crate) fn capacity_sectors(&self) -> u64 {
        self.header.capacity
    }

    /// The embedded descriptor's text, if the header points at one.
    pub(crate) fn embedded_descriptor(&self) -> Result<Option<String>> {
        let h = &self.header;
        if h.descriptor_offset == 0 || h.descriptor_size == 0 {
            return Ok(None);
        }
        let what = self.what();
        let bad = || {
            Error::corrupt(
                &what,
                format!(
                    "absurd embedded descriptor: {} sectors at sector {}",
                    h.descriptor_size, h.descriptor_offset
                ),
            )
        };
        let len = h.descriptor_size.checked_mul(SECTOR).ok_or_else(bad)?;
        let offset = h.descriptor_offset.checked_mul(SECTOR).ok_or_else(bad)?;
        if len > layout::MAX_DESCRIPTOR_BYTES {
            return Err(bad());
        }
        let mut buf = vec![0u8; len as usize];
        read_exact(&what, &self.file, self.file_size, &mut buf, offset, &|| {
            "embedded descriptor".into()
        })?;
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        buf.truncate(end);
        Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
    }

    fn grain_bytes(&self) -> u64 {
        self.header.grain_bytes()
    }

    /// The grain table of grain directory entry `index`, or `None` when the
    /// entry allocates no table.
    fn grain_table(&self, index: u64) -> Result<Option<Arc<Vec<u32>>>> {
        let gde = usize::try_from(index)
            .ok()
            .and_then(|i| self.gd.get(i).copied())
            .unwrap_or(0);
        if gde == layout::GTE_UNALLOCATED || gde == layout::GTE_ZEROED {
            return Ok(None);
        }
        if let Some(t) = self
            .gt_cache
            .lock()
            .map_err(|_| self.poisoned())?
            .get(&index)
        {
            return Ok(Some(t.clone()));
        }
        let n = self.header.gtes_per_gt as usize;
        let mut raw = vec![0u8; n * layout::GTE_SIZE as usize];
        let offset = u64::from(gde) * SECTOR;
        read_exact(
            &self.what(),
            &self.file,
            self.file_size,
            &mut raw,
            offset,
            &|| format!("grain table {index}"),
        )?;
        let table: Arc<Vec<u32>> = Arc::new(
            raw.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        );
        let mut cache = self.gt_cache.lock().map_err(|_| self.poisoned())?;
        if cache.len() >= GT_CACHE_TABLES {
            cache.clear();
        }
        cache.insert(index, table.clone());
        Ok(Some(table))
    }

    fn poisoned(&self) -> Error {
        Error::invalid(self.what(), "a thread panicked while holding a cache lock")
    }

    fn grain(&self, grain: u64) -> Result<Grain> {
        let per = u64::from(self.header.gtes_per_gt);
        let Some(table) = self.grain_table(grain / per)? else {
            return Ok(Grain::Zero);
        };
        let gte = usize::try_from(grain % per)
            .ok()
            .and_then(|i| table.get(i).copied())
            .unwrap_or(0);
        Ok(match gte {
            layout::GTE_UNALLOCATED | layout::GTE_ZEROED => Grain::Zero,
            sector => Grain::At(u64::from(sector)),
        })
    }

    fn compressed(&self) -> bool {
        self.header.flags & layout::FLAG_COMPRESSED != 0
    }

    /// Reads `buf.len()` bytes at `offset` of the extent (inside its capacity).
    pub(crate) fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let gb = self.grain_bytes();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let grain = pos / gb;
            let within = pos % gb;
            let n = ((gb - within) as usize).min(buf.len() - done);
            let out = &mut buf[done..done + n];
            match self.grain(grain)? {
                Grain::Zero => out.fill(0),
                Grain::At(sector) if self.compressed() => {
                    let data = self.inflate_grain(grain, sector)?;
                    let start = within as usize;
                    match data.get(start..start + n) {
                        Some(src) => out.copy_from_slice(src),
                        None => {
                            return Err(Error::corrupt(
                                self.what(),
                                format!("compressed grain {grain} at sector {sector} inflates to only {} bytes", data.len()),
                            ))
                        }
                    }
                }
                Grain::At(sector) => {
                    let at = sector
                        .checked_mul(SECTOR)
                        .and_then(|o| o.checked_add(within))
                        .ok_or_else(|| {
                            Error::corrupt(
                                self.what(),
                                format!("grain {grain} points at absurd sector {sector}"),
                            )
                        })?;
                    read_exact(&self.what(), &self.file, self.file_size, out, at, &|| {
                        format!("grain {grain} (sector {sector})")
                    })?;
                }
            }
            done += n;
        }
        Ok(())
    }

    /// Inflates compressed grain `grain` stored at `sector`; the result
    /// covers the grain up to the extent's capacity.
    fn inflate_grain(&self, grain: u64, sector: u64) -> Result<Arc<Vec<u8>>> {
        if let Some((g, data)) = &*self.last_grain.lock().map_err(|_| self.poisoned())? {
            if *g == grain {
                return Ok(data.clone());
            }
        }
        let what = self.what();
        let gb = self.grain_bytes();
        let offset = sector.saturating_mul(SECTOR);
        let markers = self.header.flags & layout::FLAG_MARKERS != 0;
        // zlib never grows data by more than a few bytes per 16 KiB block.
        let max_stream = gb + gb / 8 + 4096;
        let (data_offset, data_len) = if markers {
            let mut marker = [0u8; layout::GRAIN_MARKER_SIZE];
            read_exact(
                &what,
                &self.file,
                self.file_size,
                &mut marker,
                offset,
                &|| format!("marker of compressed grain {grain}"),
            )?;
            let lba = u64::from_le_bytes([
                marker[0], marker[1], marker[2], marker[3], marker[4], marker[5], marker[6],
                marker[7],
            ]);
            let size = u64::from(u32::from_le_bytes([
                marker[8], marker[9], marker[10], marker[11],
            ]));
            let expected = grain * self.header.grain_sectors;
            if lba != expected {
                return Err(Error::corrupt(
                    what,
                    format!("compressed grain {grain} at offset {offset} is marked for sector {lba}, expected {expected}"),
                ));
            }
            if size == 0 || size > max_stream {
                return Err(Error::corrupt(
                    what,
                    format!("compressed grain {grain} at offset {offset} claims an absurd size of {size} bytes"),
                ));
            }
            (offset + layout::GRAIN_MARKER_SIZE as u64, size)
        } else {
            (
                offset,
                max_stream.min(self.file_size.saturating_sub(offset)),
            )
        };
        let mut stream = vec![0u8; data_len as usize];
        read_exact(
            &what,
            &self.file,
            self.file_size,
            &mut stream,
            data_offset,
            &|| format!("compressed grain {grain}"),
        )?;
        let mut data = Vec::with_capacity(gb as usize);
        flate2::read::ZlibDecoder::new(stream.as_slice())
            .take(gb + 1)
            .read_to_end(&mut data)
            .map_err(|e| {
                Error::corrupt(
                    &what,
                    format!("compressed grain {grain} at offset {offset}: inflate failed: {e}"),
                )
            })?;
        let needed = (self.header.capacity * SECTOR)
            .saturating_sub(grain * gb)
            .min(gb);
        if data.len() as u64 > gb || (data.len() as u64) < needed {
            return Err(Error::corrupt(
                what,
                format!(
                    "compressed grain {grain} at offset {offset} inflates to {} bytes, expected {gb}",
                    data.len()
                ),
            ));
        }
        data.resize(gb as usize, 0);
        let data = Arc::new(data);
        *self.last_grain.lock().map_err(|_| self.poisoned())? = Some((grain, data.clone()));
        Ok(data)
    }

    /// Appends the extents of `offset..offset+len` (inside the capacity) to
    /// `list`, shifted by `base` (the extent's start in the disk).
    pub(crate) fn extents(
        &self,
        offset: u64,
        len: u64,
        base: u64,
        list: &mut Vec<Extent>,
    ) -> Result<()> {
        let gb = self.grain_bytes();
        let per = u64::from(self.header.gtes_per_gt);
        let end = offset + len;
        let mut pos = offset;
        while pos < end {
            let grain = pos / gb;
            let index = grain / per;
            let table = self.grain_table(index)?;
            // One grain table's span, or what is left of the request in it.
            let span_end = (index + 1).saturating_mul(per).saturating_mul(gb).min(end);
            let Some(table) = table else {
                push_merged(list, Extent::zero(base + pos, span_end - pos));
                pos = span_end;
                continue;
            };
            while pos < span_end {
                let grain = pos / gb;
                let gte = usize::try_from(grain % per)
                    .ok()
                    .and_then(|i| table.get(i).copied())
                    .unwrap_or(0);
                let stop = ((grain + 1) * gb).min(span_end);
                let e = if gte == layout::GTE_UNALLOCATED || gte == layout::GTE_ZEROED {
                    Extent::zero(base + pos, stop - pos)
                } else {
                    Extent::data(base + pos, stop - pos)
                };
                push_merged(list, e);
                pos = stop;
            }
        }
        Ok(())
    }
}

/// Reads the footer header of a stream-optimized extent whose header says
/// the grain directory is at the end.
fn read_footer(what: &str, file: &File, file_size: u64) -> Result<SparseHeader> {
    let Some(at) = file_size.checked_sub(layout::FOOTER_FROM_END) else {
        return Err(Error::corrupt(what, "the header says the grain directory is at the end, but the file is too short for a footer"));
    };
    if at < HEADER_SIZE as u64 {
        return Err(Error::corrupt(what, "the header says the grain directory is at the end, but the file is too short for a footer"));
    }
    let mut sector = [0u8; HEADER_SIZE];
    read_exact(what, file, file_size, &mut sector, at, &|| "footer".into())?;
    let footer = SparseHeader::parse(what, &sector).map_err(|e| {
        Error::corrupt(
            what,
            format!(
                "footer at offset {at} (the header says the grain directory is at the end): {e}"
            ),
        )
    })?;
    if footer.gd_offset == layout::GD_AT_END {
        return Err(Error::corrupt(
            what,
            format!("the footer at offset {at} also says the grain directory is at the end"),
        ));
    }
    Ok(footer)
}

/// Reads and checks the grain directory.
fn read_gd(what: &str, file: &File, file_size: u64, h: &SparseHeader) -> Result<Vec<u32>> {
    let entries = h.gd_entries();
    let bytes = entries * layout::GTE_SIZE;
    let offset = h.gd_offset.saturating_mul(SECTOR);
    if entries == 0 {
        return Ok(Vec::new());
    }
    if h.gd_offset == 0 {
        return Err(Error::corrupt(
            what,
            "the header has no grain directory (gdOffset is 0)",
        ));
    }
    if offset.checked_add(bytes).is_none_or(|e| e > file_size) {
        return Err(Error::corrupt(
            what,
            format!(
                "the grain directory ({entries} entries at sector {}) reaches past the end of the file ({file_size} bytes)",
                h.gd_offset
            ),
        ));
    }
    let mut raw = vec![0u8; bytes as usize];
    read_exact(what, file, file_size, &mut raw, offset, &|| {
        "grain directory".into()
    })?;
    let gd: Vec<u32> = raw
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let table_bytes = u64::from(h.gtes_per_gt) * layout::GTE_SIZE;
    for (i, &gde) in gd.iter().enumerate() {
        if gde == layout::GTE_UNALLOCATED || gde == layout::GTE_ZEROED {
            continue;
        }
        let at = u64::from(gde) * SECTOR;
        if at + table_bytes > file_size {
            return Err(Error::corrupt(
                what,
                format!("grain directory entry {i} points at a grain table at offset {at}, past the end of the file ({file_size} bytes)"),
            ));
        }
    }
    Ok(gd)
}
