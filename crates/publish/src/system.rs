//! The target machine: preflight checks, loop devices (ioctls, see
//! [`crate::loopdev`]), filesystem types (in process for ext and XFS, see
//! [`crate::fsprobe`], else `blkid`), read-only mounts and unmounts
//! (`mount(2)`/`umount2(2)`; `ntfs-3g` and `fusefat` are FUSE programs),
//! plus `/proc/mounts` and the loop devices' sysfs backing-file names used
//! by cleanup.

use crate::access::Access;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `cmd`, returning its trimmed stdout, or an error naming the command
/// and quoting its stderr.
pub fn run(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().map_err(|e| Error::Command {
        command: shown.clone(),
        detail: if e.kind() == std::io::ErrorKind::NotFound {
            "not installed (apt-get install util-linux mount)".to_string()
        } else {
            e.to_string()
        },
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(Error::Command {
            command: shown,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

/// The FUSE device the publisher's mount opens.
pub const FUSE_DEVICE: &str = "/dev/fuse";
/// The FUSE device's numbers (`misc` major 10, minor 229).
const FUSE_DEV_NUMBERS: (u64, u64) = (10, 229);
pub use crate::loopdev::LOOP_CONTROL;

/// Checks what publishing needs: root, the FUSE device, the tools, loop
/// devices. The error names everything missing.
pub fn preflight() -> Result<()> {
    let mut missing = Vec::new();
    if !rustix::process::geteuid().is_root() {
        missing.push("root privileges (loop devices and mounts need root)".to_string());
    }
    if let Some(why) = fuse_device_problem(Path::new(FUSE_DEVICE)) {
        missing.push(format!(
            "{FUSE_DEVICE} ({why}; modprobe fuse, or pass --device {FUSE_DEVICE} to a container)"
        ));
    }
    if which("blkid").is_none() {
        missing.push("the `blkid` tool (apt-get install util-linux)".to_string());
    }
    if !Path::new(LOOP_CONTROL).exists()
        && crate::loopdev::listed_loop_devices(Path::new("/dev")).is_empty()
    {
        missing.push(format!(
            "loop devices (no {LOOP_CONTROL} and no /dev/loopN; modprobe loop, or pass \
             --device {LOOP_CONTROL} and /dev/loopN to a container)"
        ));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Missing(missing.join("; ")))
    }
}

/// Why `path` is not a usable FUSE device, if it is not.
fn fuse_device_problem(path: &Path) -> Option<String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some("missing".into()),
        Err(e) => return Some(format!("unreadable: {e}")),
    };
    let numbers = dev_numbers(meta.rdev());
    if !meta.file_type().is_char_device() || numbers != FUSE_DEV_NUMBERS {
        let (major, minor) = numbers;
        let (want_major, want_minor) = FUSE_DEV_NUMBERS;
        return Some(format!(
            "not the FUSE device: expected character device {want_major}:{want_minor}, \
             found {} {major}:{minor}",
            if meta.file_type().is_char_device() {
                "character device"
            } else {
                "something else"
            }
        ));
    }
    None
}

/// Splits a Linux `dev_t` into (major, minor).
fn dev_numbers(rdev: u64) -> (u64, u64) {
    let major = ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0xfff);
    let minor = ((rdev >> 12) & 0xffff_ff00) | (rdev & 0xff);
    (major, minor)
}

/// The full path of `tool` on PATH (plus the sbin directories).
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Every loop device whose backing file lies under `dir`, read from sysfs
/// (no stat of the backing file, which may sit on a dead FUSE mount).
pub fn loops_backed_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return found;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with("loop") {
            continue;
        }
        let Ok(back) = std::fs::read_to_string(e.path().join("loop/backing_file")) else {
            continue;
        };
        let back = back.trim().trim_end_matches(" (deleted)");
        if Path::new(back).starts_with(dir) {
            found.push(format!("/dev/{name}"));
        }
    }
    found.sort();
    found
}

/// The filesystem type blkid sees on `dev` of `size` bytes (`None`: no
/// signature); ext and XFS are recognised in process.
pub fn fs_type(dev: &str, size: u64) -> Result<Option<String>> {
    if let Some(t) = crate::fsprobe::quick_type(Path::new(dev), size) {
        return Ok(Some(t.to_string()));
    }
    let out = Command::new("blkid")
        .args(["-p", "-o", "value", "-s", "TYPE", dev])
        .output()
        .map_err(|e| Error::Command {
            command: format!("blkid -p {dev}"),
            detail: e.to_string(),
        })?;
    match out.status.code() {
        Some(0) => {
            let t = String::from_utf8_lossy(&out.stdout).trim().to_string();
            Ok((!t.is_empty()).then_some(t))
        }
        // 2: nothing found.
        Some(2) => Ok(None),
        _ => Err(Error::Command {
            command: format!("blkid -p -o value -s TYPE {dev}"),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }),
    }
}

