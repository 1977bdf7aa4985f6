//! End-to-end publishing on this machine (needs root, /dev/fuse, a free
//! loop device, util-linux, gdisk, e2fsprogs, dosfstools, mtools): a GPT
//! disk with an ext4 and a vfat partition is backed up into a repository,
//! published, read, checked read-only, and unpublished; a killed publisher
//! is cleaned up by `unpublish_all`; a corrupt chunk reads as EIO.

mod common;

use common::{
    assert_clean, backed_up, daemon, leftovers, repo_of, require, run_stdout, CHUNK, MIB,
};
use lifeboat_publish::{
    publish, published, unpublish, unpublish_all, DaemonRequest, PublishOptions, SessionState,
    HANG_HOOK,
};
use lifeboat_repo::Repository;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const P1_START: u64 = MIB; // ext4, 16 MiB
const P2_START: u64 = 17 * MIB; // vfat, 8 MiB
const DISK_SIZE: u64 = 32 * MIB;

fn require_env() {
    require(&[
        ("sgdisk", "gdisk"),
        ("mkfs.vfat", "dosfstools"),
        ("mcopy", "mtools"),
        ("fusefat", "fusefat (this kernel has no vfat driver)"),
        ("lsblk", "util-linux"),
    ]);
}

fn data_bytes() -> Vec<u8> {
    (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

struct Fixture {
    _tmp: tempfile::TempDir,
    repo: PathBuf,
    mount_root: PathBuf,
    state_dir: PathBuf,
}

/// Builds the GPT disk and backs it up as `web01` (disk `disk0`).
fn fixture() -> Fixture {
    require_env();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let src = t.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("hello.txt"), b"hello from ext4\n").unwrap();
    std::fs::write(src.join("sub/data.bin"), data_bytes()).unwrap();
    let ext4 = t.join("ext4.img");
    run_stdout(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-d"])
            .arg(&src)
            .arg(&ext4)
            .arg("16M"),
    );
    let vfat = t.join("vfat.img");
    run_stdout(Command::new("mkfs.vfat").arg("-C").arg(&vfat).arg("8192"));
    let note = t.join("note.txt");
    std::fs::write(&note, b"hello from vfat\r\n").unwrap();
    run_stdout(
        Command::new("mcopy")
            .arg("-i")
            .arg(&vfat)
            .arg(&note)
            .arg("::/NOTE.TXT"),
    );

    let disk = t.join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(DISK_SIZE)
        .unwrap();
    run_stdout(
        Command::new("sgdisk")
            .args(["-n1:2048:+16M", "-t1:8300", "-n2:34816:+8M", "-t2:0700"])
            .arg(&disk),
    );
    let f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    f.write_all_at(&std::fs::read(&ext4).unwrap(), P1_START)
        .unwrap();
    f.write_all_at(&std::fs::read(&vfat).unwrap(), P2_START)
        .unwrap();
    drop(f);

    let repo_dir = t.join("repo");
    backed_up(&repo_dir, "web01", &[("disk0", &disk)]);
    Fixture {
        repo: repo_dir,
        mount_root: t.join("mnt"),
        state_dir: t.join("state"),
        _tmp: tmp,
    }
}

fn options(fx: &Fixture) -> PublishOptions {
    PublishOptions {
        repo: fx.repo.clone(),
        restore_point: "web01@latest".into(),
        mount_root: fx.mount_root.clone(),
        state_dir: fx.state_dir.clone(),
        disks: vec![],
        block_store: None,
        group: None,
    }
}

fn mount_of<'a>(s: &'a SessionState, volume: &str) -> &'a lifeboat_publish::MountEntry {
    s.mounts
        .iter()
        .find(|m| m.volume == volume)
        .unwrap_or_else(|| panic!("no mount for {volume}: {s:#?}"))
}

