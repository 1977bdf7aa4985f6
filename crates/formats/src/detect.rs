//! Format choice and the one factory that opens any supported image.
//!
//! The format of an image is chosen, in this order:
//!
//! 1. the caller names it ([`ChosenBy::Given`]);
//! 2. the path is a block device: raw ([`ChosenBy::BlockDevice`]; LVM, ZFS
//!    and Ceph volumes of Proxmox and libvirt hold raw disks);
//! 3. the file name's extension says it ([`ChosenBy::FileName`]):
//!    `.raw`/`.img` raw, `.qcow2`/`.qcow` qcow2, `.vmdk`, `.vhdx`;
//! 4. otherwise the first bytes ([`ChosenBy::Content`], see
//!    [`detect_format`]).
//!
//! A name or a device wins over the content because a guest writes the
//! content of its raw disk and never its name: a raw disk whose first
//! sector holds a qcow2 header stays raw. Whatever the choice, an image
//! opens other files (qcow2 backing files, VMDK extents) only through
//! [`crate::follow::Chain`], which refuses any path the caller did not
//! allow, so even content detection never reads a file nobody named.

use crate::follow::{AllowedPaths, Chain};
use lifeboat_vdisk::{Error, FileDisk, ReadDisk, Result};
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileTypeExt;
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

    /// The format a file name's extension names, if any (`.raw`, `.img`,
    /// `.qcow2`, `.qcow`, `.vmdk`, `.vhdx`, any case).
    pub fn from_file_name(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "raw" | "img" => Some(ImageFormat::Raw),
            "qcow2" | "qcow" => Some(ImageFormat::Qcow2),
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

/// How the format of an opened image was chosen (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChosenBy {
    /// The caller named it.
    Given,
    /// The path is a block device, read as raw.
    BlockDevice,
    /// The file name's extension.
    FileName,
    /// The first bytes of the file.
    Content,
}

impl fmt::Display for ChosenBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChosenBy::Given => "given",
            ChosenBy::BlockDevice => "block device",
            ChosenBy::FileName => "file name",
            ChosenBy::Content => "content",
        })
    }
}

/// How to open an image: its format (`None`: choose, see the module doc)
/// and the files it may make us open.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    pub format: Option<ImageFormat>,
    pub allowed: AllowedPaths,
}

/// An opened image and what the factory decided on the way.
pub struct OpenedImage {
    pub disk: Arc<dyn ReadDisk>,
    /// The format it was read as.
    pub format: ImageFormat,
    pub chosen_by: ChosenBy,
    /// What the first bytes look like (may differ from `format` when the
    /// format was given or came from the name).
    pub content: ImageFormat,
    /// Canonical paths of the other files it made us open (backing files,
    /// extents), in the order first opened.
    pub followed: Vec<PathBuf>,
}

impl OpenedImage {
    /// A warning when the content looks like another format than the one
    /// the image is read as (a raw disk holding a qcow2 header, or a
    /// `.img` file that really is qcow2).
    pub fn mismatch(&self, path: &Path) -> Option<String> {
        (self.content != self.format).then(|| {
            format!(
                "{} is read as {} (format chosen by {}) but its first bytes look like {}; \
                 if it really is {}, give that format explicitly",
                path.display(),
                self.format,
                self.chosen_by,
                self.content,
                self.content
            )
        })
    }
}

/// Detects the format of the image at `path` from its first bytes:
/// `QFI\xfb` → qcow2, `KDMV` → VMDK sparse extent, `# Disk DescriptorFile`
/// → VMDK descriptor, `vhdxfile` → VHDX, anything else → raw.
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

/// Chooses the format of the image at `path` when the caller gives
/// `given` (`None`: choose by device, name, then content); returns the
/// format, how it was chosen, and what the content looks like.
pub fn choose_format(
    path: &Path,
    given: Option<ImageFormat>,
) -> Result<(ImageFormat, ChosenBy, ImageFormat)> {
    let content = detect_format(path)?;
    if let Some(format) = given {
        return Ok((format, ChosenBy::Given, content));
    }
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::io(format!("image {}", path.display()), 0, e))?;
    if meta.file_type().is_block_device() {
        return Ok((ImageFormat::Raw, ChosenBy::BlockDevice, content));
    }
    if let Some(format) = ImageFormat::from_file_name(path) {
        return Ok((format, ChosenBy::FileName, content));
    }
    Ok((content, ChosenBy::Content, content))
}

/// Opens the image at `path` read-only as `options` say: the format is
/// given or chosen (see the module doc), and the image may open only the
/// files `options.allowed` allows.
pub fn open_image_with(path: &Path, options: &OpenOptions) -> Result<OpenedImage> {
    let (format, chosen_by, content) = choose_format(path, options.format)?;
    let mut chain = Chain::new(&options.allowed);
    let disk = open_in_chain(path, format, &mut chain)?;
    Ok(OpenedImage {
        disk,
        format,
        chosen_by,
        content,
        followed: chain.into_followed(),
    })
}

/// Opens the image at `path` read-only, its format chosen by device, name
/// or content; an image that names another file (a backing file, an
/// external extent) is refused.
pub fn open_image(path: &Path) -> Result<Arc<dyn ReadDisk>> {
    Ok(open_image_with(path, &OpenOptions::default())?.disk)
}

/// Opens the image at `path` as `format`, skipping detection; an image
/// that names another file is refused. Opening a qcow2 file as raw is
/// allowed (it reads the container's bytes).
pub fn open_image_as(path: &Path, format: ImageFormat) -> Result<Arc<dyn ReadDisk>> {
    let options = OpenOptions {
        format: Some(format),
        allowed: AllowedPaths::none(),
    };
    Ok(open_image_with(path, &options)?.disk)
}

/// Opens `path` as `format`, one link of `chain`.
pub(crate) fn open_in_chain(
    path: &Path,
    format: ImageFormat,
    chain: &mut Chain<'_>,
) -> Result<Arc<dyn ReadDisk>> {
    let what = format!("{format} image {}", path.display());
    chain.enter(&what, path)?;
    let disk: Result<Arc<dyn ReadDisk>> = match format {
        ImageFormat::Raw => FileDisk::open(path).map(|d| Arc::new(d) as Arc<dyn ReadDisk>),
        ImageFormat::Qcow2 => crate::qcow2::open(path, chain),
        ImageFormat::Vmdk => crate::vmdk::open(path, chain),
        ImageFormat::Vhdx => crate::vhdx::open(path),
    };
    chain.leave();
    disk
}
