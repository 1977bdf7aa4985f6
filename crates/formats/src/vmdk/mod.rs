//! VMDK reader: [`VmdkDisk`] presents a VMDK image (one or several extents)
//! as one [`ReadDisk`].
//!
//! Supported layouts (VMware "Virtual Disk Format 5.0"):
//!
//! | createType | files | how |
//! |---|---|---|
//! | monolithicSparse | one KDMV file, descriptor embedded | [`sparse`] extent |
//! | streamOptimized | one KDMV file, compressed grains, markers, maybe a footer | [`sparse`] extent |
//! | monolithicFlat, vmfs | text descriptor + one raw file | `FileDisk` |
//! | twoGbMaxExtentSparse | text descriptor + several KDMV files | concatenated sparse extents |
//! | twoGbMaxExtentFlat | text descriptor + several raw files | concatenated `FileDisk`s |
//!
//! ```text
//! VmdkDisk
//!   pieces: [start, len) -> Sparse(SparseExtent) | Flat(FileDisk, offset) | Zero
//!   read_at / extents split a request at piece boundaries
//! ```
//!
//! Extent files are resolved relative to the descriptor's directory and
//! opened only when the caller allows them ([`crate::follow`]): a
//! descriptor is text anyone can write, also into the first sector of a raw
//! disk. Each extent is opened as the type its line declares (sparse or
//! flat), never by probing its content. Delta links (a parent disk) and the
//! ESX-only formats (COWD/vmfsSparse, seSparse, raw device maps) are refused
//! as unsupported. The image is never written.

pub(crate) mod descriptor;
pub mod layout;
mod sparse;

use crate::follow::{AllowedPaths, Chain, LinkKind};
use descriptor::{Descriptor, ExtentType};
use lifeboat_vdisk::{check_range, push_merged, Error, Extent, FileDisk, ReadDisk, Result};
use sparse::SparseExtent;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the bytes of one extent of the disk are.
enum Store {
    Sparse(Arc<SparseExtent>),
    Flat { disk: FileDisk, offset: u64 },
    Zero,
}

/// One extent of the disk: bytes `start..start+len` of the virtual disk.
struct Piece {
    start: u64,
    len: u64,
    store: Store,
}

/// A VMDK image opened read-only.
pub struct VmdkDisk {
    path: PathBuf,
    create_type: String,
    size: u64,
    pieces: Vec<Piece>,
}

