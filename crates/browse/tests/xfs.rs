//! XFS browse against real xfsprogs: an image made with `mkfs.xfs` (v5,
//! the mkfs 6.1 defaults), loop-mounted and filled by the kernel
//! (shortform, block and node directories, a file of many extents, sparse
//! and preallocated files, local and remote symlinks, odd modes, owners and
//! times incl. bigtime), unmounted, then read back with the in-house reader
//! and compared byte for byte; `xfs_db` is the oracle for inode numbers,
//! fork formats and extent counts. The image is cached under
//! `<target>/fixtures/` (rebuilt when [`FIXTURE`] changes).

mod fixture;

use fixture::{
    backed_up, cached_image, fill_mounted, gpt_disk, names, pseudo_random, read_all, require_tool,
    run, write_sparse, Patched, MIB,
};
use lifeboat_browse::{open_restore_point, EntryKind, Error, Filesystem, FsType, XfsFs};
use lifeboat_vdisk::{FileDisk, ReadDisk};
use std::io::Read;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

/// Cache name of the image; bump when the contents below change.
const FIXTURE: &str = "browse-xfs-v2.img";
const IMAGE_MIB: u64 = 96;
const ODD_MTIME: i64 = 1_600_000_000;
const ODD_ATIME: i64 = 1_500_000_000;
/// Past 2038: needs bigtime.
const FUTURE_MTIME: i64 = 4_000_000_000;
/// Before 1970.
const PAST_MTIME: i64 = -1_000_000_000;
const BIG_DIR_ENTRIES: usize = 2000;

/// A regular file the fixture holds: path and full contents.
struct Spec {
    files: Vec<(String, Vec<u8>)>,
}

fn remote_target() -> String {
    format!("{}small/a.txt", "./".repeat(290))
}

/// Every regular file of the fixture with its exact contents.
fn spec() -> Spec {
    let mut files = vec![
        ("/small/a.txt".to_string(), b"alpha\n".to_vec()),
        ("/small/b.txt".to_string(), b"beta\n".to_vec()),
        ("/odd".to_string(), b"odd one\n".to_vec()),
        ("/future".to_string(), b"2096\n".to_vec()),
        ("/past".to_string(), b"1938\n".to_vec()),
    ];
    for i in 0..40 {
        files.push((
            format!("/block-dir/entry-{i:02}.txt"),
            format!("entry {i}\n").into_bytes(),
        ));
    }
    for i in (0..BIG_DIR_ENTRIES).step_by(250) {
        files.push((
            format!("/big-dir/{}", big_name(i)),
            pseudo_random(1000 + i, i as u64),
        ));
    }
    // Every other 64 KiB block written: 256 extents with holes between.
    let mut frag = vec![0u8; 32 * MIB as usize];
    for (n, block) in frag.chunks_mut(64 << 10).enumerate().step_by(2) {
        block.copy_from_slice(&pseudo_random(64 << 10, 1000 + n as u64));
    }
    files.push(("/frag.bin".to_string(), frag));
    // Every other 4 KiB block: 3500 extents, a two-level bmbt below the
    // inode root.
    let mut many = vec![0u8; 3500 * 8192];
    for (n, block) in many.chunks_mut(4096).enumerate().step_by(2) {
        block.copy_from_slice(&pseudo_random(4096, 5000 + n as u64));
    }
    files.push(("/many.bin".to_string(), many));
    // Sparse: data at 10 MiB and in the last 4 KiB of 50 MiB.
    let mut sparse = vec![0u8; 50 * MIB as usize];
    sparse[10 * MIB as usize..11 * MIB as usize].copy_from_slice(&pseudo_random(MIB as usize, 3));
    let tail = sparse.len() - 4096;
    sparse[tail..].copy_from_slice(&pseudo_random(4096, 4));
    files.push(("/sparse.bin".to_string(), sparse));
    // fallocate'd 4 MiB (unwritten) with 4 KiB written at 1 MiB.
    let mut prealloc = vec![0u8; 4 * MIB as usize];
    prealloc[MIB as usize..MIB as usize + 4096].copy_from_slice(&pseudo_random(4096, 5));
    files.push(("/prealloc.bin".to_string(), prealloc));
    Spec { files }
}

fn big_name(i: usize) -> String {
    format!("file-{i:05}-with-a-longer-name")
}

fn set_times(path: &Path, mtime: i64, atime: i64) {
    let at = |s: i64| {
        if s >= 0 {
            UNIX_EPOCH + Duration::from_secs(s as u64)
        } else {
            UNIX_EPOCH - Duration::from_secs(s.unsigned_abs())
        }
    };
    let f = std::fs::File::options().write(true).open(path).unwrap();
    let times = std::fs::FileTimes::new()
        .set_modified(at(mtime))
        .set_accessed(at(atime));
    f.set_times(times).unwrap();
}

