//! `lifeboat scan` through the real binary, as root: GPT + ext4 test disks
//! (made with `mkfs.ext4 -d`) with an EICAR file and a file holding the
//! YARA test marker, backed up as a clean and two infected restore points,
//! scanned with clamscan (a signature database the test generates) and the
//! built-in YARA rules over the published restore points. Checks the
//! detections (disk, volume, path, signature), the exit codes, the scan
//! state `list`/`show` print, `--find-clean`, the dedup-aware re-scan
//! (unchanged files recognised by their extents, not read),
//! custom YARA rules, that nothing stays published, and that a corrupt
//! chunk under a file makes the scan incomplete, never clean.

mod common;
#[path = "../../browse/tests/fixture/mod.rs"]
mod fixture;
#[path = "../../scan/tests/common/mod.rs"]
mod samples;

use common::{backup, chunk_path, fails_with, init_repo, list_names, ok, run, s};
use fixture::{gpt_disk, mkfs_ext4, pseudo_random, require_tool};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Paths a scan needs, all inside the test's temporary directory.
struct Env {
    repo: PathBuf,
    db: PathBuf,
    cache: PathBuf,
    mount_root: PathBuf,
    state_dir: PathBuf,
}

impl Env {
    fn new(dir: &Path) -> Env {
        require_env();
        let env = Env {
            repo: init_repo(dir),
            db: samples::make_clamav_db(&dir.join("db")),
            cache: dir.join("cache"),
            mount_root: dir.join("mnt"),
            state_dir: dir.join("state"),
        };
        std::fs::create_dir_all(&env.mount_root).unwrap();
        env
    }

    /// `scan --repo R <extra...>` with the private cache, mount root and
    /// state dir.
    fn args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec![
            "scan",
            "--repo",
            s(&self.repo),
            "--scan-cache",
            s(&self.cache),
            "--mount-root",
            s(&self.mount_root),
            "--state-dir",
            s(&self.state_dir),
        ];
        v.extend_from_slice(extra);
        v
    }

    /// Runs a scan expecting exit `code`; returns stdout.
    fn scan(&self, code: i32, extra: &[&str]) -> String {
        self.scan_with_stderr(code, extra).0
    }

    /// Runs a scan expecting exit `code`; returns stdout and stderr.
    fn scan_with_stderr(&self, code: i32, extra: &[&str]) -> (String, String) {
        let args = self.args(extra);
        let out = run(&args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "lifeboat {args:?}: expected exit {code}\nstdout: {stdout}\nstderr: {stderr}"
        );
        (stdout, stderr)
    }

    /// Nothing left mounted or recorded: the mount root is empty and no
    /// session is published.
    fn assert_unpublished(&self) {
        let left: Vec<_> = std::fs::read_dir(&self.mount_root)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(left.is_empty(), "left in the mount root: {left:?}");
        let p = ok(&["published", "--state-dir", s(&self.state_dir), "--json"]);
        let v: Value = serde_json::from_str(&p).unwrap();
        assert_eq!(v.as_array().map(Vec::len), Some(0), "{p}");
    }

    /// `list --json`: restore point name -> scan_state.
    fn states(&self) -> Vec<(String, String)> {
        let out = ok(&["list", "--repo", s(&self.repo), "--json"]);
        let v: Value = serde_json::from_str(&out).unwrap();
        let states = v
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["scan_state"].as_str().unwrap().to_string());
        list_names(&self.repo).into_iter().zip(states).collect()
    }
}

fn require_env() {
    assert!(
        std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false),
        "the scan tests publish restore points: run them as root"
    );
    samples::require_clamscan();
    require_tool("mkfs.ext4", "e2fsprogs");
    require_tool("losetup", "util-linux");
}

/// A GPT disk with one ext4 partition made from a tree; `infected` plants
/// EICAR in /tmp/eicar.com and the marker in /home/alice/notes.txt.
fn make_disk(dir: &Path, name: &str, infected: bool, big: Option<&[u8]>) -> PathBuf {
    let root = dir.join(format!("tree-{name}"));
    if infected {
        samples::make_infected_tree(&root);
    } else {
        samples::make_clean_tree(&root);
    }
    if let Some(data) = big {
        std::fs::write(root.join("var/lib/app/big.bin"), data).unwrap();
    }
    let img = dir.join(format!("{name}.ext4"));
    mkfs_ext4(&root, &img, 16);
    let disk = dir.join(format!("{name}.raw"));
    gpt_disk(&disk, &[&img]);
    disk
}

