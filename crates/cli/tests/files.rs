//! `lifeboat files ls|get` through the real binary: an ext4 filesystem
//! (made with `mkfs.ext4 -d` from a known tree) in a GPT disk, backed up
//! into an encrypted repository, listed and copied back byte-exact; volume
//! choice on a multi-disk restore point; a corrupt chunk under a file makes
//! `get` fail with exit 3, naming the chunk, leaving no output file.

mod common;
#[path = "../../browse/tests/fixture/mod.rs"]
mod fixture;

use common::{backup, chunk_path, disk_digests, fails_with, init_repo, ok, s};
use fixture::{ext4_gpt_disk, gpt_disk, mkfs_ext4, write_tree, MIB};

#[test]
fn ls_and_get_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (disk, tree) = ext4_gpt_disk(dir.path());
    let repo = init_repo(dir.path());
    backup(&repo, "web01", &[("disk0", &disk)]);
    let r = s(&repo);

    let root = ok(&["files", "ls", "--repo", r, "web01@latest", "/"]);
    assert!(
        root.contains("big.bin") && root.contains(&(5 * MIB + 123).to_string()),
        "{root}"
    );
    assert!(root.contains("hosts-link -> etc/hosts"), "{root}");
    assert!(
        root.contains("-rwxr-xr-x") && root.contains("run.sh"),
        "{root}"
    );
    // No path on a single-filesystem restore point: the root.
    assert_eq!(ok(&["files", "ls", "--repo", r, "web01@latest"]), root);

    let etc = ok(&["files", "ls", "--repo", r, "web01@latest", "/etc", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&etc).unwrap();
    assert_eq!(v["volume"], "disk0p1");
    assert_eq!(v["filesystem"], "ext4");
    let secret = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "secret")
        .expect("secret listed");
    assert_eq!(secret["mode"], 0o600);
    assert_eq!(
        (secret["uid"].as_u64(), secret["gid"].as_u64()),
        (Some(1234), Some(5678))
    );
    assert_eq!(secret["kind"], "file");

    for (path, data) in &tree.files {
        let to = dir.path().join(format!("out-{}", path.replace('/', "_")));
        ok(&[
            "files",
            "get",
            "--repo",
            r,
            "web01@latest",
            path,
            "--to",
            s(&to),
        ]);
        assert!(std::fs::read(&to).unwrap() == *data, "{path} differs");
    }
    // Into a directory, by name; an existing target is refused.
    let outdir = dir.path().join("outdir");
    std::fs::create_dir(&outdir).unwrap();
    ok(&[
        "files",
        "get",
        "--repo",
        r,
        "web01@latest",
        "/etc/hosts",
        "--to",
        s(&outdir),
    ]);
    assert_eq!(
        std::fs::read(outdir.join("hosts")).unwrap(),
        tree.files[0].1
    );
    let e = fails_with(
        1,
        &[
            "files",
            "get",
            "--repo",
            r,
            "web01@latest",
            "/etc/hosts",
            "--to",
            s(&outdir),
        ],
    );
    assert!(e.contains("already exists"), "{e}");
    let e = fails_with(
        1,
        &[
            "files",
            "get",
            "--repo",
            r,
            "web01@latest",
            "/nope",
            "--to",
            s(&outdir),
        ],
    );
    assert!(e.contains("/nope") && e.contains("no such file"), "{e}");
}

#[test]
fn volumes_are_chosen_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    let tree = write_tree(&root);
    let img = dir.path().join("a.ext4");
    mkfs_ext4(&root, &img, 24);
    let blank = dir.path().join("blank.img");
    std::fs::write(&blank, vec![0u8; MIB as usize]).unwrap();
    let d0 = dir.path().join("d0.raw");
    gpt_disk(&d0, &[&img, &blank]);
    let d1 = dir.path().join("d1.raw");
    gpt_disk(&d1, &[&img]);
    let repo = init_repo(dir.path());
    backup(&repo, "web01", &[("disk0", &d0), ("disk1", &d1)]);
    let r = s(&repo);

    let vols = ok(&["files", "ls", "--repo", r, "web01@latest"]);
    for want in ["disk0p1", "disk0p2", "disk1p1", "ext4"] {
        assert!(vols.contains(want), "{want} missing:\n{vols}");
    }
    let e = fails_with(1, &["files", "ls", "--repo", r, "web01@latest", "/etc"]);
    assert!(
        e.contains("--disk disk1 --volume disk1p1") && e.contains("--volume disk0p1"),
        "{e}"
    );
    let etc = ok(&[
        "files",
        "ls",
        "--repo",
        r,
        "web01@latest",
        "/etc",
        "--disk",
        "disk1",
    ]);
    assert!(etc.contains("hosts") && etc.contains("secret"), "{etc}");
    let to = dir.path().join("big");
    ok(&[
        "files",
        "get",
        "--repo",
        r,
        "web01@latest",
        "/big.bin",
        "--volume",
        "disk0p1",
        "--to",
        s(&to),
    ]);
    assert!(std::fs::read(&to).unwrap() == tree.files[3].1);
    let e = fails_with(
        1,
        &[
            "files",
            "ls",
            "--repo",
            r,
            "web01@latest",
            "/",
            "--volume",
            "disk0p2",
        ],
    );
    assert!(
        e.contains("disk0p2") && e.contains("no known filesystem"),
        "{e}"
    );
}

#[test]
fn corrupt_chunk_fails_get_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (disk, tree) = ext4_gpt_disk(dir.path());
    let repo = init_repo(dir.path());
    let rp = backup(&repo, "web01", &[("disk0", &disk)]);
    let raw = std::fs::read(&disk).unwrap();
    let big = &tree.files[3].1;
    let probe = &big[2 * MIB as usize..2 * MIB as usize + 4096];
    let at = raw.windows(probe.len()).position(|w| w == probe).unwrap();
    let r_lib = common::open_repo_lib(&repo);
    let m = r_lib.resolve(&rp).unwrap();
    let index = r_lib.load_index(&m, "disk0").unwrap();
    let cs = index.chunk_size as usize;
    let digest = index.digests[at / cs].expect("a data chunk");
    assert!(disk_digests(&repo, &rp, "disk0").contains(&digest));
    let path = chunk_path(&repo, &digest);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();

    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let to = out.join("big.bin");
    let e = fails_with(
        3,
        &[
            "files",
            "get",
            "--repo",
            s(&repo),
            &rp,
            "/big.bin",
            "--to",
            s(&to),
        ],
    );
    assert!(
        e.contains(&digest.to_string()) && e.contains("/big.bin"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "output left behind"
    );
    // Files on other chunks still come back.
    ok(&[
        "files",
        "get",
        "--repo",
        s(&repo),
        &rp,
        "/etc/hosts",
        "--to",
        s(&to),
    ]);
    assert_eq!(std::fs::read(&to).unwrap(), tree.files[0].1);
}
