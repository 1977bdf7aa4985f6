//! Helpers shared by the qcow2 tests: the raw source image made from the
//! trait suite's pattern, qcow2 overlays over a backing file, and paths as
//! owned strings for the qemu-img command lines (the tools themselves run
//! through lifeboat-testsupport).

#![allow(dead_code)]

use lifeboat_formats::{open_image_with, AllowedPaths, OpenOptions};
use lifeboat_vdisk::ReadDisk;
use std::path::Path;
use std::sync::Arc;

/// The files of `image`'s own directory, allowed as backing files.
pub fn own_dir(image: &str) -> AllowedPaths {
    let mut allowed = AllowedPaths::none();
    allowed.allow(Path::new(image).parent().unwrap()).unwrap();
    allowed
}

/// The factory, allowed to open backing files beside `image` only.
pub fn open_in_own_dir(image: &str) -> lifeboat_vdisk::Result<Arc<dyn ReadDisk>> {
    let options = OpenOptions {
        format: None,
        allowed: own_dir(image),
    };
    Ok(open_image_with(Path::new(image), &options)?.disk)
}

/// Writes `data` to `dir/name` and returns the path as a string.
pub fn write_file(dir: &Path, name: &str, data: &[u8]) -> String {
    path_str(&lifeboat_testsupport::write_file(dir, name, data))
}

/// The pattern used as source disk: 5 MiB + 4096 bytes (not a multiple of
/// the cluster size), 192 KiB blocks so zero blocks span whole clusters and
/// data blocks do not start on a cluster boundary.
/// Every other 40 KiB stretch is masked to 3 bits per byte so that it
/// compresses (qemu-img stores incompressible clusters uncompressed even
/// with `-c`, so compressed images hold both kinds).
pub fn source_pattern() -> Vec<u8> {
    let mut v = lifeboat_vdisk::testsuite::pattern_with_holes((5 << 20) + 4096, 3 * 65536 + 4096);
    for (i, stretch) in v.chunks_mut(40 << 10).enumerate() {
        if i % 2 == 1 {
            stretch.iter_mut().for_each(|b| *b &= 0x07);
        }
    }
    v
}

/// `qemu-img create -f qcow2 -b backing -F backing_format top [size]`: a
/// qcow2 overlay at `top` over `backing` (relative names resolve against
/// the overlay's folder); `size` is empty or the virtual size.
pub fn qcow2_overlay(top: &str, backing: &str, backing_format: &str, size: &[&str]) {
    let mut args = vec![
        "create",
        "-f",
        "qcow2",
        "-b",
        backing,
        "-F",
        backing_format,
        top,
    ];
    args.extend_from_slice(size);
    lifeboat_testsupport::qemu_img(&args);
}

/// `p` as an owned string (test paths are UTF-8).
pub fn path_str(p: &Path) -> String {
    lifeboat_testsupport::path_str(p).to_string()
}
