//! A guest writes the first sector of its raw disk: a qcow2 header naming a
//! backing file, a VMDK descriptor naming an extent, or a VHDX parent
//! locator must never make the factory open a host file. Each disk here is
//! raw guest data with real image metadata (made by qemu-img or written
//! byte by byte per the spec) copied over its start, pointing at a planted
//! host file whose marker must never be read.

use lifeboat_formats::vhdx::layout as l;
use lifeboat_formats::{
    open_image, open_image_as, open_image_with, refused_link, AllowedPaths, ChosenBy, ImageFormat,
    OpenOptions,
};
use lifeboat_testsupport::{qemu_img, write_file};
use lifeboat_vdisk::ReadDisk;
use std::path::{Path, PathBuf};

const MARKER: &[u8] = b"HOST-SECRET-MARKER-7f3a";

/// A host file the guest wants to read: the marker, repeated (64 KiB).
fn host_secret(dir: &Path) -> PathBuf {
    let host = dir.join("host");
    std::fs::create_dir_all(&host).unwrap();
    let data: Vec<u8> = MARKER.iter().copied().cycle().take(64 << 10).collect();
    write_file(&host, "secret", &data)
}

/// A raw disk of `size` bytes of guest data whose start is `head`.
fn hostile_disk(path: &Path, size: usize, head: &[u8]) -> Vec<u8> {
    let mut disk: Vec<u8> = b"guest data ".iter().copied().cycle().take(size).collect();
    disk[..head.len()].copy_from_slice(head);
    std::fs::write(path, &disk).unwrap();
    disk
}

fn read_all(disk: &dyn ReadDisk) -> Vec<u8> {
    let mut buf = vec![0u8; disk.size() as usize];
    disk.read_at(&mut buf, 0).unwrap();
    buf
}

fn holds_marker(bytes: &[u8]) -> bool {
    bytes.windows(MARKER.len()).any(|w| w == MARKER)
}

/// The disk read by name (`.raw`/`.img`) and as given raw is exactly the
/// file's bytes; the content mismatch is reported.
fn assert_read_as_raw(path: &Path, bytes: &[u8], looks_like: ImageFormat) {
    let disk = open_image(path).unwrap();
    let got = read_all(disk.as_ref());
    assert!(got == bytes, "{}: read as raw bytes", path.display());
    assert!(!holds_marker(&got));
    let opened = open_image_with(path, &OpenOptions::default()).unwrap();
    assert_eq!(opened.format, ImageFormat::Raw);
    assert_eq!(opened.chosen_by, ChosenBy::FileName);
    assert_eq!(opened.content, looks_like);
    assert!(opened.followed.is_empty());
    let warning = opened.mismatch(path).expect("a mismatch warning");
    assert!(warning.contains(looks_like.name()), "{warning}");
    let given = open_image_as(path, ImageFormat::Raw).unwrap();
    assert!(read_all(given.as_ref()) == bytes);
}

/// Opening `path` as `options` say is refused, naming `secret`, and no
/// file was opened on the way.
fn assert_refused(path: &Path, options: &OpenOptions, secret: &Path) {
    let err = open_image_with(path, options)
        .err()
        .unwrap_or_else(|| panic!("{} opened", path.display()));
    let refused = refused_link(&err).unwrap_or_else(|| panic!("not a refusal: {err}"));
    assert_eq!(refused.resolved, secret.canonicalize().unwrap());
    let text = err.to_string();
    assert!(
        text.contains(&secret.display().to_string()) && text.contains("not allowed"),
        "{text}"
    );
}

/// Allowing the image's own directory does not allow a host file elsewhere.
fn own_dir(path: &Path, format: Option<ImageFormat>) -> OpenOptions {
    let mut allowed = AllowedPaths::none();
    allowed.allow(path.parent().unwrap()).unwrap();
    OpenOptions { format, allowed }
}

