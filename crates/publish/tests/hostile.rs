//! Publishing against a hostile guest and untrusted local users (needs
//! root, /dev/fuse, util-linux, fdisk, e2fsprogs, erofs-utils, setpriv):
//!
//! - an LVM LV named `../../../../../escaped` (label and metadata text
//!   written byte by byte, as no LVM tool would write that name) would
//!   become a mount point outside the mount root: it is refused with a
//!   problem naming it, and the VG's other LV is still published;
//! - a filesystem the kernel knows but publishing does not mount (erofs)
//!   is left unmounted with a problem, the ext4 beside it is mounted
//!   `ro,nodev,nosuid,noexec` without journal replay;
//! - a user who is neither root nor in the configured group reads neither
//!   the FUSE disk files nor the mounted files; a member of the group
//!   reads both.

mod common;

use common::*;
use lifeboat_formats::lvm::label::{lvm_crc, INITIAL_CRC};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

/// The gid the access tests give `--group` (no such group needs to exist).
const GROUP: u32 = 4242;
/// `nobody`.
const NOBODY: u32 = 65534;

/// Writes an LVM2 PV label (sector 1) and a metadata area at 4 KiB holding
/// `text` onto the whole of `disk`: what `pvcreate` and `vgcfgrestore`
/// write, with any names.
fn write_pv(disk: &Path, size: u64, text: &str) {
    let mut head = vec![0u8; MIB as usize];
    let l = 512;
    head[l..l + 8].copy_from_slice(b"LABELONE");
    head[l + 8..l + 16].copy_from_slice(&1u64.to_le_bytes());
    head[l + 20..l + 24].copy_from_slice(&32u32.to_le_bytes());
    head[l + 24..l + 32].copy_from_slice(b"LVM2 001");
    let p = l + 32;
    head[p..p + 32].copy_from_slice(b"PVuuidAAAAbbbbCCCCddddEEEEffffGG");
    head[p + 32..p + 40].copy_from_slice(&size.to_le_bytes());
    // Data area {1 MiB, 0}, end; metadata area {4096, 1 MiB - 4096}, end.
    head[p + 40..p + 48].copy_from_slice(&MIB.to_le_bytes());
    let (mda, mda_size) = (4096usize, MIB as usize - 4096);
    head[p + 72..p + 80].copy_from_slice(&(mda as u64).to_le_bytes());
    head[p + 80..p + 88].copy_from_slice(&(mda_size as u64).to_le_bytes());
    let crc = lvm_crc(INITIAL_CRC, &head[l + 20..l + 512]);
    head[l + 16..l + 20].copy_from_slice(&crc.to_le_bytes());
    // Metadata area header, one raw location: the text at offset 512.
    let m = mda;
    let text = text.as_bytes();
    head[m + 4..m + 20].copy_from_slice(b" LVM2 x[5A%r0N*>");
    head[m + 20..m + 24].copy_from_slice(&1u32.to_le_bytes());
    head[m + 24..m + 32].copy_from_slice(&(mda as u64).to_le_bytes());
    head[m + 32..m + 40].copy_from_slice(&(mda_size as u64).to_le_bytes());
    head[m + 40..m + 48].copy_from_slice(&512u64.to_le_bytes());
    head[m + 48..m + 56].copy_from_slice(&(text.len() as u64).to_le_bytes());
    head[m + 56..m + 60].copy_from_slice(&lvm_crc(INITIAL_CRC, text).to_le_bytes());
    let crc = lvm_crc(INITIAL_CRC, &head[m + 4..m + 512]);
    head[m..m + 4].copy_from_slice(&crc.to_le_bytes());
    head[m + 512..m + 512 + text.len()].copy_from_slice(text);
    lifeboat_testsupport::write_at(disk, 0, &head);
}

/// The text of a linear LV `name` of `extents` 1 MiB extents from
/// `first` on pv0.
fn lv(name: &str, first: u64, extents: u64) -> String {
    format!(
        "\"{name}\" {{\nstatus = [\"READ\", \"WRITE\", \"VISIBLE\"]\nsegment_count = 1\n\
         segment1 {{\nstart_extent = 0\nextent_count = {extents}\ntype = \"striped\"\n\
         stripe_count = 1\nstripes = [\"pv0\", {first}]\n}}\n}}\n"
    )
}

