//! LVM2 physical volume label, PV header and metadata area header, and the
//! current text metadata they point at.
//!
//! Layout (LVM2 `lib/format_text/layout.h`, `lib/label/label.h`), all
//! integers little-endian:
//! - label header, in one of sectors 0-3: `"LABELONE"` 0..8, sector number
//!   u64 8..16, CRC u32 16..20 over bytes 20..512 of the sector, offset of
//!   the PV header u32 20..24 (usually 32), type `"LVM2 001"` 24..32;
//! - PV header: UUID 32 chars, device size u64, then a list of data areas
//!   and a list of metadata areas, each `{offset u64, size u64}` in bytes
//!   from the start of the PV, each list ended by a zero entry;
//! - metadata area header (512 bytes at the start of a metadata area):
//!   CRC u32 0..4 over bytes 4..512, magic `" LVM2 x[5A%r0N*>"` 4..20,
//!   version u32 20..24 (1), start u64 24..32 (absolute, equals the area
//!   offset), size u64 32..40, then raw locations `{offset u64, size u64,
//!   checksum u32, flags u32}` 40.. ended by a zero entry; the first one is
//!   the current metadata. Its offset is relative to the area start; the
//!   text may wrap around the end of the area (a circular buffer) and then
//!   continues right after the 512-byte header.
//!
//! LVM's CRC is the reflected CRC-32 (polynomial 0xEDB88320) started from
//! 0xf597a6cf with no final inversion.

use lifeboat_vdisk::{Error, ReadDisk, Result};

/// Sector size LVM uses for its label.
const SECTOR: u64 = 512;
/// Initial value of LVM's CRC.
pub const INITIAL_CRC: u32 = 0xf597_a6cf;
/// Size of a metadata area header.
const MDA_HEADER_SIZE: u64 = 512;
/// Metadata area magic.
const MDA_MAGIC: &[u8; 16] = b" LVM2 x[5A%r0N*>";
/// The largest metadata text accepted.
const MAX_TEXT: u64 = 64 << 20;
/// Raw location flag: this copy is ignored.
const RAW_LOCN_IGNORED: u32 = 1;