#[test]
fn qcow2_header_in_a_raw_disk_never_reads_its_backing_file() {
    let dir = tempfile::tempdir().unwrap();
    let secret = host_secret(dir.path());
    let vms = dir.path().join("vms");
    std::fs::create_dir(&vms).unwrap();
    let hdr = dir.path().join("hdr.qcow2");
    let hdr_s = hdr.to_str().unwrap();
    let secret_s = secret.to_str().unwrap();
    qemu_img(&["create", "-f", "qcow2", "-b", secret_s, "-F", "raw", hdr_s]);
    let head = std::fs::read(&hdr).unwrap();

    let named_raw = vms.join("web.raw");
    let bytes = hostile_disk(&named_raw, 2 << 20, &head);
    assert_read_as_raw(&named_raw, &bytes, ImageFormat::Qcow2);

    // No telling name: detected as qcow2, and its backing file refused.
    let unnamed = vms.join("web-disk0");
    hostile_disk(&unnamed, 2 << 20, &head);
    assert_refused(&unnamed, &OpenOptions::default(), &secret);
    assert_refused(&unnamed, &own_dir(&unnamed, None), &secret);
    assert_refused(
        &unnamed,
        &own_dir(&unnamed, Some(ImageFormat::Qcow2)),
        &secret,
    );
}

#[test]
fn vmdk_descriptor_in_a_raw_disk_never_reads_its_extent() {
    let dir = tempfile::tempdir().unwrap();
    let secret = host_secret(dir.path());
    let vms = dir.path().join("vms");
    std::fs::create_dir(&vms).unwrap();
    // A small disk: a descriptor file may be up to 1 MiB.
    let descriptor = format!(
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n\
         createType=\"monolithicFlat\"\n\n# Extent description\n\
         RW 128 FLAT \"{}\" 0\n\n",
        secret.display()
    );

    let named_img = vms.join("seed.img");
    let bytes = hostile_disk(&named_img, 512 << 10, descriptor.as_bytes());
    assert_read_as_raw(&named_img, &bytes, ImageFormat::Vmdk);

    let unnamed = vms.join("seed");
    hostile_disk(&unnamed, 512 << 10, descriptor.as_bytes());
    assert_refused(&unnamed, &OpenOptions::default(), &secret);
    assert_refused(&unnamed, &own_dir(&unnamed, None), &secret);
    // A relative name is resolved against the image's directory, and must
    // be allowed all the same.
    let relative = descriptor.replace(&secret.display().to_string(), "../host/secret");
    hostile_disk(&unnamed, 512 << 10, relative.as_bytes());
    assert_refused(&unnamed, &own_dir(&unnamed, None), &secret);
}

/// The parent locator type of a VHDX differencing disk,
/// B04AEFB7-D19E-4A81-B789-25B8E9445913 ([MS-VHDX] 2.6.2.6.1), as stored.
const VHDX_LOCATOR_TYPE: [u8; 16] = [
    0xB7, 0xEF, 0x4A, 0xB0, 0x9E, 0xD1, 0x81, 0x4A, 0xB7, 0x89, 0x25, 0xB8, 0xE9, 0x44, 0x59, 0x13,
];

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// Turns the dynamic VHDX `b` into a differencing disk whose parent
/// locator names `parent` ([MS-VHDX] 2.6.2.6): the HasParent flag in File
/// Parameters, and a Parent Locator metadata item (keys parent_linkage,
/// relative_path, absolute_win32_path) in free space of the metadata region.
fn make_differencing(b: &mut [u8], parent: &str) {
    let table = l::REGION_TABLE_OFFSETS[0] as usize;
    let meta = (0..u32_at(b, table + 8) as usize)
        .map(|i| table + 16 + 32 * i)
        .find(|&e| b[e..e + 16] == l::METADATA_GUID)
        .map(|e| u64::from_le_bytes(b[e + 16..e + 24].try_into().unwrap()) as usize)
        .expect("metadata region");
    let count = u16_at(b, meta + 10) as usize;
    let items: Vec<usize> = (0..count).map(|i| meta + 32 + 32 * i).collect();
    let fp = items
        .iter()
        .find(|&&e| b[e..e + 16] == l::FILE_PARAMETERS_GUID)
        .map(|&e| meta + u32_at(b, e + 16) as usize)
        .expect("file parameters");
    b[fp + 4] |= l::FP_HAS_PARENT as u8;

    let pairs = [
        ("parent_linkage", "{00000000-0000-0000-0000-000000000001}"),
        ("relative_path", parent),
        ("absolute_win32_path", parent),
    ];
    let mut locator = VHDX_LOCATOR_TYPE.to_vec();
    locator.extend_from_slice(&0u16.to_le_bytes());
    locator.extend_from_slice(&(pairs.len() as u16).to_le_bytes());
    let mut strings = Vec::new();
    let mut at = 20 + 12 * pairs.len();
    for (k, v) in pairs {
        let (k, v) = (utf16(k), utf16(v));
        locator.extend_from_slice(&(at as u32).to_le_bytes());
        locator.extend_from_slice(&((at + k.len()) as u32).to_le_bytes());
        locator.extend_from_slice(&(k.len() as u16).to_le_bytes());
        locator.extend_from_slice(&(v.len() as u16).to_le_bytes());
        at += k.len() + v.len();
        strings.extend(k);
        strings.extend(v);
    }
    locator.extend(strings);
    // Items start at 64 KiB into the region; put the locator at 512 KiB.
    let offset = 512 << 10;
    b[meta + offset..meta + offset + locator.len()].copy_from_slice(&locator);
    let entry = meta + 32 + 32 * count;
    b[entry..entry + 32].fill(0);
    b[entry..entry + 16].copy_from_slice(&l::PARENT_LOCATOR_GUID);
    b[entry + 16..entry + 20].copy_from_slice(&(offset as u32).to_le_bytes());
    b[entry + 20..entry + 24].copy_from_slice(&(locator.len() as u32).to_le_bytes());
    b[entry + 24..entry + 28].copy_from_slice(&l::METADATA_IS_REQUIRED.to_le_bytes());
    b[meta + 10..meta + 12].copy_from_slice(&((count + 1) as u16).to_le_bytes());
}

