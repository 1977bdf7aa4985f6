//! Format detection and the one factory that opens any supported image.
//!
//! Detection looks at magic numbers only (never at file names):
//! `QFI\xfb` → qcow2, `KDMV` → VMDK sparse extent, `# Disk DescriptorFile`
//! → VMDK descriptor, `vhdxfile` → VHDX, anything else → raw.
//! Backing files (qcow2) and extents (VMDK) are opened through
//! [`open_in_chain`], which refuses loops and chains deeper than
//! [`lifeboat_vdisk::MAX_DEPTH`].

use lifeboat_vdisk::{Error, FileDisk, ReadDisk, Result, MAX_DEPTH};
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The image formats Lifeboat reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Raw,
    Qcow2,
    Vmdk,
    Vhdx,
}

impl ImageFormat {
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Raw => "raw",
            ImageFormat::Qcow2 => "qcow2",
            ImageFormat::Vmdk => "vmdk",
            ImageFormat::Vhdx => "vhdx",
        }
    }

    /// Parses a user-given format name (`raw`, `qcow2`, `vmdk`, `vhdx`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "raw" | "img" => Some(ImageFormat::Raw),
            "qcow2" => Some(ImageFormat::Qcow2),
            "vmdk" => Some(ImageFormat::Vmdk),
            "vhdx" => Some(ImageFormat::Vhdx),
            _ => None,
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Detects the format of the image at `path` from its first bytes.
pub fn detect_format(path: &Path) -> Result<ImageFormat> {
    let what = || format!("image {}", path.display());
    let mut file = File::open(path).map_err(|e| Error::io(what(), 0, e))?;
    let mut head = [0u8; 64];
    let mut got = 0;
    while got < head.len() {
        match file.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(what(), got as u64, e)),
        }
    }
    let head = &head[..got];
    Ok(if head.starts_with(b"QFI\xfb") {
        ImageFormat::Qcow2
    } else if head.starts_with(b"KDMV") || head.starts_with(b"# Disk DescriptorFile") {
        ImageFormat::Vmdk
    } else if head.starts_with(b"vhdxfile") {
        ImageFormat::Vhdx
    } else {
        ImageFormat::Raw
    })
}

/// Opens the image at `path` read-only, whatever its format.
pub fn open_image(path: &Path) -> Result<Arc<dyn ReadDisk>> {
    open_in_chain(path, &mut Vec::new())
}

/// Opens the image at `path` as `format`, skipping detection. Opening a
/// qcow2 file as raw is allowed (it reads the container's bytes).
pub fn open_image_as(path: &Path, format: ImageFormat) -> Result<Arc<dyn ReadDisk>> {
    open_format(path, format, &mut Vec::new())
}

/// Opens `path` as one link of a chain of images (backing files, extents).
/// `chain` holds the canonical paths of the images above it; a path that is
/// already in it is a loop.
pub(crate) fn open_in_chain(path: &Path, chain: &mut Vec<PathBuf>) -> Result<Arc<dyn ReadDisk>> {
    let format = detect_format(path)?;
    open_format(path, format, chain)
}

fn open_format(
    path: &Path,
    format: ImageFormat,
    chain: &mut Vec<PathBuf>,
) -> Result<Arc<dyn ReadDisk>> {
    let what = format!("{format} image {}", path.display());
    let canonical = path.canonicalize().map_err(|e| Error::io(&what, 0, e))?;
    if chain.contains(&canonical) {
        let names: Vec<String> = chain.iter().map(|p| p.display().to_string()).collect();
        return Err(Error::invalid(
            what,
            format!(
                "backing chain loops: {} -> {}",
                names.join(" -> "),
                canonical.display()
            ),
        ));
    }
    if chain.len() as u32 >= MAX_DEPTH {
        return Err(Error::invalid(
            what,
            format!("backing chain is deeper than {MAX_DEPTH} images"),
        ));
    }
    chain.push(canonical);
    let disk: Result<Arc<dyn ReadDisk>> = match format {
        ImageFormat::Raw => Ok(Arc::new(FileDisk::open(path)?)),
        ImageFormat::Qcow2 => crate::qcow2::open(path, chain),
        ImageFormat::Vmdk => crate::vmdk::open(path, chain),
        ImageFormat::Vhdx => crate::vhdx::open(path),
    };
    chain.pop();
    disk
}
