//! `lifeboat repo repair` end to end: a truncated index (gc refuses to
//! sweep past it) and a flipped chunk. `--dry-run` changes nothing;
//! `--salvage` quarantines the damaged restore point whole and the damaged
//! chunk, writes a salvaged restore point whose listed range reads as
//! zeros; gc then runs and the intact restore point restores bit-exact;
//! verify explains what is left; the next backup heals the chunk.

mod common;
use common::*;
use lifeboat_testsupport::damage::Damage;
use std::path::Path;

/// `lifeboat args...` with `--json`: (exit code, parsed stdout).
fn json(args: &[&str]) -> (i32, serde_json::Value) {
    let mut all = args.to_vec();
    all.push("--json");
    let out = run(&all);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "lifeboat {all:?}: {e}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

#[test]
fn repair_quarantines_salvages_and_lets_gc_run() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let r = s(&repo);
    let a = dir.path().join("a.raw");
    let b = dir.path().join("b.raw");
    let data_a = make_disk(&a, 2 << 20, 1);
    let rp1 = backup(&repo, "web01", &[("disk0", &a)]);
    make_disk(&a, 2 << 20, 2);
    let rp2 = backup(&repo, "web01", &[("disk0", &a)]);
    let data_b = make_disk(&b, 2 << 20, 3);
    let db = backup(&repo, "db01", &[("disk0", &b)]);

    // rp2's index truncated to half; one of db01's own chunks flipped.
    let (rp2_vm, rp2_id) = rp2.split_once('@').unwrap();
    let index = repo
        .join("indexes")
        .join(rp2_vm)
        .join(rp2_id)
        .join("disk0.idx");
    Damage::Half.apply(&index, &index);
    let lib = open_repo_lib(&repo);
    let db_m = lib.resolve(&db).unwrap();
    let db_index = lib.load_index(&db_m, "disk0").unwrap();
    let others: Vec<_> = disk_digests(&repo, &rp1, "disk0");
    let (k, bad) = db_index
        .digests
        .iter()
        .enumerate()
        .find_map(|(k, d)| d.filter(|d| !others.contains(d)).map(|d| (k, d)))
        .expect("db01 has a chunk of its own");
    Damage::Flip.apply(&chunk_path(&repo, &bad), Path::new(""));

    // verify: exit 3, naming both files and their restore points.
    let (code, v) = json(&["verify", "--repo", r, "--no-heal"]);
    assert_eq!(code, 3);
    let text = v.to_string();
    assert!(text.contains("disk0.idx") && text.contains(&rp2), "{text}");
    assert!(
        text.contains(&bad.to_string()) && text.contains(&db),
        "{text}"
    );
    // gc refuses to sweep past the unreadable index, naming it.
    let err = fails_with(3, &["gc", "--repo", r]);
    assert!(
        err.contains("disk0.idx") && err.contains("repo repair"),
        "{err}"
    );

    // --dry-run: says what it would do, changes nothing.
    let out = ok(&["repo", "repair", "--repo", r, "--salvage", "--dry-run"]);
    assert!(
        out.contains(&format!("would quarantine restore point {rp2}")),
        "{out}"
    );
    assert!(
        out.contains("would salvage restore point") && out.contains(&db),
        "{out}"
    );
    assert!(out.contains("nothing changed"), "{out}");
    assert!(!repo.join("quarantine").exists());
    assert!(chunk_path(&repo, &bad).exists());

    // The repair.
    let (code, v) = json(&["repo", "repair", "--repo", r, "--salvage"]);
    assert_eq!(code, 0, "{v}");
    let salvaged = v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["step"] == "salvage" && a["target"] == db.as_str())
        .and_then(|a| a["result"].as_str())
        .unwrap_or_else(|| panic!("a salvaged restore point of {db}: {v}"))
        .to_string();
    assert_eq!(v["still_damaged"][0], db.as_str());
    assert!(!list_names(&repo).contains(&rp2));
    assert!(list_names(&repo).contains(&salvaged));

    // gc runs now; the intact restore point restores bit-exact after it.
    ok(&["gc", "--repo", r]);
    let to = dir.path().join("out.raw");
    assert!(restore_raw(&repo, &rp1, "disk0", &to) == data_a);

    // The salvaged point: db01's data, chunk k zeroed, and it says so.
    let chunk = 256 * 1024;
    let mut want = data_b.clone();
    let end = ((k + 1) * chunk).min(want.len());
    want[k * chunk..end].fill(0);
    std::fs::remove_file(&to).unwrap();
    assert!(restore_raw(&repo, &salvaged, "disk0", &to) == want);
    let show = ok(&["show", "--repo", r, &salvaged]);
    assert!(show.contains(&format!("salvaged from {db}")), "{show}");
    assert!(show.contains(&format!("{}+{chunk}", k * chunk)), "{show}");
    let listed = ok(&["list", "--repo", r]);
    assert!(listed.contains(&format!("SALVAGED from {db}")), "{listed}");

    // verify: no unexplained damage; db01 still uses the quarantined chunk.
    let (code, v) = json(&["verify", "--repo", r]);
    assert_eq!(code, 3, "{v}");
    let damage = v["damage"].as_array().unwrap();
    assert_eq!(damage.len(), 1, "{v}");
    assert_eq!(damage[0]["state"], "quarantined");
    assert_eq!(v["quarantined"].as_array().unwrap().len(), 2, "{v}");

    // The next backup of db01's disk heals it.
    backup(&repo, "db01", &[("disk0", &b)]);
    let (code, v) = json(&["verify", "--repo", r]);
    assert_eq!(code, 0, "{v}");
    std::fs::remove_file(&to).unwrap();
    assert!(restore_raw(&repo, &db, "disk0", &to) == data_b);

    // Purging the quarantine: nothing is a day old yet.
    let out = ok(&["repo", "repair", "--repo", r, "--purge-quarantine", "1"]);
    assert!(out.contains("removed 0 quarantine entries"), "{out}");
    assert!(repo.join("quarantine/chunks").read_dir().unwrap().count() > 0);
}

