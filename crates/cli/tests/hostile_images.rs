//! `lifeboat backup` of raw disks whose first sector a guest filled with
//! image metadata pointing at a host file (CVE-2008-2004 class): the backup
//! reads the disk as raw or refuses with an error naming the host path, and
//! no restore point ever holds the host file's bytes. Plus the legitimate
//! case: an overlay backs up through its backing file once it is allowed.

mod common;
use common::*;
use std::path::{Path, PathBuf};

const MARKER: &[u8] = b"HOST-SECRET-MARKER-c41e";

/// A host file the guest wants to read: the marker, repeated (64 KiB).
fn host_secret(dir: &Path) -> PathBuf {
    let host = dir.join("host");
    std::fs::create_dir_all(&host).unwrap();
    let path = host.join("secret");
    let data: Vec<u8> = MARKER.iter().copied().cycle().take(64 << 10).collect();
    std::fs::write(&path, data).unwrap();
    path
}

/// A raw disk of `size` bytes of guest data whose start is `head`.
fn hostile_disk(path: &Path, size: usize, head: &[u8]) -> Vec<u8> {
    let mut disk: Vec<u8> = b"guest data ".iter().copied().cycle().take(size).collect();
    disk[..head.len()].copy_from_slice(head);
    std::fs::write(path, &disk).unwrap();
    disk
}

fn holds_marker(bytes: &[u8]) -> bool {
    bytes.windows(MARKER.len()).any(|w| w == MARKER)
}

/// The first bytes of a qcow2 image whose backing file is `secret` (what
/// a guest writes at the start of its raw disk).
fn qcow2_header(dir: &Path, secret: &Path) -> Vec<u8> {
    let hdr = dir.join("hdr.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        s(secret),
        "-F",
        "raw",
        s(&hdr),
    ]);
    std::fs::read(&hdr).unwrap()
}

/// Backs up `spec` (`disk0=...`) plus `extra` arguments; returns the
/// restore point name and stderr.
fn backup_ok(repo: &Path, vm: &str, spec: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec!["backup", "--repo", s(repo), "--vm", vm, "--json", spec];
    args.extend_from_slice(extra);
    let out = run(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "backup {spec} failed:\n{stderr}{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (v["restore_point"].as_str().unwrap().to_string(), stderr)
}

/// The restore point restored to raw, and its manifest's disk0 format.
fn restored(repo: &Path, dir: &Path, point: &str) -> (Vec<u8>, serde_json::Value) {
    let to = dir.join(format!("{}.restored.raw", point.replace('@', "_")));
    let bytes = restore_raw(repo, point, "disk0", &to);
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&["show", "--repo", s(repo), point, "--json"])).unwrap();
    (bytes, shown["manifest"]["disks"][0]["format"].clone())
}

#[test]
fn raw_disk_holding_a_qcow2_header_never_backs_up_the_host_file() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let secret = host_secret(dir.path());
    let head = qcow2_header(dir.path(), &secret);
    let vms = dir.path().join("vms");
    std::fs::create_dir(&vms).unwrap();

    // Named raw: read as raw, with a warning; the restore point is the
    // disk's own bytes.
    let disk = vms.join("web01.raw");
    let bytes = hostile_disk(&disk, 2 << 20, &head);
    let (point, stderr) = backup_ok(&repo, "web01", &format!("disk0={}", s(&disk)), &[]);
    let (got, format) = restored(&repo, dir.path(), &point);
    assert!(!holds_marker(&got), "the host file is in the restore point");
    assert!(got == bytes, "the raw disk restores bit-exact");
    assert!(
        stderr.contains("warning") && stderr.contains("look like qcow2"),
        "{stderr}"
    );
    assert_eq!(format["format"], "raw");
    assert_eq!(format["chosen_by"], "file_name");
    assert_eq!(format["content_looks_like"], "qcow2");
    let text = ok(&["show", "--repo", s(&repo), &point]);
    assert!(text.contains("format raw (file name)"), "{text}");

    // No telling name: refused, naming the host path and how to allow it
    // or read the disk as raw; no restore point is made.
    let unnamed = vms.join("web02-disk0");
    let bytes = hostile_disk(&unnamed, 2 << 20, &head);
    let spec = format!("disk0={}", s(&unnamed));
    let err = fails_with(1, &["backup", "--repo", s(&repo), "--vm", "web02", &spec]);
    assert!(
        err.contains(s(&secret)) && err.contains("--allow-backing") && err.contains("raw:"),
        "{err}"
    );
    assert!(!list_names(&repo).iter().any(|n| n.starts_with("web02@")));
    // Allowing the disk's own folder does not allow the host file.
    let err = fails_with(
        1,
        &[
            "backup",
            "--repo",
            s(&repo),
            "--vm",
            "web02",
            &spec,
            "--allow-backing",
            s(&vms),
        ],
    );
    assert!(err.contains(s(&secret)), "{err}");

    // Told raw, per disk or for all disks: the disk's own bytes.
    for (spec, extra) in [
        (format!("disk0=raw:{}", s(&unnamed)), vec![]),
        (format!("disk0={}", s(&unnamed)), vec!["--format", "raw"]),
    ] {
        let (point, _) = backup_ok(&repo, "web02", &spec, &extra);
        let (got, format) = restored(&repo, dir.path(), &point);
        assert!(!holds_marker(&got) && got == bytes, "{spec} {extra:?}");
        assert_eq!(format["chosen_by"], "given");
    }
}