/// `dir/custom.yar`: one YARA rule `name` matching the text `needle`.
fn rule_file(dir: &Path, name: &str, needle: &str) -> PathBuf {
    let rules = dir.join("custom.yar");
    let text = format!("rule {name} {{ strings: $a = \"{needle}\" condition: $a }}\n");
    std::fs::write(&rules, text).unwrap();
    rules
}

/// (disk, volume, path, engine, signature) of each detection.
fn detections(report: &Value) -> Vec<(String, String, String, String, String)> {
    let mut v: Vec<_> = report["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let f = |k: &str| d[k].as_str().unwrap().to_string();
            (
                f("disk"),
                f("volume"),
                f("path"),
                f("engine"),
                f("signature"),
            )
        })
        .collect();
    v.sort();
    v
}

fn det(path: &str, engine: &str, sig: &str) -> (String, String, String, String, String) {
    (
        "disk0".into(),
        "disk0p1".into(),
        path.into(),
        engine.into(),
        sig.into(),
    )
}

#[test]
fn scan_reports_samples_records_state_and_finds_the_clean_point() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(dir.path());
    let clean = make_disk(dir.path(), "clean", false, None);
    let infected = make_disk(dir.path(), "infected", true, None);
    let rp1 = backup(&env.repo, "web01", &[("disk0", &clean)]);
    let rp2 = backup(&env.repo, "web01", &[("disk0", &infected)]);
    let rp3 = backup(&env.repo, "web01", &[("disk0", &infected)]);
    let not_scanned = |rp: &str| (rp.to_string(), "not_scanned".to_string());
    assert_eq!(
        env.states(),
        vec![not_scanned(&rp1), not_scanned(&rp2), not_scanned(&rp3)]
    );
    let db = s(&env.db);

    // No engine flag: every available engine (ClamAV has a database).
    let out = env.scan(7, &["web01@latest", "--clamav-db", db, "--json"]);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["restore_point"], rp3.as_str());
    assert_eq!(r["state"], "infected");
    assert_eq!(
        detections(&r),
        vec![
            det(
                "/home/alice/notes.txt",
                "clamav",
                "Lifeboat.Test.Marker.UNOFFICIAL"
            ),
            det("/home/alice/notes.txt", "yara", "Lifeboat_Test_Marker"),
            det("/tmp/eicar.com", "clamav", "Lifeboat.Test.Eicar.UNOFFICIAL"),
            det("/tmp/eicar.com", "yara", "EICAR_Test_File"),
        ]
    );
    assert!(r["detections"][0]["restore_point"] == rp3.as_str(), "{out}");
    assert_eq!(r["unreadable"].as_array().unwrap().len(), 0, "{out}");
    let engines: Vec<_> = r["engines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(engines, ["clamav", "yara"]);
    assert_eq!(
        (
            r["files_scanned"].as_u64(),
            r["skipped_unchanged_files"].as_u64()
        ),
        (Some(9), Some(0))
    );
    env.assert_unpublished();
    assert_eq!(env.states()[2], (rp3.clone(), "infected".to_string()));
    let listed = ok(&["list", "--repo", s(&env.repo)]);
    let line = |rp: &str| {
        listed
            .lines()
            .find(|l| l.starts_with(rp))
            .unwrap_or_else(|| panic!("{rp} not in {listed}"))
            .to_string()
    };
    assert!(line(&rp3).trim_end().ends_with("infected"), "{listed}");
    assert!(line(&rp1).trim_end().ends_with("not scanned"), "{listed}");

    // A re-scan of the same content (rp2 shares every file with rp3) skips
    // everything and still reports the detections, in words this time.
    let text = env.scan(7, &[&rp2, "--clamav-db", db]);
    assert!(
        text.contains(&format!("{rp2}: infected (4 detections, 0 unreadable)")),
        "{text}"
    );
    assert!(
        text.contains(
            "DETECTED   disk0/disk0p1:/tmp/eicar.com  clamav Lifeboat.Test.Eicar.UNOFFICIAL"
        ),
        "{text}"
    );
    assert!(
        text.contains("scanned 0 files (0 B); skipped 9 unchanged files"),
        "{text}"
    );
    env.assert_unpublished();

    // Without publishing (files read in userspace, YARA only): the same
    // YARA detections, and the content is known from the published scans.
    let out = env.scan(7, &[&rp2, "--no-publish", "--json"]);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        detections(&r),
        vec![
            det("/home/alice/notes.txt", "yara", "Lifeboat_Test_Marker"),
            det("/tmp/eicar.com", "yara", "EICAR_Test_File"),
        ]
    );
    assert_eq!(r["skipped_unchanged_files"], 9, "{out}");
    assert_eq!(r["unreadable"].as_array().unwrap().len(), 0, "{out}");
    env.assert_unpublished();

    // --find-clean: newest first, stops at the clean rp1.
    let out = env.scan(0, &["web01", "--find-clean", "--clamav-db", db, "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["clean"], rp1.as_str(), "{out}");
    let tried: Vec<_> = v["tried"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["restore_point"].as_str().unwrap(),
                t["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tried,
        [
            (rp3.as_str(), "infected"),
            (rp2.as_str(), "infected"),
            (rp1.as_str(), "clean")
        ]
    );
    // The clean tree's files are all in the infected one: nothing new.
    assert_eq!(v["tried"][2]["skipped_unchanged_files"], 7, "{out}");
    assert_eq!(v["tried"][2]["files_scanned"], 0, "{out}");
    let text = env.scan(0, &["web01", "--find-clean", "--clamav-db", db]);
    assert!(
        text.contains(&format!("newest clean restore point: {rp1}")),
        "{text}"
    );
    env.assert_unpublished();
    assert_eq!(
        env.states(),
        vec![
            (rp1.clone(), "clean".to_string()),
            (rp2.clone(), "infected".to_string()),
            (rp3.clone(), "infected".to_string()),
        ]
    );
    let show = ok(&["show", "--repo", s(&env.repo), &rp1, "--json"]);
    let v: Value = serde_json::from_str(&show).unwrap();
    assert_eq!(v["scan_state"], "clean");
    assert_eq!(v["manifest"]["scan"]["detections"], 0);
    assert_eq!(v["manifest"]["scan"]["engines"][0]["name"], "clamav");
    let show = ok(&["show", "--repo", s(&env.repo), &rp3]);
    assert!(show.contains("scan          infected"), "{show}");

    // Custom YARA rules (with the built-in ones), YARA only.
    let rules = rule_file(dir.path(), "Custom_Localhost", "localhost");
    let out = env.scan(7, &[&rp1, "--yara", s(&rules), "--json"]);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        detections(&r),
        vec![det("/etc/hosts", "yara", "Custom_Localhost")]
    );
    assert_eq!(
        engine_states(&r),
        [
            (
                "clamav".to_string(),
                "not asked for (--yara without --clamav)".to_string()
            ),
            ("yara".to_string(), String::new())
        ],
        "{out}"
    );
    assert_eq!(env.states()[0], (rp1.clone(), "infected".to_string()));
    env.assert_unpublished();
}

/// The numbers of a report: (files scanned, bytes scanned, skipped files,
/// skipped bytes, skipped unread files, skipped unread bytes).
fn counts(r: &Value) -> [u64; 6] {
    [
        "files_scanned",
        "bytes_scanned",
        "skipped_unchanged_files",
        "skipped_unchanged_bytes",
        "skipped_unread_files",
        "skipped_unread_bytes",
    ]
    .map(|k| r[k].as_u64().unwrap_or_else(|| panic!("no {k} in {r}")))
}

/// Overwrites, in the raw disk image `raw`, the bytes of a file whose
/// content is `content` at `content[at..]` with `new` (in place: the
/// filesystem's metadata is untouched).
fn overwrite_file_bytes(raw: &mut [u8], content: &[u8], at: usize, new: &[u8]) {
    let probe = &content[at..at + 4096];
    let pos = raw
        .windows(probe.len())
        .position(|w| w == probe)
        .expect("the file's bytes are in the image");
    raw[pos..pos + new.len()].copy_from_slice(new);
}

#[test]
fn rescan_skips_unchanged_files_unread_and_rereads_changed_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(dir.path());
    let root = dir.path().join("tree");
    samples::make_clean_tree(&root);
    std::fs::create_dir_all(root.join("srv")).unwrap();
    const MIB: usize = 1 << 20;
    let names = ["changed", "plant", "a", "b", "c", "d"];
    let contents: Vec<Vec<u8>> = (0..names.len())
        .map(|i| pseudo_random(MIB, 200 + 2 * i as u64))
        .collect();
    for (n, c) in names.iter().zip(&contents) {
        std::fs::write(root.join(format!("srv/{n}.bin")), c).unwrap();
    }
    let total_files = 7 + names.len() as u64;
    let total_bytes = (0..5u64).map(|i| 10_000 + i).sum::<u64>()
        + "127.0.0.1 localhost\n".len() as u64
        + "web01\n".len() as u64
        + (names.len() * MIB) as u64;
    let img = dir.path().join("v1.ext4");
    mkfs_ext4(&root, &img, 32);
    let disk1 = dir.path().join("v1.raw");
    gpt_disk(&disk1, &[&img]);
    // rp2: the same disk with 4 KiB overwritten in the middle of
    // changed.bin and the test marker written in the middle of plant.bin.
    // Each 1 MiB file is contiguous, so the 256 KiB chunk under its middle
    // holds none of the other files' blocks.
    let mut raw = std::fs::read(&disk1).unwrap();
    overwrite_file_bytes(&mut raw, &contents[0], MIB / 2, &pseudo_random(4096, 7));
    let marker = format!("\n{}\n", samples::MARKER);
    overwrite_file_bytes(&mut raw, &contents[1], MIB / 2, marker.as_bytes());
    let disk2 = dir.path().join("v2.raw");
    std::fs::write(&disk2, raw).unwrap();
    let rp1 = backup(&env.repo, "app01", &[("disk0", &disk1)]);
    let rp2 = backup(&env.repo, "app01", &[("disk0", &disk2)]);
    let db = s(&env.db);
    let scan_json = |code: i32, rp: &str| -> Value {
        let out = env.scan(code, &[rp, "--clamav-db", db, "--json"]);
        serde_json::from_str(&out).unwrap()
    };

    // First scan: every file read, by both engines.
    let r = scan_json(0, &rp1);
    assert_eq!(counts(&r), [total_files, total_bytes, 0, 0, 0, 0], "{r}");
    assert_eq!(r["engines"].as_array().unwrap().len(), 2, "{r}");
    // The ext4 volume was listed and mapped in userspace, not by the kernel.
    assert_eq!(r["files_listed_in_userspace"], total_files, "{r}");
    // The same restore point again: nothing is read.
    let r = scan_json(0, &rp1);
    let all_unread = [0, 0, total_files, total_bytes, total_files, total_bytes];
    assert_eq!(counts(&r), all_unread, "{r}");

    // rp2: the two files whose blocks changed are read and scanned (the
    // marker planted only in rp2 is found by both engines); the others are
    // skipped without being read.
    let r = scan_json(7, &rp2);
    let unchanged = total_bytes - 2 * MIB as u64;
    assert_eq!(
        counts(&r),
        [
            2,
            2 * MIB as u64,
            total_files - 2,
            unchanged,
            total_files - 2,
            unchanged
        ],
        "{r}"
    );
    let found = vec![
        det(
            "/srv/plant.bin",
            "clamav",
            "Lifeboat.Test.Marker.UNOFFICIAL",
        ),
        det("/srv/plant.bin", "yara", "Lifeboat_Test_Marker"),
    ];
    assert_eq!(detections(&r), found);
    assert_eq!(r["unreadable"].as_array().unwrap().len(), 0, "{r}");
    // Again: the detections come back from the cache, nothing is read.
    let r = scan_json(7, &rp2);
    assert_eq!(counts(&r), all_unread, "{r}");
    assert_eq!(detections(&r), found);
    let text = env.scan(0, &[&rp1, "--clamav-db", db]);
    assert!(
        text.contains(&format!(
            "scanned 0 files (0 B); skipped {total_files} unchanged files"
        )) && text.contains(&format!("{total_files} of them")),
        "{text}"
    );
    env.assert_unpublished();

    // A rule set not seen before: every file is read again.
    let rules = rule_file(dir.path(), "Custom_Web01", "web01");
    let out = env.scan(7, &[&rp2, "--yara", s(&rules), "--json"]);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(counts(&r), [total_files, total_bytes, 0, 0, 0, 0], "{r}");
    env.assert_unpublished();
}