fn populate(root: &Path) {
    let spec = spec();
    for d in ["small/sub", "block-dir", "big-dir"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for i in 0..BIG_DIR_ENTRIES {
        std::fs::File::create(root.join("big-dir").join(big_name(i))).unwrap();
    }
    for (p, data) in &spec.files {
        let full = root.join(p.trim_start_matches('/'));
        if p == "/prealloc.bin" {
            run(Command::new("fallocate").arg("-l").arg("4MiB").arg(&full));
            let f = std::fs::File::options().write(true).open(&full).unwrap();
            f.write_all_at(&data[MIB as usize..MIB as usize + 4096], MIB)
                .unwrap();
            f.sync_all().unwrap();
        } else {
            write_sparse(&full, data);
        }
    }
    std::os::unix::fs::symlink("small/a.txt", root.join("link-local")).unwrap();
    std::os::unix::fs::symlink(remote_target(), root.join("link-remote")).unwrap();
    std::os::unix::fs::symlink("/small/b.txt", root.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("block-dir", root.join("dirlink")).unwrap();
    let odd = root.join("odd");
    std::os::unix::fs::chown(&odd, Some(1234), Some(5678)).unwrap();
    std::fs::set_permissions(&odd, std::fs::Permissions::from_mode(0o4751)).unwrap();
    set_times(&odd, ODD_MTIME, ODD_ATIME);
    set_times(&root.join("future"), FUTURE_MTIME, FUTURE_MTIME);
    set_times(&root.join("past"), PAST_MTIME, PAST_MTIME);
}

fn build(img: &Path) {
    require_tool("mkfs.xfs", "xfsprogs");
    require_tool("fallocate", "util-linux");
    let f = std::fs::File::create(img).unwrap();
    f.set_len(IMAGE_MIB * MIB).unwrap();
    drop(f);
    // mkfs.xfs 6.x refuses filesystems under 300 MB outside of fstests.
    run(Command::new("mkfs.xfs")
        .args(["-q", "-f", "-L", "testxfs"])
        .arg(img)
        .env("TEST_DIR", "1")
        .env("TEST_DEV", "1")
        .env("QA_CHECK_FS", "1"));
    let mut mount = Command::new("mount");
    mount.args(["-o", "loop"]);
    let hint = "loop-mounting the XFS fixture needs root and the xfs kernel module";
    fill_mounted(img, mount, hint, populate);
}

/// The cached fixture image, built once.
fn image() -> &'static Path {
    static IMG: OnceLock<PathBuf> = OnceLock::new();
    IMG.get_or_init(|| cached_image(FIXTURE, build))
}

fn open_image() -> XfsFs {
    let disk: Arc<dyn ReadDisk> = Arc::new(FileDisk::open(image()).unwrap());
    XfsFs::open("xfsvol", disk).unwrap()
}

/// `xfs_db` prints `field = value` lines for `path`.
fn xfs_db(img: &Path, path: &str, fields: &str) -> Vec<(String, String)> {
    let out = run(Command::new("xfs_db")
        .arg("-r")
        .arg(img)
        .arg("-c")
        .arg(format!("path {path}"))
        .arg("-c")
        .arg(format!("print {fields}")));
    out.lines()
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn db_field(fields: &[(String, String)], key: &str) -> String {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("xfs_db printed no {key}: {fields:?}"))
}

#[test]
fn xfs_files_read_back_byte_exact() {
    let fs = open_image();
    assert_eq!(fs.fs_type(), FsType::Xfs);
    for (path, data) in &spec().files {
        let got = read_all(&fs, path);
        assert_eq!(got.len(), data.len(), "{path} length");
        assert!(got == *data, "{path} differs");
        assert_eq!(fs.stat(path).unwrap().size, data.len() as u64, "{path}");
    }
    // Symlinks are followed for reads: local, remote, absolute, and a
    // symlinked directory in the middle of a path.
    assert_eq!(read_all(&fs, "/link-local"), b"alpha\n");
    assert_eq!(read_all(&fs, "/link-remote"), b"alpha\n");
    assert_eq!(read_all(&fs, "/abs-link"), b"beta\n");
    assert_eq!(read_all(&fs, "/dirlink/entry-07.txt"), b"entry 7\n");
    assert_eq!(read_all(&fs, "/small/sub/../a.txt"), b"alpha\n");
}

#[test]
fn xfs_listings_and_metadata() {
    let fs = open_image();
    let root = fs.list("/").unwrap();
    assert_eq!(
        names(&root),
        [
            "abs-link",
            "big-dir",
            "block-dir",
            "dirlink",
            "frag.bin",
            "future",
            "link-local",
            "link-remote",
            "many.bin",
            "odd",
            "past",
            "prealloc.bin",
            "small",
            "sparse.bin"
        ]
    );
    assert_eq!(
        names(&fs.list("/small").unwrap()),
        ["a.txt", "b.txt", "sub"]
    );
    assert!(fs.list("/small/sub").unwrap().is_empty());
    let block: Vec<String> = (0..40).map(|i| format!("entry-{i:02}.txt")).collect();
    assert_eq!(names(&fs.list("/block-dir").unwrap()), block);
    let big = fs.list("/big-dir").unwrap();
    let mut want: Vec<String> = (0..BIG_DIR_ENTRIES).map(big_name).collect();
    want.sort();
    assert_eq!(names(&big), want);
    assert!(big.iter().all(|e| e.kind == EntryKind::File));
    let f250 = big.iter().find(|e| e.name == big_name(250)).unwrap();
    assert_eq!(
        (f250.size, f250.path.clone()),
        (1250, format!("/big-dir/{}", big_name(250)))
    );

    let odd = fs.stat("/odd").unwrap();
    assert_eq!(
        (odd.kind, odd.mode, odd.uid, odd.gid, odd.mtime, odd.atime, odd.size),
        (EntryKind::File, 0o4751, 1234, 5678, ODD_MTIME, ODD_ATIME, 8)
    );
    assert_eq!(fs.stat("/future").unwrap().mtime, FUTURE_MTIME);
    assert_eq!(fs.stat("/past").unwrap().mtime, PAST_MTIME);
    let dir = fs.stat("/small").unwrap();
    assert_eq!((dir.kind, dir.mode, dir.uid), (EntryKind::Dir, 0o755, 0));
    let remote = fs.stat("/link-remote").unwrap();
    assert_eq!(remote.kind, EntryKind::Symlink);
    assert_eq!(remote.symlink_target, Some(remote_target()));
    assert_eq!(remote.size, remote_target().len() as u64);
    let abs = root.iter().find(|e| e.name == "abs-link").unwrap();
    assert_eq!(abs.symlink_target.as_deref(), Some("/small/b.txt"));
    assert_eq!(fs.stat("/dirlink").unwrap().kind, EntryKind::Symlink);
    assert_eq!(
        fs.list("/dirlink").unwrap_err().to_string(),
        "xfsvol: /dirlink: not a directory"
    );

    let e = fs.read_file("/nope/x").err().unwrap();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("xfsvol: /nope/x"), "{e}");
    assert!(matches!(
        fs.list("/odd").unwrap_err(),
        Error::NotADirectory { .. }
    ));
    assert!(matches!(
        fs.read_file("/small").err().unwrap(),
        Error::IsADirectory { .. }
    ));
    assert!(matches!(
        fs.stat("/odd/x").unwrap_err(),
        Error::NotADirectory { .. }
    ));
}