impl VmdkDisk {
    /// Opens the VMDK image at `path`: a sparse extent file (KDMV); a text
    /// descriptor is refused as soon as it names an extent file (see
    /// [`VmdkDisk::open_with`]).
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, &AllowedPaths::none())
    }

    /// Opens the VMDK image at `path`: a sparse extent file (KDMV) or a text
    /// descriptor naming extent files, each of which `allowed` must allow.
    pub fn open_with(path: &Path, allowed: &AllowedPaths) -> Result<Self> {
        let what = format!("vmdk {}", path.display());
        let mut chain = Chain::new(allowed);
        chain.enter(&what, path)?;
        Self::open_in(path, &mut chain)
    }

    /// Opens `path` as one link of `chain`.
    fn open_in(path: &Path, chain: &mut Chain<'_>) -> Result<Self> {
        let what = format!("vmdk {}", path.display());
        let mut file = File::open(path).map_err(|e| Error::io(&what, 0, e))?;
        let file_size = file.metadata().map_err(|e| Error::io(&what, 0, e))?.len();
        let mut head = Vec::new();
        (&mut file)
            .take(layout::HEADER_SIZE as u64)
            .read_to_end(&mut head)
            .map_err(|e| Error::io(&what, 0, e))?;
        if head.starts_with(layout::SPARSE_MAGIC) {
            // Like QEMU, a sparse file opened directly is its own single
            // extent, whatever name its embedded descriptor gives it (files
            // get renamed); the descriptor only tells the createType and
            // whether the disk is a delta link.
            let extent = Arc::new(SparseExtent::open(path)?);
            let create_type = match extent.embedded_descriptor()? {
                Some(text) => descriptor::parse(&what, &text)?.create_type,
                None => String::new(),
            };
            let len = extent.capacity_sectors() * layout::SECTOR;
            return Ok(VmdkDisk {
                path: path.to_path_buf(),
                create_type,
                size: len,
                pieces: vec![Piece {
                    start: 0,
                    len,
                    store: Store::Sparse(extent),
                }],
            });
        }
        if head.starts_with(layout::COWD_MAGIC) {
            return Err(Error::unsupported(
                what,
                "ESX COWD sparse extents (VMDK3, vmfsSparse) are not supported",
            ));
        }
        if file_size > layout::MAX_DESCRIPTOR_BYTES {
            return Err(Error::corrupt(
                what,
                format!("not a VMDK: no KDMV magic, and at {file_size} bytes too large to be a descriptor"),
            ));
        }
        if head.len() < layout::HEADER_SIZE && !head.starts_with(layout::DESCRIPTOR_SIGNATURE) {
            return Err(Error::corrupt(
                what,
                format!(
                    "truncated header: {} bytes, neither a sparse extent header nor a descriptor",
                    head.len()
                ),
            ));
        }
        (&mut file)
            .take(layout::MAX_DESCRIPTOR_BYTES)
            .read_to_end(&mut head)
            .map_err(|e| Error::io(&what, head.len() as u64, e))?;
        let text = String::from_utf8_lossy(&head);
        let d = descriptor::parse(&what, &text)?;
        if d.extents.is_empty() {
            return Err(Error::corrupt(what, "the descriptor lists no extents"));
        }
        Self::build(path, d, chain)
    }

    /// Resolves and opens the extents of a text descriptor, each one only
    /// when `chain` allows it.
    fn build(path: &Path, d: Descriptor, chain: &mut Chain<'_>) -> Result<Self> {
        let what = format!("vmdk {}", path.display());
        let mut pieces = Vec::with_capacity(d.extents.len());
        let mut start = 0u64;
        for (i, line) in d.extents.iter().enumerate() {
            let len = line
                .sectors
                .checked_mul(layout::SECTOR)
                .filter(|&l| start.checked_add(l).is_some());
            let Some(len) = len else {
                return Err(Error::corrupt(
                    &what,
                    format!("extent {i} has an absurd size of {} sectors", line.sectors),
                ));
            };
            let store = match (line.kind, &line.file) {
                (ExtentType::Zero, _) => Store::Zero,
                (_, None) => {
                    return Err(Error::corrupt(&what, format!("extent {i} names no file")))
                }
                (kind, Some(name)) => {
                    let file = chain.follow(&what, path, LinkKind::VmdkExtent, name.as_bytes())?;
                    if kind == ExtentType::Sparse {
                        let extent = Arc::new(SparseExtent::open(&file)?);
                        if extent.capacity_sectors() < line.sectors {
                            return Err(Error::corrupt(
                                &what,
                                format!(
                                    "extent {i} ({}) lists {} sectors but its header holds only {}",
                                    file.display(),
                                    line.sectors,
                                    extent.capacity_sectors()
                                ),
                            ));
                        }
                        Store::Sparse(extent)
                    } else {
                        let disk = FileDisk::open(&file)?;
                        let offset = line.offset.saturating_mul(layout::SECTOR);
                        if offset.checked_add(len).is_none_or(|end| end > disk.size()) {
                            return Err(Error::corrupt(
                                &what,
                                format!(
                                    "flat extent file {} holds {} bytes, the descriptor needs {len} bytes from sector {}",
                                    file.display(),
                                    disk.size(),
                                    line.offset
                                ),
                            ));
                        }
                        Store::Flat { disk, offset }
                    }
                }
            };
            if len > 0 {
                pieces.push(Piece { start, len, store });
            }
            start += len;
        }
        Ok(VmdkDisk {
            path: path.to_path_buf(),
            create_type: d.create_type,
            size: start,
            pieces,
        })
    }

    /// The descriptor's `createType` (`monolithicSparse`, `streamOptimized`, ...).
    pub fn create_type(&self) -> &str {
        &self.create_type
    }

    /// The path the image was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn first_piece(&self, offset: u64) -> usize {
        self.pieces.partition_point(|p| p.start + p.len <= offset)
    }

    fn piece(&self, index: usize, pos: u64) -> Result<&Piece> {
        self.pieces.get(index).ok_or_else(|| {
            Error::corrupt(self.describe(), format!("no extent covers offset {pos}"))
        })
    }
}

impl ReadDisk for VmdkDisk {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(&|| self.describe(), offset, buf.len() as u64, self.size)?;
        let mut index = self.first_piece(offset);
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let piece = self.piece(index, pos)?;
            let within = pos - piece.start;
            let n = (piece.len - within).min((buf.len() - done) as u64) as usize;
            let out = &mut buf[done..done + n];
            match &piece.store {
                Store::Zero => out.fill(0),
                Store::Sparse(extent) => extent.read_at(out, within)?,
                Store::Flat { disk, offset } => disk.read_at(out, offset + within)?,
            }
            done += n;
            index += 1;
        }
        Ok(())
    }

    fn extents(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        let end = offset.saturating_add(len).min(self.size);
        let mut list = Vec::new();
        let mut index = self.first_piece(offset);
        let mut pos = offset;
        while pos < end {
            let piece = self.piece(index, pos)?;
            let within = pos - piece.start;
            let n = (piece.len - within).min(end - pos);
            match &piece.store {
                Store::Zero => push_merged(&mut list, Extent::zero(pos, n)),
                Store::Sparse(extent) => extent.extents(within, n, piece.start, &mut list)?,
                Store::Flat { disk, offset } => {
                    for e in disk.extents(offset + within, n)? {
                        let at = e.offset - offset + piece.start;
                        push_merged(&mut list, Extent { offset: at, ..e });
                    }
                }
            }
            pos += n;
            index += 1;
        }
        Ok(list)
    }

    fn describe(&self) -> String {
        format!("vmdk {}", self.path.display())
    }
}

/// The factory's entry point (see `crate::detect`): extent files are
/// followed through `chain`. VMDK parent links are not supported.
pub(crate) fn open(path: &Path, chain: &mut Chain<'_>) -> Result<Arc<dyn ReadDisk>> {
    Ok(Arc::new(VmdkDisk::open_in(path, chain)?))
}