#[test]
fn a_corrupt_chunk_under_a_file_makes_the_scan_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(dir.path());
    let big = pseudo_random(3 << 20, 99);
    let disk = make_disk(dir.path(), "clean", false, Some(&big));
    let rp = backup(&env.repo, "db01", &[("disk0", &disk)]);

    // Damage the chunk holding the middle of big.bin.
    let raw = std::fs::read(&disk).unwrap();
    let probe = &big[(3 << 19)..(3 << 19) + 4096];
    let at = raw.windows(probe.len()).position(|w| w == probe).unwrap();
    let lib = common::open_repo_lib(&env.repo);
    let m = lib.resolve(&rp).unwrap();
    let index = lib.load_index(&m, "disk0").unwrap();
    let digest = index.digests[at / index.chunk_size as usize].expect("a data chunk");
    let path = chunk_path(&env.repo, &digest);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();

    let out = env.scan(3, &[&rp, "--clamav-db", s(&env.db), "--json"]);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["state"], "incomplete", "{out}");
    assert_eq!(r["detections"].as_array().unwrap().len(), 0, "{out}");
    let unreadable: Vec<_> = r["unreadable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["disk"].as_str().unwrap(),
                u["volume"].as_str().unwrap(),
                u["path"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        unreadable,
        [("disk0", "disk0p1", "/var/lib/app/big.bin")],
        "{out}"
    );
    env.assert_unpublished();
    assert_eq!(env.states(), vec![(rp.clone(), "incomplete".to_string())]);

    // The same in userspace: the file is named unreadable.
    let out = env.scan(3, &[&rp, "--no-publish", "--json"]);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["state"], "incomplete", "{out}");
    assert_eq!(r["unreadable"][0]["path"], "/var/lib/app/big.bin", "{out}");
    assert_eq!(r["unreadable"][0]["volume"], "disk0p1", "{out}");

    // No clean restore point: exit 5, and the damaged one is still not clean.
    let out = env.scan(
        5,
        &["db01", "--find-clean", "--clamav-db", s(&env.db), "--json"],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["clean"], Value::Null, "{out}");
    assert_eq!(v["tried"][0]["state"], "incomplete", "{out}");
    env.assert_unpublished();
}

