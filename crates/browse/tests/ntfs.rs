//! NTFS browse against real ntfs-3g: an image made with `mkfs.ntfs -Q`,
//! mounted with `ntfs-3g` and filled through it (a resident file, a large
//! file, a file fragmented into an attribute list by filling the volume
//! and punching holes, a sparse file, a directory of 1000 entries, unicode
//! and case-twin names, Interix symlinks, a compressed file, set times
//! and the read-only attribute on a file and a directory), unmounted, then read back through the
//! browse API and through a restore point and compared byte for byte;
//! `ntfsinfo` confirms the layouts the fixture claims. Corrupted boot
//! sectors and MFT records must give errors, never panics. The image is
//! cached under `<target>/fixtures/` (rebuilt when [`FIXTURE`] changes).

mod fixture;

use fixture::{
    backed_up, cached_image, fill_mounted, gpt_disk, names, pseudo_random, read_all, require_tool,
    run, write_sparse, Patched, MIB,
};
use lifeboat_browse::{open_restore_point, EntryKind, Error, Filesystem, FsType, NtfsFs};
use lifeboat_vdisk::{FileDisk, ReadDisk};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

/// Cache name of the image; bump when the contents below change.
const FIXTURE: &str = "browse-ntfs-v3.img";
const IMAGE_MIB: u64 = 64;
const SET_MTIME: i64 = 1_600_000_000;
const SET_ATIME: i64 = 1_500_000_000;
const BIG_DIR_ENTRIES: usize = 1000;
const UNICODE: &str = "Ünïcødé ✓ 日本語.txt";
const CRAB: &str = "🦀 crab.txt";

/// Every regular file of the fixture with its exact contents.
fn spec() -> Vec<(String, Vec<u8>)> {
    let mut files = vec![
        ("/init.bin".to_string(), pseudo_random(8192, 11)),
        ("/small.txt".to_string(), b"hello ntfs\n".to_vec()),
        ("/empty.txt".to_string(), Vec::new()),
        (
            "/large.bin".to_string(),
            pseudo_random(6 * MIB as usize + 7, 1),
        ),
        ("/mtime.txt".to_string(), b"set times\n".to_vec()),
        ("/readonly.txt".to_string(), b"read only\n".to_vec()),
        ("/dir/sub/deep.txt".to_string(), b"deep inside\n".to_vec()),
        ("/same.txt".to_string(), b"lower\n".to_vec()),
        ("/SAME.txt".to_string(), b"upper\n".to_vec()),
        (format!("/{UNICODE}"), "unicode ✓\n".as_bytes().to_vec()),
        (format!("/{CRAB}"), pseudo_random(3000, 2)),
    ];
    for i in (0..BIG_DIR_ENTRIES).step_by(97) {
        files.push((
            format!("/big-dir/{}", big_name(i)),
            pseudo_random(i, i as u64),
        ));
    }
    // Sparse: 64 KiB at 4 MiB and the last 4 KiB of 20 MiB.
    let mut sparse = vec![0u8; 20 * MIB as usize];
    sparse[4 * MIB as usize..4 * MIB as usize + 65536].copy_from_slice(&pseudo_random(65536, 3));
    let tail = sparse.len() - 4096;
    sparse[tail..].copy_from_slice(&pseudo_random(4096, 4));
    files.push(("/sparse.bin".to_string(), sparse));
    files.push(("/frag.bin".to_string(), pseudo_random(8 * MIB as usize, 5)));
    files
}

fn big_name(i: usize) -> String {
    format!("entry-{i:04}.txt")
}

fn set_xattr(path: &Path, name: &str, hex: &str) {
    run(Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import os,sys; os.setxattr(sys.argv[1], '{name}', bytes.fromhex('{hex}'))"
        ))
        .arg(path));
}