/// The reader's view of inodes matches xfs_db's, and the fixture really
/// has the layouts it claims to test.
#[test]
fn xfs_inodes_match_xfs_db() {
    let fs = open_image();
    let cases = [
        ("/small", "local"),
        ("/block-dir", "extents"),
        ("/big-dir", "btree"),
        ("/frag.bin", "btree"),
        ("/many.bin", "btree"),
        ("/sparse.bin", "extents"),
        ("/link-local", "local"),
        ("/link-remote", "extents"),
        ("/odd", "extents"),
    ];
    for (path, format) in cases {
        let info = fs.inode_info(path).unwrap();
        let db = xfs_db(
            image(),
            path,
            "core.format core.nextents v3.inumber core.nlinkv2",
        );
        assert_eq!(db_field(&db, "v3.inumber"), info.ino.to_string(), "{path}");
        assert_eq!(
            db_field(&db, "core.nextents"),
            info.nextents.to_string(),
            "{path}"
        );
        assert_eq!(
            db_field(&db, "core.nlinkv2"),
            info.nlink.to_string(),
            "{path}"
        );
        assert!(
            db_field(&db, "core.format").contains(format),
            "{path}: {db:?}"
        );
        assert_eq!(info.format, format, "{path}");
        assert!(info.ctime > 1_600_000_000, "{path}: ctime {}", info.ctime);
    }
    assert_eq!(fs.inode_info("/many.bin").unwrap().nextents, 3500);
    let db = xfs_db(image(), "/many.bin", "u3.bmbt.level");
    assert_eq!(
        db_field(&db, "u3.bmbt.level"),
        "2",
        "bmbt nodes not exercised"
    );
    assert!(fs.inode_info("/frag.bin").unwrap().nextents >= 256);
    // /small holds a.txt, b.txt and sub: 2 + 1 subdirectory.
    assert_eq!(fs.inode_info("/small").unwrap().nlink, 3);
}