#[test]
fn publish_read_readonly_unpublish() {
    let fx = fixture();
    let s = publish(&options(&fx), &repo_of(&options(&fx)), daemon()).unwrap();
    let result = std::panic::catch_unwind(|| {
        assert_eq!(s.loops.len(), 2, "{s:#?}");
        // Loop devices read the FUSE disk file with direct I/O (no second
        // page cache under the filesystem's).
        for l in &s.loops {
            let dev = l.device.as_deref().expect("attached");
            let name = dev.trim_start_matches("/dev/");
            let dio = std::fs::read_to_string(format!("/sys/block/{name}/loop/dio")).unwrap();
            assert_eq!(dio.trim(), "1", "{dev} is not in direct I/O mode");
        }
        let ext = mount_of(&s, "disk0p1");
        let fat = mount_of(&s, "disk0p2");
        assert!(ext.mounted && ext.fstype == "ext4", "{ext:?}");
        assert!(fat.mounted && fat.fstype == "vfat", "{fat:?}");
        let vmdir = fx.mount_root.join(&s.session).join("web01");
        assert_eq!(ext.mount_point, vmdir.join("disk0p1"));

        // lsblk sees read-only loop devices mounted where the state says.
        for m in [ext, fat] {
            let out = run_stdout(
                Command::new("lsblk")
                    .args(["-n", "-o", "TYPE,RO,MOUNTPOINT"])
                    .arg(&m.device),
            );
            assert!(out.starts_with("loop"), "{out}");
            assert!(out.contains(" 1 ") || out.contains(" 1\t"), "not RO: {out}");
            // A kernel mount shows on its loop device (fusefat's does not).
            if m.fstype == "ext4" {
                assert!(out.contains(&*m.mount_point.to_string_lossy()), "{out}");
            }
        }

        // Exact bytes.
        assert_eq!(
            std::fs::read(vmdir.join("disk0p1/hello.txt")).unwrap(),
            b"hello from ext4\n"
        );
        assert_eq!(
            std::fs::read(vmdir.join("disk0p1/sub/data.bin")).unwrap(),
            data_bytes()
        );
        assert_eq!(
            std::fs::read(vmdir.join("disk0p2/NOTE.TXT")).unwrap(),
            b"hello from vfat\r\n"
        );
        // The disk file is the disk.
        let disk_file = fx
            .mount_root
            .join(&s.session)
            .join(".disks/web01-disk0.raw");
        assert_eq!(std::fs::metadata(&disk_file).unwrap().len(), DISK_SIZE);

        // Nothing is writable.
        for p in [
            vmdir.join("disk0p1/new.txt"),
            vmdir.join("disk0p2/NEW.TXT"),
            vmdir.join("disk0p1/hello.txt"),
        ] {
            let e = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&p)
                .unwrap_err();
            assert_eq!(e.raw_os_error(), Some(30), "{}: {e}", p.display()); // EROFS
        }
        let e = std::fs::OpenOptions::new()
            .write(true)
            .open(&disk_file)
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(30), "{e}");

        let listed = published(&fx.state_dir).unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].alive);
        assert_eq!(listed[0].state.restore_point, s.restore_point);
    });
    let un = unpublish(&fx.state_dir, &s.session);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    un.unwrap();
    assert_clean(&fx.mount_root);
    assert!(published(&fx.state_dir).unwrap().is_empty());
    assert!(!fx.mount_root.join(&s.session).exists());
}