#[test]
fn an_lvm_name_written_to_escape_the_mount_root_is_refused() {
    let (_serial, dirs) = start(&[]);
    // `<root>/<session>/<vm>/vg0-../../../../../escaped` is
    // `<root>/../escaped`: the test directory, outside the mount root.
    let hostile = "../../../../../escaped";
    let disk = dirs.path("lvm.img");
    sparse_file(&disk, 32 * MIB);
    let text = format!(
        "vg0 {{\nid = \"VGuuid-aaaa-bbbb-cccc-dddd-eeee-ffffgg\"\nseqno = 3\n\
         status = [\"RESIZEABLE\", \"READ\", \"WRITE\"]\nextent_size = 2048\n\
         physical_volumes {{\npv0 {{\nid = \"PVuuid-AAAA-bbbb-CCCC-dddd-EEEE-ffffGG\"\n\
         device = \"/dev/vda\"\npe_start = 2048\npe_count = 30\n}}\n}}\n\
         logical_volumes {{\n{}{}}}\n}}\n\
         contents = \"Text Format Volume Group\"\nversion = 1\n",
        lv("good", 0, 12),
        lv(hostile, 12, 12),
    );
    write_pv(&disk, 32 * MIB, &text);
    for (tag, at) in [("good", 1), ("escaped", 13)] {
        let src = dirs.path(&format!("src-{tag}"));
        write_tree(&src, tag, at as u32).unwrap();
        let img = dirs.path(&format!("{tag}.ext4"));
        ext4_image(&img, &src, 12 * MIB);
        write_image(&disk, at * MIB, &img);
    }
    backed_up(&dirs.repo, "web01", &[("disk0", &disk)]);

    let s = Published::new(&dirs, "web01@latest");
    let escaped = dirs.tmp.path().join("escaped");
    let escaped_root = escaped.join("hello.txt").exists();
    if escaped.exists() {
        // Left by a publisher that followed the name: undo it before failing.
        let _ = Command::new("umount").arg(&escaped).status();
        let _ = std::fs::remove_dir(&escaped);
    }
    assert!(
        !escaped_root,
        "a filesystem was mounted outside the mount root, on {}",
        escaped.display()
    );
    check_tree(&s.mounted("vg0-good").mount_point, "good", 1);
    assert!(
        s.state.mounts.iter().all(|m| m.volume == "vg0-good"),
        "{:#?}",
        s.state.mounts
    );
    let refused: Vec<_> = s
        .state
        .problems
        .iter()
        .filter(|p| p.message.contains(hostile))
        .collect();
    assert!(
        refused.len() == 1
            && refused[0].kind.leaves_data_unserved()
            && refused[0].message.contains("refused, not served")
            && refused[0].message.contains("contains `/`"),
        "{:#?}",
        s.state.problems
    );
    s.finish();
}

/// A GPT disk image whose partitions hold the filesystem images `images`
/// (each 16 MiB).
fn disk_with(dirs: &Dirs, images: &[&Path]) -> std::path::PathBuf {
    let script = "label: gpt\n".to_string() + &"size=16MiB, type=linux\n".repeat(images.len());
    let (disk, parts) = dirs.disk("disk.img", (images.len() as u64 * 16 + 2) * MIB, &script);
    for (img, p) in images.iter().zip(&parts) {
        write_image(&disk, p.start, img);
    }
    disk
}

/// The options column of `dir`'s line in /proc/self/mountinfo and its
/// super options.
fn mount_options(dir: &Path) -> String {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let point = format!(" {} ", dir.display());
    let line = info
        .lines()
        .find(|l| l.contains(&point))
        .unwrap_or_else(|| panic!("{} not mounted:\n{info}", dir.display()));
    let fields: Vec<&str> = line.split(' ').collect();
    format!("{},{}", fields[5], fields.last().unwrap_or(&""))
}

