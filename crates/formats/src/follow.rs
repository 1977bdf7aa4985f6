//! What an image may make us open besides itself.
//!
//! A qcow2 header names a backing file, a VMDK descriptor names extent
//! files, a VHDX differencing disk names a parent: all of it is bytes the
//! image's writer chose, and the image's writer may be a hostile guest (a
//! raw disk whose first sector holds a qcow2 header or a VMDK descriptor,
//! the CVE-2008-2004 class). So a link is followed only when the caller
//! allows where it leads:
//!
//! - [`AllowedPaths`] is the caller's list: files (exactly that file) and
//!   directories (any file below them). Entries and link targets are
//!   compared as canonical paths (symlinks and `..` resolved), so
//!   `/vms/../etc/shadow` is not below `/vms`.
//! - A relative link is resolved against the directory of the image that
//!   names it, and the result must be allowed like any other path: allowing
//!   the image itself does not allow its directory.
//! - [`Chain`] carries the list through a chain of images (each reader
//!   asks [`Chain::follow`] before it opens a link), refuses loops and
//!   chains deeper than [`MAX_DEPTH`], and records every file it let the
//!   readers open.
//!
//! A refusal is a [`LinkRefused`] inside a [`lifeboat_vdisk::Error::Source`]
//! (find it with [`refused_link`]), so a caller can tell the user which
//! path to allow.

use lifeboat_vdisk::{Error, Result, MAX_DEPTH};
use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Files and directories that images may make us open (see the module doc).
#[derive(Debug, Clone, Default)]
pub struct AllowedPaths {
    /// Canonical path, and whether it is a directory.
    entries: Vec<(PathBuf, bool)>,
}

impl AllowedPaths {
    /// Allows nothing: an image with a backing file or an external extent
    /// is refused.
    pub fn none() -> Self {
        Self::default()
    }

    /// Allows the file `path`, or every file below the directory `path`.
    /// The path must exist (it is canonicalized now).
    pub fn allow(&mut self, path: &Path) -> Result<()> {
        let what = format!("allowed backing path {}", path.display());
        let canonical = path.canonicalize().map_err(|e| Error::io(&what, 0, e))?;
        let is_dir = canonical.is_dir();
        self.entries.push((canonical, is_dir));
        Ok(())
    }

    /// True when nothing is allowed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when the canonical path `canonical` is an allowed file or lies
    /// below an allowed directory.
    pub fn allows(&self, canonical: &Path) -> bool {
        self.entries
            .iter()
            .any(|(entry, is_dir)| canonical == entry || (*is_dir && canonical.starts_with(entry)))
    }
}

/// What kind of link an image holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// A qcow2 backing file.
    BackingFile,
    /// A file named by a VMDK descriptor's extent line.
    VmdkExtent,
}

impl fmt::Display for LinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkKind::BackingFile => "backing file",
            LinkKind::VmdkExtent => "VMDK extent file",
        })
    }
}

/// An image named a file the caller did not allow.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{kind} {} (named {named:?} in {}) is not allowed: an image makes Lifeboat open another file only when that file or its directory is allowed",
    resolved.display(),
    image.display()
)]
pub struct LinkRefused {
    /// The image holding the link.
    pub image: PathBuf,
    pub kind: LinkKind,
    /// The name as the image stores it.
    pub named: String,
    /// Where it leads (canonical when the file exists).
    pub resolved: PathBuf,
}

/// The [`LinkRefused`] inside `err`, if that is why an open failed.
pub fn refused_link(err: &Error) -> Option<&LinkRefused> {
    match err {
        Error::Source { source, .. } => source.downcast_ref::<LinkRefused>(),
        _ => None,
    }
}

/// The chain of images being opened: the caller's allowed paths, the
/// canonical paths of the images above the one being opened, and every
/// file followed so far.
pub(crate) struct Chain<'a> {
    allowed: &'a AllowedPaths,
    links: Vec<PathBuf>,
    followed: Vec<PathBuf>,
}

impl<'a> Chain<'a> {
    pub(crate) fn new(allowed: &'a AllowedPaths) -> Self {
        Chain {
            allowed,
            links: Vec::new(),
            followed: Vec::new(),
        }
    }

