//! A proxy uploads the chunks the repository lacks to the server over its
//! mutual-TLS connections (a real `lifeboat serve` and proxy processes on
//! loopback): the restore point restores bit-exact, a second run of an
//! unchanged image uploads no chunk, a whole backup costs the proxy a few
//! TLS handshakes however many chunks it sends, and the proxy runs
//! without the repository's passphrase. The upload routes, driven by hand
//! with a proxy's certificate, refuse what is malformed or not the
//! caller's with a 4xx and a message, and commit only indexes whose
//! chunks the repository holds.

mod common;
use common::proxy::{has_env, setup, Setup};
use common::*;
use lifeboat_repo::{ChunkEncoder, ChunkKeys};
use std::path::Path;

const PROXY_HANDSHAKES: &str = "lifeboat_tls_handshakes_total{client_certificate=\"true\"}";

#[test]
fn an_upload_restores_bit_exact_and_an_unchanged_rerun_uploads_nothing() {
    let st = setup();
    let p1 = st.proxy("p1", "1");
    assert!(!has_env(p1.0.id(), "LIFEBOAT_PASSPHRASE"));
    let image = st.dir.join("db01.raw");
    // 24 MiB of 256 KiB chunks: 96 chunks, some of them zeros.
    let data = make_disk(&image, 24 << 20, 5);
    st.job("db01", &image, &["--proxy", "p1"]);

    let (chunks, bytes) = (
        st.metric("lifeboat_upload_chunks_total"),
        st.metric("lifeboat_upload_chunk_bytes_total"),
    );
    let handshakes = st.metric(PROXY_HANDSHAKES);
    let first = st.ended(st.run("db01"));
    assert_eq!(first["state"], "succeeded", "{first:#}");
    let uploaded = st.metric("lifeboat_upload_chunks_total") - chunks;
    let uploaded_bytes = st.metric("lifeboat_upload_chunk_bytes_total") - bytes;
    assert!(uploaded >= 40, "{uploaded} chunks uploaded");
    assert_eq!(first["bytes_stored"], uploaded_bytes, "{first:#}");
    // Two requests per new chunk (known, put) over a pool of keep-alive
    // connections: a few handshakes for the whole run, not one a chunk.
    let shaken = st.metric(PROXY_HANDSHAKES) - handshakes;
    assert!(
        shaken <= 10,
        "{shaken} proxy TLS handshakes for {uploaded} chunks"
    );
    let point = first["restore_point"].as_str().unwrap().to_string();
    let restored = restore_raw(&st.repo, &point, "disk0", &st.dir.join("r.raw"));
    assert!(restored == data, "the upload does not restore bit-exact");

    // Unchanged: the chunks of the previous point are asked for in
    // batches when the upload opens, and none is sent again.
    let second = st.ended(st.run("db01"));
    assert_eq!(second["state"], "succeeded", "{second:#}");
    assert_eq!(second["bytes_stored"], 0, "{second:#}");
    assert_eq!(
        st.metric("lifeboat_upload_chunk_bytes_total"),
        bytes + uploaded_bytes
    );
    assert_eq!(list_names(&st.repo).len(), 2);
    ok(&["verify", "--repo", s(&st.repo)]);
    assert_eq!(
        common::proxy::staged_chunks(&st.repo),
        Vec::<std::path::PathBuf>::new()
    );
}

/// A request with curl presenting the certificate of proxy folder `id`:
/// (status, body).
fn curl_proxy(
    st: &Setup,
    id: &Path,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    let args = [
        "--cert".to_string(),
        s(&id.join("proxy.pem")).to_string(),
        "--key".to_string(),
        s(&id.join("proxy.key")).to_string(),
    ];
    st.server
        .curl_with(method, path, &args, Some((content_type, body)))
}

/// A JSON request as proxy `id`: (status, body).
fn call(st: &Setup, id: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    curl_proxy(st, id, method, path, "application/json", body.as_bytes())
}

/// Asserts a refusal: `status` and a JSON error whose message holds `says`.
fn refused(got: (u16, String), status: u16, says: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    let body = json(&got.1);
    assert!(body["kind"].is_string(), "{body}");
    assert!(
        body["error"].as_str().unwrap().contains(says),
        "{body} should say {says:?}"
    );
}