fn populate(root: &Path) {
    let files = spec();
    for d in ["dir/sub", "big-dir", "comp", "rodir"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for i in 0..BIG_DIR_ENTRIES {
        std::fs::File::create(root.join("big-dir").join(big_name(i))).unwrap();
    }
    for (p, data) in &files {
        let full = root.join(p.trim_start_matches('/'));
        match p.as_str() {
            "/sparse.bin" => write_sparse(&full, data),
            "/frag.bin" => {}
            _ => std::fs::write(&full, data).unwrap(),
        }
    }
    std::os::unix::fs::symlink("small.txt", root.join("link")).unwrap();
    std::os::unix::fs::symlink("../../small.txt", root.join("dir/sub/uplink")).unwrap();
    let times = std::fs::FileTimes::new()
        .set_modified(UNIX_EPOCH + Duration::from_secs(SET_MTIME as u64))
        .set_accessed(UNIX_EPOCH + Duration::from_secs(SET_ATIME as u64));
    let f = std::fs::File::options()
        .write(true)
        .open(root.join("mtime.txt"))
        .unwrap();
    f.set_times(times).unwrap();
    drop(f);
    // READ_ONLY | ARCHIVE; compression on for new files in /comp.
    let attrib = "system.ntfs_attrib_be";
    set_xattr(&root.join("readonly.txt"), attrib, "00000021");
    set_xattr(&root.join("rodir"), attrib, "00000021");
    set_xattr(&root.join("comp"), attrib, "00000800");
    std::fs::write(root.join("comp/c.txt"), "compress me ".repeat(20000)).unwrap();

    // Fragmentation: fill the volume with 16 KiB files, free every other
    // one, then write /frag.bin into the holes.
    let fill = root.join("fill");
    std::fs::create_dir(&fill).unwrap();
    let block = pseudo_random(16384, 6);
    let mut n = 0;
    while std::fs::write(fill.join(format!("f{n}")), &block).is_ok() {
        n += 1;
    }
    for i in (0..n).step_by(2) {
        std::fs::remove_file(fill.join(format!("f{i}"))).unwrap();
    }
    let frag = files.iter().find(|(p, _)| p == "/frag.bin").unwrap();
    let mut out = std::fs::File::create(root.join("frag.bin")).unwrap();
    out.write_all(&frag.1).unwrap();
    out.sync_all().unwrap();
    std::fs::remove_dir_all(&fill).unwrap();
}

fn build(img: &Path) {
    require_tool("mkfs.ntfs", "ntfs-3g");
    require_tool("ntfs-3g", "ntfs-3g");
    require_tool("python3", "python3");
    let f = std::fs::File::create(img).unwrap();
    f.set_len(IMAGE_MIB * MIB).unwrap();
    drop(f);
    run(Command::new("mkfs.ntfs")
        .args(["-F", "-Q", "-q", "-L", "testntfs"])
        .arg(img));
    let mut mount = Command::new("ntfs-3g");
    mount.args(["-o", "compression"]);
    let hint = "mounting the NTFS fixture with ntfs-3g needs root and /dev/fuse";
    fill_mounted(img, mount, hint, populate);
}

/// The cached fixture image, built once.
fn image() -> &'static Path {
    static IMG: OnceLock<PathBuf> = OnceLock::new();
    IMG.get_or_init(|| cached_image(FIXTURE, build))
}

fn open_image() -> NtfsFs {
    let disk: Arc<dyn ReadDisk> = Arc::new(FileDisk::open(image()).unwrap());
    NtfsFs::open("ntfsvol", disk).unwrap()
}

/// `ntfsinfo -F path` output.
fn ntfsinfo(path: &str) -> String {
    run(Command::new("ntfsinfo").arg("-F").arg(path).arg(image()))
}

