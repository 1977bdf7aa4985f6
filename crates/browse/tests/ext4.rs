//! ext4 browse end to end: a tree made into ext4 with `mkfs.ext4 -d`, in a
//! GPT disk, backed up into a repository, then listed and read back through
//! `open_restore_point` -> `select` -> `Filesystem`.

mod fixture;

use fixture::{backed_up, ext4_gpt_disk, gpt_disk, mkfs_ext4, write_tree, CHUNK, HOSTS_MTIME, MIB};
use lifeboat_browse::{open_restore_point, EntryKind, Error, Filesystem, FsType};
use std::io::Read;

fn read_all(fs: &dyn Filesystem, path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    fs.read_file(path).unwrap().read_to_end(&mut out).unwrap();
    out
}

#[test]
fn lists_stats_and_reads_exact_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (disk, tree) = ext4_gpt_disk(dir.path());
    let (repo, m) = backed_up(dir.path(), "web01", &[("disk0", &disk)]);
    let rp = open_restore_point(&repo, &m).unwrap();
    let vols = rp.volumes();
    assert_eq!(vols.len(), 1, "{vols:?}");
    assert_eq!(vols[0].fs, Some(FsType::Ext4));
    let sel = rp.select(None, None).unwrap();
    assert_eq!(
        (sel.disk.as_str(), sel.volume.name.as_str()),
        ("disk0", "disk0p1")
    );
    let fs = sel.open().unwrap();
    assert_eq!(fs.fs_type(), FsType::Ext4);

    let root = fs.list("/").unwrap();
    let names: Vec<&str> = root.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "a",
            "big.bin",
            "empty",
            "etc",
            "hosts-link",
            "lost+found",
            "run.sh"
        ]
    );
    let big = root.iter().find(|e| e.name == "big.bin").unwrap();
    assert_eq!(
        (big.kind, big.size, big.path.as_str()),
        (EntryKind::File, 5 * MIB + 123, "/big.bin")
    );
    let link = root.iter().find(|e| e.name == "hosts-link").unwrap();
    assert_eq!(link.kind, EntryKind::Symlink);
    assert_eq!(link.symlink_target.as_deref(), Some("etc/hosts"));
    assert_eq!(
        root.iter().find(|e| e.name == "empty").unwrap().kind,
        EntryKind::Dir
    );
    assert!(fs.list("/empty").unwrap().is_empty());

    let secret = fs.stat("/etc/secret").unwrap();
    assert_eq!((secret.mode, secret.uid, secret.gid), (0o600, 1234, 5678));
    assert_eq!(fs.stat("/run.sh").unwrap().mode, 0o755);
    assert_eq!(fs.stat("/etc/hosts").unwrap().mtime, HOSTS_MTIME);
    assert_eq!(fs.stat("/etc/").unwrap().kind, EntryKind::Dir);
    assert_eq!(fs.list("/a/b/c").unwrap()[0].name, "deep.txt");

    for (path, data) in &tree.files {
        assert!(read_all(fs.as_ref(), path) == *data, "{path} differs");
    }
    assert_eq!(read_all(fs.as_ref(), "/hosts-link"), tree.files[0].1);

    let e = fs.read_file("/nope/x").err().unwrap();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    assert!(
        e.to_string().contains("/nope/x") && e.to_string().contains("disk0p1"),
        "{e}"
    );
    let e = fs.list("/etc/hosts").unwrap_err();
    assert!(matches!(e, Error::NotADirectory { .. }), "{e}");
    let e = fs.read_file("/etc").err().unwrap();
    assert!(matches!(e, Error::IsADirectory { .. }), "{e}");
    let e = fs.list("etc").unwrap_err();
    assert!(e.to_string().contains("absolute"), "{e}");
}

#[test]
fn volume_choice_and_unknown_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    write_tree(&root);
    let img = dir.path().join("a.ext4");
    mkfs_ext4(&root, &img, 24);
    let blank = dir.path().join("blank.img");
    std::fs::write(&blank, vec![0u8; MIB as usize]).unwrap();
    let one = dir.path().join("one.raw");
    gpt_disk(&one, &[&img, &blank]);
    let two = dir.path().join("two.raw");
    gpt_disk(&two, &[&img, &img]);
    let (repo, m) = backed_up(dir.path(), "web01", &[("disk0", &one), ("disk1", &two)]);
    let rp = open_restore_point(&repo, &m).unwrap();

    // Three filesystems over two disks: a choice is needed and listed.
    let e = rp.select(None, None).err().unwrap().to_string();
    assert!(
        e.contains("3 filesystems") && e.contains("--disk disk1 --volume disk1p2"),
        "{e}"
    );
    // On disk0 only one volume holds a filesystem.
    let sel = rp.select(Some("disk0"), None).unwrap();
    assert_eq!(sel.volume.name, "disk0p1");
    let fs = rp.select(None, Some("disk1p2")).unwrap().open().unwrap();
    assert_eq!(fs.stat("/big.bin").unwrap().size, 5 * MIB + 123);

    // A volume with no known filesystem: a clear error naming it.
    let blank_vol = rp.select(Some("disk0"), Some("disk0p2")).unwrap();
    let e = blank_vol.open().err().unwrap();
    assert!(matches!(e, Error::NoFilesystem { .. }), "{e}");
    assert!(
        e.to_string().contains("disk0p2") && e.to_string().contains("no known filesystem"),
        "{e}"
    );

    let e = rp.select(Some("disk9"), None).err().unwrap().to_string();
    assert!(e.contains("disk9") && e.contains("disk0, disk1"), "{e}");
    let e = rp.select(None, Some("nope")).err().unwrap().to_string();
    assert!(e.contains("nope") && e.contains("disk0p1"), "{e}");
}

#[test]
fn corrupt_chunk_under_a_file_names_the_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let (disk, tree) = ext4_gpt_disk(dir.path());
    let (repo, m) = backed_up(dir.path(), "web01", &[("disk0", &disk)]);
    // Where big.bin's bytes sit on the disk -> which chunk holds them.
    let raw = std::fs::read(&disk).unwrap();
    let big = &tree.files[3].1;
    let probe = &big[MIB as usize..MIB as usize + 4096];
    let at = raw
        .windows(probe.len())
        .position(|w| w == probe)
        .expect("big.bin on disk");
    let index = repo.load_index(&m, "disk0").unwrap();
    let digest = index.digests[at / CHUNK as usize].expect("a data chunk");
    let hex = digest.to_string();
    let path = dir.path().join("repo/chunks").join(&hex[..2]).join(&hex);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();

    let rp = open_restore_point(&repo, &m).unwrap();
    let fs = rp.select(None, None).unwrap().open().unwrap();
    // Other files still read.
    assert_eq!(read_all(fs.as_ref(), "/etc/hosts"), tree.files[0].1);
    let mut out = Vec::new();
    let e = fs
        .read_file("/big.bin")
        .unwrap()
        .read_to_end(&mut out)
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&hex) && msg.contains("/big.bin") && msg.contains("corrupt"),
        "{msg}"
    );
}
