//! Helpers shared by the tests of the Lifeboat workspace, written once:
//!
//! - [`tools`]: finding an external tool or failing the test with the
//!   `apt-get install` advice, the root check, one-at-a-time locks.
//! - [`process`]: running a command and failing with its command line and
//!   stderr; `qemu-img`/`qemu-io`; re-running an ignored test inside a
//!   small tmpfs.
//! - [`files`]: scratch files: sparse files, patterns written with holes,
//!   byte patches, error-message checks.
//! - [`disks`]: partition tables made by sfdisk, ext4 images made by
//!   `mkfs.ext4 -d`.
//! - [`journal`]: ext4 images whose newest file exists only in the
//!   journal, made by the kernel.
//! - [`damage`]: the five kinds of damage reliability tests apply to a
//!   file (flip, half, zero, delete, swap).
//! - [`fuzz`]: replaying the committed fuzz corpora in `cargo test`.
//! - [`lvm`]: loop devices detached on drop, an `lvm.conf` that shows lvm2
//!   only the test's devices, running lvm2 tools with it.
//! - [`repo`] (feature `repo`): test repositories, backups through the
//!   engine, chunk files, repository snapshots.
//! - [`pki`]: a test CA, server and client certificates made with the
//!   `openssl` CLI, in the folder layout QEMU and libnbd read.
//! - [`nfs`] (feature `nfs`): a raw MOUNT/NFS v3 client for tests that
//!   speak RPC themselves.
//!
//! Everything here panics on failure: these are test helpers, and a test
//! that needs a missing tool must fail saying how to install it, never pass
//! silently. The crate is `publish = false` and only ever a
//! `[dev-dependencies]` entry.

pub mod damage;
pub mod disks;
pub mod files;
pub mod fuzz;
pub mod journal;
pub mod lvm;
pub mod pki;
pub mod process;
pub mod tools;

#[cfg(feature = "nfs")]
pub mod nfs;
#[cfg(feature = "repo")]
pub mod repo;

pub use disks::{ext4_image, partitioned_disk, sfdisk, sfdisk_partitions, Partition};
pub use files::{
    assert_error_names, patch_file, path_str, sparse_file, write_at, write_file, write_sparse,
};
pub use journal::{ext4_journal_only, JOURNAL_MARKER, JOURNAL_ONLY_FILE};
pub use lvm::{create_vg, lvm, lvm_conf, Loops};
pub use process::{
    output, qemu_img, qemu_img_from_raw, qemu_io, run, run_ignored_in_tmpfs, run_stdout,
    run_with_stdin,
};
pub use tools::{find_tool, free_port, require_root, require_tool, serial, tool};

/// One mebibyte, the unit most test images are measured in.
pub const MIB: u64 = 1 << 20;