#[test]
fn ntfs_files_read_back_byte_exact() {
    let fs = open_image();
    assert_eq!(fs.fs_type(), FsType::Ntfs);
    for (path, data) in &spec() {
        let got = read_all(&fs, path);
        assert_eq!(got.len(), data.len(), "{path} length");
        assert!(got == *data, "{path} differs");
        assert_eq!(fs.stat(path).unwrap().size, data.len() as u64, "{path}");
    }
    // Interix symlinks are followed for reads.
    assert_eq!(read_all(&fs, "/link"), b"hello ntfs\n");
    assert_eq!(read_all(&fs, "/dir/sub/uplink"), b"hello ntfs\n");
    // Case-insensitive lookups through $UpCase; the exact case wins.
    assert_eq!(read_all(&fs, "/DIR/Sub/DEEP.TXT"), b"deep inside\n");
    assert_eq!(
        read_all(&fs, "/ünïcødé ✓ 日本語.TXT"),
        "unicode ✓\n".as_bytes()
    );
    assert_eq!(read_all(&fs, "/same.txt"), b"lower\n");
    assert_eq!(read_all(&fs, "/SAME.txt"), b"upper\n");
    assert_eq!(
        read_all(&fs, "/dir/./sub/../sub/deep.txt"),
        b"deep inside\n"
    );
    let deep = fs.stat("/DIR/SUB/Deep.Txt").unwrap();
    assert_eq!(deep.path, "/dir/sub/deep.txt");
}

/// The fixture really has the layouts it claims to test.
#[test]
fn ntfs_fixture_layouts_match_ntfsinfo() {
    let small = ntfsinfo("/small.txt");
    let data = small.split("$DATA").nth(1).unwrap_or("");
    assert!(data.contains("Resident: \t\t Yes"), "{small}");
    let frag = ntfsinfo("/frag.bin");
    assert!(
        frag.contains("$ATTRIBUTE_LIST"),
        "/frag.bin has no attribute list: {frag}"
    );
    let sparse = ntfsinfo("/sparse.bin");
    assert!(sparse.contains("SPARSE_FILE"), "{sparse}");
    let comp = ntfsinfo("/comp/c.txt");
    assert!(comp.contains("COMPRESSED"), "{comp}");
    let link = ntfsinfo("/link");
    assert!(link.contains("SYSTEM"), "{link}");
}

#[test]
fn ntfs_listings_and_metadata() {
    let fs = open_image();
    let root = fs.list("/").unwrap();
    let mut want = vec![
        "SAME.txt",
        "big-dir",
        "comp",
        "dir",
        "empty.txt",
        "frag.bin",
        "init.bin",
        "large.bin",
        "link",
        "mtime.txt",
        "readonly.txt",
        "rodir",
        "same.txt",
        "small.txt",
        "sparse.bin",
        UNICODE,
        CRAB,
    ];
    want.sort();
    assert_eq!(names(&root), want, "metadata files must not be listed");
    assert!(matches!(
        fs.stat("/$MFT").unwrap_err(),
        Error::NotFound { .. }
    ));
    assert!(matches!(
        fs.list("/$Extend").unwrap_err(),
        Error::NotFound { .. }
    ));

    let big = fs.list("/big-dir").unwrap();
    let want: Vec<String> = (0..BIG_DIR_ENTRIES).map(big_name).collect();
    assert_eq!(names(&big), want);
    assert!(big.iter().all(|e| e.kind == EntryKind::File));
    let e97 = big.iter().find(|e| e.name == big_name(97)).unwrap();
    assert_eq!(
        (e97.size, e97.path.as_str()),
        (97, "/big-dir/entry-0097.txt")
    );
    assert_eq!(names(&fs.list("/dir/sub").unwrap()), ["deep.txt", "uplink"]);

    let m = fs.stat("/mtime.txt").unwrap();
    assert_eq!(
        (m.kind, m.mode, m.uid, m.gid, m.mtime, m.atime, m.size),
        (EntryKind::File, 0o644, 0, 0, SET_MTIME, SET_ATIME, 10)
    );
    assert_eq!(fs.stat("/readonly.txt").unwrap().mode, 0o444);
    assert_eq!(fs.stat("/rodir").unwrap().mode, 0o555);
    let now = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let small = fs.stat("/small.txt").unwrap();
    assert!(
        small.mtime > now - 86400 * 365 * 5 && small.mtime <= now,
        "{small:?}"
    );
    let dir = fs.stat("/dir").unwrap();
    assert_eq!((dir.kind, dir.mode, dir.size), (EntryKind::Dir, 0o755, 0));
    let rootst = fs.stat("/").unwrap();
    assert_eq!((rootst.kind, rootst.name.as_str()), (EntryKind::Dir, "/"));
    let link = fs.stat("/link").unwrap();
    assert_eq!(link.kind, EntryKind::Symlink);
    assert_eq!(link.symlink_target.as_deref(), Some("small.txt"));
    assert_eq!(link.size, 9);
    let crab = root.iter().find(|e| e.name == CRAB).unwrap();
    assert_eq!((crab.size, crab.path.clone()), (3000, format!("/{CRAB}")));

    let e = fs.read_file("/nope/x").err().unwrap();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("ntfsvol: /nope/x"), "{e}");
    assert!(matches!(
        fs.list("/small.txt").unwrap_err(),
        Error::NotADirectory { .. }
    ));
    assert!(matches!(
        fs.stat("/small.txt/x").unwrap_err(),
        Error::NotADirectory { .. }
    ));
    assert!(matches!(
        fs.read_file("/dir").err().unwrap(),
        Error::IsADirectory { .. }
    ));
    let e = fs.read_file("/comp/c.txt").err().unwrap().to_string();
    assert!(
        e.contains("ntfsvol") && e.contains("/comp/c.txt") && e.contains("compressed"),
        "{e}"
    );
    // Listing a compressed file still works: only its bytes are refused.
    assert_eq!(fs.stat("/comp/c.txt").unwrap().size, 240_000);
}

