//! The userspace ext4 lister against the kernel as oracle: a real ext4
//! image (with and without metadata checksums) filled through a read-write
//! loop mount (a hashed directory of 3000 entries, a file of 300 extents,
//! preallocated and sparse files, hard links, symlinks, a FIFO, empty
//! files), then mounted read-only without journal replay as the publisher
//! mounts it. The lister must list the same files as the kernel walk and
//! map each exactly as FIEMAP does; damaged metadata must be left to the
//! kernel, never listed wrongly.

use lifeboat_scan::ext4list::{list_ext4, ListedFile, VolumeBytes};
use lifeboat_scan::file_extents;
use lifeboat_scan::walk::list_files;
use lifeboat_testsupport::{require_root, run, run_stdout, serial, tool};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const SIZE: u64 = 256 << 20;

/// Unmounts `dir` when dropped.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let ok = tool("umount", "mount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok && !std::thread::panicking() {
            panic!("umount {} failed", self.0.display());
        }
    }
}

fn mount(image: &Path, dir: &Path, opts: &str) -> Mounted {
    std::fs::create_dir_all(dir).unwrap();
    run(tool("mount", "mount")
        .args(["-o", &format!("loop,{opts}")])
        .arg(image)
        .arg(dir));
    Mounted(dir.to_path_buf())
}

/// Makes the image and fills it through a read-write mount.
fn filled_image(dir: &Path, features: &str) -> PathBuf {
    let image = dir.join("fs.img");
    File::create(&image).unwrap().set_len(SIZE).unwrap();
    run(tool("mkfs.ext4", "e2fsprogs")
        .args(["-q", "-F", "-b", "4096", "-O", features])
        .arg(&image));
    let rw = dir.join("rw");
    let m = mount(&image, &rw, "rw");
    fill(&rw);
    drop(m);
    image
}

/// The files of the image (all closed again on return).
fn fill(rw: &Path) {
    let big = rw.join("usr/share/many");
    std::fs::create_dir_all(&big).unwrap();
    for i in 0..3000 {
        std::fs::write(
            big.join(format!("entry-with-a-long-name-{i:05}")),
            format!("{i}"),
        )
        .unwrap();
    }
    for d in 0..20 {
        let sub = rw.join(format!("etc/d{d}/e"));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("conf"), vec![d as u8; 5000 + d * 4096]).unwrap();
    }
    // 300 one-block islands: a depth-1 extent tree.
    let f = File::create(rw.join("fragmented")).unwrap();
    for i in 0..300u64 {
        f.write_all_at(&[i as u8; 4096], i * 3 * 4096).unwrap();
    }
    f.sync_all().unwrap();
    let f = File::create(rw.join("preallocated")).unwrap();
    rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, 3 << 20).unwrap();
    f.write_all_at(b"written", 1 << 20).unwrap();
    let f = File::create(rw.join("beyond-eof")).unwrap();
    rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::KEEP_SIZE, 0, 1 << 20).unwrap();
    let f = File::create(rw.join("sparse")).unwrap();
    f.write_all_at(b"tail", 40 << 20).unwrap();
    File::create(rw.join("empty")).unwrap();
    let mut f = File::create(rw.join("large")).unwrap();
    f.write_all(&vec![7u8; 20 << 20]).unwrap();
    std::fs::hard_link(rw.join("large"), rw.join("etc/large-link")).unwrap();
    std::os::unix::fs::symlink("large", rw.join("symlink")).unwrap();
    run(tool("mkfifo", "coreutils").arg(rw.join("fifo")));
}

/// Every file with its size and extents, through the kernel.
fn kernel_view(root: &Path) -> Vec<ListedFile> {
    let listing = list_files(root);
    assert!(listing.errors.is_empty(), "{:?}", listing.errors);
    listing
        .files
        .into_iter()
        .map(|(ino, path)| {
            let f = File::open(&path).unwrap();
            let map = file_extents(&f).map(|x| (f.metadata().unwrap().len(), x));
            ListedFile { ino, path, map }
        })
        .collect()
}

