//! Bad input and faults, end to end through the `lifeboat` binary: a chunk
//! flipped on disk, a chunk deleted, corrupt image headers and a looping
//! backing chain given to `backup`, and a disk that fills up mid-backup.
//!
//! What each proves: damage is found by `verify` (exit 3, naming the chunk
//! and every restore point and disk using it), a restore that meets it
//! refuses (exit 3, naming the chunk) without leaving any file behind, bad
//! images are refused before any restore point exists, and ENOSPC leaves
//! the repository consistent with the earlier restore point restorable.

mod common;
use common::*;
use std::path::Path;

/// A repository with two restore points of `web01` (disk0 = A, disk1 = B,
/// backed up twice, so every chunk is shared by both restore points).
/// Returns (repo, [rp1, rp2], A, B).
fn two_restore_points(dir: &Path) -> (std::path::PathBuf, [String; 2], Vec<u8>, Vec<u8>) {
    let repo = init_repo(dir);
    let a = dir.join("a.raw");
    let b = dir.join("b.raw");
    let ca = make_disk(&a, 3 << 20, 11);
    let cb = make_disk(&b, (2 << 20) + 8192, 12);
    let rp1 = backup(&repo, "web01", &[("disk0", &a), ("disk1", &b)]);
    let rp2 = backup(&repo, "web01", &[("disk0", &a), ("disk1", &b)]);
    assert_ne!(rp1, rp2);
    (repo, [rp1, rp2], ca, cb)
}

/// A digest used by disk0 of both restore points and not by disk1.
fn chunk_only_in_disk0(repo: &Path, rps: &[String; 2]) -> lifeboat_repo::Digest {
    let d0 = disk_digests(repo, &rps[0], "disk0");
    let d1 = disk_digests(repo, &rps[0], "disk1");
    assert_eq!(d0, disk_digests(repo, &rps[1], "disk0"));
    *d0.iter()
        .find(|d| !d1.contains(d))
        .expect("disk0 has a chunk of its own")
}