/// The fixture with `len` bytes at `at` edited.
fn patched(at: u64, len: usize, edit: impl FnOnce(&mut [u8])) -> Patched {
    Patched::new(image(), at, len, edit)
}

fn open_patched(p: Patched) -> Result<NtfsFs, Error> {
    NtfsFs::open("ntfsvol", Arc::new(p))
}

/// Byte offset of the MFT record whose `$FILE_NAME` is `name`.
fn record_of(name: &str) -> u64 {
    let img = std::fs::read(image()).unwrap();
    let utf16: Vec<u8> = name.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    let found = img.chunks(1024).position(|rec| {
        rec.starts_with(b"FILE") && rec.windows(utf16.len()).any(|w| w == utf16.as_slice())
    });
    found.unwrap_or_else(|| panic!("no MFT record names {name}")) as u64 * 1024
}

/// Offset inside an (unfixed) record of its first attribute of type `ty`.
fn attribute_in(rec: &[u8], ty: u32) -> usize {
    let mut off = u16::from_le_bytes([rec[0x14], rec[0x15]]) as usize;
    loop {
        let t = u32::from_le_bytes(rec[off..off + 4].try_into().unwrap());
        assert_ne!(t, 0xFFFF_FFFF, "no attribute {ty:#x}");
        if t == ty {
            return off;
        }
        off += u32::from_le_bytes(rec[off + 4..off + 8].try_into().unwrap()) as usize;
    }
}

/// Bytes past the initialized size read as zeros: /init.bin's stored
/// initialized size is lowered to 4096 while its clusters keep data.
#[test]
fn ntfs_bytes_past_the_initialized_size_are_zeros() {
    let at = record_of("init.bin");
    let p = patched(at, 1024, |rec| {
        let data = attribute_in(rec, 0x80);
        assert_eq!(rec[data + 8], 1, "init.bin should be non-resident");
        let field = data + 0x38;
        assert!(field % 512 < 502, "initialized size straddles a fixup slot");
        rec[field..field + 8].copy_from_slice(&4096u64.to_le_bytes());
    });
    let fs = open_patched(p).unwrap();
    let data = spec()
        .into_iter()
        .find(|(p, _)| p == "/init.bin")
        .unwrap()
        .1;
    let got = read_all(&fs, "/init.bin");
    assert_eq!(got.len(), 8192);
    assert!(got[..4096] == data[..4096]);
    assert!(
        got[4096..].iter().all(|&b| b == 0),
        "stale bytes past the initialized size"
    );
    assert_eq!(fs.stat("/init.bin").unwrap().size, 8192);
}