/// `dir` with a `daily.cld` whose header says it was built in October 2024.
fn stale_clamav_db(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut header =
        b"ClamAV-VDB:14 Oct 2024 04-19 -0400:27425:2068375:90:0123:X:raynman:1728893940".to_vec();
    header.resize(512, b' ');
    std::fs::write(dir.join("daily.cld"), header).unwrap();
    dir.to_path_buf()
}

/// True when ClamAV's default database directory holds signature files.
fn default_clamav_db_present() -> bool {
    std::fs::read_dir("/var/lib/clamav").is_ok_and(|rd| {
        rd.flatten().any(|e| {
            let p = e.path();
            let ext = p.extension().and_then(|x| x.to_str()).unwrap_or_default();
            ["cvd", "cld", "cud", "ndb", "hdb", "ldb"].contains(&ext)
        })
    })
}

/// The engines of a report or scan record: (name, not_scanned reason or
/// ""), sorted by name.
fn engine_states(r: &Value) -> Vec<(String, String)> {
    let mut v: Vec<_> = r["engines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["not_scanned"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

/// The engine `name` of a report or scan record.
fn engine<'r>(r: &'r Value, name: &str) -> &'r Value {
    r["engines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no engine {name} in {r}"))
}

#[test]
fn without_a_usable_clamav_database_a_scan_is_not_clean_and_find_clean_skips_it() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(dir.path());
    let clean = make_disk(dir.path(), "clean", false, None);
    let rp = backup(&env.repo, "web01", &[("disk0", &clean)]);
    let empty = dir.path().join("empty-db");
    std::fs::create_dir(&empty).unwrap();

    // An empty database: ClamAV does not scan, YARA finds nothing, and
    // that is not clean.
    let (out, stderr) = env.scan_with_stderr(8, &[&rp, "--clamav-db", s(&empty), "--json"]);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["state"], "unproven", "{out}");
    let engines = engine_states(&r);
    assert_eq!(engines[0].0, "clamav", "{out}");
    assert!(
        engines[0].1.contains("no ClamAV signature database"),
        "{out}"
    );
    assert_eq!(engines[1], ("yara".to_string(), String::new()), "{out}");
    assert_eq!(engine(&r, "yara")["signatures"], "builtin.yar", "{out}");
    assert!(stderr.contains("ClamAV not used"), "{stderr}");
    env.assert_unpublished();
    assert_eq!(env.states(), vec![(rp.clone(), "unproven".to_string())]);
    let show = ok(&["show", "--repo", s(&env.repo), &rp, "--json"]);
    let v: Value = serde_json::from_str(&show).unwrap();
    assert_eq!(v["manifest"]["scan"]["state"], "unproven", "{show}");
    assert!(
        engine(&v["manifest"]["scan"], "clamav")["not_scanned"]
            .as_str()
            .is_some_and(|w| w.contains("no ClamAV signature database")),
        "{show}"
    );

    // --find-clean passes over it.
    let out = env.scan(
        5,
        &["web01", "--find-clean", "--clamav-db", s(&empty), "--json"],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["clean"], Value::Null, "{out}");
    assert_eq!(v["tried"][0]["state"], "unproven", "{out}");

    // The machine's own database, when it has none (this test machine):
    // the same, without any flag.
    if default_clamav_db_present() {
        eprintln!("/var/lib/clamav holds a database: its check without flags is skipped");
    } else {
        let out = env.scan(8, &[&rp, "--json"]);
        let r: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(r["state"], "unproven", "{out}");
        assert!(engine_states(&r)[0].1.contains("/var/lib/clamav"), "{out}");
        env.scan(5, &["web01", "--find-clean"]);
    }

    // A database older than --clamav-max-age: not used either, and
    // refused when ClamAV is asked for by name.
    let stale = stale_clamav_db(&dir.path().join("stale-db"));
    let out = env.scan(8, &[&rp, "--clamav-db", s(&stale), "--json"]);
    let r: Value = serde_json::from_str(&out).unwrap();
    let why = &engine_states(&r)[0].1;
    assert!(
        why.contains("dated 2024-10-14 08:19 UTC, older than 7 days"),
        "{out}"
    );
    let stderr = fails_with(1, &env.args(&[&rp, "--clamav", "--clamav-db", s(&stale)]));
    assert!(stderr.contains("older than 7 days"), "{stderr}");

    // A usable database: clean, naming the engine and the database.
    let out = env.scan(0, &[&rp, "--clamav-db", s(&env.db), "--json"]);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["state"], "clean", "{out}");
    let clam = engine(&r, "clamav");
    assert!(
        clam["version"].as_str().unwrap().starts_with("ClamAV "),
        "{out}"
    );
    assert!(
        clam["signatures"]
            .as_str()
            .unwrap()
            .contains("2 signature files, blake3 "),
        "{out}"
    );
    assert!(clam["db_time"].is_string(), "{out}");
    let show = ok(&["show", "--repo", s(&env.repo), &rp, "--json"]);
    let v: Value = serde_json::from_str(&show).unwrap();
    assert_eq!(
        v["manifest"]["scan"]["engines"][0]["signatures"],
        clam["signatures"]
    );
    env.scan(0, &["web01", "--find-clean", "--clamav-db", s(&env.db)]);
    env.assert_unpublished();
}