/// Restores disk0 of `rp` to `to` expecting exit 3 naming `digest`, and
/// checks that no file (final or partial) is left in `to`'s directory.
fn restore_is_refused(repo: &Path, rp: &str, to: &Path, digest: &str) -> String {
    let before: Vec<_> = std::fs::read_dir(to.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let err = fails_with(
        3,
        &[
            "restore",
            "--repo",
            s(repo),
            rp,
            "--disk",
            "disk0",
            "--to",
            s(to),
        ],
    );
    assert!(err.contains(digest), "the error names the chunk: {err}");
    assert!(!to.exists(), "no output file after a refused restore");
    let mut partial = to.as_os_str().to_owned();
    partial.push(".lifeboat-partial");
    assert!(
        !Path::new(&partial).exists(),
        "no .lifeboat-partial file after a refused restore"
    );
    let after: Vec<_> = std::fs::read_dir(to.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after, "the restore left nothing behind");
    err
}

#[test]
fn flipped_chunk_is_named_by_verify_and_refused_by_restore() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, rps, _ca, cb) = two_restore_points(dir.path());
    let digest = chunk_only_in_disk0(&repo, &rps);
    let hex = digest.to_string();
    let path = chunk_path(&repo, &digest);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 20; // inside the body (ciphertext), not the header
    bytes[at] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    // verify: exit 3, names the chunk, both restore points, disk0, not disk1.
    let out = run(&["verify", "--repo", s(&repo)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "verify: {stdout}");
    assert!(stdout.contains(&hex), "verify names the chunk: {stdout}");
    for rp in &rps {
        assert!(
            stdout.contains(&format!("used by {rp} disk disk0")),
            "verify names {rp} disk0: {stdout}"
        );
    }
    assert!(!stdout.contains("disk disk1"), "disk1 is not hit: {stdout}");

    // verify --json says the same.
    let out = run(&["verify", "--repo", s(&repo), "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bad = v["damage"].as_array().unwrap();
    assert_eq!(bad.len(), 1, "{v}");
    assert_eq!(bad[0]["kind"], "chunk", "{v}");
    let used = bad[0]["used_by"].to_string();
    assert!(used.contains(&rps[0]) && used.contains(&rps[1]), "{used}");

    // verify of one restore point names only that one.
    let out = run(&["verify", "--repo", s(&repo), &rps[0]]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains(&rps[0]) && !stdout.contains(&rps[1]),
        "{stdout}"
    );

    // Restores of the hit disk are refused, raw and qcow2, leaving no file.
    for rp in &rps {
        restore_is_refused(&repo, rp, &dir.path().join("out.raw"), &hex);
    }
    restore_is_refused(&repo, &rps[1], &dir.path().join("out.qcow2"), &hex);

    // The other disk of the same restore point still restores bit-exact.
    let got = restore_raw(&repo, &rps[1], "disk1", &dir.path().join("b-out.raw"));
    assert!(got == cb, "disk1 restored bit-exact beside the damage");
}

#[test]
fn missing_chunk_is_named_by_verify_and_restore() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, rps, _ca, cb) = two_restore_points(dir.path());
    let digest = chunk_only_in_disk0(&repo, &rps);
    let hex = digest.to_string();
    std::fs::remove_file(chunk_path(&repo, &digest)).unwrap();

    let out = run(&["verify", "--repo", s(&repo)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "verify: {stdout}");
    let line = stdout
        .lines()
        .find(|l| l.contains(&hex))
        .unwrap_or_else(|| panic!("verify names the chunk: {stdout}"));
    assert!(
        line.contains("missing"),
        "verify says it is missing: {line}"
    );
    for rp in &rps {
        assert!(
            stdout.contains(&format!("used by {rp} disk disk0")),
            "{stdout}"
        );
    }

    let err = restore_is_refused(&repo, &rps[0], &dir.path().join("out.raw"), &hex);
    assert!(err.contains("missing"), "{err}");
    let got = restore_raw(&repo, &rps[0], "disk1", &dir.path().join("b-out.raw"));
    assert!(
        got == cb,
        "disk1 restored bit-exact beside the missing chunk"
    );
}

/// Writes `bytes` to `dir/name` and returns the path.
fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn corrupt_images_are_refused_without_a_restore_point() {
    require_tool("qemu-img", "qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let repo = init_repo(d);
    let src = d.join("src.raw");
    make_disk(&src, 4 << 20, 21);
    let first = backup(&repo, "good", &[("disk0", &src)]);
    let chunks_before = chunk_files(&repo).len();

    let convert = |fmt: &str, opts: &[&str], name: &str| -> Vec<u8> {
        let out = d.join(name);
        let mut args = vec!["convert", "-O", fmt];
        args.extend_from_slice(opts);
        args.extend([s(&src), s(&out)]);
        qemu_img(&args);
        std::fs::read(&out).unwrap()
    };
    let mut bad = Vec::new();

    // qcow2 cut inside its header (magic intact, so it is detected as qcow2).
    let qcow2 = convert("qcow2", &[], "good.qcow2");
    bad.push(write(d, "truncated.qcow2", &qcow2[..48]));
    // qcow2 whose header says cluster_bits = 63 (offset 20, u32 BE).
    let mut damaged = qcow2.clone();
    damaged[20..24].copy_from_slice(&63u32.to_be_bytes());
    bad.push(write(d, "damaged.qcow2", &damaged));
    // qcow2 whose L1 table offset (offset 40, u64 BE) points past the end.
    let mut l1 = qcow2.clone();
    l1[40..48].copy_from_slice(&(1u64 << 50).to_be_bytes());
    bad.push(write(d, "l1-past-end.qcow2", &l1));
    // monolithicSparse VMDK cut inside its 512-byte header.
    let vmdk = convert("vmdk", &["-o", "subformat=monolithicSparse"], "good.vmdk");
    bad.push(write(d, "truncated.vmdk", &vmdk[..200]));
    // VHDX with both header checksums (64 KiB + 4, 128 KiB + 4) broken.
    let mut vhdx = convert("vhdx", &["-o", "subformat=dynamic"], "good.vhdx");
    for at in [64 * 1024 + 4, 128 * 1024 + 4] {
        vhdx[at] ^= 0xFF;
    }
    bad.push(write(d, "bad-crc.vhdx", &vhdx));
    // A backing chain that loops: a -> b -> a.
    let a = d.join("loop-a.qcow2");
    let b = d.join("loop-b.qcow2");
    qemu_img(&["create", "-f", "qcow2", s(&a), "4M"]);
    qemu_img(&["create", "-f", "qcow2", "-b", s(&a), "-F", "qcow2", s(&b)]);
    qemu_img(&[
        "rebase",
        "-u",
        "-f",
        "qcow2",
        "-b",
        s(&b),
        "-F",
        "qcow2",
        s(&a),
    ]);
    bad.push(b);

    for path in &bad {
        let err = fails_with(
            1,
            &[
                "backup",
                "--repo",
                s(&repo),
                "--vm",
                "bad",
                &format!("disk0={}", s(path)),
                // The chain's files are allowed: the loop itself is refused.
                "--allow-backing",
                s(d),
            ],
        );
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(err.contains(name), "the error names {name}: {err}");
        if name.starts_with("loop") {
            assert!(
                err.contains("backing chain loops"),
                "the error says the chain loops: {err}"
            );
        }
        assert_eq!(
            list_names(&repo),
            vec![first.clone()],
            "no restore point after {name}"
        );
        assert_eq!(chunk_files(&repo).len(), chunks_before, "{name}");
    }
    // The good images of the same content back up fine (the damage was the cause).
    for good in ["good.qcow2", "good.vmdk", "good.vhdx"] {
        backup(&repo, "good", &[("disk0", &d.join(good))]);
    }
    assert_eq!(chunk_files(&repo).len(), chunks_before);
}

/// Size of the tmpfs the repository lives on in the disk-full test.
const TMPFS_SIZE: &str = "24m";

/// Runs init, a small backup, a backup that cannot fit, list, restore,
/// verify and gc inside `unshare -Urm` with the repository on a 24 MiB
/// tmpfs. Results land in `out/` outside the tmpfs.
#[test]
fn disk_full_during_backup_fails_cleanly_and_keeps_the_earlier_restore_point() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    let out = dir.path().join("out");
    std::fs::create_dir(&mnt).unwrap();
    std::fs::create_dir(&out).unwrap();
    let small = dir.path().join("small.raw");
    let big = dir.path().join("big.raw");
    let small_bytes = make_disk(&small, 4 << 20, 31);
    std::fs::write(&big, random_bytes(40 << 20, 32)).unwrap();

    let script = format!(
        r#"mount -t tmpfs -o size={TMPFS_SIZE} lifeboat-test "$MNT" || exit 90
R="$MNT/repo"
"$LB" repo init --repo "$R" --chunk-size-kib 256 || exit 91
"$LB" backup --repo "$R" --vm small disk0="$SMALL" --json > "$OUT/b1.json" || exit 92
"$LB" backup --repo "$R" --vm big disk0="$BIG" > "$OUT/b2.out" 2> "$OUT/b2.err"
echo $? > "$OUT/b2.code"
"$LB" list --repo "$R" --json > "$OUT/list.json" || exit 93
"$LB" restore --repo "$R" small@latest --to "$OUT/restored.raw" || exit 94
"$LB" verify --repo "$R" > "$OUT/verify.out" || exit 95
"$LB" gc --repo "$R" --json > "$OUT/gc.json" || exit 96
"$LB" backup --repo "$R" --vm small disk0="$SMALL" --json > "$OUT/b3.json" || exit 97
"#
    );
    let run = std::process::Command::new("unshare")
        .args(["-Urm", "sh", "-c", &script])
        .env("LB", env!("CARGO_BIN_EXE_lifeboat"))
        .env("LIFEBOAT_PASSPHRASE", PASSPHRASE)
        .env_remove("LIFEBOAT_REPO")
        .env("MNT", &mnt)
        .env("OUT", &out)
        .env("SMALL", &small)
        .env("BIG", &big)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run unshare ({e}): install util-linux (apt-get install util-linux)")
        });
    let text = format!(
        "exit {}\nstdout: {}\nstderr: {}",
        run.status,
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert_ne!(
        run.status.code(),
        Some(90),
        "the disk-full test needs `unshare -Urm` and a tmpfs mount (enable user namespaces: \
         sysctl kernel.unprivileged_userns_clone=1); {text}"
    );
    assert!(run.status.success(), "a step of the script failed: {text}");

    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap_or_default();
    let code = read("b2.code");
    let err = read("b2.err");
    assert_eq!(
        code.trim(),
        "1",
        "the backup that does not fit fails: {err}"
    );
    assert!(
        err.contains("No space left") || err.contains("space"),
        "the error says the disk is full: {err}"
    );
    assert_eq!(
        err.matches("os error 28").count(),
        1,
        "the cause is said once: {err}"
    );
    assert!(
        err.contains(s(&mnt)),
        "the error names the path it could not write: {err}"
    );
    let b1: serde_json::Value = serde_json::from_str(&read("b1.json")).unwrap();
    let list: serde_json::Value = serde_json::from_str(&read("list.json")).unwrap();
    let names: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}@{}",
                m["vm"].as_str().unwrap(),
                m["id"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![b1["restore_point"].as_str().unwrap().to_string()],
        "only the first restore point is listed"
    );
    let restored = std::fs::read(out.join("restored.raw")).unwrap();
    assert!(
        restored == small_bytes,
        "the first restore point restores bit-exact"
    );
    assert!(
        read("verify.out").contains("no damage"),
        "{}",
        read("verify.out")
    );
    // The re-backup after the failure found every chunk already stored.
    let b3: serde_json::Value = serde_json::from_str(&read("b3.json")).unwrap();
    assert_eq!(
        b3["manifest"]["disks"][0]["stats"]["new_chunks"].as_u64(),
        Some(0),
        "{b3}"
    );
}