/// The fixture with `len` bytes at `at` replaced by `edit` of them.
fn patched_fs(at: usize, len: usize, edit: impl FnOnce(&mut [u8])) -> Result<XfsFs, Error> {
    let disk = Patched::new(image(), at as u64, len, edit);
    XfsFs::open("xfsvol", Arc::new(disk))
}

/// The fixture cut to its first `size` bytes.
fn truncated_fs(size: u64) -> Result<XfsFs, Error> {
    XfsFs::open("xfsvol", Arc::new(Patched::truncated(image(), size)))
}

/// Byte offset of `path`'s inode, from xfs_db.
fn inode_offset(path: &str) -> usize {
    let ino = open_image().inode_info(path).unwrap().ino;
    let out = run(Command::new("xfs_db")
        .arg("-r")
        .arg(image())
        .arg("-c")
        .arg(format!("convert inode {ino} byte")));
    let dec = out.split('(').nth(1).and_then(|s| s.split(')').next());
    dec.and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("xfs_db convert: {out}"))
}

#[test]
fn xfs_corruption_is_a_clear_error() {
    // Superblock: one flipped byte fails its CRC.
    let e = patched_fs(200, 1, |b| b[0] ^= 0x40)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("xfsvol") && e.contains("superblock") && e.contains("CRC"),
        "{e}"
    );

    // An inode: the error names the path and the inode.
    let at = inode_offset("/odd");
    let ino = open_image().inode_info("/odd").unwrap().ino;
    let fs = patched_fs(at + 3, 1, |b| b[0] ^= 0x01).unwrap();
    let e = fs.stat("/odd").unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("/odd") && msg.contains(&format!("inode {ino}")) && msg.contains("CRC"),
        "{msg}"
    );
    assert_eq!(read_all(&fs, "/small/a.txt"), b"alpha\n");

    // A volume cut short: reads past its end are errors.
    let fs = truncated_fs(4 * MIB).unwrap();
    let mut out = Vec::new();
    let e = fs
        .read_file("/frag.bin")
        .and_then(|mut r| {
            r.read_to_end(&mut out)
                .map_err(|e| Error::Select(e.to_string()))
        })
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("beyond the end"), "{e}");
    let e = truncated_fs(300).err().unwrap().to_string();
    assert!(e.contains("beyond the end"), "{e}");
}

/// Garbage in a bmbt root and in a directory fork (with the inode CRC
/// fixed up so the parsers see it) gives errors or data, never a panic or
/// a hang.
#[test]
fn xfs_garbage_forks_do_not_panic() {
    let mut errors = 0;
    for path in ["/frag.bin", "/small", "/big-dir", "/link-remote"] {
        let at = inode_offset(path);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ at as u64;
        for round in 0..60 {
            let fs = patched_fs(at, 512, |inode| {
                for _ in 0..1 + round % 4 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let pos = 176 + (seed as usize % (512 - 176));
                    inode[pos] = (seed >> 32) as u8;
                }
                inode[100..104].copy_from_slice(&[0; 4]);
                let crc = crc32c::crc32c(inode);
                inode[100..104].copy_from_slice(&crc.to_le_bytes());
            })
            .unwrap();
            errors += usize::from(fs.list(path).is_err());
            errors += usize::from(fs.stat(path).is_err());
            match fs.read_file(path) {
                Ok(mut r) => {
                    let mut buf = vec![0u8; 1 << 20];
                    errors += usize::from(r.read(&mut buf).is_err());
                }
                Err(_) => errors += 1,
            };
        }
    }
    // One call per path and round errs on a sound fork too (listing a file
    // or symlink, reading a directory); the garbage must add to that.
    assert!(errors > 4 * 60, "only {errors} errors");
}

/// End to end: the image as a GPT partition, backed up, browsed through
/// the restore point like `lifeboat files ls|get` does.
#[test]
fn xfs_through_a_restore_point() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.raw");
    gpt_disk(&disk, &[image()]);
    let (repo, m) = backed_up(dir.path(), "xfsvm", &[("disk0", &disk)]);
    let rp = open_restore_point(&repo, &m).unwrap();
    assert_eq!(rp.volumes()[0].fs, Some(FsType::Xfs));
    let sel = rp.select(None, None).unwrap();
    assert_eq!(sel.volume.name, "disk0p1");
    let fs = sel.open().unwrap();
    assert_eq!(fs.fs_type(), FsType::Xfs);
    assert_eq!(fs.list("/small").unwrap().len(), 3);
    let spec = spec();
    let (path, data) = spec.files.iter().find(|(p, _)| p == "/frag.bin").unwrap();
    assert!(read_all(fs.as_ref(), path) == *data);
}
