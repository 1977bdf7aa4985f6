//! Jobs, schedules and sessions of `lifeboat serve`, run as a separate
//! process on loopback with the CLI and curl as clients: a job over a raw
//! image run on demand (restored bit-exact), retention of that VM only, a
//! second run while one runs (409), roles, bad input, a failing source
//! retried with a webhook receiving the session, a server killed mid-run
//! (the session is failed as interrupted, the webhook told, the
//! repository has only whole restore points), and a schedule missed while
//! the server was down (run once at start, under faketime).
mod common;
use common::server::{serve_new_repo, Server};
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// A repository, a server serving it as `main` with `extra` arguments,
/// and an operator and a viewer token.
struct Setup {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    repo: PathBuf,
    server: Server,
    admin: String,
    operator: String,
    viewer: String,
}

fn token(server: &Server, admin: &str, role: &str) -> String {
    let out = server.cli_ok(admin, &["token", "create", "--role", role, "--json"]);
    json(&out)["secret"].as_str().unwrap().to_string()
}

fn setup(extra: &[&str]) -> Setup {
    let served = serve_new_repo(extra);
    let operator = token(&served.server, &served.admin, "operator");
    let viewer = token(&served.server, &served.admin, "viewer");
    Setup {
        _dir: served.tmp,
        dir: served.dir,
        repo: served.repo,
        server: served.server,
        admin: served.admin,
        operator,
        viewer,
    }
}

impl Setup {
    /// `job create NAME --repo-name main --source ...` plus `extra`.
    fn create_job(&self, name: &str, sources: &[String], extra: &[&str]) {
        let mut args = vec!["job", "create", name, "--repo-name", "main"];
        for src in sources {
            args.extend(["--source", src.as_str()]);
        }
        args.extend_from_slice(extra);
        self.server.cli_ok(&self.operator, &args);
    }

    fn session(&self, id: i64) -> serde_json::Value {
        json(&self.server.cli_ok(
            &self.viewer,
            &["session", "show", &id.to_string(), "--json"],
        ))
    }

    fn sessions(&self, job: &str) -> Vec<serde_json::Value> {
        let out = self
            .server
            .cli_ok(&self.viewer, &["session", "list", "--job", job, "--json"]);
        json(&out).as_array().unwrap().clone()
    }