#[test]
fn a_tampered_scan_cache_entry_is_dropped_and_its_file_scanned_again() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(dir.path());
    let infected = make_disk(dir.path(), "infected", true, None);
    let rp = backup(&env.repo, "web01", &[("disk0", &infected)]);
    let db = s(&env.db);
    let out = env.scan(7, &[&rp, "--clamav-db", db, "--json"]);
    let found = detections(&serde_json::from_str(&out).unwrap());
    assert_eq!(found.len(), 4, "{out}");

    // Whoever can write the scan cache marks every result clean.
    let repo_dir = std::fs::read_dir(&env.cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    let file = repo_dir.join("scan-cache.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    let mut marked = 0;
    let tampered: String = text
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            if v["signatures"].as_array().is_some_and(|a| !a.is_empty()) {
                v["signatures"] = Value::Array(Vec::new());
                marked += 1;
            }
            serde_json::to_string(&v).unwrap() + "\n"
        })
        .collect();
    assert!(marked >= 4, "{text}");
    std::fs::write(&file, tampered).unwrap();

    // The next scan drops those lines, says so, and finds the files again.
    let (out, stderr) = env.scan_with_stderr(7, &[&rp, "--clamav-db", db, "--json"]);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(detections(&r), found, "{out}");
    assert!(
        stderr.contains(&format!("{marked} entries failed authentication")),
        "{stderr}"
    );
    // ... and the cache is whole again: a third scan skips every file.
    let (out, stderr) = env.scan_with_stderr(7, &[&rp, "--clamav-db", db, "--json"]);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["files_scanned"], 0, "{out}");
    assert!(!stderr.contains("failed authentication"), "{stderr}");
    env.assert_unpublished();
}