fn check_against_the_kernel(features: &str) {
    require_root("loop mounts");
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let image = filled_image(tmp.path(), features);
    let ro = tmp.path().join("ro");
    let _m = mount(&image, &ro, "ro,noload");
    let want = kernel_view(&ro);
    assert!(want.len() > 3000, "{} files", want.len());
    let vol = VolumeBytes::open(&image, 0, SIZE).unwrap();
    let got = list_ext4(&vol, &ro).expect("the lister takes a plain ext4");
    assert!(got.kernel_dirs.is_empty(), "{:?}", got.kernel_dirs);
    assert_eq!(got.files.len(), want.len());
    for (g, w) in got.files.iter().zip(&want) {
        assert!(w.map.is_some(), "the kernel maps {}", w.path.display());
        assert_eq!(g, w);
    }
    let frag = got
        .files
        .iter()
        .find(|f| f.path.ends_with("fragmented"))
        .unwrap();
    assert_eq!(frag.map.as_ref().unwrap().1.len(), 300);
    let pre = got
        .files
        .iter()
        .find(|f| f.path.ends_with("preallocated"))
        .unwrap();
    assert!(pre.map.as_ref().unwrap().1.iter().any(|e| e.unwritten));
    assert!(pre.map.as_ref().unwrap().1.iter().any(|e| !e.unwritten));
}

#[test]
fn lists_and_maps_as_the_kernel_does_with_metadata_checksums() {
    check_against_the_kernel("metadata_csum,dir_index");
}

#[test]
fn lists_and_maps_as_the_kernel_does_without_metadata_checksums() {
    check_against_the_kernel("^metadata_csum,uninit_bg,dir_index");
}

/// `debugfs -R "<request>"` on `image`.
fn debugfs(image: &Path, request: &str) -> String {
    run_stdout(
        tool("debugfs", "e2fsprogs")
            .args(["-R", request])
            .arg(image),
    )
}

#[test]
fn damaged_directories_and_inodes_are_left_to_the_kernel() {
    require_root("loop mounts");
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let image = filled_image(tmp.path(), "metadata_csum");
    // A directory block of /etc/d3/e: one byte of its entries flipped.
    let block: u64 = debugfs(&image, "bmap /etc/d3/e 0").trim().parse().unwrap();
    let img = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&image)
        .unwrap();
    let mut b = [0u8; 1];
    img.read_exact_at(&mut b, block * 4096 + 20).unwrap();
    img.write_all_at(&[b[0] ^ 0x40], block * 4096 + 20).unwrap();
    // The inode of /etc/d5/e/conf: a byte of its access time flipped, so
    // only its checksum fails.
    let imap = debugfs(&image, "imap /etc/d5/e/conf");
    let (blk, off) = parse_imap(&imap);
    let at = blk * 4096 + off + 0x08;
    img.read_exact_at(&mut b, at).unwrap();
    img.write_all_at(&[b[0] ^ 1], at).unwrap();
    img.sync_all().unwrap();
    let ro = tmp.path().join("ro");
    let _m = mount(&image, &ro, "ro,noload");
    let vol = VolumeBytes::open(&image, 0, SIZE).unwrap();
    let got = list_ext4(&vol, &ro).expect("the lister takes the filesystem");
    assert_eq!(got.kernel_dirs, vec![ro.join("etc/d3/e")]);
    assert!(got
        .files
        .iter()
        .all(|f| !f.path.starts_with(ro.join("etc/d3/e"))));
    let conf = got
        .files
        .iter()
        .find(|f| f.path == ro.join("etc/d5/e/conf"))
        .expect("the entry is listed");
    assert_eq!(
        conf.map, None,
        "a failed inode checksum is left to the kernel"
    );
    // The kernel refuses both as well.
    assert!(std::fs::read_dir(ro.join("etc/d3/e"))
        .and_then(|mut d| d.next().transpose())
        .is_err());
    assert!(File::open(ro.join("etc/d5/e/conf")).is_err());
}

/// (block, byte offset) from debugfs's "Inode N is part of block group G
/// located at block B, offset 0xO".
fn parse_imap(text: &str) -> (u64, u64) {
    let block = text
        .split("located at block ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("debugfs imap: {text}"));
    let off = text
        .split("offset 0x")
        .nth(1)
        .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
        .unwrap_or_else(|| panic!("debugfs imap: {text}"));
    (block, off)
}

#[test]
fn a_filesystem_the_lister_does_not_take_gives_none() {
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("ext2.img");
    File::create(&image).unwrap().set_len(32 << 20).unwrap();
    // ext2: no extents, so the kernel walk lists it.
    run(tool("mkfs.ext2", "e2fsprogs")
        .args(["-q", "-F"])
        .arg(&image));
    let vol = VolumeBytes::open(&image, 0, 32 << 20).unwrap();
    assert!(list_ext4(&vol, Path::new("/nonexistent")).is_none());
    let zeros = tmp.path().join("zeros.img");
    File::create(&zeros).unwrap().set_len(1 << 20).unwrap();
    let vol = VolumeBytes::open(&zeros, 0, 1 << 20).unwrap();
    assert!(list_ext4(&vol, Path::new("/nonexistent")).is_none());
}
