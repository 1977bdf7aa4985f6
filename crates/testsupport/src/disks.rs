//! Disk images built with the real tools: partition tables written by
//! sfdisk from a script (and read back as sfdisk reports them), and ext4
//! images made by `mkfs.ext4 -d` from a directory.

use crate::files::sparse_file;
use crate::process::{run, run_stdout, run_with_stdin};
use crate::tools::tool;
use std::path::Path;

/// A partition as `sfdisk --json` reports it, in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// The device node sfdisk names (`<image>1`, `<image>5`, ...).
    pub node: String,
    pub start: u64,
    pub size: u64,
}

/// Partitions `image` with the sfdisk `script` (e.g. "label: gpt\n
/// size=8MiB, type=linux\n").
pub fn sfdisk(image: &Path, script: &str) {
    run_with_stdin(tool("sfdisk", "fdisk").arg("-q").arg(image), script);
}

/// The partitions of `image` as `sfdisk --json` lists them.
pub fn sfdisk_partitions(image: &Path) -> Vec<Partition> {
    let json = run_stdout(tool("sfdisk", "fdisk").arg("--json").arg(image));
    let v: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("sfdisk --json: {e}: {json}"));
    v["partitiontable"]["partitions"]
        .as_array()
        .expect("sfdisk --json lists partitions")
        .iter()
        .map(|p| Partition {
            node: p["node"].as_str().unwrap_or_default().to_string(),
            start: p["start"].as_u64().expect("a start") * 512,
            size: p["size"].as_u64().expect("a size") * 512,
        })
        .collect()
}

/// Creates a sparse `size`-byte disk image at `path`, partitions it with
/// the sfdisk `script` and returns the partitions sfdisk made.
pub fn partitioned_disk(path: &Path, size: u64, script: &str) -> Vec<Partition> {
    sparse_file(path, size);
    sfdisk(path, script);
    sfdisk_partitions(path)
}

/// Makes an ext4 image of `size` bytes (4 KiB blocks) at `image` holding
/// the files of the directory `src`.
pub fn ext4_image(image: &Path, src: &Path, size: u64) {
    run(tool("mkfs.ext4", "e2fsprogs")
        .args(["-q", "-F", "-b", "4096", "-d"])
        .arg(src)
        .arg(image)
        .arg(format!("{}k", size / 1024)));
}
