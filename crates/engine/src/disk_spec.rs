//! The disk arguments of a backup, `NAME=[FORMAT:]PATH`, as the CLI and a
//! job's source list give them: the disk's name in the restore point, how
//! to read the file (`auto`: choose by device, name and content) and which
//! file. A PATH that itself starts with `raw:` (etc.) is written `./raw:...`.

use lifeboat_formats::ImageFormat;
use std::path::PathBuf;

/// The format names a disk argument may start with (`auto`: choose).
pub const FORMAT_NAMES: [&str; 5] = ["raw", "qcow2", "vmdk", "vhdx", "auto"];

/// A disk argument that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiskSpecError {
    #[error("disk {spec:?}: expected NAME=[FORMAT:]PATH, e.g. disk0=/vms/web01.qcow2 or disk0=raw:/dev/vg0/web01")]
    NoName { spec: String },
    #[error("unknown disk format {name:?}: expected raw, qcow2, vmdk, vhdx or auto")]
    UnknownFormat { name: String },
}

/// Parses a format name; `auto` is `None` (choose by device, name, content).
pub fn parse_format(name: &str) -> Result<Option<ImageFormat>, DiskSpecError> {
    if name.eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    match ImageFormat::from_name(name) {
        Some(f) if FORMAT_NAMES.contains(&name.to_ascii_lowercase().as_str()) => Ok(Some(f)),
        _ => Err(DiskSpecError::UnknownFormat {
            name: name.to_string(),
        }),
    }
}

/// One disk of a backup, parsed from `NAME=[FORMAT:]PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    pub name: String,
    /// `None`: choose (see [`parse_format`]).
    pub format: Option<ImageFormat>,
    pub path: PathBuf,
}

impl DiskSpec {
    /// Splits `NAME=[FORMAT:]PATH`; a disk without FORMAT: takes `default`.
    pub fn parse(spec: &str, default: Option<ImageFormat>) -> Result<DiskSpec, DiskSpecError> {
        let (name, rest) = spec.split_once('=').ok_or_else(|| DiskSpecError::NoName {
            spec: spec.to_string(),
        })?;
        let (format, path) = match rest.split_once(':') {
            Some((prefix, path))
                if FORMAT_NAMES.contains(&prefix.to_ascii_lowercase().as_str()) =>
            {
                (parse_format(prefix)?, path)
            }
            _ => (default, rest),
        };
        Ok(DiskSpec {
            name: name.to_string(),
            format,
            path: PathBuf::from(path),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(spec: &str, default: Option<ImageFormat>) -> (String, Option<ImageFormat>, PathBuf) {
        let d = DiskSpec::parse(spec, default).unwrap();
        (d.name, d.format, d.path)
    }

    #[test]
    fn disk_arguments_take_an_optional_format_prefix() {
        let (n, f, p) = parse("disk0=/vms/a.qcow2", None);
        assert_eq!(
            (n.as_str(), f, p.as_path()),
            ("disk0", None, Path::new("/vms/a.qcow2"))
        );
        let (_, f, p) = parse("d=qcow2:/dev/vg/x", Some(ImageFormat::Raw));
        assert_eq!(
            (f, p.as_path()),
            (Some(ImageFormat::Qcow2), Path::new("/dev/vg/x"))
        );
        let (_, f, p) = parse("d=AUTO:/v/x.img", Some(ImageFormat::Raw));
        assert_eq!((f, p.as_path()), (None, Path::new("/v/x.img")));
        // A colon that is not after a format name is part of the path.
        let (_, f, p) = parse("d=/v/a:b.raw", Some(ImageFormat::Raw));
        assert_eq!(
            (f, p.as_path()),
            (Some(ImageFormat::Raw), Path::new("/v/a:b.raw"))
        );
        assert_eq!(
            DiskSpec::parse("no-equals", None),
            Err(DiskSpecError::NoName {
                spec: "no-equals".into()
            })
        );
        assert!(parse_format("img").is_err());
        assert!(parse_format("vpc").is_err());
        assert_eq!(parse_format("VMDK").unwrap(), Some(ImageFormat::Vmdk));
    }
}