#[test]
fn repair_also_repairs_the_config_from_its_key_slot() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let r = s(&repo);
    let a = dir.path().join("a.raw");
    let data = make_disk(&a, 1 << 20, 4);
    let rp = backup(&repo, "web01", &[("disk0", &a)]);
    Damage::Flip.apply(&repo.join("config"), Path::new(""));
    fails_with(3, &["verify", "--repo", r]);
    let out = ok(&["repo", "repair", "--repo", r, "--dry-run"]);
    assert!(out.contains("config") && out.contains("would"), "{out}");
    let (code, v) = json(&["repo", "repair", "--repo", r]);
    assert_eq!(code, 0, "{v}");
    assert!(!v["keys"].as_array().unwrap().is_empty(), "{v}");
    ok(&["verify", "--repo", r]);
    let to = dir.path().join("out.raw");
    assert!(restore_raw(&repo, &rp, "disk0", &to) == data);
}

/// The bytes of `path` in the filesystem of `m` (its one volume), or the
/// error's words.
fn read_in(
    repo: &lifeboat_repo::Repository,
    m: &lifeboat_repo::Manifest,
    path: &str,
) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let volumes = lifeboat_browse::open_restore_point(repo, m).map_err(|e| e.to_string())?;
    let fs = volumes
        .select(None, None)
        .and_then(|v| v.open())
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    fs.read_file(path)
        .map_err(|e| e.to_string())?
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

#[test]
fn salvage_names_the_files_of_an_ext4_disk_that_the_lost_chunk_hit() {
    use lifeboat_testsupport::{disks::ext4_image, files::write_file};
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let r = s(&repo);
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("/a.bin", random_bytes(400 << 10, 1)),
        ("/b.bin", random_bytes(400 << 10, 2)),
        ("/sub/c.bin", random_bytes(300 << 10, 3)),
        ("/small.txt", b"hello".to_vec()),
    ];
    for (p, data) in &files {
        write_file(&tree, p.trim_start_matches('/'), data);
    }
    let img = dir.path().join("fs.raw");
    ext4_image(&img, &tree, 8 << 20);
    let rp = backup(&repo, "web01", &[("disk0", &img)]);

    // Damage the chunk holding the first block of /b.bin.
    let lib = open_repo_lib(&repo);
    let m = lib.resolve(&rp).unwrap();
    let needle = &files[1].1[..4096];
    let bad = lib
        .load_index(&m, "disk0")
        .unwrap()
        .digests
        .iter()
        .flatten()
        .copied()
        .find(|d| {
            lib.read_chunk(d)
                .unwrap()
                .windows(4096)
                .step_by(4096)
                .any(|w| w == needle)
        })
        .expect("a chunk holds /b.bin's first block");
    Damage::Flip.apply(&chunk_path(&repo, &bad), Path::new(""));

    let (code, v) = json(&["repo", "repair", "--repo", r, "--salvage"]);
    assert_eq!(code, 0, "{v}");
    let (salvaged, per_disk) = v["salvaged_files"]
        .as_object()
        .and_then(|o| o.iter().next())
        .unwrap_or_else(|| panic!("files named: {v}"));
    let hit: Vec<String> = per_disk["disk0"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let f = f.as_str().unwrap();
            f[f.find(':').unwrap() + 1..].to_string()
        })
        .collect();
    assert!(hit.contains(&"/b.bin".to_string()), "{hit:?}");
    // Listed files read with zeros in the salvaged point; the others
    // read bit-exact from it.
    let lib = open_repo_lib(&repo);
    let sm = lib.resolve(salvaged).unwrap();
    for (p, data) in &files {
        let got = read_in(&lib, &sm, p).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert_eq!(got.len(), data.len(), "{p}");
        assert_eq!(
            &got == data,
            !hit.contains(&p.to_string()),
            "{p} vs {hit:?}"
        );
    }
    // Recorded in the manifest, shown by `show`.
    let record = sm.salvage.clone().unwrap();
    assert!(record.disks[0]
        .files
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x.ends_with(":/b.bin"))));
    let show = ok(&["show", "--repo", r, salvaged]);
    assert!(
        show.contains("file hit: ") && show.contains("/b.bin"),
        "{show}"
    );
}
