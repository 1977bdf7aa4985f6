//! vfat browse end to end: a FAT16 image made with `mkfs.vfat` and filled
//! with `mcopy` (long names, a nested dir, a 5 MiB file) in a GPT disk,
//! backed up, then listed and read back byte-exact.

mod fixture;

use fixture::{backed_up, gpt_disk, pseudo_random, require_tool, run, MIB};
use lifeboat_browse::{open_restore_point, EntryKind, Error, FsType};
use std::io::Read;
use std::process::Command;

#[test]
fn vfat_lists_and_reads_exact_bytes() {
    require_tool("mkfs.vfat", "dosfstools");
    require_tool("mcopy", "mtools");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("Documents/Deeper")).unwrap();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("/hello.txt", b"hello fat\n".to_vec()),
        ("/A Long File Name.txt", b"long names work\n".to_vec()),
        ("/Documents/Deeper/note.md", b"# note\n".to_vec()),
        ("/big.bin", pseudo_random(5 * MIB as usize + 7, 7)),
    ];
    for (p, data) in &files {
        std::fs::write(src.join(p.trim_start_matches('/')), data).unwrap();
    }
    let img = dir.path().join("fat.img");
    run(Command::new("mkfs.vfat")
        .args(["-C", "-F", "16", "-n", "TESTFAT"])
        .arg(&img)
        .arg("16384"));
    for entry in ["hello.txt", "A Long File Name.txt", "Documents", "big.bin"] {
        run(Command::new("mcopy")
            .args(["-s", "-i"])
            .arg(&img)
            .arg(src.join(entry))
            .arg("::/")
            .env("MTOOLS_SKIP_CHECK", "1"));
    }
    let disk = dir.path().join("disk.raw");
    gpt_disk(&disk, &[&img]);

    let (repo, m) = backed_up(dir.path(), "pc", &[("disk0", &disk)]);
    let rp = open_restore_point(&repo, &m).unwrap();
    assert_eq!(rp.volumes()[0].fs, Some(FsType::Vfat));
    let fs = rp.select(None, None).unwrap().open().unwrap();
    assert_eq!(fs.fs_type(), FsType::Vfat);

    let root = fs.list("/").unwrap();
    let names: Vec<&str> = root.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        ["A Long File Name.txt", "Documents", "big.bin", "hello.txt"]
    );
    let big = root.iter().find(|e| e.name == "big.bin").unwrap();
    assert_eq!(
        (big.kind, big.size, big.mode),
        (EntryKind::File, 5 * MIB + 7, 0o644)
    );
    assert_eq!(fs.stat("/Documents").unwrap().kind, EntryKind::Dir);
    assert_eq!(fs.list("/Documents/Deeper").unwrap()[0].name, "note.md");
    assert!(fs.stat("/hello.txt").unwrap().mtime > 1_000_000_000);
    for (path, data) in &files {
        let mut got = Vec::new();
        fs.read_file(path).unwrap().read_to_end(&mut got).unwrap();
        assert!(got == *data, "{path} differs");
    }
    let e = fs.read_file("/missing.txt").err().unwrap();
    assert!(
        matches!(e, Error::NotFound { .. }) && e.to_string().contains("/missing.txt"),
        "{e}"
    );
    let e = fs.read_file("/Documents").err().unwrap();
    assert!(matches!(e, Error::IsADirectory { .. }), "{e}");
    let e = fs.list("/hello.txt").unwrap_err();
    assert!(matches!(e, Error::NotADirectory { .. }), "{e}");
}
