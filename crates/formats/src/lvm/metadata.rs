//! The volume group model decoded from LVM2 text metadata: extent size, PVs
//! (id, pe_start, pe_count) and LVs with their segments.
//!
//! Units in the text are 512-byte sectors (`extent_size`, `pe_start`,
//! `stripe_size`) and extents (`pe_count`, `start_extent`,
//! `extent_count`, the stripe start extents); this model holds bytes for
//! sizes and offsets, extents for extent numbers. A linear segment is
//! written by LVM as `type = "striped"` with `stripe_count = 1`.
//! Problems of one LV (an unsupported segment type, segments out of order)
//! are kept with that LV so the others stay usable; problems of the VG
//! itself (no extent size, a PV without pe_start) fail the whole VG.

use super::text::{self, Section, Value};
use lifeboat_vdisk::{Error, Result};

/// Bytes per sector in LVM metadata.
const SECTOR: u64 = 512;

/// One physical volume of a VG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhysicalVolume {
    /// The name inside the metadata (`pv0`).
    pub name: String,
    /// The PV UUID without hyphens.
    pub id: String,
    /// Byte offset of the first extent from the start of the PV.
    pub pe_start: u64,
    /// Number of extents.
    pub pe_count: u64,
}

/// Where one stripe of a segment lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeArea {
    /// The PV name inside the metadata (`pv0`).
    pub pv: String,
    /// First extent on that PV.
    pub start_extent: u64,
}

/// One segment of an LV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// First LV extent this segment covers.
    pub start_extent: u64,
    pub extent_count: u64,
    /// Stripe chunk in bytes (0 for a linear segment).
    pub stripe_size: u64,
    /// One area for linear, several for striped.
    pub stripes: Vec<StripeArea>,
}

/// One logical volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalVolume {
    pub name: String,
    /// Has the `VISIBLE` status flag (hidden LVs are internal parts of others).
    pub visible: bool,
    /// The segments in LV order, or why they cannot be used.
    pub segments: std::result::Result<Vec<Segment>, String>,
}

/// A volume group as described by one metadata text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeGroup {
    pub name: String,
    /// The VG UUID without hyphens.
    pub id: String,
    pub seqno: u64,
    /// Extent size in bytes.
    pub extent_size: u64,
    pub pvs: Vec<PhysicalVolume>,
    pub lvs: Vec<LogicalVolume>,
}

impl VolumeGroup {
    /// The PV named `name` inside the metadata.
    pub fn pv(&self, name: &str) -> Option<&PhysicalVolume> {
        self.pvs.iter().find(|p| p.name == name)
    }
}

/// A UUID without its hyphens.
pub fn bare_uuid(s: &str) -> String {
    s.chars().filter(|&c| c != '-').collect()
}

fn uint(sec: &Section, key: &str, what: &str) -> std::result::Result<u64, String> {
    match sec.int(key) {
        Some(v) if v >= 0 => Ok(v as u64),
        Some(v) => Err(format!("{what}: {key} = {v} is negative")),
        None => Err(format!("{what}: missing integer {key}")),
    }
}

/// Decodes the metadata `text`; errors name the VG and the problem.
pub fn parse_vg(text: &str) -> Result<VolumeGroup> {
    let hint = super::label::vg_name_hint(text.as_bytes());
    let top = text::parse(text).map_err(|e| {
        Error::corrupt(
            format!("LVM VG {hint}"),
            format!("metadata syntax error at {e}"),
        )
    })?;
    let Some((name, vg)) = top.sections().next() else {
        return Err(Error::corrupt(
            format!("LVM VG {hint}"),
            "metadata holds no volume group section",
        ));
    };
    let what = format!("LVM VG {name}");
    let fail = |d: String| Error::corrupt(&what, d);
    let extent_sectors = uint(vg, "extent_size", "VG").map_err(fail)?;
    let extent_size = extent_sectors
        .checked_mul(SECTOR)
        .filter(|&e| e > 0)
        .ok_or_else(|| fail(format!("extent_size {extent_sectors} is invalid")))?;
    let mut pvs = Vec::new();
    if let Some(list) = vg.section("physical_volumes") {
        for (pv_name, pv) in list.sections() {
            let w = format!("PV {pv_name}");
            let pe_start = uint(pv, "pe_start", &w)
                .map_err(fail)?
                .checked_mul(SECTOR)
                .ok_or_else(|| fail(format!("{w}: pe_start overflows")))?;
            pvs.push(PhysicalVolume {
                name: pv_name.to_string(),
                id: bare_uuid(
                    pv.str("id")
                        .ok_or_else(|| fail(format!("{w}: missing id")))?,
                ),
                pe_start,
                pe_count: uint(pv, "pe_count", &w).map_err(fail)?,
            });
        }
    }
    let mut lvs = Vec::new();
    if let Some(list) = vg.section("logical_volumes") {
        for (lv_name, lv) in list.sections() {
            let visible = lv
                .list("status")
                .is_some_and(|l| l.iter().any(|v| v == &Value::Str("VISIBLE".into())));
            lvs.push(LogicalVolume {
                name: lv_name.to_string(),
                visible,
                segments: segments(lv, extent_size),
            });
        }
    }
    Ok(VolumeGroup {
        name: name.to_string(),
        id: bare_uuid(vg.str("id").unwrap_or_default()),
        seqno: uint(vg, "seqno", "VG").unwrap_or(0),
        extent_size,
        pvs,
        lvs,
    })
}