#[test]
fn raw_disk_holding_a_vmdk_descriptor_never_backs_up_the_host_file() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let secret = host_secret(dir.path());
    let vms = dir.path().join("vms");
    std::fs::create_dir(&vms).unwrap();
    // A small disk (a descriptor file may be up to 1 MiB) whose first
    // sector is a descriptor with one flat extent: the host file.
    let descriptor = format!(
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n\
         createType=\"monolithicFlat\"\n\n# Extent description\n\
         RW 128 FLAT \"{}\" 0\n\n",
        s(&secret)
    );

    let disk = vms.join("seed.img");
    let bytes = hostile_disk(&disk, 512 << 10, descriptor.as_bytes());
    let (point, stderr) = backup_ok(&repo, "seed", &format!("disk0={}", s(&disk)), &[]);
    let (got, format) = restored(&repo, dir.path(), &point);
    assert!(!holds_marker(&got), "the host file is in the restore point");
    assert!(got == bytes, "the raw disk restores bit-exact");
    assert!(stderr.contains("look like vmdk"), "{stderr}");
    assert_eq!(format["format"], "raw");

    let unnamed = vms.join("seed-disk0");
    hostile_disk(&unnamed, 512 << 10, descriptor.as_bytes());
    let spec = format!("disk0={}", s(&unnamed));
    let err = fails_with(1, &["backup", "--repo", s(&repo), "--vm", "seed2", &spec]);
    assert!(
        err.contains(s(&secret))
            && err.contains("VMDK extent file")
            && err.contains("--allow-backing"),
        "{err}"
    );
    assert!(!list_names(&repo).iter().any(|n| n.starts_with("seed2@")));
}

#[test]
fn qcow2_overlay_backs_up_through_an_allowed_backing_file() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let base_dir = dir.path().join("base");
    let vms = dir.path().join("vms");
    std::fs::create_dir(&base_dir).unwrap();
    std::fs::create_dir(&vms).unwrap();
    let base = base_dir.join("debian.raw");
    make_disk(&base, 4 << 20, 7);
    let top = vms.join("web03.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        s(&base),
        "-F",
        "raw",
        s(&top),
    ]);
    qemu_img_io(&top, "write -P 0x3c 1M 64k");
    let flat = dir.path().join("web03.flat.raw");
    qemu_img(&["convert", "-f", "qcow2", "-O", "raw", s(&top), s(&flat)]);
    let expected = std::fs::read(&flat).unwrap();

    let spec = format!("disk0={}", s(&top));
    let err = fails_with(1, &["backup", "--repo", s(&repo), "--vm", "web03", &spec]);
    assert!(
        err.contains(s(&base)) && err.contains(&format!("--allow-backing {}", s(&base))),
        "{err}"
    );

    let (point, _) = backup_ok(&repo, "web03", &spec, &["--allow-backing", s(&base)]);
    let (got, format) = restored(&repo, dir.path(), &point);
    assert!(got == expected, "the overlay restores as qemu-img reads it");
    assert_eq!(format["format"], "qcow2");
    assert_eq!(format["chosen_by"], "file_name");
    assert_eq!(format["followed"][0], s(&base.canonicalize().unwrap()));
    let text = ok(&["show", "--repo", s(&repo), &point]);
    assert!(text.contains(&format!("read {}", s(&base))), "{text}");
}

/// `qemu-io -f qcow2 -c CMD image`.
fn qemu_img_io(image: &Path, cmd: &str) {
    let out = std::process::Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", cmd, s(image)])
        .output()
        .unwrap_or_else(|e| {
            panic!("qemu-io not runnable ({e}): install qemu-utils (apt-get install qemu-utils)")
        });
    assert!(
        out.status.success(),
        "qemu-io {cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