#[test]
fn bad_targets_are_refused_before_publishing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let r = s(&repo);
    let e = fails_with(5, &["scan", "--repo", r, "web01@latest"]);
    assert!(e.contains("web01@latest"), "{e}");
    let e = fails_with(5, &["scan", "--repo", r, "web01", "--find-clean"]);
    assert!(e.contains("web01"), "{e}");
    let e = fails_with(1, &["scan", "--repo", r, "web01@latest", "--find-clean"]);
    assert!(e.contains("--find-clean takes a VM name"), "{e}");
}

#[test]
fn sigint_mid_scan_unpublishes_and_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(dir.path());
    let root = dir.path().join("tree");
    std::fs::create_dir_all(&root).unwrap();
    for i in 0..200u64 {
        std::fs::write(root.join(format!("f{i}")), pseudo_random(100_000, i)).unwrap();
    }
    let img = dir.path().join("many.ext4");
    mkfs_ext4(&root, &img, 48);
    let disk = dir.path().join("many.raw");
    gpt_disk(&disk, &[&img]);
    let rp = backup(&env.repo, "app01", &[("disk0", &disk)]);

    // A missing rules file is refused before anything is published.
    let out = run(&env.args(&[&rp, "--yara", s(&dir.path().join("none.yar"))]));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("none.yar"));
    env.assert_unpublished();

    let child = common::lifeboat()
        .args(env.args(&[&rp]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt as soon as the session exists (publishing or scanning).
    let started = std::time::Instant::now();
    while !std::fs::read_dir(&env.state_dir)
        .map(|mut d| d.any(|e| e.unwrap().path().extension().is_some_and(|x| x == "json")))
        .unwrap_or(false)
    {
        assert!(started.elapsed().as_secs() < 60, "no session appeared");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    env.assert_unpublished();
    assert_eq!(env.states(), vec![(rp, "not_scanned".to_string())]);
}

#[test]
fn without_root_yara_reads_files_in_userspace() {
    let dir = tempfile::tempdir().unwrap();
    require_env();
    require_tool("setpriv", "util-linux");
    let repo = init_repo(dir.path());
    let disk = make_disk(dir.path(), "infected", true, None);
    let rp = backup(&repo, "web01", &[("disk0", &disk)]);
    // Let `nobody` read the repository and write its own cache.
    let chmod = std::process::Command::new("chmod")
        .args(["-R", "a+rX", s(dir.path())])
        .status()
        .unwrap();
    assert!(chmod.success());
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
    let as_nobody = |extra: &[&str]| {
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_lifeboat"))
            .args(["scan", "--repo", s(&repo), &rp])
            .args(extra)
            .env("HOME", &home)
            .env_remove("XDG_CACHE_HOME")
            .env("LIFEBOAT_PASSPHRASE", common::PASSPHRASE);
        cmd.output().unwrap()
    };
    let out = as_nobody(&["--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert!(
        stderr.contains("root privileges") && stderr.contains("userspace"),
        "{stderr}"
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        detections(&r),
        vec![
            det("/home/alice/notes.txt", "yara", "Lifeboat_Test_Marker"),
            det("/tmp/eicar.com", "yara", "EICAR_Test_File"),
        ]
    );
    // The default cache of a user, per repository id.
    let cache = home.join(".cache/lifeboat/scan");
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
    // ClamAV needs the published tree: refused, saying why.
    let out = as_nobody(&["--clamav"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("run it as root"), "{stderr}");
}
