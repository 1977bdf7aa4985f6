//! Proxies that pull work, against a real `lifeboat serve` (separate
//! processes on loopback, real TLS with client certificates): a job for
//! proxy p1 runs on p1 and its restore point restores bit-exact; two
//! proxies share a pool's two jobs (each runs at most `--max-jobs 1`); a
//! proxy killed with SIGKILL mid-upload (it holds no passphrase and no
//! repository file) loses its lease, its session fails "proxy pN stopped
//! answering" and the retry runs on the other proxy, and the repository
//! holds only whole restore points and no staged chunk.

mod common;
use common::proxy::{has_env, open_under, setup, staged_chunks};
use common::*;

#[test]
fn a_job_for_p1_runs_on_p1_and_restores_bit_exact() {
    let st = setup();
    let _p1 = st.proxy("p1", "2");
    let image = st.dir.join("web01.raw");
    let data = make_disk(&image, 3 << 20, 11);
    st.job("web01", &image, &["--proxy", "p1", "--keep-last", "1"]);
    let shown = json(
        &st.server
            .cli_ok(&st.admin, &["job", "show", "web01", "--json"]),
    );
    assert_eq!(
        (&shown["proxy"], &shown["pool"]),
        (&"p1".into(), &false.into())
    );
    let id = st.run("web01");
    let s = st.ended(id);
    assert_eq!(s["state"], "succeeded", "{s:#}");
    assert_eq!(s["proxy"], "p1", "{s:#}");
    assert_eq!(
        (&s["bytes_read"], &s["bytes_total"]),
        (&(3 << 20).into(), &(3 << 20).into())
    );
    let log: Vec<&str> = s["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_str().unwrap())
        .collect();
    assert!(log.iter().any(|l| l.contains("on proxy p1")), "{log:?}");
    assert!(
        log.iter().any(|l| l.starts_with("reading disk0")),
        "{log:?}"
    );
    assert!(
        log.iter().any(|l| l.starts_with("retention: kept 1")),
        "{log:?}"
    );
    let point = s["restore_point"].as_str().unwrap().to_string();
    assert_eq!(list_names(&st.repo), vec![point.clone()]);
    let restored = restore_raw(&st.repo, &point, "disk0", &st.dir.join("restored.raw"));
    assert!(
        restored == data,
        "the restore point does not restore bit-exact"
    );
    let table = st
        .server
        .cli_ok(&st.admin, &["session", "show", &id.to_string()]);
    assert!(table.contains("ran on proxy p1"), "{table}");
}

#[test]
fn a_pool_is_shared_and_a_killed_proxys_session_is_retried_on_the_other() {
    let st = setup();
    let mut proxies = vec![("p1", st.proxy("p1", "1")), ("p2", st.proxy("p2", "1"))];
    // Two pool jobs queued at once: one proxy may run one at a time, so
    // each takes one.
    for (job, seed) in [("a", 1), ("b", 2)] {
        let image = st.dir.join(format!("{job}.raw"));
        std::fs::write(&image, random_bytes(48 << 20, seed)).unwrap();
        st.job(job, &image, &["--pool"]);
    }
    let ids = [st.run("a"), st.run("b")];
    let ended: Vec<_> = ids.iter().map(|&id| st.ended(id)).collect();
    for s in &ended {
        assert_eq!(s["state"], "succeeded", "{s:#}");
    }
    let mut ran_on: Vec<&str> = ended.iter().map(|s| s["proxy"].as_str().unwrap()).collect();
    ran_on.sort();
    assert_eq!(ran_on, ["p1", "p2"], "{ended:#?}");
    let before = list_names(&st.repo);
    assert_eq!(before.len(), 2, "{before:?}");

    // SIGKILL the proxy running the big job as soon as it reads.
    let image = st.dir.join("big.raw");
    std::fs::write(&image, random_bytes(256 << 20, 3)).unwrap();
    st.job("big", &image, &["--pool"]);
    let chunks_before = st.metric("lifeboat_upload_chunks_total");
    let id = st.run("big");
    let victim = st.until("the big job to upload chunks from a proxy", || {
        let s = st.session(id);
        assert_ne!(
            s["state"], "succeeded",
            "the run ended before the kill: {s:#}"
        );
        (s["state"] == "running" && st.metric("lifeboat_upload_chunks_total") > chunks_before)
            .then(|| s["proxy"].as_str().unwrap().to_string())
    });
    let i = proxies.iter().position(|(n, _)| *n == victim).unwrap();
    let (_, mut killed) = proxies.remove(i);
    // Mid-upload, the proxy holds no passphrase and no file of the
    // repository: it reads the image and talks to the server.
    let pid = killed.0.id();
    assert!(!has_env(pid, "LIFEBOAT_PASSPHRASE"));
    assert_eq!(open_under(pid, &st.repo), Vec::<std::path::PathBuf>::new());
    killed.0.kill().unwrap();
    killed.0.wait().unwrap();
    let survivor = proxies[0].0;

    let failed = st.ended(id);
    assert_eq!(failed["state"], "failed", "{failed:#}");
    assert_eq!(
        failed["error"],
        format!("proxy {victim} stopped answering"),
        "{failed:#}"
    );
    let retry = st.until("the retry to end", || {
        let list = st.sessions("big");
        let r = list.iter().find(|s| s["attempt"] == 2)?.clone();
        (r["state"] == "succeeded" || r["state"] == "failed").then_some(r)
    });
    assert_eq!(retry["trigger"], "retry");
    assert_eq!(retry["state"], "succeeded", "{retry:#}");
    assert_eq!(retry["proxy"], survivor, "{retry:#}");

    // Whole restore points only: the two before, the retry's, and the
    // killed run's only if its manifest was written before the kill; all
    // verify.
    let after = list_names(&st.repo);
    let point = retry["restore_point"].as_str().unwrap().to_string();
    assert!(after.contains(&point), "{after:?}");
    assert!(
        before.iter().all(|p| after.contains(p)) && after.len() <= 4,
        "{before:?} -> {after:?}"
    );
    ok(&["verify", "--repo", s(&st.repo)]);
    // The killed proxy's upload was dropped with its lease: none of its
    // staged chunks is left, nor its writer's registration.
    assert_eq!(staged_chunks(&st.repo), Vec::<std::path::PathBuf>::new());
    let writers: Vec<_> = std::fs::read_dir(st.repo.join("writers"))
        .unwrap()
        .collect();
    assert!(writers.is_empty(), "{writers:?}");
}

#[test]
fn a_session_cancelled_on_a_proxy_fails_at_once_and_the_proxy_stops() {
    let st = setup();
    let _p1 = st.proxy("p1", "1");
    let image = st.dir.join("big.raw");
    std::fs::write(&image, random_bytes(256 << 20, 4)).unwrap();
    st.job("big", &image, &["--proxy", "p1"]);
    let id = st.run("big");
    st.until("the big job to run on p1", || {
        let s = st.session(id);
        assert_ne!(s["state"], "succeeded", "ended before the cancel: {s:#}");
        (s["state"] == "running").then_some(())
    });
    let cancelled = json(
        &st.server
            .cli_ok(&st.admin, &["session", "cancel", &id.to_string(), "--json"]),
    );
    assert_eq!(
        (&cancelled["state"], &cancelled["error"]),
        (&"failed".into(), &"cancelled".into()),
        "{cancelled:#}"
    );
    // The proxy hears it at its next progress call and stops its backup.
    st.until("p1 to stop the cancelled backup", || {
        let log = std::fs::read_to_string(st.dir.join("p1.log")).unwrap_or_default();
        log.contains("session taken back").then_some(())
    });
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(
        st.sessions("big").len(),
        1,
        "a cancelled session is not retried"
    );
    // A whole restore point or none (a backup that reached its commit
    // before the proxy heard of the cancel keeps its point); no staged
    // chunk left once the upload is dropped.
    assert!(list_names(&st.repo).len() <= 1);
    st.until("the dropped upload's staged chunks removed", || {
        staged_chunks(&st.repo).is_empty().then_some(())
    });
}