/// The segments of one LV section, checked to follow each other from extent 0.
fn segments(lv: &Section, extent_size: u64) -> std::result::Result<Vec<Segment>, String> {
    let mut out: Vec<Segment> = Vec::new();
    for (seg_name, seg) in lv.sections() {
        let w = format!("segment {seg_name}");
        let kind = seg.str("type").unwrap_or("striped");
        if kind != "striped" && kind != "linear" {
            return Err(format!(
                "{w}: segment type {kind:?} is not supported (only linear and striped)"
            ));
        }
        let start_extent = uint(seg, "start_extent", &w)?;
        let extent_count = uint(seg, "extent_count", &w)?;
        let stripe_count = uint(seg, "stripe_count", &w).unwrap_or(1);
        let list = seg
            .list("stripes")
            .ok_or(format!("{w}: missing stripes list"))?;
        let mut stripes = Vec::new();
        for pair in list.chunks(2) {
            match pair {
                [Value::Str(pv), Value::Int(e)] if *e >= 0 => stripes.push(StripeArea {
                    pv: pv.clone(),
                    start_extent: *e as u64,
                }),
                _ => return Err(format!("{w}: stripes list is not [\"pvN\", extent, ...]")),
            }
        }
        if stripes.is_empty() || stripes.len() as u64 != stripe_count {
            return Err(format!(
                "{w}: stripe_count = {stripe_count} but {} stripes are listed",
                stripes.len()
            ));
        }
        let stripe_size = if stripe_count > 1 {
            let sectors = uint(seg, "stripe_size", &w)?;
            let bytes = sectors.saturating_mul(SECTOR);
            if bytes == 0 || !extent_count.is_multiple_of(stripe_count) {
                return Err(format!(
                    "{w}: stripe_size {sectors} or extent_count {extent_count} does not divide \
                     into {stripe_count} stripes"
                ));
            }
            let area = (extent_count / stripe_count).saturating_mul(extent_size);
            if !area.is_multiple_of(bytes) {
                return Err(format!(
                    "{w}: a stripe of {area} bytes is not a multiple of stripe_size {bytes}"
                ));
            }
            bytes
        } else {
            0
        };
        out.push(Segment {
            start_extent,
            extent_count,
            stripe_size,
            stripes,
        });
    }
    out.sort_by_key(|s| s.start_extent);
    let mut next = 0u64;
    for s in &out {
        if s.start_extent != next {
            return Err(format!(
                "segments do not follow each other: extent {} expected, segment starts at {}",
                next, s.start_extent
            ));
        }
        next = next
            .checked_add(s.extent_count)
            .ok_or("extent count overflows")?;
    }
    if out.is_empty() {
        return Err("no segments".to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"vg1 {
id = "abc-def"
seqno = 3
extent_size = 8192
physical_volumes {
pv0 { id = "1111-2222" pe_start = 2048 pe_count = 100 }
}
logical_volumes {
lin { status = ["READ", "WRITE", "VISIBLE"] segment_count = 2
segment2 { start_extent = 5 extent_count = 2 type = "striped" stripe_count = 1 stripes = ["pv0", 50] }
segment1 { start_extent = 0 extent_count = 5 type = "striped" stripe_count = 1 stripes = ["pv0", 0] }
}
str { status = ["VISIBLE"]
segment1 { start_extent = 0 extent_count = 4 type = "striped" stripe_count = 2 stripe_size = 128
stripes = ["pv0", 10, "pv0", 20] }
}
thin { status = ["VISIBLE"] segment1 { start_extent = 0 extent_count = 1 type = "thin" } }
}
}
"#;

    #[test]
    fn decodes_linear_and_striped_lvs() {
        let vg = parse_vg(TEXT).unwrap();
        assert_eq!(vg.name, "vg1");
        assert_eq!(vg.extent_size, 4 << 20);
        assert_eq!(vg.pvs[0].pe_start, 1 << 20);
        assert_eq!(vg.pvs[0].id, "11112222");
        let lin = vg.lvs[0].segments.as_ref().unwrap();
        assert_eq!(lin[0].start_extent, 0);
        assert_eq!(lin[1].stripes[0].start_extent, 50);
        let st = vg.lvs[1].segments.as_ref().unwrap();
        assert_eq!(st[0].stripe_size, 65536);
        assert_eq!(st[0].stripes.len(), 2);
        assert!(vg.lvs[2]
            .segments
            .as_ref()
            .unwrap_err()
            .contains("\"thin\""));
    }

    #[test]
    fn errors_name_the_vg() {
        let e = parse_vg("vg7 {\n extent_size = \n}")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("LVM VG vg7") && e.contains("syntax error"),
            "{e}"
        );
        let e = parse_vg("vg8 { seqno = 1 }").unwrap_err().to_string();
        assert!(e.contains("LVM VG vg8") && e.contains("extent_size"), "{e}");
    }
}