    /// Enters the image at `path` (described as `what`): refuses a loop or
    /// a chain deeper than [`MAX_DEPTH`]. Pair with [`Chain::leave`].
    pub(crate) fn enter(&mut self, what: &str, path: &Path) -> Result<()> {
        let canonical = path.canonicalize().map_err(|e| Error::io(what, 0, e))?;
        if self.links.contains(&canonical) {
            let names: Vec<String> = self.links.iter().map(|p| p.display().to_string()).collect();
            return Err(Error::invalid(
                what,
                format!(
                    "backing chain loops: {} -> {}",
                    names.join(" -> "),
                    canonical.display()
                ),
            ));
        }
        if self.links.len() as u32 >= MAX_DEPTH {
            return Err(Error::invalid(
                what,
                format!("backing chain is deeper than {MAX_DEPTH} images"),
            ));
        }
        self.links.push(canonical);
        Ok(())
    }

    /// Leaves the image entered last.
    pub(crate) fn leave(&mut self) {
        self.links.pop();
    }

    /// Resolves the link `named` (as stored) of the image at `image`
    /// (described as `what`) and returns the canonical path to open, or
    /// refuses it when the caller did not allow it.
    pub(crate) fn follow(
        &mut self,
        what: &str,
        image: &Path,
        kind: LinkKind,
        named: &[u8],
    ) -> Result<PathBuf> {
        let name = Path::new(OsStr::from_bytes(named));
        let resolved = if name.is_absolute() {
            name.to_path_buf()
        } else {
            image.parent().unwrap_or(Path::new(".")).join(name)
        };
        let refused = |resolved: PathBuf| {
            Error::source(
                what,
                LinkRefused {
                    image: image.to_path_buf(),
                    kind,
                    named: String::from_utf8_lossy(named).into_owned(),
                    resolved,
                },
            )
        };
        let canonical = match resolved.canonicalize() {
            Ok(canonical) => canonical,
            // Nothing is allowed: the refusal matters more than the file.
            Err(_) if self.allowed.is_empty() => return Err(refused(resolved)),
            Err(e) => {
                return Err(Error::io(
                    format!("{what}: {kind} {}", resolved.display()),
                    0,
                    e,
                ))
            }
        };
        if !self.allowed.allows(&canonical) {
            return Err(refused(canonical));
        }
        if !self.followed.contains(&canonical) {
            self.followed.push(canonical.clone());
        }
        Ok(canonical)
    }

    /// Every file followed, in the order first followed.
    pub(crate) fn into_followed(self) -> Vec<PathBuf> {
        self.followed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_directories_allow_what_they_should() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("vms");
        std::fs::create_dir(&sub).unwrap();
        let a = sub.join("a.qcow2");
        let b = dir.path().join("b.raw");
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"b").unwrap();
        let mut allowed = AllowedPaths::none();
        assert!(!allowed.allows(&a.canonicalize().unwrap()));
        allowed.allow(&sub).unwrap();
        assert!(allowed.allows(&a.canonicalize().unwrap()));
        assert!(!allowed.allows(&b.canonicalize().unwrap()));
        // `..` is resolved before the comparison.
        let sneaky = sub.join("../b.raw").canonicalize().unwrap();
        assert!(!allowed.allows(&sneaky));
        allowed.allow(&b).unwrap();
        assert!(allowed.allows(&sneaky));
        assert!(allowed.allow(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn a_refused_link_names_the_path_and_can_be_found() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("top.qcow2");
        let allowed = AllowedPaths::none();
        let mut chain = Chain::new(&allowed);
        let err = chain
            .follow("qcow2 top", &image, LinkKind::BackingFile, b"/etc/passwd")
            .unwrap_err();
        let refused = refused_link(&err).expect("a LinkRefused");
        assert_eq!(refused.resolved, Path::new("/etc/passwd"));
        assert!(
            err.to_string().contains("backing file /etc/passwd"),
            "{err}"
        );
        assert!(chain.into_followed().is_empty());
    }
}
