//! Shared helpers of the publish integration tests (the general ones,
//! tools, commands, partitioned disks, ext4 images and backups, come from
//! lifeboat-testsupport): the requirements of a publishing test, the test
//! tree written into filesystems and checked back, a guard that unpublishes
//! a session even when a test fails, and leftover checks (mounts in
//! /proc/self/mountinfo, loop devices in `losetup -a`).
//!
//! Every test that publishes holds [`serial`] so one test binary never has
//! more than one session's loop devices and mounts at a time.

#![allow(dead_code)] // each test binary uses its own subset

use lifeboat_publish::{publish, unpublish, MountEntry, PublishOptions, SessionState};
use lifeboat_testsupport::{partitioned_disk, require_root, require_tool, write_at};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::MutexGuard;

// Re-exported for the test files; each binary uses its own subset.
#[allow(unused_imports)]
pub use lifeboat_testsupport::repo::backed_up;
#[allow(unused_imports)]
pub use lifeboat_testsupport::{ext4_image, run_stdout, serial, sparse_file, Partition, MIB};

/// The chunk size of the test repositories ([`backed_up`]).
pub const CHUNK: u32 = lifeboat_testsupport::repo::BACKUP_CHUNK;
/// The errno of a write to a read-only filesystem.
pub const EROFS: i32 = 30;

/// Asserts root, /dev/fuse and the given `(tool, apt package)` pairs, with
/// install advice for whatever is missing.
pub fn require(tools: &[(&str, &str)]) {
    require_root("loop devices and mounts");
    assert!(
        Path::new("/dev/fuse").exists(),
        "these tests need /dev/fuse (modprobe fuse)"
    );
    let base = [
        ("losetup", "util-linux"),
        ("blkid", "util-linux"),
        ("sfdisk", "fdisk"),
        ("mkfs.ext4", "e2fsprogs"),
    ];
    for (tool, pkg) in base.iter().chain(tools) {
        require_tool(tool, pkg);
    }
}

/// Deterministic file content of `len` bytes.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// Writes the test tree under `dir`: `hello.txt` naming `tag`, and
/// `sub/data.bin` (300,000 bytes of [`pattern`] `seed`).
pub fn write_tree(dir: &Path, tag: &str, seed: u32) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("sub"))?;
    std::fs::write(dir.join("hello.txt"), format!("hello from {tag}\n"))?;
    std::fs::write(dir.join("sub/data.bin"), pattern(300_000, seed))
}

/// Asserts the files of [`write_tree`] read back exact under `dir`, and
/// that `dir` refuses writes.
pub fn check_tree(dir: &Path, tag: &str, seed: u32) {
    assert_eq!(
        std::fs::read_to_string(dir.join("hello.txt")).unwrap(),
        format!("hello from {tag}\n"),
        "{}",
        dir.display()
    );
    assert!(
        std::fs::read(dir.join("sub/data.bin")).unwrap() == pattern(300_000, seed),
        "{}/sub/data.bin differs",
        dir.display()
    );
    assert_read_only(dir, "new.txt", "hello.txt");
}

/// Writes the file `image` into `disk` at byte `offset`.
pub fn write_image(disk: &Path, offset: u64, image: &Path) {
    write_at(disk, offset, &std::fs::read(image).unwrap());
}

/// The directories of one test: repository, mount root, state dir.
pub struct Dirs {
    pub tmp: tempfile::TempDir,
    pub repo: PathBuf,
    pub mount_root: PathBuf,
    pub state_dir: PathBuf,
}

impl Dirs {
    pub fn new() -> Dirs {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path().to_path_buf();
        Dirs {
            tmp,
            repo: t.join("repo"),
            mount_root: t.join("mnt"),
            state_dir: t.join("state"),
        }
    }

    /// A disk image `name` of `size` bytes partitioned by the sfdisk
    /// `script`, with its partitions.
    pub fn disk(&self, name: &str, size: u64, script: &str) -> (PathBuf, Vec<Partition>) {
        let path = self.path(name);
        let parts = partitioned_disk(&path, size, script);
        (path, parts)
    }