/// Reads the first and the last 128 KiB of block device `dev` (`size`
/// bytes), where blkid and the mounts look for signatures: when blkid finds
/// nothing, this tells an empty or unknown volume (readable) from one whose
/// signatures could not be read (a damaged chunk under it: EIO).
pub fn check_readable(dev: &str, size: u64) -> Result<()> {
    use std::os::unix::fs::FileExt;
    const PROBE: u64 = 128 << 10;
    let io = |source| Error::Io {
        path: PathBuf::from(dev),
        source,
    };
    let f = std::fs::File::open(dev).map_err(io)?;
    let len = PROBE.min(size);
    let mut buf = vec![0u8; len as usize];
    f.read_exact_at(&mut buf, 0).map_err(io)?;
    f.read_exact_at(&mut buf, size - len).map_err(io)?;
    Ok(())
}

/// The filesystem types publishing mounts, and nothing else: a type blkid
/// merely reports (hfsplus, minix, jfs, f2fs...) would hand a guest-written
/// superblock to a kernel driver nobody chose to expose. The journaling
/// ones are mounted with replay refused (see [`mount_ro`]); NTFS goes to
/// the userspace ntfs-3g, vfat to the kernel or the userspace fusefat.
pub const MOUNTABLE_TYPES: &[&str] = &[
    "ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "msdos", "exfat", "ntfs", "iso9660",
    "squashfs", "udf",
];

/// Flags of every mount: nothing published may be written, executed, or
/// act as a device or a setuid program.
const MOUNT_FLAGS: &str = "ro,nodev,nosuid,noexec";

/// Mounts `dev` (filesystem `fstype`, which must be one of
/// [`MOUNTABLE_TYPES`]) read-only on `target`, `ro,nodev,nosuid,noexec`,
/// with the options that refuse journal replay (ext `noload`, xfs
/// `norecovery`, btrfs `rescue=nologreplay`) and, for filesystems without
/// Unix owners, ownership by root and `access`'s group. Returns the
/// options used.
pub fn mount_ro(dev: &str, fstype: &str, target: &Path, access: Access) -> Result<String> {
    let mount = |t: &str, opts: &str| {
        let all = if opts.is_empty() {
            MOUNT_FLAGS.to_string()
        } else {
            format!("{MOUNT_FLAGS},{opts}")
        };
        kernel_mount(dev, t, &all, target)
    };
    // FUSE programs: the same flags, the group's access, no implicit
    // allow_other (ntfs-3g adds it unless told `no_def_opts`).
    let fuse_opts = format!("{MOUNT_FLAGS},{}", access.fuse_program_options());
    match fstype {
        // The ext4 driver serves all three (and knows `noload`).
        "ext2" | "ext3" | "ext4" => mount("ext4", "noload"),
        "xfs" => mount("xfs", "norecovery"),
        // Kernels before 5.9 spell it `nologreplay`; never without it.
        "btrfs" => mount("btrfs", "rescue=nologreplay").or_else(|_| mount("btrfs", "nologreplay")),
        // Kernels without the vfat driver (this test machine): fall back to
        // the userspace `fusefat`, read-only unless given `rw+`.
        "vfat" | "msdos" => mount(fstype, &access.vfat_options()).or_else(|e| match which("fusefat") {
            Some(bin) if !kernel_has(fstype) => run(Command::new(bin)
                .args(["-o", &fuse_opts, dev])
                .arg(target))
            .map(|_| format!("{fuse_opts} (fusefat)")),
            _ if !kernel_has(fstype) => Err(Error::Missing(format!(
                "{fstype} support: the kernel has no {fstype} driver and fusefat is not installed (apt-get install fusefat)"
            ))),
            _ => Err(e),
        }),
        "exfat" => mount(fstype, &access.vfat_options()),
        "iso9660" | "squashfs" | "udf" => mount(fstype, ""),
        "ntfs" => match which("ntfs-3g") {
            Some(bin) => {
                let opts = format!("{fuse_opts},no_def_opts");
                run(Command::new(bin).args(["-o", &opts, dev]).arg(target))
                    .map(|_| format!("{opts} (ntfs-3g)"))
            }
            None => Err(Error::Missing(
                "ntfs-3g to mount NTFS (apt-get install ntfs-3g)".to_string(),
            )),
        },
        "swap" | "LVM2_member" | "crypto_LUKS" | "linux_raid_member" => Err(Error::Invalid(
            format!("{dev}: a {fstype} volume holds no mountable filesystem"),
        )),
        other => Err(Error::Invalid(format!(
            "{dev}: filesystem type {:?} is not one publishing mounts ({})",
            other,
            MOUNTABLE_TYPES.join(", ")
        ))),
    }
}

