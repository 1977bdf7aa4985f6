//! `lifeboat files ls|get` through the real binary: an ext4 filesystem
//! (made with `mkfs.ext4 -d` from a known tree) in a GPT disk, backed up
//! into an encrypted repository, listed and copied back byte-exact; volume
//! choice on a multi-disk restore point; a corrupt chunk under a file makes
//! `get` fail with exit 3, naming the chunk, leaving no output file.
//! `get` against a hostile guest and a hostile local user: it keeps the
//! source's mode (0600 stays 0600, setuid only with `--keep-setid`),
//! never writes through a symlink planted at its temporary name or at the
//! destination, refuses a guest file name that is not a safe file name,
//! and a guest symlink pointing at a host path never reads the host.

mod common;
#[path = "../../browse/tests/fixture/mod.rs"]
mod fixture;

use common::{backup, chunk_path, disk_digests, fails_with, init_repo, ok, s};
use fixture::{ext4_gpt_disk, gpt_disk, mkfs_ext4, write_tree, MIB};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

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

/// The permission bits of `p`.
fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// A repository holding one backup (`web01`) of an ext4 disk made from
/// the tree `fill` writes under its argument; returns the repository.
fn repo_of_tree(dir: &Path, fill: impl FnOnce(&Path)) -> PathBuf {
    let root = dir.join("tree");
    std::fs::create_dir_all(&root).unwrap();
    fill(&root);
    let img = dir.join("root.ext4");
    mkfs_ext4(&root, &img, 16);
    let disk = dir.join("disk.raw");
    gpt_disk(&disk, &[&img]);
    let repo = init_repo(dir);
    backup(&repo, "web01", &[("disk0", &disk)]);
    repo
}

#[test]
fn get_keeps_the_source_mode_and_setid_bits_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo_of_tree(dir.path(), |root| {
        for (name, m) in [("secret", 0o600), ("run.sh", 0o755), ("suid", 0o4755)] {
            let p = root.join(name);
            std::fs::write(&p, name).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
        }
        symlink("secret", root.join("secret-link")).unwrap();
    });
    let r = s(&repo);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let get = |path: &str, extra: &[&str]| {
        let mut args = vec![
            "files",
            "get",
            "--repo",
            r,
            "web01@latest",
            path,
            "--to",
            s(&out),
        ];
        args.extend_from_slice(extra);
        ok(&args);
    };
    get("/secret", &[]);
    assert_eq!(
        mode(&out.join("secret")),
        0o600,
        "a 0600 file must stay 0600"
    );
    get("/run.sh", &[]);
    assert_eq!(mode(&out.join("run.sh")), 0o755);
    // A symlink brings its target's bytes and mode.
    get("/secret-link", &[]);
    assert_eq!(mode(&out.join("secret-link")), 0o600);
    assert_eq!(std::fs::read(out.join("secret-link")).unwrap(), b"secret");
    get("/suid", &[]);
    assert_eq!(mode(&out.join("suid")), 0o755, "setuid dropped by default");
    std::fs::remove_file(out.join("suid")).unwrap();
    get("/suid", &["--keep-setid"]);
    assert_eq!(mode(&out.join("suid")), 0o4755, "kept when asked, as root");
}

/// Runs `lifeboat args` through `sh`, which first runs `plant` with `$$`
/// being the pid lifeboat will have (`exec` keeps it).
fn run_after(plant: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{plant} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_lifeboat"))
        .args(args)
        .env("LIFEBOAT_PASSPHRASE", common::PASSPHRASE)
        .env_remove("LIFEBOAT_REPO")
        .output()
        .unwrap()
}

#[test]
fn get_never_writes_through_a_planted_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let (disk, tree) = ext4_gpt_disk(dir.path());
    let repo = init_repo(dir.path());
    backup(&repo, "web01", &[("disk0", &disk)]);
    let r = s(&repo);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "original\n").unwrap();

    // A local user who can write the destination directory plants
    // symlinks where the temporary file of the process about to start
    // would be (a name made of the file name and the pid, before).
    let plant = format!(
        "ln -s {v} {o}/.tmp-hosts-$$",
        v = victim.display(),
        o = out.display()
    );
    let got = run_after(
        &plant,
        &[
            "files",
            "get",
            "--repo",
            r,
            "web01@latest",
            "/etc/hosts",
            "--to",
            s(&out),
        ],
    );
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "original\n",
        "get wrote through a symlink planted at its temporary name"
    );
    assert_eq!(std::fs::read(out.join("hosts")).unwrap(), tree.files[0].1);

    // A symlink at the destination, dangling or not, is refused and left
    // alone: nothing is written where it points.
    let planted = out.join("planted");
    let elsewhere = dir.path().join("elsewhere");
    symlink(&elsewhere, &planted).unwrap();
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
            s(&planted),
        ],
    );
    assert!(e.contains("already exists"), "{e}");
    assert!(
        !elsewhere.exists(),
        "written through the destination symlink"
    );
    assert!(std::fs::symlink_metadata(&planted)
        .unwrap()
        .file_type()
        .is_symlink());
    // No temporary file is left behind.
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("lifeboat-get"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn guest_names_and_symlinks_never_choose_a_host_path() {
    let dir = tempfile::tempdir().unwrap();
    let host_secret = dir.path().join("host-secret");
    std::fs::write(&host_secret, "host only\n").unwrap();
    let abs = host_secret.clone();
    let repo = repo_of_tree(dir.path(), move |root| {
        std::fs::write(root.join("-rf"), "dash").unwrap();
        std::fs::write(root.join("esc\u{1b}[2Jape"), "escape").unwrap();
        // Points at a host file; inside the guest it leads nowhere.
        symlink(&abs, root.join("to-host")).unwrap();
        symlink("../../../../../../..", root.join("up")).unwrap();
    });
    let r = s(&repo);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    for (path, rule) in [
        ("/-rf", "begins with `-`"),
        ("/esc\u{1b}[2Jape", "control character"),
    ] {
        let e = fails_with(
            1,
            &[
                "files",
                "get",
                "--repo",
                r,
                "web01@latest",
                path,
                "--to",
                s(&out),
            ],
        );
        assert!(
            e.contains("not a safe file name") && e.contains(rule),
            "{e}"
        );
        assert!(!e.contains('\u{1b}'), "the name is printed escaped: {e:?}");
    }
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
    // Named by the user, the same file comes out.
    let to = out.join("dash");
    ok(&[
        "files",
        "get",
        "--repo",
        r,
        "web01@latest",
        "/-rf",
        "--to",
        s(&to),
    ]);
    assert_eq!(std::fs::read(&to).unwrap(), b"dash");
    // `ls` shows the escape sequence escaped.
    let ls = ok(&["files", "ls", "--repo", r, "web01@latest", "/"]);
    assert!(
        ls.contains("\"esc\\u{1b}[2Jape\"") && !ls.contains('\u{1b}'),
        "{ls}"
    );

    // A guest symlink to a host path is resolved inside the guest.
    let e = fails_with(
        1,
        &[
            "files",
            "get",
            "--repo",
            r,
            "web01@latest",
            "/to-host",
            "--to",
            s(&out),
        ],
    );
    assert!(!e.contains("host only"), "{e}");
    assert!(!out.join("to-host").exists());
    let e = fails_with(
        1,
        &[
            "files",
            "get",
            "--repo",
            r,
            "web01@latest",
            "/up",
            "--to",
            s(&out),
        ],
    );
    assert!(!e.is_empty());
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1, "only dash");
}