    /// A scratch path inside the test directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    pub fn options(&self, restore_point: &str) -> PublishOptions {
        PublishOptions {
            repo: self.repo.clone(),
            restore_point: restore_point.into(),
            mount_root: self.mount_root.clone(),
            state_dir: self.state_dir.clone(),
            disks: vec![],
            block_store: None,
            group: None,
        }
    }
}

/// The start of a publishing test: checks root, /dev/fuse and `tools`,
/// takes the [`serial`] lock and makes the test directories.
pub fn start(tools: &[(&str, &str)]) -> (MutexGuard<'static, ()>, Dirs) {
    require(tools);
    (serial(), Dirs::new())
}

/// The publisher command of these tests.
pub fn daemon() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lifeboat-publishd"))
}

/// A published session, unpublished when dropped (also when the test
/// panics); [`Published::finish`] unpublishes and checks nothing is left.
pub struct Published<'a> {
    pub state: SessionState,
    dirs: &'a Dirs,
    done: bool,
}

/// The (unencrypted) repository of `opts`, open.
pub fn repo_of(opts: &PublishOptions) -> lifeboat_repo::Repository {
    lifeboat_repo::Repository::open(&opts.repo, None)
        .unwrap_or_else(|e| panic!("opening {}: {e}", opts.repo.display()))
}

impl<'a> Published<'a> {
    /// Publishes `restore_point` of the repository in `dirs`.
    pub fn new(dirs: &'a Dirs, restore_point: &str) -> Published<'a> {
        Published::with(dirs, &dirs.options(restore_point))
    }

    /// Publishes as `opts` say (in the directories of `dirs`).
    pub fn with(dirs: &'a Dirs, opts: &PublishOptions) -> Published<'a> {
        let state = publish(opts, &repo_of(opts), daemon())
            .unwrap_or_else(|e| panic!("publish {}: {e}", opts.restore_point));
        Published {
            state,
            dirs,
            done: false,
        }
    }

    /// `<mount-root>/<session>/<vm>`.
    pub fn vm_dir(&self, vm: &str) -> PathBuf {
        self.state.session_dir.join(vm)
    }

    /// The mount entry of `volume`, which must be mounted.
    pub fn mounted(&self, volume: &str) -> &MountEntry {
        let m = self
            .state
            .mounts
            .iter()
            .find(|m| m.volume == volume)
            .unwrap_or_else(|| panic!("no mount for {volume}: {:#?}", self.state));
        assert!(m.mounted, "{volume} not mounted: {m:?}\n{:#?}", self.state);
        m
    }

    /// Unpublishes and asserts no mount or loop device is left.
    pub fn finish(mut self) {
        self.done = true;
        unpublish(&self.dirs.state_dir, &self.state.session).unwrap();
        assert_clean(&self.dirs.mount_root);
        assert!(!self.state.session_dir.exists());
    }
}

impl Drop for Published<'_> {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = unpublish(&self.dirs.state_dir, &self.state.session) {
                eprintln!("cleanup of {}: {e}", self.state.session);
            }
        }
    }
}

/// Mount points in /proc/self/mountinfo and loop devices in `losetup -a`
/// that mention `root`.
pub fn leftovers(root: &Path) -> (Vec<String>, Vec<String>) {
    let root = root.to_string_lossy().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&root))
        .map(String::from)
        .collect();
    let loops = run_stdout(Command::new("losetup").arg("-a"))
        .lines()
        .filter(|l| l.contains(&root))
        .map(String::from)
        .collect();
    (mounts, loops)
}

pub fn assert_clean(root: &Path) {
    let (mounts, loops) = leftovers(root);
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    assert!(loops.is_empty(), "loop devices left: {loops:?}");
}

/// Asserts that creating `new` and writing `existing` under `dir` both
/// fail with EROFS.
pub fn assert_read_only(dir: &Path, new: &str, existing: &str) {
    for p in [dir.join(new), dir.join(existing)] {
        let e = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&p)
            .map(drop)
            .expect_err("a write on a published filesystem succeeded");
        assert_eq!(e.raw_os_error(), Some(EROFS), "{}: {e}", p.display());
    }
}
