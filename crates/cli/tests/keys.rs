//! `lifeboat key add|list|remove` through the real binary: a second
//! passphrase opens the repository, also with the config gone; a removed
//! one no longer does; the last slot that unlocks is kept.

mod common;
use common::*;

const SECOND: &str = "second test passphrase";

/// Runs `lifeboat args...` with `pass` as LIFEBOAT_PASSPHRASE and `new`
/// as LIFEBOAT_NEW_PASSPHRASE.
fn run_with(pass: &str, new: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut cmd = lifeboat();
    cmd.env("LIFEBOAT_PASSPHRASE", pass);
    match new {
        Some(n) => cmd.env("LIFEBOAT_NEW_PASSPHRASE", n),
        None => cmd.env_remove("LIFEBOAT_NEW_PASSPHRASE"),
    };
    cmd.args(args).output().unwrap()
}

fn stdout_ok(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn slots(repo: &str, pass: &str) -> Vec<serde_json::Value> {
    let out = stdout_ok(
        run_with(pass, None, &["key", "list", "--repo", repo, "--json"]),
        "key list",
    );
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn key_add_list_remove() {
    let dir = tempfile::tempdir().unwrap();
    let repo_path = init_repo(dir.path());
    let repo = s(&repo_path);
    let disk = dir.path().join("d.raw");
    make_disk(&disk, 1 << 20, 3);
    let name = backup(&repo_path, "vm", &[("disk0", &disk)]);

    let first = slots(repo, PASSPHRASE);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0]["in_use"], true);
    assert_eq!(first[0]["config_key"], true);
    let first_id = first[0]["id"].as_str().unwrap().to_string();

    // No new passphrase given: refused, nothing added.
    let out = run_with(PASSPHRASE, None, &["key", "add", "--repo", repo]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("LIFEBOAT_NEW_PASSPHRASE"));
    let added = stdout_ok(
        run_with(PASSPHRASE, Some(SECOND), &["key", "add", "--repo", repo]),
        "key add",
    );
    assert!(added.starts_with("added key slot "), "{added}");
    let text = stdout_ok(
        run_with(SECOND, None, &["key", "list", "--repo", repo]),
        "key list",
    );
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(
        text.contains(&first_id) && text.contains("this passphrase"),
        "{text}"
    );

    // Either passphrase opens it, also with the config gone.
    std::fs::remove_file(repo_path.join("config")).unwrap();
    for pass in [PASSPHRASE, SECOND] {
        let out = stdout_ok(
            run_with(pass, None, &["list", "--repo", repo, "--json"]),
            "list",
        );
        assert!(out.contains(name.split('@').nth(1).unwrap()), "{out}");
    }

    // Remove the first: the config is rewritten with the second's key.
    stdout_ok(
        run_with(SECOND, None, &["key", "remove", "--repo", repo, &first_id]),
        "key remove",
    );
    assert!(repo_path.join("config").exists());
    let out = run_with(PASSPHRASE, None, &["list", "--repo", repo]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let left = slots(repo, SECOND);
    assert_eq!(left.len(), 1);
    let restored = dir.path().join("r.raw");
    stdout_ok(
        run_with(
            SECOND,
            None,
            &["restore", "--repo", repo, &name, "--to", s(&restored)],
        ),
        "restore",
    );
    assert_eq!(
        std::fs::read(&restored).unwrap(),
        std::fs::read(&disk).unwrap()
    );
    // The last one is kept.
    let last = left[0]["id"].as_str().unwrap();
    let out = run_with(SECOND, None, &["key", "remove", "--repo", repo, last]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("last intact key slot"),
        "{out:?}"
    );
}
