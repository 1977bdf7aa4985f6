//! A target without /dev/fuse, or without a free loop device: publishing
//! fails with an error naming what is missing and leaves nothing mounted
//! and no loop device attached (needs root, /dev/fuse, util-linux `unshare`,
//! fdisk, e2fsprogs).
//!
//! The target is simulated in a private mount namespace: each test runs
//! itself again (`<test binary> --exact <name>`) under `unshare -m`, after
//! a shell has replaced `/dev` there (a tmpfs with only the device nodes
//! the case allows) or bound `/dev/null` over `/dev/fuse`. The inner run
//! publishes, prints the error and checks its own namespace's mountinfo;
//! the outer run checks the host (loop devices are not namespaced).

mod common;

use common::*;
use lifeboat_publish::{publish, published, PublishOptions};
use std::path::Path;
use std::process::Command;

/// Set in the inner run: the test directory of the outer one.
const INNER: &str = "LIFEBOAT_PUBLISH_TEST_NAMESPACE_DIR";
const MARK: &str = "PUBLISH-ERROR: ";

/// Device nodes of a minimal /dev: null, zero, random, urandom.
const BASIC_NODES: &str = "mknod -m 666 /dev/null c 1 3; mknod -m 666 /dev/zero c 1 5; \
     mknod -m 666 /dev/random c 1 8; mknod -m 666 /dev/urandom c 1 9";

/// A one-disk restore point `web01` (an ext4 partition) in `dirs`.
fn restore_point(dirs: &Dirs) {
    let (disk, parts) = dirs.disk("disk.img", 16 * MIB, "label: gpt\nsize=8MiB, type=linux\n");
    let src = dirs.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hello.txt"), b"hello\n").unwrap();
    let img = dirs.path("p1.ext4");
    ext4_image(&img, &src, parts[0].size);
    write_image(&disk, parts[0].start, &img);
    backed_up(&dirs.repo, "web01", &[("disk0", &disk)]);
}

fn options_in(dir: &Path) -> PublishOptions {
    PublishOptions {
        repo: dir.join("repo"),
        restore_point: "web01@latest".into(),
        mount_root: dir.join("mnt"),
        state_dir: dir.join("state"),
        disks: vec![],
        block_store: None,
        group: None,
    }
}

/// The inner run: publishes (which must fail), prints the error after
/// [`MARK`], and checks nothing is mounted in this namespace and no
/// session is recorded.
fn inner(dir: &Path) {
    let opts = options_in(dir);
    let e = publish(&opts, &repo_of(&opts), daemon()).expect_err("publish succeeded");
    println!("{MARK}{e}");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = opts.mount_root.to_string_lossy().to_string();
    let left: Vec<_> = mountinfo.lines().filter(|l| l.contains(&root)).collect();
    assert!(left.is_empty(), "mounts left in the namespace: {left:?}");
    assert!(published(&opts.state_dir).unwrap().is_empty());
}

/// Runs test `name` again inside a private mount namespace prepared by the
/// shell `setup`; returns the publish error it printed.
fn run_in_namespace(name: &str, dirs: &Dirs, setup: &str) -> String {
    require(&[("unshare", "util-linux")]);
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-ec"])
        .arg(format!("{setup}; exec \"$0\" \"$@\""))
        .arg(&exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(INNER, dirs.tmp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the run inside the namespace failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // Nothing left on the host either.
    assert_clean(&dirs.mount_root);
    stdout
        .lines()
        .find_map(|l| l.split_once(MARK).map(|(_, e)| e))
        .unwrap_or_else(|| panic!("no publish error printed:\n{stdout}\n{stderr}"))
        .to_string()
}

/// In the inner run: runs [`inner`] and returns `None`. In the outer run:
/// the test's lock and directories, with the restore point made.
fn outer_or_inner() -> Option<(std::sync::MutexGuard<'static, ()>, Dirs)> {
    if let Some(dir) = std::env::var_os(INNER) {
        inner(Path::new(&dir));
        return None;
    }
    let (serial, dirs) = start(&[]);
    restore_point(&dirs);
    Some((serial, dirs))
}

#[test]
fn without_dev_fuse_publish_fails_naming_it() {
    let name = "without_dev_fuse_publish_fails_naming_it";
    let Some((_serial, dirs)) = outer_or_inner() else {
        return;
    };

    // No /dev/fuse at all (loop devices are there).
    let e = run_in_namespace(
        name,
        &dirs,
        &format!(
            "mount -t tmpfs -o mode=755 lifeboat-test-dev /dev; {BASIC_NODES}; \
             mknod -m 660 /dev/loop-control c 10 237"
        ),
    );
    assert!(e.contains("/dev/fuse"), "{e}");
    assert!(e.contains("cannot publish on this machine"), "{e}");

    // A /dev/fuse that is not the FUSE device (a container bind-mounting
    // the wrong node).
    let e = run_in_namespace(name, &dirs, "mount --bind /dev/null /dev/fuse");
    assert!(e.contains("/dev/fuse"), "{e}");
    assert!(e.contains("not the FUSE device"), "{e}");
}

#[test]
fn without_a_free_loop_device_publish_fails_naming_it() {
    let name = "without_a_free_loop_device_publish_fails_naming_it";
    let Some((_serial, dirs)) = outer_or_inner() else {
        return;
    };

    // The namespace's /dev has FUSE and one loop device, which is busy
    // (attached here to a scratch file), and no /dev/loop-control.
    let scratch = dirs.path("busy.img");
    std::fs::File::create(&scratch)
        .unwrap()
        .set_len(MIB)
        .unwrap();
    let busy = run_stdout(
        Command::new("losetup")
            .args(["-f", "--show", "-r"])
            .arg(&scratch),
    )
    .trim()
    .to_string();
    let sys = busy.trim_start_matches("/dev/");
    let rdev = std::fs::read_to_string(format!("/sys/block/{sys}/dev")).unwrap_or_default();
    let setup = match rdev.trim().split_once(':') {
        Some((major, minor)) => format!(
            "mount -t tmpfs -o mode=755 lifeboat-test-dev /dev; {BASIC_NODES}; \
             mknod -m 666 /dev/fuse c 10 229; mknod -m 660 {busy} b {major} {minor}"
        ),
        None => String::new(),
    };
    let result = std::panic::catch_unwind(|| {
        assert!(!setup.is_empty(), "no /sys/block/{sys}/dev");
        run_in_namespace(name, &dirs, &setup)
    });
    let _ = Command::new("losetup").arg("-d").arg(&busy).status();
    let e = result.unwrap_or_else(|p| std::panic::resume_unwind(p));
    assert!(e.contains("free loop device"), "{e}");
    assert!(e.contains("cannot publish on this machine"), "{e}");
}
