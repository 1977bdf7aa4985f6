//! Fuzz target `image_headers`: the image readers of `lifeboat-formats`.
//!
//! The input is written to `fuzz.img` in `$TMPDIR/lifeboat-fuzz-image_headers-<pid>`
//! (created once per process, the file rewritten per input) and opened with
//! `lifeboat_formats::open_image`, which detects qcow2 / VMDK (sparse or
//! descriptor) / VHDX by magic and falls back to raw. Then, if it opened:
//! `size`, `extents` over the first 64 MiB and over the whole disk, and a
//! few 4 KiB reads at the start, the middle, the end and at the first data
//! extents (reads decompress qcow2 clusters and walk L1/L2, grain and BAT
//! tables). Errors are expected; panics, hangs and huge allocations are the
//! bugs looked for.
//!
//! Checked invariant (the `ReadDisk::extents` contract): the extents of a
//! range are adjacent and cover exactly that range clamped to the disk.
#![no_main]

use libfuzzer_sys::fuzz_target;
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

fuzz_target!(|data: &[u8]| {
    let path = image_path();
    if std::fs::write(path, data).is_err() {
        return;
    }
    let Ok(disk) = lifeboat_formats::open_image(path) else {
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
});
