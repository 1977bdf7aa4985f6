//! Healing, end to end through the `lifeboat` binary: a damaged chunk is
//! moved into `quarantine/` by `verify` (or by the read of a restore that
//! meets it), and the next backup that produces the same data stores it
//! again, after which every restore point restores bit-exact and `verify`
//! finds nothing.

mod common;
use common::*;
use std::path::{Path, PathBuf};

/// Flips one byte in the middle of chunk `digest`'s file.
fn flip(repo: &Path, digest: &lifeboat_repo::Digest) {
    let path = chunk_path(repo, digest);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
}

/// The files in `quarantine/chunks/`.
fn quarantined(repo: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(repo.join("quarantine/chunks"))
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

/// `verify --json` of the whole repository: (exit code, report).
fn verify_json(repo: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec!["verify", "--repo", s(repo), "--json"];
    args.extend(extra);
    let out = run(&args);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify --json: {e}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

fn restores_exactly(repo: &Path, dir: &Path, rp: &str, want: &[u8]) {
    let to = dir.join("restored.raw");
    let _ = std::fs::remove_file(&to);
    assert!(
        restore_raw(repo, rp, "disk0", &to) == want,
        "{rp} restores bit-exact"
    );
    std::fs::remove_file(&to).unwrap();
}

#[test]
fn verify_quarantines_a_damaged_chunk_and_the_next_backup_heals_it() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let disk = dir.path().join("a.raw");
    let data = make_disk(&disk, 3 << 20, 5);
    let rp1 = backup(&repo, "web01", &[("disk0", &disk)]);
    let digests = disk_digests(&repo, &rp1, "disk0");
    let bad = digests[2];
    flip(&repo, &bad);

    // Looking only: damage named, nothing moved.
    let (code, v) = verify_json(&repo, &["--no-heal"]);
    assert_eq!(code, 3, "{v}");
    assert_eq!(v["damage"][0]["state"], "corrupt");
    assert!(quarantined(&repo).is_empty());
    // A backup now would dedup against the damaged file: it is present.
    assert!(chunk_path(&repo, &bad).exists());

    // verify (healing by default): damaged, exit 3, the chunk moved aside
    // with a note naming where it was and who depends on it.
    let out = run(&["verify", "--repo", s(&repo)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains(&bad.to_string()) && text.contains(&rp1),
        "{text}"
    );
    assert!(!chunk_path(&repo, &bad).exists());
    let q = quarantined(&repo);
    assert_eq!(q.len(), 2, "the chunk and its note: {q:?}");
    let note: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            q.iter()
                .find(|p| p.extension().is_some_and(|e| e == "json"))
                .unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(note["kind"], "chunk");
    assert_eq!(note["by"], "verify");
    assert_eq!(note["state"], "corrupt");
    assert_eq!(note["restore_points"][0], rp1.as_str());
    assert!(note["original"]
        .as_str()
        .unwrap()
        .ends_with(&bad.to_string()));

    // Still damaged (rp1 depends on a quarantined chunk), and said so.
    let (code, v) = verify_json(&repo, &[]);
    assert_eq!(code, 3, "{v}");
    assert_eq!(v["damage"][0]["state"], "quarantined");
    assert_eq!(v["quarantined"].as_array().unwrap().len(), 1);

    // The next backup of the same disk stores the chunk again.
    let rp2 = backup(&repo, "web01", &[("disk0", &disk)]);
    assert!(chunk_path(&repo, &bad).exists());
    let (code, v) = verify_json(&repo, &[]);
    assert_eq!(code, 0, "healed: {v}");
    assert!(v["damage"].as_array().unwrap().is_empty());
    // The quarantine keeps the damaged file (never deleted).
    assert_eq!(quarantined(&repo).len(), 2);
    for rp in [&rp1, &rp2] {
        restores_exactly(&repo, dir.path(), rp, &data);
    }
}

#[test]
fn a_restore_that_meets_a_damaged_chunk_quarantines_it_and_a_changed_disk_backup_heals_it() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let disk = dir.path().join("a.raw");
    let old = make_disk(&disk, 3 << 20, 7);
    let rp1 = backup(&repo, "web01", &[("disk0", &disk)]);
    let bad = disk_digests(&repo, &rp1, "disk0")[1];
    flip(&repo, &bad);

    let to = dir.path().join("restored.raw");
    let err = fails_with(
        3,
        &[
            "restore",
            "--repo",
            s(&repo),
            &rp1,
            "--disk",
            "disk0",
            "--to",
            s(&to),
        ],
    );
    assert!(err.contains(&bad.to_string()), "{err}");
    assert!(!chunk_path(&repo, &bad).exists(), "moved aside by the read");
    assert_eq!(quarantined(&repo).len(), 2);

    // The disk changes in its last 256 KiB chunk; the rest, including the
    // chunk that was damaged, is the same data: the backup stores it again.
    let mut new = old.clone();
    let n = new.len();
    new[n - 1000..].fill(0x5a);
    std::fs::write(&disk, &new).unwrap();
    let rp2 = backup(&repo, "web01", &[("disk0", &disk)]);
    assert!(chunk_path(&repo, &bad).exists());
    let (code, v) = verify_json(&repo, &[]);
    assert_eq!(code, 0, "healed: {v}");
    restores_exactly(&repo, dir.path(), &rp1, &old);
    restores_exactly(&repo, dir.path(), &rp2, &new);
}

#[test]
fn a_read_only_reader_still_reads_and_reports() {
    // A reader that cannot move anything (here: a file where the
    // quarantine directory would go; tests run as root, to whom every
    // mode bit is writable) still fails the restore naming the chunk,
    // and the file stays where it is.
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let disk = dir.path().join("a.raw");
    make_disk(&disk, 1 << 20, 9);
    let rp1 = backup(&repo, "web01", &[("disk0", &disk)]);
    let bad = disk_digests(&repo, &rp1, "disk0")[0];
    flip(&repo, &bad);
    std::fs::write(repo.join("quarantine"), b"not a directory").unwrap();
    let to = dir.path().join("restored.raw");
    let err = fails_with(
        3,
        &[
            "restore",
            "--repo",
            s(&repo),
            &rp1,
            "--disk",
            "disk0",
            "--to",
            s(&to),
        ],
    );
    assert!(err.contains(&bad.to_string()), "{err}");
    assert!(chunk_path(&repo, &bad).exists());
    // verify says it could not quarantine, and still names the damage.
    let (code, v) = verify_json(&repo, &[]);
    assert_eq!(code, 3);
    let detail = v["damage"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("could not quarantine"), "{detail}");
}