#[test]
fn ntfs_corruption_is_a_clear_error() {
    // Boot sector: 3 sectors per cluster is not a power of two.
    let e = open_patched(patched(0x0D, 1, |b| b[0] = 3))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("ntfsvol") && e.contains("sectors per cluster"),
        "{e}"
    );
    // No boot signature.
    let e = open_patched(patched(510, 2, |b| b.fill(0)))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("ntfsvol") && e.contains("signature"), "{e}");
    // Cut short.
    let e = open_patched(Patched::truncated(image(), MIB))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("ntfsvol") && e.contains("cut short"), "{e}");

    // An MFT record: the error names the path; the rest still reads.
    let at = record_of("small.txt");
    let fs = open_patched(patched(at, 4, |b| b.copy_from_slice(b"BAAD"))).unwrap();
    let e = fs.stat("/small.txt").unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("/small.txt") && msg.contains("signature"),
        "{msg}"
    );
    assert!(fs.list("/").is_err());
    assert_eq!(read_all(&fs, "/dir/sub/deep.txt"), b"deep inside\n");
    // A torn sector: the update sequence no longer matches.
    let fs = open_patched(patched(at + 510, 1, |b| b[0] ^= 0xFF)).unwrap();
    let e = fs.read_file("/small.txt").err().unwrap().to_string();
    assert!(
        e.contains("/small.txt") && e.contains("Update Sequence"),
        "{e}"
    );
}

/// Garbage in MFT records (fixup slots left intact so the parsers see it)
/// gives errors or data, never a panic.
#[test]
fn ntfs_garbage_records_do_not_panic() {
    let mut errors = 0;
    let mut panics = Vec::new();
    for (path, name) in [
        ("/frag.bin", "frag.bin"),
        ("/dir", "dir"),
        ("/big-dir", "big-dir"),
        ("/sparse.bin", "sparse.bin"),
    ] {
        let at = record_of(name);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ at;
        for round in 0..50 {
            let p = patched(at, 1024, |rec| {
                for _ in 0..1 + round % 6 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let pos = 0x38 + (seed as usize % (1024 - 0x38));
                    if pos % 512 < 510 {
                        rec[pos] = (seed >> 32) as u8;
                    }
                }
            });
            let fs = open_patched(p).unwrap();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut n = usize::from(fs.list(path).is_err());
                n += usize::from(fs.stat(path).is_err());
                match fs.read_file(path) {
                    Ok(mut r) => {
                        let mut buf = vec![0u8; 1 << 20];
                        n += usize::from(r.read(&mut buf).is_err());
                    }
                    Err(_) => n += 1,
                }
                n
            }));
            match outcome {
                Ok(n) => errors += n,
                Err(_) => panics.push(format!("{path} round {round}")),
            }
        }
    }
    assert!(panics.is_empty(), "the ntfs crate panicked on: {panics:?}");
    assert!(errors > 4 * 50, "only {errors} errors");
}

/// End to end: the image as a GPT partition, backed up, browsed through
/// the restore point like `lifeboat files ls|get` does.
#[test]
fn ntfs_through_a_restore_point() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.raw");
    gpt_disk(&disk, &[image()]);
    let (repo, m) = backed_up(dir.path(), "ntfsvm", &[("disk0", &disk)]);
    let rp = open_restore_point(&repo, &m).unwrap();
    assert_eq!(rp.volumes()[0].fs, Some(FsType::Ntfs));
    let sel = rp.select(None, None).unwrap();
    assert_eq!(sel.volume.name, "disk0p1");
    let fs = sel.open().unwrap();
    assert_eq!(fs.fs_type(), FsType::Ntfs);
    assert_eq!(fs.list("/big-dir").unwrap().len(), BIG_DIR_ENTRIES);
    for (path, data) in spec() {
        if ["/frag.bin", "/sparse.bin", "/small.txt"].contains(&path.as_str()) {
            assert!(read_all(fs.as_ref(), &path) == data, "{path} differs");
        }
    }
}