/// VHDX differencing disks are not read at all, so a parent locator in a
/// raw disk's first megabytes cannot lead anywhere: detected as VHDX it is
/// refused as differencing, named raw it is raw.
#[test]
fn vhdx_parent_locator_in_a_raw_disk_is_refused_or_read_as_raw() {
    let dir = tempfile::tempdir().unwrap();
    let secret = host_secret(dir.path());
    let vms = dir.path().join("vms");
    std::fs::create_dir(&vms).unwrap();
    let src = write_file(dir.path(), "src.raw", &vec![0x5Au8; 4 << 20]);
    let vhdx = dir.path().join("diff.vhdx");
    lifeboat_testsupport::qemu_img_from_raw(&src, &vhdx, "vhdx", &["-o", "subformat=dynamic"]);
    let mut head = std::fs::read(&vhdx).unwrap();
    make_differencing(&mut head, &secret.display().to_string());

    let unnamed = vms.join("win-disk0");
    hostile_disk(&unnamed, head.len() + (1 << 20), &head);
    for options in [OpenOptions::default(), own_dir(&unnamed, None)] {
        let err = open_image_with(&unnamed, &options)
            .err()
            .expect("a differencing VHDX must not open");
        assert!(err.to_string().contains("differencing VHDX"), "{err}");
    }
    let named_raw = vms.join("win.raw");
    let bytes = hostile_disk(&named_raw, head.len() + (1 << 20), &head);
    assert_read_as_raw(&named_raw, &bytes, ImageFormat::Vhdx);
}

/// A real overlay over a backing file elsewhere reads through its backing
/// file only when that file (or its directory) is allowed, and says which
/// file it read.
#[test]
fn qcow2_backing_file_is_read_when_allowed_and_only_then() {
    let dir = tempfile::tempdir().unwrap();
    let base_dir = dir.path().join("base");
    let vms = dir.path().join("vms");
    std::fs::create_dir(&base_dir).unwrap();
    std::fs::create_dir(&vms).unwrap();
    let base_bytes = lifeboat_vdisk::testsuite::pattern_with_holes(3 << 20, 65536);
    let base = write_file(&base_dir, "base.raw", &base_bytes);
    let top = vms.join("top.qcow2");
    for backing in [base.display().to_string(), "../base/base.raw".to_string()] {
        let _ = std::fs::remove_file(&top);
        qemu_img(&[
            "create",
            "-f",
            "qcow2",
            "-b",
            &backing,
            "-F",
            "raw",
            top.to_str().unwrap(),
        ]);
        assert_refused(&top, &OpenOptions::default(), &base);
        assert_refused(&top, &own_dir(&top, None), &base);
        for allow in [&base, &base_dir] {
            let mut options = OpenOptions::default();
            options.allowed.allow(allow).unwrap();
            let opened = open_image_with(&top, &options).unwrap();
            assert_eq!(opened.format, ImageFormat::Qcow2);
            assert_eq!(opened.followed, vec![base.canonicalize().unwrap()]);
            assert!(read_all(opened.disk.as_ref()) == base_bytes, "{backing}");
        }
    }
}