#[test]
fn a_filesystem_off_the_allow_list_is_not_mounted() {
    let (_serial, dirs) = start(&[("mkfs.erofs", "erofs-utils")]);
    let src = dirs.path("src");
    write_tree(&src, "ext4", 7).unwrap();
    let ext4 = dirs.path("a.ext4");
    ext4_image(&ext4, &src, 16 * MIB);
    let erofs = dirs.path("b.erofs");
    run_stdout(Command::new("mkfs.erofs").arg(&erofs).arg(&src));
    let disk = disk_with(&dirs, &[&ext4, &erofs]);
    backed_up(&dirs.repo, "web01", &[("disk0", &disk)]);

    let s = Published::new(&dirs, "web01@latest");
    let m = s.mounted("disk0p1");
    check_tree(&m.mount_point, "ext4", 7);
    let opts = mount_options(&m.mount_point);
    for o in ["ro", "nodev", "nosuid", "noexec"] {
        assert!(opts.split(',').any(|x| x == o), "{o} missing: {opts}");
    }
    // `noload` shows as its other name.
    assert!(opts.split(',').any(|x| x == "norecovery"), "{opts}");
    let erofs_mount = s.state.mounts.iter().find(|m| m.volume == "disk0p2");
    assert!(
        erofs_mount.is_some_and(|m| !m.mounted && m.fstype == "erofs"),
        "{:#?}",
        s.state.mounts
    );
    let msg = lifeboat_formats::problem::join(&s.state.problems, "\n");
    assert!(
        msg.contains("disk0p2") && msg.contains("\"erofs\" is not one publishing mounts"),
        "{msg}"
    );
    s.finish();
}

/// True when `cat path` succeeds as user nobody, in `group` when given.
fn readable_by_nobody(path: &Path, group: Option<u32>) -> bool {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"));
    match group {
        Some(g) => cmd.arg(format!("--groups={g}")),
        None => cmd.arg("--clear-groups"),
    };
    let out = cmd.arg("cat").arg(path).output().expect("running setpriv");
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("Permission denied"), "{path:?}: {err}");
    }
    out.status.success()
}

fn mode_and_gid(p: &Path) -> (u32, u32) {
    let m = std::fs::metadata(p).unwrap();
    (m.mode() & 0o7777, m.gid())
}

#[test]
fn only_root_and_the_configured_group_read_what_is_published() {
    let (_serial, dirs) = start(&[("setpriv", "util-linux")]);
    let src = dirs.path("src");
    write_tree(&src, "ext4", 3).unwrap();
    let ext4 = dirs.path("a.ext4");
    ext4_image(&ext4, &src, 16 * MIB);
    let disk = disk_with(&dirs, &[&ext4]);
    backed_up(&dirs.repo, "web01", &[("disk0", &disk)]);
    // The way to the mount root is open to everyone; what is published
    // must close itself.
    std::fs::create_dir_all(&dirs.mount_root).unwrap();
    for d in [dirs.tmp.path(), &dirs.mount_root] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    for group in [None, Some(GROUP)] {
        let mut opts = dirs.options("web01@latest");
        opts.group = group;
        let s = Published::with(&dirs, &opts);
        let gid = group.unwrap_or(0);
        let (dir_mode, file_mode) = if group.is_some() {
            (0o750, 0o440)
        } else {
            (0o700, 0o400)
        };
        let disk_file = s.state.fuse_mount.join("web01-disk0.raw");
        let mounted = s.mounted("disk0p1").mount_point.join("hello.txt");
        assert_eq!(mode_and_gid(&s.state.session_dir), (dir_mode, gid));
        assert_eq!(mode_and_gid(&s.vm_dir("web01")), (dir_mode, gid));
        assert_eq!(mode_and_gid(&disk_file), (file_mode, gid));
        let fuse = mount_options(&s.state.fuse_mount);
        assert!(fuse.contains("default_permissions"), "{fuse}");
        assert_eq!(fuse.contains("allow_other"), group.is_some(), "{fuse}");
        // Root reads everything (the scan does).
        assert!(std::fs::read(&disk_file).is_ok());
        assert_eq!(
            std::fs::read_to_string(&mounted).unwrap(),
            "hello from ext4\n"
        );
        assert!(
            !readable_by_nobody(&disk_file, None),
            "an unprivileged user read the disk file ({group:?})"
        );
        assert!(
            !readable_by_nobody(&mounted, None),
            "an unprivileged user read a mounted file ({group:?})"
        );
        if let Some(g) = group {
            assert!(
                readable_by_nobody(&disk_file, Some(g)),
                "a member reads the disk file"
            );
            assert!(
                readable_by_nobody(&mounted, Some(g)),
                "a member reads mounted files"
            );
        }
        s.finish();
    }
}