/// The fixture image whose `fail_at`-th read (counting from 0) fails with
/// a missing-chunk error, as a damaged restore point does, or (`zeros`)
/// returns zeros instead of its bytes.
struct Faulty {
    base: FileDisk,
    reads: AtomicUsize,
    fail_at: usize,
    zeros: bool,
}

impl Faulty {
    fn new(fail_at: usize, zeros: bool) -> Faulty {
        Faulty {
            base: FileDisk::open(image()).unwrap(),
            reads: AtomicUsize::new(0),
            fail_at,
            zeros,
        }
    }
}

impl ReadDisk for Faulty {
    fn size(&self) -> u64 {
        self.base.size()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> lifeboat_vdisk::Result<()> {
        if self.reads.fetch_add(1, Ordering::Relaxed) != self.fail_at {
            return self.base.read_at(buf, offset);
        }
        if self.zeros {
            buf.fill(0);
            return Ok(());
        }
        Err(lifeboat_vdisk::Error::Source {
            what: format!("faulty disk at byte {offset}"),
            source: Box::new(lifeboat_repo::Error::MissingChunk {
                digest: lifeboat_repo::Digest([7; 32]),
            }),
        })
    }

    fn describe(&self) -> String {
        "faulty fixture image".to_string()
    }
}

/// Opens the volume on `disk` and browses the fragmented file (whose
/// attribute list is non-resident: the crate parses it straight from the
/// disk), a directory and a small file; returns the first error.
fn browse_faulty(disk: Arc<Faulty>) -> Result<(), Error> {
    let fs = NtfsFs::open("ntfsvol", disk)?;
    fs.stat("/frag.bin")?;
    fs.list("/dir")?;
    let mut r = fs.read_file("/frag.bin")?;
    let mut buf = vec![0u8; 65536];
    r.read_exact(&mut buf).map_err(|e| match e.into_inner() {
        Some(inner) => *inner.downcast::<Error>().unwrap(),
        None => panic!("a read error without its cause"),
    })?;
    fs.stat("/small.txt")?;
    Ok(())
}

/// A failed disk read anywhere under the NTFS parser (the boot sector,
/// the non-resident attribute list of /frag.bin, index blocks, MFT
/// records) is an error naming the volume that keeps its damage flag, and
/// zeros read instead of metadata are an error or data: never a panic.
#[test]
fn ntfs_read_errors_under_the_parser_are_errors() {
    let clean = Arc::new(Faulty::new(usize::MAX, false));
    browse_faulty(clean.clone()).unwrap();
    let total = clean.reads.load(Ordering::Relaxed);
    assert!(total > 20, "only {total} reads");
    // The boot sector: the crate panicked on this one read error.
    let e = browse_faulty(Arc::new(Faulty::new(0, false))).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("ntfsvol: /: read error: ") && msg.contains("missing from the repository"),
        "{msg}"
    );
    assert!(e.is_damage(), "{msg}");
    let (mut panics, mut wrong) = (Vec::new(), Vec::new());
    for fail_at in 0..total {
        for zeros in [false, true] {
            let disk = Arc::new(Faulty::new(fail_at, zeros));
            match std::panic::catch_unwind(|| browse_faulty(disk)) {
                Err(_) => panics.push((fail_at, zeros)),
                Ok(Ok(())) if !zeros => wrong.push(format!("read {fail_at} failed unnoticed")),
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    let msg = e.to_string();
                    if !msg.starts_with("ntfsvol: ") || !(zeros || e.is_damage()) {
                        wrong.push(format!("read {fail_at} (zeros: {zeros}): {msg}"));
                    }
                }
            }
        }
    }
    assert!(
        panics.is_empty(),
        "panicked at reads (n, zeros) {panics:?} of {total}"
    );
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// A directory whose `$INDEX_ROOT` states a 2 GiB index record size is a
/// corrupt-filesystem error, not a 2 GiB allocation by the crate.
#[test]
fn ntfs_huge_index_record_size_is_refused() {
    let at = record_of("big-dir");
    let p = patched(at, 1024, |rec| {
        let root = attribute_in(rec, 0x90);
        let value = root + u16::from_le_bytes([rec[root + 0x14], rec[root + 0x15]]) as usize;
        let field = value + 8;
        assert!(
            field % 512 < 506,
            "index record size straddles a fixup slot"
        );
        assert_eq!(rec[field..field + 4], 4096u32.to_le_bytes());
        rec[field..field + 4].copy_from_slice(&0x8000_0000u32.to_le_bytes());
    });
    let fs = open_patched(p).unwrap();
    let e = fs.list("/big-dir").unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Corrupt { .. }), "{msg}");
    assert!(
        msg.starts_with("ntfsvol: /big-dir: ") && msg.contains("index record size of 2147483648"),
        "{msg}"
    );
    assert_eq!(read_all(&fs, "/small.txt"), b"hello ntfs\n");
}

