//! The bodies of the fuzz targets of this crate (`fuzz/`), replayed over
//! their corpora by `tests/fuzz_corpus.rs`. `image_headers`: the image
//! readers.
//!
//! The input is written to `fuzz.img` in `$TMPDIR/lifeboat-fuzz-image_headers-<pid>`
//! (created once per process, the file rewritten per input) and opened with
//! `crate::open_image`, which detects qcow2 / VMDK (sparse or
//! descriptor) / VHDX by magic and falls back to raw. Then, if it opened:
//! `size`, `extents` over the first 64 MiB and over the whole disk, and a
//! few 4 KiB reads at the start, the middle, the end and at the first data
//! extents (reads decompress qcow2 clusters and walk L1/L2, grain and BAT
//! tables). Errors are expected; panics, hangs and huge allocations are the
//! bugs looked for.
//!
//! Checked invariant (the `ReadDisk::extents` contract): the extents of a
//! range are adjacent and cover exactly that range clamped to the disk.
use lifeboat_vdisk::ReadDisk;
use std::path::PathBuf;
use std::sync::OnceLock;

/// Most data extents read per input.
const MAX_EXTENT_READS: usize = 4;

fn image_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        // libFuzzer exits without running destructors, so the folder is
        // named (not a TempDir): `rm -rf /tmp/lifeboat-fuzz-*` cleans up.
        let dir = std::env::temp_dir().join(format!(
            "lifeboat-fuzz-image_headers-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir for fuzz images");
        dir.join("fuzz.img")
    })
}

fn check_extents(disk: &dyn ReadDisk, offset: u64, len: u64) -> Vec<lifeboat_vdisk::Extent> {
    let Ok(list) = disk.extents(offset, len) else {
        return Vec::new();
    };
    let end = offset.saturating_add(len).min(disk.size());
    let mut at = offset;
    for e in &list {
        assert_eq!(e.offset, at, "extents not adjacent from {offset}: {list:?}");
        let e_end = e
            .offset
            .checked_add(e.length)
            .expect("extent end overflows");
        assert!(e_end <= end, "extent past the range {offset}+{len}: {e:?}");
        at = e_end;
    }
    if offset < end {
        assert_eq!(at, end, "extents do not cover {offset}+{len}: {list:?}");
    }
    list
}

fn read(disk: &dyn ReadDisk, offset: u64) {
    let size = disk.size();
    if size == 0 {
        return;
    }
    let offset = offset.min(size - 1);
    let len = (size - offset).min(4096) as usize;
    let mut buf = vec![0u8; len];
    let _ = disk.read_at(&mut buf, offset);
}

/// One fuzz input (see the module doc). Panics on a broken invariant.
pub fn image_headers(data: &[u8]) {
    let path = image_path();
    if std::fs::write(path, data).is_err() {
        return;
    }
    let Ok(disk) = crate::open_image(path) else {
        return;
    };
    let disk: &dyn ReadDisk = &*disk;
    let size = disk.size();
    let _ = disk.describe();
    check_extents(disk, 0, 64 << 20);
    let all = check_extents(disk, 0, size);
    for off in [0, size / 2, size.saturating_sub(4096)] {
        read(disk, off);
    }
    for e in all
        .iter()
        .filter(|e| e.kind == lifeboat_vdisk::ExtentKind::Data)
        .take(MAX_EXTENT_READS)
    {
        read(disk, e.offset);
    }
}

/// The disk of an input: bit 0 of `mode` set, the rest is a sparse image
/// ([`lifeboat_vdisk::SparseInputDisk`]); clear, the raw bytes of a small
/// disk.
fn input_disk(mode: u8, rest: &[u8]) -> std::sync::Arc<dyn ReadDisk> {
    if mode & 1 != 0 {
        std::sync::Arc::new(lifeboat_vdisk::SparseInputDisk::decode(rest))
    } else {
        std::sync::Arc::new(lifeboat_vdisk::MemDisk::new("fuzz", rest.to_vec()))
    }
}