/// LVM's CRC of `data`, continuing from `crc`.
pub fn lvm_crc(crc: u32, data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(!crc);
    h.update(data);
    !h.finalize()
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// A PV label and its current metadata text.
#[derive(Debug)]
pub struct PvLabel {
    /// The PV UUID without hyphens (32 characters).
    pub uuid: String,
    /// Device size recorded in the PV header, in bytes.
    pub device_size: u64,
    /// Metadata areas `(offset, size)` in bytes.
    pub metadata_areas: Vec<(u64, u64)>,
    /// The current metadata text of the first metadata area holding one
    /// (`None` for a PV created with `--metadatacopies 0`).
    pub metadata: Option<String>,
    /// Why no metadata could be read from any area (a bad checksum...):
    /// the PV itself is still usable with the metadata of another PV.
    pub metadata_problem: Option<Error>,
}

/// Reads the LVM2 label of `disk`: `Ok(None)` when there is no `LABELONE`
/// in sectors 0-3, an error when the label or PV header is damaged. Damaged
/// metadata areas are reported in [`PvLabel::metadata_problem`].
pub fn read_pv_label(disk: &dyn ReadDisk) -> Result<Option<PvLabel>> {
    let what = disk.describe();
    let size = disk.size();
    if size < 4 * SECTOR {
        return Ok(None);
    }
    let mut head = vec![0u8; (4 * SECTOR) as usize];
    disk.read_at(&mut head, 0)?;
    let Some(sector) = (0..4u64).find(|s| {
        let at = (s * SECTOR) as usize;
        &head[at..at + 8] == b"LABELONE"
    }) else {
        return Ok(None);
    };
    let at = (sector * SECTOR) as usize;
    let label = &head[at..at + SECTOR as usize];
    let stored = u32_at(label, 16);
    let computed = lvm_crc(INITIAL_CRC, &label[20..]);
    if stored != computed {
        return Err(Error::corrupt(
            &what,
            format!(
                "LVM label in sector {sector}: CRC mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
        ));
    }
    if &label[24..32] != b"LVM2 001" {
        return Err(Error::unsupported(
            &what,
            format!(
                "LVM label type {:?} in sector {sector} (only \"LVM2 001\" is read)",
                String::from_utf8_lossy(&label[24..32])
            ),
        ));
    }
    let pvh = u32_at(label, 20) as usize;
    let pv = label
        .get(pvh..)
        .filter(|p| p.len() >= 40 + 16)
        .ok_or_else(|| Error::corrupt(&what, format!("LVM PV header offset {pvh} is invalid")))?;
    let uuid = String::from_utf8_lossy(&pv[0..32]).into_owned();
    let device_size = u64_at(pv, 32);
    // Two zero-terminated lists of {offset, size}: data areas, then metadata areas.
    let mut lists: [Vec<(u64, u64)>; 2] = [Vec::new(), Vec::new()];
    let mut pos = 40usize;
    for list in lists.iter_mut() {
        loop {
            let Some(entry) = pv.get(pos..pos + 16) else {
                return Err(Error::corrupt(
                    &what,
                    "LVM PV header: area lists run past the label sector",
                ));
            };
            pos += 16;
            let (off, len) = (u64_at(entry, 0), u64_at(entry, 8));
            if off == 0 {
                break;
            }
            list.push((off, len));
        }
    }
    let [_, metadata_areas] = lists;
    let mut metadata = None;
    let mut errors = Vec::new();
    for &(off, len) in &metadata_areas {
        match read_mda(disk, off, len) {
            Ok(Some(text)) => {
                metadata = Some(text);
                break;
            }
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    let metadata_problem = match metadata {
        None => errors.into_iter().next(),
        Some(_) => None,
    };
    Ok(Some(PvLabel {
        uuid,
        device_size,
        metadata_areas,
        metadata,
        metadata_problem,
    }))
}

/// The name a metadata text starts with (the VG name), read leniently so
/// that errors about damaged metadata can still name the VG.
pub fn vg_name_hint(text: &[u8]) -> String {
    let mut rest = text;
    // Skip comments and blank lines.
    loop {
        let trimmed = rest
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .map_or(&rest[rest.len()..], |p| &rest[p..]);
        if trimmed.first() == Some(&b'#') {
            let nl = trimmed
                .iter()
                .position(|&b| b == b'\n')
                .unwrap_or(trimmed.len());
            rest = &trimmed[nl..];
            continue;
        }
        rest = trimmed;
        break;
    }
    let name: Vec<u8> = rest
        .iter()
        .take(128)
        .take_while(|b| b.is_ascii_alphanumeric() || b"_+.-".contains(b))
        .copied()
        .collect();
    if name.is_empty() {
        "(unknown VG)".to_string()
    } else {
        String::from_utf8_lossy(&name).into_owned()
    }
}

/// Reads the current metadata text of the metadata area at `off` (`len`
/// bytes): `Ok(None)` when the area holds no metadata yet.
fn read_mda(disk: &dyn ReadDisk, off: u64, len: u64) -> Result<Option<String>> {
    let what = format!("LVM metadata area at {off} of {}", disk.describe());
    let end = off.checked_add(len).filter(|&e| e <= disk.size());
    if end.is_none() || len < 2 * MDA_HEADER_SIZE {
        return Err(Error::corrupt(
            &what,
            format!(
                "area of {len} bytes does not fit the disk ({} bytes)",
                disk.size()
            ),
        ));
    }
    let mut h = vec![0u8; MDA_HEADER_SIZE as usize];
    disk.read_at(&mut h, off)?;
    let stored = u32_at(&h, 0);
    let computed = lvm_crc(INITIAL_CRC, &h[4..]);
    if stored != computed {
        return Err(Error::corrupt(
            &what,
            format!("header CRC mismatch (stored {stored:#010x}, computed {computed:#010x})"),
        ));
    }
    if &h[4..20] != MDA_MAGIC {
        return Err(Error::corrupt(
            &what,
            "bad magic in the metadata area header",
        ));
    }
    if u64_at(&h, 24) != off || u64_at(&h, 32) != len {
        return Err(Error::corrupt(
            &what,
            format!(
                "header says start {} size {}, the PV header says {off} {len}",
                u64_at(&h, 24),
                u64_at(&h, 32)
            ),
        ));
    }
    let (r_off, r_size, r_sum, r_flags) = (
        u64_at(&h, 40),
        u64_at(&h, 48),
        u32_at(&h, 56),
        u32_at(&h, 60),
    );
    if r_off == 0 || r_flags & RAW_LOCN_IGNORED != 0 {
        return Ok(None);
    }
    let ring = len - MDA_HEADER_SIZE;
    if r_off < MDA_HEADER_SIZE || r_off >= len || r_size > ring || r_size > MAX_TEXT {
        return Err(Error::corrupt(
            &what,
            format!("metadata location {r_off} (+{r_size} bytes) lies outside the area"),
        ));
    }
    let first = r_size.min(len - r_off);
    let mut text = vec![0u8; r_size as usize];
    disk.read_at(&mut text[..first as usize], off + r_off)?;
    if first < r_size {
        disk.read_at(&mut text[first as usize..], off + MDA_HEADER_SIZE)?;
    }
    let computed = lvm_crc(INITIAL_CRC, &text);
    if computed != r_sum {
        return Err(Error::corrupt(
            &what,
            format!(
                "metadata of VG {}: checksum mismatch (stored {r_sum:#010x}, computed {computed:#010x})",
                vg_name_hint(&text)
            ),
        ));
    }
    while text.last() == Some(&0) {
        text.pop();
    }
    String::from_utf8(text)
        .map(Some)
        .map_err(|_| Error::corrupt(&what, "metadata text is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_lvm_reference_definition() {
        // Bitwise reference of LVM's calc_crc (lib/misc/crc.c).
        fn reference(mut crc: u32, data: &[u8]) -> u32 {
            for &b in data {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 != 0 {
                        (crc >> 1) ^ 0xEDB8_8320
                    } else {
                        crc >> 1
                    };
                }
            }
            crc
        }
        let data = b"vg0 {\nid = \"x\"\n}\n";
        assert_eq!(lvm_crc(INITIAL_CRC, data), reference(INITIAL_CRC, data));
        let (a, b) = data.split_at(5);
        assert_eq!(
            lvm_crc(lvm_crc(INITIAL_CRC, a), b),
            reference(INITIAL_CRC, data)
        );
    }

    #[test]
    fn vg_name_hint_skips_comments() {
        assert_eq!(vg_name_hint(b"# x\n\n  my-vg {\n"), "my-vg");
        assert_eq!(vg_name_hint(b"\xff"), "(unknown VG)");
    }
}