/// A disk that fails every read past its first `limit`: a walk that loops
/// ends with an error instead of running the test out of memory.
struct Bounded<D> {
    base: D,
    reads: AtomicUsize,
    limit: usize,
}

impl<D: ReadDisk> ReadDisk for Bounded<D> {
    fn size(&self) -> u64 {
        self.base.size()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> lifeboat_vdisk::Result<()> {
        if self.reads.fetch_add(1, Ordering::Relaxed) >= self.limit {
            return Err(lifeboat_vdisk::Error::Source {
                what: format!("more than {} reads", self.limit),
                source: "read budget of the test used up".into(),
            });
        }
        self.base.read_at(buf, offset)
    }

    fn describe(&self) -> String {
        "read-bounded fixture image".to_string()
    }
}

/// Byte 510 of every 512-byte sector of a multi-sector record (`FILE`,
/// `INDX`) holds the update sequence number; `unfix` puts the saved bytes
/// back, `refix` saves them again and restores the number.
fn usa_slots(rec: &[u8]) -> (usize, usize) {
    let off = u16::from_le_bytes([rec[4], rec[5]]) as usize;
    let count = u16::from_le_bytes([rec[6], rec[7]]) as usize;
    (off, count)
}

fn unfix(rec: &mut [u8]) {
    let (off, count) = usa_slots(rec);
    for i in 1..count {
        let end = 512 * i - 2;
        let saved = [rec[off + 2 * i], rec[off + 2 * i + 1]];
        rec[end..end + 2].copy_from_slice(&saved);
    }
}

fn refix(rec: &mut [u8]) {
    let (off, count) = usa_slots(rec);
    let usn = [rec[off], rec[off + 1]];
    for i in 1..count {
        let end = 512 * i - 2;
        let saved = [rec[end], rec[end + 1]];
        rec[off + 2 * i..off + 2 * i + 2].copy_from_slice(&saved);
        rec[end..end + 2].copy_from_slice(&usn);
    }
}

/// Byte offset of the `INDX` record of /big-dir that holds `name`.
fn index_record_of(name: &str) -> u64 {
    let img = std::fs::read(image()).unwrap();
    let utf16: Vec<u8> = name.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    let found = img.chunks(4096).position(|rec| {
        let mut rec = rec.to_vec();
        rec.starts_with(b"INDX") && {
            unfix(&mut rec);
            rec.windows(utf16.len()).any(|w| w == utf16.as_slice())
        }
    });
    found.unwrap_or_else(|| panic!("no INDX record holds {name}")) as u64 * 4096
}

/// A directory index whose B-tree points back into itself: the last
/// entry of /big-dir's rightmost leaf record (the one holding the last
/// name) is given a subnode link to that same record. The listing and a
/// lookup of a name sorting after every entry (which descends through
/// that link) are corrupt-filesystem errors naming the directory, within
/// twice the reads of a sound listing; the crate's own iterator and
/// finder descend for ever (the iterator holding one more record per
/// level) and run into that read budget here.
#[test]
fn ntfs_self_referential_index_is_refused() {
    let clean = Bounded {
        base: FileDisk::open(image()).unwrap(),
        reads: AtomicUsize::new(0),
        limit: usize::MAX,
    };
    let clean = Arc::new(clean);
    let fs = NtfsFs::open("ntfsvol", clean.clone()).unwrap();
    assert_eq!(fs.list("/big-dir").unwrap().len(), BIG_DIR_ENTRIES);
    // Twice the reads of opening the volume and listing the sound index.
    let limit = 2 * clean.reads.load(Ordering::Relaxed);
    drop(fs);

    let at = index_record_of(&big_name(BIG_DIR_ENTRIES - 1));
    let p = patched(at, 4096, |rec| {
        unfix(rec);
        let vcn = rec[0x10..0x18].to_vec();
        let node = 0x18;
        let u32_at = |r: &[u8], o: usize| u32::from_le_bytes(r[o..o + 4].try_into().unwrap());
        let (first, used, alloc) = (
            u32_at(rec, node),
            u32_at(rec, node + 4),
            u32_at(rec, node + 8),
        );
        assert!(used + 8 <= alloc, "no room to lengthen the last entry");
        assert_eq!(
            rec[node + 12] & 1,
            0,
            "the rightmost record should be a leaf"
        );
        let mut e = node + first as usize;
        while rec[e + 12] & 2 == 0 {
            e += u16::from_le_bytes([rec[e + 8], rec[e + 9]]) as usize;
        }
        assert_eq!(
            e + 16,
            node + used as usize,
            "the last entry should end the node"
        );
        // The last entry: 16 bytes, then 24 with the subnode flag and VCN.
        rec[e + 8..e + 10].copy_from_slice(&24u16.to_le_bytes());
        rec[e + 12] |= 1;
        rec[e + 16..e + 24].copy_from_slice(&vcn);
        rec[node + 4..node + 8].copy_from_slice(&(used + 8).to_le_bytes());
        rec[node + 12] |= 1;
        refix(rec);
    });
    let disk = Arc::new(Bounded {
        base: p,
        reads: AtomicUsize::new(0),
        limit,
    });
    let fs = NtfsFs::open("ntfsvol", disk.clone()).unwrap();
    let before = disk.reads.load(Ordering::Relaxed);
    let e = fs.list("/big-dir").unwrap_err();
    let listing_reads = disk.reads.load(Ordering::Relaxed) - before;
    let msg = e.to_string();
    assert!(
        listing_reads < limit,
        "the listing read {listing_reads} times: {msg}"
    );
    assert!(matches!(e, Error::Corrupt { .. }), "{msg}");
    assert!(
        msg.starts_with("ntfsvol: /big-dir: ") && msg.contains("twice"),
        "{msg}"
    );
    let e = fs.stat("/big-dir/zzz-after-every-entry").unwrap_err();
    let msg = e.to_string();
    assert!(disk.reads.load(Ordering::Relaxed) < limit, "{msg}");
    assert!(matches!(e, Error::Corrupt { .. }), "{msg}");
    assert!(
        msg.starts_with("ntfsvol: /big-dir/zzz-after-every-entry: ") && msg.contains("twice"),
        "{msg}"
    );
    // The rest of the volume still reads.
    assert_eq!(read_all(&fs, "/small.txt"), b"hello ntfs\n");
    assert!(fs.stat(&format!("/big-dir/{}", big_name(0))).is_ok());
}