#[test]
fn malformed_or_foreign_uploads_are_refused_and_commits_need_every_chunk() {
    let st = setup();
    let p9 = st.enroll("p9");
    let p8 = st.enroll("p8");
    let image = st.dir.join("img.raw");
    let data = random_bytes(300 << 10, 9);
    std::fs::write(&image, &data).unwrap();
    st.job("mine", &image, &["--proxy", "p9"]);
    st.job("theirs", &image, &["--proxy", "p8"]);
    let mine = st.run("mine");
    let theirs = st.run("theirs");
    // p9 takes its session by hand.
    let (status, work) = call(&st, &p9, "POST", "/api/v1/proxy/work", r#"{"max_jobs":1}"#);
    assert_eq!(status, 200, "{work}");
    assert_eq!(json(&work)["work"]["session"]["id"], mine);
    assert!(
        json(&work)["work"].get("repository_path").is_none(),
        "{work}"
    );

    // Uploads only for a session the caller runs.
    let open = |session: i64| {
        call(
            &st,
            &p9,
            "POST",
            &format!("/api/v1/proxy/sessions/{session}/upload"),
            r#"{"previous":true}"#,
        )
    };
    refused(open(theirs), 409, "not running on proxy p9");
    refused(open(999_999), 404, "session 999999");
    let (status, opened) = open(mine);
    assert_eq!(status, 200, "{opened}");
    let opened = json(&opened);
    let upload = opened["upload"].as_str().unwrap().to_string();
    assert_eq!(upload.len(), 64);
    assert_eq!(opened["chunk_size"], 256 << 10);
    assert!(opened["previous"].is_null());
    let keys = ChunkKeys::from_hex(opened["chunk_keys"].as_str().unwrap()).unwrap();
    let enc = ChunkEncoder::new(Some(keys), 256 << 10, 3).unwrap();
    let base = format!("/api/v1/proxy/uploads/{upload}");

    // Malformed requests.
    refused(
        call(
            &st,
            &p9,
            "POST",
            &format!("{base}/known"),
            r#"{"digests":["xyz"]}"#,
        ),
        400,
        "",
    );
    let put = |who: &Path, upload: &str, digest: &str, blob: &[u8]| {
        curl_proxy(
            &st,
            who,
            "PUT",
            &format!("/api/v1/proxy/uploads/{upload}/chunks/{digest}"),
            "application/octet-stream",
            blob,
        )
    };
    refused(put(&p9, &upload, "not-hex", b"x"), 400, "not-hex");
    let limit = opened["max_blob"].as_u64().unwrap() as usize;
    let d0 = enc.digest(&data[..256 << 10]);
    refused(
        put(&p9, &upload, &d0.to_hex(), &vec![7u8; limit + 1]),
        413,
        "limit",
    );
    refused(
        put(&p9, &upload, &d0.to_hex(), b"garbage blob"),
        400,
        "uploaded chunk",
    );
    refused(put(&p9, &"0".repeat(64), &d0.to_hex(), b"x"), 404, "upload");
    // Another proxy does not find p9's upload.
    refused(put(&p8, &upload, &d0.to_hex(), b"x"), 404, "upload");

    // The real chunks: the first is new, then present.
    let mut digests = Vec::new();
    for chunk in data.chunks(256 << 10) {
        let d = enc.digest(chunk);
        let mut blob = Vec::new();
        enc.encode_into(&d, chunk, &mut blob).unwrap();
        let (status, reply) = put(&p9, &upload, &d.to_hex(), &blob);
        assert_eq!(status, 200, "{reply}");
        assert_eq!(json(&reply)["new"], true);
        let (_, again) = put(&p9, &upload, &d.to_hex(), &blob);
        assert_eq!(json(&again)["new"], false);
        digests.push(d.to_hex());
    }
    let (status, known) = call(
        &st,
        &p9,
        "POST",
        &format!("{base}/known"),
        &format!(r#"{{"digests":["{}","{}"]}}"#, digests[0], "ab".repeat(32)),
    );
    assert_eq!(
        (status, json(&known)["present"].clone()),
        (200, serde_json::json!([true, false]))
    );

    let commit = |upload: &str, digests: &[String]| {
        let index = serde_json::json!({
            "chunk_size": 256 << 10,
            "disk_size": data.len(),
            "digests": digests,
        });
        let body = serde_json::json!({"disks": [{
            "name": "disk0", "source": "by hand", "index": index,
            "stats": {"bytes_read": 0, "data_chunks": 0, "zero_chunks": 0, "new_chunks": 0, "new_stored_bytes": 0},
        }]});
        call(
            &st,
            &p9,
            "POST",
            &format!("/api/v1/proxy/uploads/{upload}/commit"),
            &body.to_string(),
        )
    };
    // An index naming a chunk nobody uploaded: refused, nothing written,
    // and the upload is gone.
    let mut forged = digests.clone();
    forged[1] = "cd".repeat(32);
    refused(commit(&upload, &forged), 409, "does not hold");
    assert!(list_names(&st.repo).is_empty());
    refused(put(&p9, &upload, &d0.to_hex(), b"x"), 404, "upload");
    assert_eq!(
        common::proxy::staged_chunks(&st.repo),
        Vec::<std::path::PathBuf>::new()
    );

    // Aborted: gone too. At most two uploads of one session are open.
    let (_, second) = open(mine);
    let second = json(&second)["upload"].as_str().unwrap().to_string();
    let (_, spare) = open(mine);
    let spare = json(&spare)["upload"].as_str().unwrap().to_string();
    refused(open(mine), 409, "uploads open");
    let (status, body) = call(
        &st,
        &p9,
        "DELETE",
        &format!("/api/v1/proxy/uploads/{spare}"),
        "",
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        &st,
        &p9,
        "DELETE",
        &format!("/api/v1/proxy/uploads/{second}"),
        "",
    );
    assert_eq!(status, 200, "{body}");
    refused(put(&p9, &second, &d0.to_hex(), b"x"), 404, "upload");

    // A whole upload commits and restores bit-exact.
    let (_, third) = open(mine);
    let third = json(&third)["upload"].as_str().unwrap().to_string();
    for (chunk, d) in data.chunks(256 << 10).zip(&digests) {
        let digest = d.parse().unwrap();
        let mut blob = Vec::new();
        enc.encode_into(&digest, chunk, &mut blob).unwrap();
        assert_eq!(put(&p9, &third, d, &blob).0, 200);
    }
    let (status, committed) = commit(&third, &digests);
    assert_eq!(status, 200, "{committed}");
    let committed = json(&committed);
    let point = format!(
        "{}@{}",
        committed["manifest"]["vm"].as_str().unwrap(),
        committed["manifest"]["id"].as_str().unwrap()
    );
    assert_eq!(list_names(&st.repo), vec![point.clone()]);
    let restored = restore_raw(&st.repo, &point, "disk0", &st.dir.join("r.raw"));
    assert!(restored == data);
    ok(&["verify", "--repo", s(&st.repo)]);
}