    /// Polls until `ready` holds for the job's sessions (newest first).
    fn wait_sessions(
        &self,
        job: &str,
        what: &str,
        ready: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let list = self.sessions(job);
            if ready(&list) {
                return list;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {list:#?}\nserver log:\n{}",
                self.server.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `job run NAME --wait --json` by the operator: the ended session.
fn run_wait(st: &Setup, job: &str) -> serde_json::Value {
    json(
        &st.server
            .cli_ok(&st.operator, &["job", "run", job, "--wait", "--json"]),
    )
}

#[test]
fn a_job_runs_on_demand_restores_bit_exact_and_prunes_only_its_vm() {
    let st = setup(&[]);
    let image = st.dir.join("web01.raw");
    let data = make_disk(&image, 3 << 20, 7);
    let other_image = st.dir.join("other.raw");
    make_disk(&other_image, 1 << 20, 8);
    let other1 = backup(&st.repo, "other", &[("disk0", &other_image)]);
    let other2 = backup(&st.repo, "other", &[("disk0", &other_image)]);

    st.create_job(
        "web01",
        &[format!("disk0=raw:{}", s(&image))],
        &["--keep-last", "1"],
    );
    let shown = json(
        &st.server
            .cli_ok(&st.viewer, &["job", "show", "web01", "--json"]),
    );
    assert_eq!(shown["retention"]["last"], 1, "{shown}");
    assert_eq!(shown["schedule"], serde_json::Value::Null);
    let table = st.server.cli_ok(&st.viewer, &["job", "list"]);
    assert!(
        table.contains("web01") && table.contains("on demand"),
        "{table}"
    );

    let first = run_wait(&st, "web01");
    assert_eq!(first["state"], "succeeded", "{first:#}");
    assert_eq!(first["trigger"], "manual");
    assert_eq!(
        (&first["bytes_read"], &first["bytes_total"]),
        (&(3 << 20).into(), &(3 << 20).into())
    );
    assert!(first["bytes_stored"].as_u64().unwrap() > 0, "{first:#}");
    let point = first["restore_point"].as_str().unwrap().to_string();
    assert!(list_names(&st.repo).contains(&point));
    let restored = restore_raw(&st.repo, &point, "disk0", &st.dir.join("restored.raw"));
    assert!(
        restored == data,
        "the restore point does not restore bit-exact"
    );

    // Second run: keep-last 1 leaves only the new point of web01, and
    // the other VM's points alone.
    let second = run_wait(&st, "web01");
    assert_eq!(second["state"], "succeeded", "{second:#}");
    let second_point = second["restore_point"].as_str().unwrap().to_string();
    let names = list_names(&st.repo);
    let web: Vec<_> = names.iter().filter(|n| n.starts_with("web01@")).collect();
    assert_eq!(web, vec![&second_point], "{names:?}");
    assert!(
        names.contains(&other1) && names.contains(&other2),
        "{names:?}"
    );

    // The session's log says what happened, with times.
    let shown = st.session(second["id"].as_i64().unwrap());
    let log: Vec<&str> = shown["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_str().unwrap())
        .collect();
    assert!(
        log.iter()
            .any(|l| l.starts_with("retention: kept 1, removed 1")),
        "{log:?}"
    );
    assert!(log.iter().any(|l| l.contains(&second_point)), "{log:?}");
    assert!(shown["log"][0]["time"].as_str().unwrap().ends_with('Z'));
    let text = st
        .server
        .cli_ok(&st.viewer, &["session", "show", &second["id"].to_string()]);
    assert!(
        text.contains("succeeded") && text.contains(&second_point),
        "{text}"
    );
    assert_eq!(st.sessions("web01").len(), 2);

    // Admin deletes the job; the audit log has the changes and the runs.
    st.server.cli_ok(&st.admin, &["job", "delete", "web01"]);
    st.server
        .cli_fails(5, &st.viewer, &["job", "show", "web01"]);
    let (status, body) = st
        .server
        .curl("GET", "/api/v1/audit", Some(&st.admin), None);
    assert_eq!(status, 200);
    let audit = json(&body);
    let count = |action: &str| {
        audit
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == action)
            .count()
    };
    assert_eq!(
        (
            count("job.create"),
            count("job.run"),
            count("session.end"),
            count("job.delete")
        ),
        (1, 2, 2, 1),
        "{body}"
    );
}

#[test]
fn one_run_at_a_time_roles_bad_input_and_a_kill_mid_run() {
    let st = setup(&[]);
    let image = st.dir.join("big.raw");
    std::fs::write(&image, random_bytes(256 << 20, 3)).unwrap();
    st.create_job("big", &[format!("disk0=raw:{}", s(&image))], &[]);

    // Roles: a viewer neither creates nor runs; an operator does not delete.
    let body = br#"{"name":"x","repository":"main","sources":["disk0=/x.raw"]}"#;
    let (status, _) = st
        .server
        .curl("POST", "/api/v1/jobs", Some(&st.viewer), Some(body));
    assert_eq!(status, 403);
    let (status, _) = st
        .server
        .curl("POST", "/api/v1/jobs/big/run", Some(&st.viewer), None);
    assert_eq!(status, 403);
    let (status, _) = st
        .server
        .curl("DELETE", "/api/v1/jobs/big", Some(&st.operator), None);
    assert_eq!(status, 403);
    st.server.cli_fails(11, &st.viewer, &["job", "run", "big"]);

    // Bad input: 400 (exit 1) naming the problem, 404 (exit 5) for an
    // unknown repository, 409 (exit 9) for a taken name. A source outside
    // the server's --source-root (the test's directory) is refused: an
    // operator token does not read the host's files.
    let x = format!("d={}", s(&st.dir.join("x.raw")));
    let x = x.as_str();
    let dotdot = format!("d={}/../../etc/shadow", s(&st.dir));
    for (code, name, repo, source, schedule, says) in [
        (1, "c", "main", x, Some("61 * * * *"), "\"61 * * * *\""),
        (5, "c", "nope", x, None, "nope"),
        (1, "c", "main", "relative.raw", None, "NAME=[FORMAT:]PATH"),
        (1, "../c", "main", x, None, "job name"),
        (9, "big", "main", x, None, "exists already"),
        (
            1,
            "c",
            "main",
            "d=raw:/etc/shadow",
            None,
            "not under a source root",
        ),
        (
            1,
            "c",
            "main",
            "qmp:/run/other.qmp",
            None,
            "not under a source root",
        ),
        (1, "c", "main", &dotdot, None, "'..'"),
    ] {
        let mut args = vec![
            "job",
            "create",
            name,
            "--repo-name",
            repo,
            "--source",
            source,
        ];
        if let Some(cron) = schedule {
            args.extend(["--schedule", cron]);
        }
        let e = st.server.cli_fails(code, &st.operator, &args);
        assert!(e.contains(says), "{args:?}: {e}");
    }

    // A second run while the first one runs: 409 with a message.
    let (status, body) = st
        .server
        .curl("POST", "/api/v1/jobs/big/run", Some(&st.operator), None);
    assert_eq!(status, 202, "{body}");
    let first = json(&body)["id"].as_i64().unwrap();
    let (status, body) = st
        .server
        .curl("POST", "/api/v1/jobs/big/run", Some(&st.operator), None);
    assert_eq!(status, 409, "{body}");
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("not started twice"),
        "{body}"
    );
    let (status, _) = st
        .server
        .curl("DELETE", "/api/v1/jobs/big", Some(&st.admin), None);
    assert_eq!(status, 409);
    // --follow prints the log until the session ends.
    let follow = st.server.cli_ok(
        &st.viewer,
        &["session", "show", &first.to_string(), "--follow"],
    );
    assert!(
        follow.contains("reading disk0") && follow.contains("ended: succeeded"),
        "{follow}"
    );
    let before = list_names(&st.repo);
    assert_eq!(before.len(), 1);

    // Killed mid-run: SIGKILL as soon as the session runs.
    std::fs::write(&image, random_bytes(256 << 20, 4)).unwrap();
    let (status, body) = st
        .server
        .curl("POST", "/api/v1/jobs/big/run", Some(&st.operator), None);
    assert_eq!(status, 202, "{body}");
    let id = json(&body)["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = st.session(id);
        assert!(
            s["state"] != "succeeded",
            "the run ended before the kill: {s:#}"
        );
        if s["state"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "{s:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let data = st.server.data.clone();
    let Setup {
        server, repo, _dir, ..
    } = st;
    let mut server = server;
    server.child.0.kill().unwrap();
    server.child.0.wait().unwrap();
    drop(server);
    let (url, hooks) = webhook_receiver();
    let restarted = Server::start(
        &data,
        &[
            "--repo",
            &format!("main={}", s(&repo)),
            "--webhook",
            &url,
            "--source-root",
            s(repo.parent().unwrap()),
        ],
    );
    let admin = restarted.admin_token();
    let ended = json(&restarted.cli_ok(&admin, &["session", "show", &id.to_string(), "--json"]));
    assert_eq!(ended["state"], "failed", "{ended:#}");
    let event = json(&hooks.recv_timeout(Duration::from_secs(20)).unwrap());
    assert_eq!(
        (&event["session"], &event["state"]),
        (&ended["id"], &ended["state"])
    );
    assert_eq!(
        ended["error"], "interrupted: the server stopped",
        "{ended:#}"
    );
    // Only whole restore points: the earlier one, and the killed run's
    // only if its manifest was written before the kill; all verify.
    let after = list_names(&repo);
    assert!(
        after.starts_with(&before) && after.len() <= before.len() + 1,
        "{before:?} -> {after:?}"
    );
    ok(&["verify", "--repo", s(&repo)]);
    drop(_dir);
}

/// A one-request HTTP receiver on loopback: the bodies it got.
fn webhook_receiver() -> (String, std::sync::mpsc::Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let _ = conn.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
            if tx.send(String::from_utf8(body).unwrap()).is_err() {
                return;
            }
        }
    });
    (url, rx)
}

#[test]
fn a_failing_source_is_retried_and_the_webhook_hears_of_it() {
    let (url, hooks) = webhook_receiver();
    let st = setup(&["--webhook", &url]);
    let missing = st.dir.join("missing.raw");
    st.create_job("broken", &[format!("disk0={}", s(&missing))], &[]);
    let out = st
        .server
        .cli(&st.operator, &["job", "run", "broken", "--wait"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("failed") && stdout.contains("missing.raw"),
        "{stdout}"
    );

    let list = st.wait_sessions("broken", "a failed retry (attempt 2)", |l| {
        l.iter()
            .any(|s| s["attempt"] == 2 && s["state"] == "failed")
    });
    let retry = list.iter().find(|s| s["attempt"] == 2).unwrap();
    assert_eq!(retry["trigger"], "retry");
    assert!(
        retry["error"].as_str().unwrap().contains(s(&missing)),
        "{retry:#}"
    );
    let first = list.iter().find(|s| s["attempt"] == 1).unwrap();
    assert_eq!(first["trigger"], "manual");

    let event = json(&hooks.recv_timeout(Duration::from_secs(20)).unwrap());
    assert_eq!(event["event"], "session.end");
    assert_eq!(event["job"], "broken");
    assert_eq!(event["session"], first["id"]);
    assert_eq!(event["state"], "failed");
    assert!(
        event["error"].as_str().unwrap().contains("missing.raw"),
        "{event}"
    );
    assert!(event["ended_at"].is_string() && event["restore_point"].is_null());
}

#[test]
fn a_symlink_out_of_the_source_root_is_refused_when_the_job_runs() {
    let st = setup(&[]);
    let link = st.dir.join("escape.raw");
    std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
    // Lexically under the root: stored; resolved at the run: refused.
    st.create_job("escape", &[format!("disk0=raw:{}", s(&link))], &[]);
    let out = st
        .server
        .cli(&st.operator, &["job", "run", "escape", "--wait"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let shown = json(&st.server.cli_ok(
        &st.viewer,
        &["session", "list", "--job", "escape", "--json"],
    ));
    let first = shown
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["attempt"] == 1)
        .unwrap();
    let error = first["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains("resolves to /etc/passwd") && error.contains("not under a source root"),
        "{error}"
    );
    assert!(
        list_names(&st.repo).is_empty(),
        "no restore point of /etc/passwd"
    );
}

#[test]
fn a_schedule_missed_while_the_server_was_down_runs_once_at_start() {
    let st = setup(&[]);
    let image = st.dir.join("nightly.raw");
    make_disk(&image, 1 << 20, 9);
    // Due three minutes from now (server time zone), every day.
    let due = chrono::Local::now() + chrono::Duration::minutes(3);
    let cron = format!("{} {} * * *", due.format("%M"), due.format("%H"));
    st.create_job(
        "nightly",
        &[format!("disk0=raw:{}", s(&image))],
        &["--schedule", &cron],
    );
    let data = st.server.data.clone();
    let repo = st.repo.clone();
    let Setup { server, _dir, .. } = st;
    server.stop_with("-TERM");
    // Back ten minutes later (faketime): the due time passed while down.
    let mut cmd = Command::new("faketime");
    cmd.args(["-f", "+10m", env!("CARGO_BIN_EXE_lifeboat")])
        .env("LIFEBOAT_PASSPHRASE", PASSPHRASE)
        .env_remove("LIFEBOAT_REPO");
    let repo_arg = format!("main={}", s(&repo));
    let root = s(repo.parent().unwrap());
    let server = Server::start_with(cmd, &data, &["--repo", &repo_arg, "--source-root", root]);
    let admin = server.admin_token();
    let deadline = Instant::now() + Duration::from_secs(60);
    let sessions = loop {
        let list = json(&server.cli_ok(&admin, &["session", "list", "--job", "nightly", "--json"]));
        let list = list.as_array().unwrap().clone();
        if list.iter().any(|s| s["state"] == "succeeded") {
            break list;
        }
        assert!(Instant::now() < deadline, "{list:#?}\n{}", server.log());
        std::thread::sleep(Duration::from_millis(200));
    };
    // Let the scheduler tick a few more times: still one run.
    std::thread::sleep(Duration::from_secs(3));
    let again = json(&server.cli_ok(&admin, &["session", "list", "--job", "nightly", "--json"]));
    assert_eq!(again.as_array().unwrap().len(), 1, "{again:#}");
    assert_eq!(sessions[0]["trigger"], "missed");
    let point = sessions[0]["restore_point"].as_str().unwrap();
    assert!(list_names(&repo).contains(&point.to_string()));
    drop(_dir);
}

/// Rewrites session `id` in the catalog as failed with `error` and no
/// restore point (sqlite3 beside the running server).
fn fail_in_catalog(st: &Setup, id: i64, error: &str) {
    let done = lifeboat_testsupport::tool("sqlite3", "sqlite3")
        .arg(st.server.data.join("catalog.sqlite"))
        .arg(format!(
            "UPDATE sessions SET state = 'failed', restore_point = NULL, \
             error = '{error}' WHERE id = {id};"
        ))
        .status()
        .unwrap();
    assert!(done.success());
}

#[test]
fn the_catalog_check_finds_and_repairs_drift_from_the_repository() {
    let st = setup(&[]);
    let image = st.dir.join("web01.raw");
    make_disk(&image, 1 << 20, 5);
    st.create_job("web01", &[format!("disk0=raw:{}", s(&image))], &[]);
    let done = run_wait(&st, "web01");
    let point = done["restore_point"].as_str().unwrap().to_string();
    let id = done["id"].as_i64().unwrap();
    let check = |args: &[&str]| {
        let mut all = vec!["catalog", "check", "--json"];
        all.extend_from_slice(args);
        st.server.cli(&st.admin, &all)
    };
    let out = check(&[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    st.server.cli_fails(11, &st.operator, &["catalog", "check"]);

    // What a server killed between the repository's commit and the
    // catalog's update leaves: the session interrupted, the point stored.
    fail_in_catalog(&st, id, "interrupted: the server stopped");
    let out = check(&[]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let report = json(&String::from_utf8_lossy(&out.stdout));
    let f = &report["findings"][0];
    assert_eq!(
        (&f["kind"], &f["restore_point"], &f["repaired"]),
        (
            &"unrecorded_restore_point".into(),
            &point.as_str().into(),
            &false.into()
        ),
        "{report:#}"
    );
    let out = check(&["--repair"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let shown = json(
        &st.server
            .cli_ok(&st.viewer, &["session", "show", &id.to_string(), "--json"]),
    );
    assert_eq!(
        (&shown["state"], &shown["restore_point"]),
        (&"succeeded".into(), &point.as_str().into()),
        "{shown:#}"
    );
    assert_eq!(check(&[]).status.code(), Some(0));

    // A session cancelled after its backup committed (a proxy hears of a
    // cancel at its next progress call): the point is recorded on it,
    // the session stays cancelled.
    let second = run_wait(&st, "web01");
    let (id2, point2) = (
        second["id"].as_i64().unwrap(),
        second["restore_point"].as_str().unwrap().to_string(),
    );
    fail_in_catalog(&st, id2, "cancelled");
    assert_eq!(check(&["--repair"]).status.code(), Some(0));
    let shown = json(
        &st.server
            .cli_ok(&st.viewer, &["session", "show", &id2.to_string(), "--json"]),
    );
    assert_eq!(
        (&shown["state"], &shown["error"], &shown["restore_point"]),
        (
            &"failed".into(),
            &"cancelled".into(),
            &point2.as_str().into()
        ),
        "{shown:#}"
    );

    // The point removed outside the server: reported, not "repaired".
    ok(&["forget", "--repo", s(&st.repo), &point]);
    let out = check(&["--repair"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let report = json(&String::from_utf8_lossy(&out.stdout));
    let f = &report["findings"][0];
    assert_eq!(f["kind"], "missing_restore_point", "{report:#}");
    assert!(
        f["detail"]
            .as_str()
            .unwrap()
            .contains("removed outside the server"),
        "{report:#}"
    );
    let (_, audit) = st
        .server
        .curl("GET", "/api/v1/audit", Some(&st.admin), None);
    assert!(audit.contains("catalog.repair"), "{audit}");
}

#[test]
fn a_job_is_updated_disabled_and_enabled_again() {
    let st = setup(&[]);
    let image = st.dir.join("web01.raw");
    make_disk(&image, 1 << 20, 6);
    st.create_job("web01", &[format!("disk0=raw:{}", s(&image))], &[]);
    let update = |token: &str, args: &[&str]| {
        let mut all = vec!["job", "update", "web01", "--json"];
        all.extend_from_slice(args);
        st.server.cli(token, &all)
    };
    // A viewer changes nothing; bad values are refused as at creation.
    assert_eq!(update(&st.viewer, &["--disable"]).status.code(), Some(11));
    let out = update(&st.operator, &["--schedule", "61 * * * *"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = update(&st.operator, &["--source", "disk0=raw:/etc/shadow"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not under a source root"),
        "{out:?}"
    );

    let out = update(
        &st.operator,
        &["--schedule", "30 3 * * *", "--keep-daily", "7", "--disable"],
    );
    assert!(out.status.success(), "{out:?}");
    let job = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        (
            &job["schedule"],
            &job["retention"]["daily"],
            &job["enabled"]
        ),
        (&"30 3 * * *".into(), &7.into(), &false.into()),
        "{job:#}"
    );
    // Disabled: no run on demand.
    let e = st
        .server
        .cli_fails(9, &st.operator, &["job", "run", "web01"]);
    assert!(e.contains("disabled"), "{e}");

    let out = update(
        &st.operator,
        &["--enable", "--no-schedule", "--keep-last", "2"],
    );
    assert!(out.status.success(), "{out:?}");
    let job = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        (
            &job["schedule"],
            &job["retention"]["daily"],
            &job["retention"]["last"],
            &job["enabled"]
        ),
        (&serde_json::Value::Null, &7.into(), &2.into(), &true.into()),
        "{job:#}"
    );
    let done = run_wait(&st, "web01");
    assert_eq!(done["state"], "succeeded", "{done:#}");
    let (_, audit) = st
        .server
        .curl("GET", "/api/v1/audit", Some(&st.admin), None);
    assert_eq!(audit.matches("job.update").count(), 2, "{audit}");
}

#[test]
fn sessions_are_cancelled_queued_or_running_and_not_retried() {
    let st = setup(&["--max-jobs", "1"]);
    let big = st.dir.join("big.raw");
    std::fs::write(&big, random_bytes(512 << 20, 8)).unwrap();
    st.create_job("big", &[format!("disk0=raw:{}", s(&big))], &[]);
    let small = st.dir.join("small.raw");
    make_disk(&small, 1 << 20, 9);
    st.create_job("small", &[format!("disk0=raw:{}", s(&small))], &[]);

    let run = |job: &str| st.server.run_job(&st.operator, job).to_string();
    let big_id = run("big");
    st.wait_sessions("big", "the big job running", |l| {
        l.iter().any(|s| s["state"] == "running")
    });
    // One at a time (--max-jobs 1): the small job waits, queued.
    let small_id = run("small");
    st.server
        .cli_fails(11, &st.viewer, &["session", "cancel", &small_id]);
    let cancelled = json(
        &st.server
            .cli_ok(&st.operator, &["session", "cancel", &small_id, "--json"]),
    );
    assert_eq!(
        (&cancelled["state"], &cancelled["error"]),
        (&"failed".into(), &"cancelled".into()),
        "{cancelled:#}"
    );
    // The running one stops at its next chunk, writes no restore point.
    let ended = json(&st.server.cli_ok(
        &st.operator,
        &["session", "cancel", &big_id, "--wait", "--json"],
    ));
    assert_eq!(
        (&ended["state"], &ended["error"]),
        (&"failed".into(), &"cancelled".into()),
        "{ended:#}"
    );
    let e = st
        .server
        .cli_fails(9, &st.operator, &["session", "cancel", &big_id]);
    assert!(e.contains("nothing to cancel"), "{e}");
    // Not retried (the retry wait is 1 s here), nothing left behind.
    std::thread::sleep(Duration::from_secs(3));
    for job in ["big", "small"] {
        let list = st.sessions(job);
        assert_eq!(list.len(), 1, "{job}: {list:#?}");
    }
    assert!(list_names(&st.repo).is_empty());
    let staged = temp_files(&st.repo.join("chunks"));
    assert!(staged.is_empty(), "{staged:?}");
    let (_, audit) = st
        .server
        .curl("GET", "/api/v1/audit", Some(&st.admin), None);
    assert_eq!(audit.matches("session.cancel").count(), 2, "{audit}");
}