/// `mount -t fstype -o opts dev target` as one `mount(2)`: `ro`, `nodev`
/// and `nosuid` become flags, the rest is the filesystem's data string.
/// Returns `opts`.
fn kernel_mount(dev: &str, fstype: &str, opts: &str, target: &Path) -> Result<String> {
    use rustix::mount::MountFlags;
    let mut flags = MountFlags::empty();
    let mut data = Vec::new();
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => flags |= MountFlags::RDONLY,
            "nodev" => flags |= MountFlags::NODEV,
            "nosuid" => flags |= MountFlags::NOSUID,
            "noexec" => flags |= MountFlags::NOEXEC,
            other => data.push(other),
        }
    }
    let failed = |detail: String| Error::Command {
        command: format!("mount -t {fstype} -o {opts} {dev} {}", target.display()),
        detail,
    };
    let data = std::ffi::CString::new(data.join(","))
        .map_err(|_| failed("a NUL byte in the options".to_string()))?;
    rustix::mount::mount(dev, target, fstype, flags, data.as_c_str()).map_err(|e| {
        let why = match e {
            rustix::io::Errno::NODEV => "the kernel has no such filesystem type".to_string(),
            rustix::io::Errno::INVAL => {
                "wrong fs type, bad option or bad superblock (the kernel log says which)"
                    .to_string()
            }
            other => std::io::Error::from(other).to_string(),
        };
        failed(why)
    })?;
    Ok(opts.to_string())
}

/// True when the running kernel lists `fstype` in /proc/filesystems.
fn kernel_has(fstype: &str) -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().last() == Some(fstype))
}

/// Mount points under `dir` (or `dir` itself) listed in /proc/mounts,
/// deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut found: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .map(|p| PathBuf::from(unescape_mount_path(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// True when `path` is a mount point listed in /proc/mounts.
pub fn is_mounted(path: &Path) -> bool {
    mounts_under(path).iter().any(|p| p == path)
}

/// /proc/mounts escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount_path(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if let Some(Ok(v)) = s.get(i + 1..i + 4).map(|o| u8::from_str_radix(o, 8)) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts `target`; falls back to a lazy unmount when it is busy or its
/// FUSE server is gone.
pub fn unmount(target: &Path) -> Result<()> {
    use rustix::mount::{unmount as umount2, UnmountFlags};
    umount2(target, UnmountFlags::empty())
        .or_else(|first| umount2(target, UnmountFlags::DETACH).map_err(|second| (first, second)))
        .map_err(|(first, second)| Error::Command {
            command: format!("umount {}", target.display()),
            detail: format!(
                "{}; then umount -l: {}",
                std::io::Error::from(first),
                std::io::Error::from(second)
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(unescape_mount_path(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(unescape_mount_path("/plain"), "/plain");
        assert_eq!(unescape_mount_path(r"/end\04"), r"/end\04");
    }

    #[test]
    fn device_numbers_split_like_the_kernel() {
        assert_eq!(dev_numbers(0x0ae5), (10, 229));
        assert_eq!(dev_numbers(0x0103), (1, 3));
        // Large numbers spill into the high bits (glibc's makedev).
        let (major, minor) = (4097u64, 300_000u64);
        let dev = ((major & 0xffff_f000) << 32)
            | ((major & 0xfff) << 8)
            | ((minor & 0xffff_ff00) << 12)
            | (minor & 0xff);
        assert_eq!(dev_numbers(dev), (major, minor));
    }

    #[test]
    fn only_the_fuse_character_device_passes() {
        assert!(fuse_device_problem(Path::new("/dev/null"))
            .is_some_and(|w| w.contains("not the FUSE device") && w.contains("1:3")));
        assert!(fuse_device_problem(Path::new("/nonexistent/fuse")).is_some_and(|w| w == "missing"));
        assert!(fuse_device_problem(Path::new("/")).is_some());
    }

    #[test]
    fn which_finds_sh() {
        assert!(which("sh").is_some());
        assert!(which("no-such-tool-lifeboat").is_none());
    }
}
