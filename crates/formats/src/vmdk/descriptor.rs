//! The VMDK descriptor: the text that says which extents make up the disk.
//!
//! It lives in its own file (`monolithicFlat`, `twoGbMaxExtent*`, `vmfs`) or
//! inside a sparse extent at `descriptorOffset` (`monolithicSparse`,
//! `streamOptimized`). Spec: VMware "Virtual Disk Format 5.0", "The
//! Descriptor File".
//!
//! ```text
//! # Disk DescriptorFile
//! version=1
//! CID=fffffffe
//! parentCID=ffffffff                 ffffffff: no parent
//! createType="twoGbMaxExtentFlat"
//! RW 4192256 FLAT "disk-f001.vmdk" 0   access sectors type "file" [offset]
//! RW 2048 ZERO                         ZERO has no file
//! ddb.geometry.cylinders = "16383"     disk database: ignored
//! ```

use lifeboat_vdisk::{Error, Result};

/// How an extent stores its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtentType {
    /// A hosted sparse extent (KDMV header, grain tables).
    Sparse,
    /// A raw file (FLAT, or VMFS, which is a flat file on an ESX datastore).
    Flat,
    /// No file: reads as zeros.
    Zero,
}

/// One extent line of the descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtentLine {
    /// Length in sectors.
    pub sectors: u64,
    pub kind: ExtentType,
    /// The file name as written (relative to the descriptor's directory unless absolute).
    pub file: Option<String>,
    /// Start of the extent inside a flat file, in sectors.
    pub offset: u64,
}

/// A parsed descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// `createType`, e.g. `monolithicSparse` (empty when missing).
    pub create_type: String,
    pub extents: Vec<ExtentLine>,
}

/// Parses descriptor text; `what` names the file in errors. The extent
/// list may be empty: a descriptor embedded in a sparse extent is only read
/// for its `createType` and parent link.
pub fn parse(what: &str, text: &str) -> Result<Descriptor> {
    let mut create_type = String::new();
    let mut extents = Vec::new();
    for (number, raw) in text.lines().enumerate() {
        let line = raw.trim_matches(|c: char| c.is_whitespace() || c == '\0');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("descriptor line {}: {line:?}", number + 1);
        let first = line.split_whitespace().next().unwrap_or("");
        if matches!(first, "RW" | "RDONLY" | "NOACCESS") {
            extents.push(parse_extent(what, line, &at)?);
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let value = value.trim().trim_matches('"');
        match key {
            "createType" => create_type = value.to_string(),
            "parentCID" if !value.eq_ignore_ascii_case("ffffffff") => {
                return Err(Error::unsupported(
                    what,
                    format!(
                        "{}: a delta link to a parent disk (VMDK parent chains are not supported)",
                        at()
                    ),
                ));
            }
            "parentFileNameHint" => {
                return Err(Error::unsupported(
                    what,
                    format!(
                        "delta link to parent {value:?} (VMDK parent chains are not supported)"
                    ),
                ));
            }
            _ => {}
        }
    }
    match create_type.as_str() {
        "vmfsSparse"
        | "vmfsThin"
        | "seSparse"
        | "vmfsRDM"
        | "vmfsRaw"
        | "vmfsPassthroughRawDeviceMap"
        | "fullDevice"
        | "partitionedDevice"
        | "vmfsRawDeviceMap" => {
            return Err(Error::unsupported(
                what,
                format!("VMDK createType {create_type:?} is not supported"),
            ));
        }
        _ => {}
    }
    Ok(Descriptor {
        create_type,
        extents,
    })
}

fn parse_extent(what: &str, line: &str, at: &dyn Fn() -> String) -> Result<ExtentLine> {
    let bad = |why: &str| Error::corrupt(what, format!("{}: {why}", at()));
    let mut rest = line;
    let mut token = || -> Option<&str> {
        let t = rest.trim_start();
        let end = t.find(char::is_whitespace).unwrap_or(t.len());
        let (tok, tail) = t.split_at(end);
        rest = tail;
        (!tok.is_empty()).then_some(tok)
    };
    let access = token().ok_or_else(|| bad("no access mode"))?;
    let sectors = token()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| bad("the extent size is not a number of sectors"))?;
    let type_name = token().ok_or_else(|| bad("no extent type"))?;
    if access == "NOACCESS" {
        return Err(Error::unsupported(
            what,
            format!("{}: NOACCESS extents", at()),
        ));
    }
    let kind = match type_name {
        "SPARSE" => ExtentType::Sparse,
        "FLAT" | "VMFS" => ExtentType::Flat,
        "ZERO" => ExtentType::Zero,
        other => {
            return Err(Error::unsupported(
                what,
                format!("{}: extent type {other} is not supported", at()),
            ))
        }
    };
    if kind == ExtentType::Zero {
        return Ok(ExtentLine {
            sectors,
            kind,
            file: None,
            offset: 0,
        });
    }
    let tail = rest.trim_start();
    let Some(quoted) = tail.strip_prefix('"') else {
        return Err(bad("the file name is not in double quotes"));
    };
    let Some(close) = quoted.find('"') else {
        return Err(bad("the file name has no closing quote"));
    };
    let (file, after) = quoted.split_at(close);
    if file.is_empty() {
        return Err(bad("empty file name"));
    }
    let after = after.get(1..).unwrap_or("");
    let offset = match after.split_whitespace().next() {
        None => 0,
        Some(o) => o
            .parse::<u64>()
            .map_err(|_| bad("the extent offset is not a number of sectors"))?,
    };
    Ok(ExtentLine {
        sectors,
        kind,
        file: Some(file.to_string()),
        offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_qemu_and_vmware_descriptors() {
        let text = "# Disk DescriptorFile\nversion=1\nCID=5c66353a\nparentCID=ffffffff\n\
                    createType=\"twoGbMaxExtentFlat\"\n\n# Extent description\n\
                    RW 4192256 FLAT \"my disk-f001.vmdk\" 0\r\nRDONLY 100 FLAT \"b.raw\" 7\n\
                    RW 2048 ZERO\nRW 12288 SPARSE \"s.vmdk\"\n\nddb.adapterType = \"ide\"\n\0\0";
        let d = parse("t", text).unwrap();
        assert_eq!(d.create_type, "twoGbMaxExtentFlat");
        assert_eq!(d.extents.len(), 4);
        assert_eq!(d.extents[0].file.as_deref(), Some("my disk-f001.vmdk"));
        assert_eq!(d.extents[0].sectors, 4192256);
        assert_eq!(d.extents[1].offset, 7);
        assert_eq!(d.extents[2].kind, ExtentType::Zero);
        assert_eq!(d.extents[3].kind, ExtentType::Sparse);
    }

    #[test]
    fn refuses_parents_bad_lines_and_empty_descriptors() {
        let parent = "parentCID=12345678\nparentFileNameHint=\"base.vmdk\"\nRW 8 SPARSE \"x\"\n";
        assert!(matches!(parse("t", parent), Err(Error::Unsupported { .. })));
        assert!(parse("t", "version=1\n").unwrap().extents.is_empty());
        assert!(matches!(
            parse("t", "RW lots FLAT \"x\"\n"),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            parse("t", "RW 8 FLAT x\n"),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            parse("t", "RW 8 FLAT \"x\n"),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            parse("t", "RW 8 VMFSSPARSE \"x\"\n"),
            Err(Error::Unsupported { .. })
        ));
    }
}