/// Recomputes the entry-array and header CRCs of a GPT header at `lba`
/// of the raw disk `d` (if one is there), so mutated tables get past them.
fn fix_gpt(d: &mut [u8], lba: u64) {
    use crate::partition::gpt_layout::{array_crc, header_crc, Header};
    let Some(at) = usize::try_from(lba * 512)
        .ok()
        .filter(|a| a + 512 <= d.len())
    else {
        return;
    };
    let Some(h) = Header::decode(&d[at..at + 512]) else {
        return;
    };
    let len = u64::from(h.entry_count) * u64::from(h.entry_size);
    let start = h.array_lba.saturating_mul(512);
    if let (Ok(s), Ok(l)) = (usize::try_from(start), usize::try_from(len)) {
        if let Some(array) = s.checked_add(l).and_then(|e| d.get(s..e)) {
            let crc = array_crc(array);
            d[at + 88..at + 92].copy_from_slice(&crc.to_le_bytes());
        }
    }
    let size = (h.header_size as usize).min(512);
    if let Some(crc) = header_crc(&d[at..at + 512], size) {
        d[at + 16..at + 20].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Fuzz target `partition_table`: MBR (with EBR chains) and GPT (primary
/// and backup) through [`crate::partition::read_partition_table`], then
/// the whole [`crate::volumes::discover_volumes`] (which slices every usable
/// partition and looks for LVM inside).
///
/// ```text
/// byte 0   mode: bit 0  the rest is a sparse image (else a raw disk)
///                bit 1  raw disk: recompute the GPT CRCs (primary at LBA 1,
///                       backup at the last LBA) before reading
/// bytes 1..
/// ```
///
/// Checks: every usable partition lies inside the disk; every volume found
/// reads its first and last bytes without a panic.
pub fn partition_table(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let disk = if mode & 3 == 2 {
        let mut raw = rest.to_vec();
        fix_gpt(&mut raw, 1);
        let last = (raw.len() as u64 / 512).saturating_sub(1);
        fix_gpt(&mut raw, last);
        input_disk(0, &raw)
    } else {
        input_disk(mode, rest)
    };
    let size = disk.size();
    if let Ok(table) = crate::partition::read_partition_table(disk.as_ref()) {
        for p in table.usable() {
            let end = p
                .start
                .checked_add(p.length)
                .expect("partition end overflows");
            assert!(end <= size, "usable partition past the disk end: {p:?}");
        }
    }
    let report = crate::volumes::discover_volumes("fuzz0", disk);
    for v in &report.volumes {
        let n = v.disk.size();
        let mut b = [0u8; 1];
        if n > 0 {
            let _ = v.disk.read_at(&mut b, 0);
            let _ = v.disk.read_at(&mut b, n - 1);
        }
    }
}

/// Fuzz target `lvm`: the LVM2 label, PV header, metadata area header and
/// metadata text.
///
/// ```text
/// byte 0   mode: bit 1  the rest is metadata text: `lvm::text::parse`
///                       and `lvm::parse_vg` (bytes taken as UTF-8, lossily)
///                bit 0  (bit 1 clear) the rest is a sparse image, else a
///                       raw disk: `read_pv_label`, then `discover_volumes`
///                       (assembling the VG and mapping its LVs)
/// bytes 1..
/// ```
///
/// Checked: no panic, no hang, no huge allocation (label CRCs stop most
/// mutations of a disk input; the text mode reaches the parsers directly).
pub fn lvm(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 2 != 0 {
        let text = String::from_utf8_lossy(rest);
        let _ = crate::lvm::text::parse(&text);
        if let Ok(vg) = crate::lvm::parse_vg(&text) {
            let _ = crate::lvm::dm_name(&vg.name, "lv");
            for lv in &vg.lvs {
                let _ = crate::lvm::dm_name(&vg.name, &lv.name);
            }
        }
        return;
    }
    let disk = input_disk(mode, rest);
    if let Ok(Some(label)) = crate::lvm::read_pv_label(disk.as_ref()) {
        if let Some(text) = &label.metadata {
            let _ = crate::lvm::parse_vg(text);
        }
    }
    let report = crate::volumes::discover_volumes("fuzz0", disk);
    for v in &report.volumes {
        let n = v.disk.size();
        let mut b = [0u8; 1];
        if n > 0 {
            let _ = v.disk.read_at(&mut b, n / 2);
        }
    }
}

/// Fuzz target `vmdk_descriptor`: the VMDK descriptor text parser
/// (`vmdk::descriptor::parse`), the input taken as UTF-8 lossily. Checks:
/// a FLAT extent names a file, a ZERO extent none.
pub fn vmdk_descriptor(data: &[u8]) {
    use crate::vmdk::descriptor::{parse, ExtentType};
    let text = String::from_utf8_lossy(data);
    if let Ok(d) = parse("fuzz.vmdk", &text) {
        for e in &d.extents {
            match e.kind {
                ExtentType::Zero => assert!(e.file.is_none(), "ZERO extent with a file: {e:?}"),
                ExtentType::Flat | ExtentType::Sparse => {
                    assert!(e.file.is_some(), "extent without a file: {e:?}")
                }
            }
        }
    }
}