#[test]
fn a_publisher_killed_mid_publish_is_cleaned_up() {
    let fx = fixture();
    // One publisher killed after it was ready...
    let first = publish(&options(&fx), &repo_of(&options(&fx)), daemon()).unwrap();
    // ...and one killed mid-publish: started directly (no parent to clean
    // up after it), hanging after its first loop device.
    let rp = Repository::open(&fx.repo, None)
        .unwrap()
        .resolve("web01@latest")
        .unwrap()
        .name();
    let req = DaemonRequest {
        session: "web01-hang".into(),
        repo: fx.repo.clone(),
        restore_point: rp,
        mount_root: fx.mount_root.clone(),
        state_dir: fx.state_dir.clone(),
        disks: vec![],
        block_store: None,
        group: None,
        secret_on_stdin: false,
    };
    let mut hanging = daemon()
        .arg(serde_json::to_string(&req).unwrap())
        .env(HANG_HOOK, "1")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the second publisher never attached a loop device"
        );
        let sessions = published(&fx.state_dir).unwrap();
        if sessions.iter().any(|s| {
            s.state.session == "web01-hang" && s.state.loops.iter().any(|l| l.device.is_some())
        }) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    hanging.kill().unwrap(); // SIGKILL
    hanging.wait().unwrap();
    run_stdout(Command::new("kill").args(["-9", &first.daemon_pid.to_string()]));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (mounts, loops) = leftovers(&fx.mount_root);
    assert!(
        !mounts.is_empty() && loops.len() >= 3,
        "the killed publishers left too little to clean? {mounts:?} {loops:?}"
    );
    let listed = published(&fx.state_dir).unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|s| !s.alive), "{listed:?}");
    let (done, errors) = unpublish_all(&fx.state_dir).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(done.len(), 2);
    assert_clean(&fx.mount_root);
    assert!(published(&fx.state_dir).unwrap().is_empty());
}

#[test]
fn a_corrupt_chunk_reads_as_eio_and_the_rest_is_published() {
    let fx = fixture();
    // Corrupt every chunk of the vfat partition.
    let repo = Repository::open(&fx.repo, None).unwrap();
    let m = repo.resolve("web01@latest").unwrap();
    let index = repo.load_index(&m, "disk0").unwrap();
    let first = (P2_START / u64::from(CHUNK)) as usize;
    let last = ((P2_START + 8 * MIB) / u64::from(CHUNK)) as usize;
    let mut corrupted = 0;
    let bad_offset = index.digests[first..last]
        .iter()
        .position(|d| d.is_some())
        .map(|i| (first + i) as u64 * u64::from(CHUNK))
        .expect("the vfat partition has data chunks");
    for d in index.digests[first..last].iter().flatten() {
        let hex = d.to_hex();
        let path = find_file(&fx.repo.join("chunks"), &hex).expect("chunk file");
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        corrupted += 1;
    }
    assert!(corrupted > 0);

    let s = publish(&options(&fx), &repo_of(&options(&fx)), daemon()).unwrap();
    let result = std::panic::catch_unwind(|| {
        assert!(mount_of(&s, "disk0p1").mounted, "{s:#?}");
        assert!(
            s.mounts.iter().all(|m| m.volume != "disk0p2" || !m.mounted),
            "{s:#?}"
        );
        assert!(
            s.problems
                .iter()
                .any(|p| p.message.contains("disk0p2") && p.kind.leaves_data_unserved()),
            "{:?}",
            s.problems
        );
        // blkid finding nothing on an unreadable volume is not a harmless
        // "no filesystem found".
        assert!(
            !s.problems
                .iter()
                .any(|p| p.message.contains("disk0p2") && !p.kind.leaves_data_unserved()),
            "{:?}",
            s.problems
        );
        let vmdir = fx.mount_root.join(&s.session).join("web01");
        assert_eq!(
            std::fs::read(vmdir.join("disk0p1/sub/data.bin")).unwrap(),
            data_bytes()
        );
        let disk_file = fx
            .mount_root
            .join(&s.session)
            .join(".disks/web01-disk0.raw");
        let f = std::fs::File::open(&disk_file).unwrap();
        let mut buf = vec![0u8; 4096];
        let e = f.read_exact_at(&mut buf, bad_offset).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(5), "{e}"); // EIO
                                                      // A healthy region still reads.
        let mut head = [0u8; 8];
        (&f).take(8).read_exact(&mut head).unwrap();
    });
    let un = unpublish(&fx.state_dir, &s.session);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    un.unwrap();
    assert_clean(&fx.mount_root);
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_file(&p, name) {
                return Some(f);
            }
        } else if e.file_name().to_string_lossy().starts_with(name) {
            return Some(p);
        }
    }
    None
}
