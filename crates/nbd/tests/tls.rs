//! NBD over TLS (NBD_OPT_STARTTLS, TLS-only) against the real clients:
//! qemu-img and qemu-io (qemu-utils, GnuTLS through `tls-creds-x509`),
//! nbdinfo and nbdcopy (libnbd-bin, `nbds://` URIs), with certificates
//! made by the `openssl` CLI; and from a raw client, what a TLS-only server
//! answers in clear.

mod common;

use common::*;
use lifeboat_nbd::proto::consts::*;
use lifeboat_nbd::{ExportTable, ListenError, NbdServer, TlsConfig};
use lifeboat_testsupport::pki::Pki;
use lifeboat_testsupport::{output, run_stdout, tool};
use std::path::Path;
use std::process::Output;
use std::sync::Arc;

/// Test certificates in a temporary folder (kept while the first is).
fn pki() -> (tempfile::TempDir, Pki) {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    (dir, pki)
}

/// A TLS-only fixture; with `client_ca`, clients need a certificate from
/// the test CA.
fn tls_fixture(pki: &Pki, client_ca: bool) -> Fixture {
    let ca = client_ca.then_some(pki.ca.as_path());
    let tls = TlsConfig::from_pem_files(&pki.server_cert, &pki.server_key, ca).unwrap();
    Fixture::with(|s| s.with_tls(tls))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `qemu-img convert` of `export` through TLS with the credentials in
/// `dir` (none: a plain nbd:// URL) into `out`.
fn qemu_img_convert(f: &Fixture, export: &str, dir: Option<&Path>, out: &Path) -> Output {
    let mut cmd = tool("qemu-img", "qemu-utils");
    cmd.arg("convert");
    match dir {
        Some(dir) => {
            cmd.arg("--object")
                .arg(format!(
                    "tls-creds-x509,id=tls0,dir={},endpoint=client",
                    dir.display()
                ))
                .arg("--image-opts")
                .arg(format!(
                    "driver=nbd,host=127.0.0.1,port={},export={export},tls-creds=tls0",
                    f.addr().port()
                ));
        }
        None => {
            cmd.args(["-f", "raw"]).arg(f.url(export));
        }
    }
    output(cmd.args(["-O", "raw"]).arg(out))
}

#[test]
fn qemu_reads_bit_exact_with_tls_credentials_and_is_refused_without() {
    let (_pki_dir, pki) = pki();
    let f = tls_fixture(&pki, true);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("copy.raw");

    let plain = qemu_img_convert(&f, "sparse", None, &out);
    assert!(
        !plain.status.success(),
        "read without TLS: {}",
        text(&plain)
    );
    assert!(
        text(&plain).contains("TLS"),
        "qemu-img does not say TLS is needed: {}",
        text(&plain)
    );
    // Without a client certificate the server ends the TLS handshake.
    // (A certificate of another CA QEMU refuses itself, before connecting:
    // the raw rustls client below sends one.)
    let r = qemu_img_convert(&f, "sparse", Some(&pki.anonymous_dir), &out);
    assert!(
        !r.status.success(),
        "read without a certificate: {}",
        text(&r)
    );

    for export in ["sparse", "mem"] {
        let r = qemu_img_convert(&f, export, Some(&pki.client_dir), &out);
        assert!(r.status.success(), "TLS read of {export}: {}", text(&r));
        assert!(
            std::fs::read(&out).unwrap() == f.bytes,
            "{export} over TLS differs"
        );
    }

    // Writes through TLS land, and read back.
    let qemu_io = |cmds: &[&str]| {
        let mut c = tool("qemu-io", "qemu-utils");
        c.arg("--object")
            .arg(format!(
                "tls-creds-x509,id=tls0,dir={},endpoint=client",
                pki.client_dir.display()
            ))
            .arg("--image-opts")
            .arg(format!(
                "driver=nbd,host=127.0.0.1,port={},export=rw,tls-creds=tls0",
                f.addr().port()
            ));
        for cmd in cmds {
            c.args(["-c", cmd]);
        }
        run_stdout(&mut c)
    };
    qemu_io(&["write -P 0x5a 1M 64k", "flush"]);
    assert!(f.rw.to_vec()[1 << 20..(1 << 20) + (64 << 10)]
        .iter()
        .all(|&b| b == 0x5a));
    let back = qemu_io(&["read -P 0x5a 1M 64k"]);
    assert!(!back.contains("Pattern verification failed"), "{back}");
    let last = f.server.stats().last_error().unwrap_or_default();
    assert!(
        last.contains("TLS handshake failed: peer sent no certificates"),
        "the refusal was not recorded: {last}"
    );
}

#[test]
fn nbdinfo_and_nbdcopy_read_size_and_bytes_over_nbds() {
    let (_pki_dir, pki) = pki();
    let f = tls_fixture(&pki, true);
    let uri = |export: &str, dir: &Path| {
        format!(
            "nbds://127.0.0.1:{}/{export}?tls-certificates={}",
            f.addr().port(),
            dir.display()
        )
    };
    let json = run_stdout(
        tool("nbdinfo", "libnbd-bin")
            .arg("--json")
            .arg(uri("sparse", &pki.client_dir)),
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["exports"][0]["export-size"], SIZE as u64, "{json}");
    assert_eq!(v["TLS"], true, "{json}");

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nbdcopy.raw");
    run_stdout(
        tool("nbdcopy", "libnbd-bin")
            .arg(uri("sparse", &pki.client_dir))
            .arg(&out),
    );
    assert!(
        std::fs::read(&out).unwrap() == f.bytes,
        "nbdcopy over TLS differs"
    );

    // In clear, or without a client certificate: refused.
    let plain = output(tool("nbdinfo", "libnbd-bin").arg(f.url("sparse")));
    assert!(!plain.status.success(), "{}", text(&plain));
    let anon = output(tool("nbdinfo", "libnbd-bin").arg(uri("sparse", &pki.anonymous_dir)));
    assert!(!anon.status.success(), "{}", text(&anon));
}

#[test]
fn without_a_client_ca_any_tls_client_is_served() {
    let (_pki_dir, pki) = pki();
    let f = tls_fixture(&pki, false);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("copy.raw");
    let r = qemu_img_convert(&f, "sparse", Some(&pki.anonymous_dir), &out);
    assert!(r.status.success(), "{}", text(&r));
    assert!(std::fs::read(&out).unwrap() == f.bytes);
}

#[test]
fn a_tls_only_server_says_nothing_in_clear() {
    let (_pki_dir, pki) = pki();
    let f = tls_fixture(&pki, true);
    let mut c = Raw::handshake(f.addr());
    c.option(NBD_OPT_LIST, &[]);
    let (opt, ty, _) = c.option_reply();
    assert_eq!((opt, ty), (NBD_OPT_LIST, NBD_REP_ERR_TLS_REQD));
    c.option(NBD_OPT_GO, &[0, 0, 0, 3, b'm', b'e', b'm', 0, 0]);
    let (_, ty, msg) = c.option_reply();
    assert_eq!(ty, NBD_REP_ERR_TLS_REQD);
    assert!(!String::from_utf8_lossy(&msg).contains("mem"));
    c.option(NBD_OPT_EXPORT_NAME, b"mem");
    assert!(c.closed_by_server(), "EXPORT_NAME in clear");

    // Bytes sent in clear right behind STARTTLS are never taken as part of
    // the TLS session: the handshake fails and the connection closes.
    let mut c = Raw::handshake(f.addr());
    let mut b = b"IHAVEOPT".to_vec();
    b.extend_from_slice(&NBD_OPT_STARTTLS.to_be_bytes());
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(b"IHAVEOPT\0\0\0\x07\0\0\0\x09\0\0\0\x03mem\0\0");
    c.send(&b);
    let (opt, ty, _) = c.option_reply();
    assert_eq!((opt, ty), (NBD_OPT_STARTTLS, NBD_REP_ACK));
    // What comes back is at most a TLS alert, then the close.
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut c.s, &mut rest);
    assert!(
        rest.is_empty() || rest[0] == 0x15,
        "injected clear text got an answer: {rest:x?}"
    );
    still_serving_over_tls(&f, &pki);
}

/// A raw NBD client that upgrades with STARTTLS through rustls, showing
/// the client certificate in `dir`, then asks for the export list: the
/// number of exports listed, or the error that ended the connection.
fn list_over_tls(f: &Fixture, pki: &Pki, dir: &Path) -> Result<usize, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use std::io::{Read, Write};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&pki.ca).unwrap())
        .unwrap();
    let chain = vec![CertificateDer::from_pem_file(dir.join("client-cert.pem")).unwrap()];
    let key = PrivateKeyDer::from_pem_file(dir.join("client-key.pem")).unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();

    let mut c = Raw::handshake(f.addr());
    c.option(NBD_OPT_STARTTLS, &[]);
    assert_eq!(c.option_reply().1, NBD_REP_ACK);
    let mut tls = rustls::StreamOwned::new(conn, c.s);
    let mut list = b"IHAVEOPT".to_vec();
    list.extend_from_slice(&NBD_OPT_LIST.to_be_bytes());
    list.extend_from_slice(&0u32.to_be_bytes());
    tls.write_all(&list).map_err(|e| e.to_string())?;
    let mut listed = 0;
    loop {
        let mut h = [0u8; 20];
        tls.read_exact(&mut h).map_err(|e| e.to_string())?;
        let ty = u32::from_be_bytes(h[12..16].try_into().unwrap());
        let len = u32::from_be_bytes(h[16..20].try_into().unwrap()) as usize;
        let mut data = vec![0u8; len];
        tls.read_exact(&mut data).map_err(|e| e.to_string())?;
        match ty {
            NBD_REP_SERVER => listed += 1,
            NBD_REP_ACK => return Ok(listed),
            other => return Err(format!("reply type {other:#x}")),
        }
    }
}

#[test]
fn a_client_certificate_of_another_ca_is_refused() {
    let (_pki_dir, pki) = pki();
    let f = tls_fixture(&pki, true);
    assert_eq!(
        list_over_tls(&f, &pki, &pki.client_dir),
        Ok(4),
        "the good certificate"
    );
    let rogue = list_over_tls(&f, &pki, &pki.rogue_dir);
    assert!(rogue.is_err(), "a rogue certificate listed {rogue:?}");
    wait_for("the refusal to be recorded", || {
        f.server
            .stats()
            .last_error()
            .is_some_and(|e| e.contains("TLS handshake failed"))
    });
}

fn still_serving_over_tls(f: &Fixture, pki: &Pki) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("copy.raw");
    let r = qemu_img_convert(f, "mem", Some(&pki.client_dir), &out);
    assert!(r.status.success(), "{}", text(&r));
}

#[test]
fn a_listener_beyond_loopback_needs_tls() {
    let (_pki_dir, pki) = pki();
    let table = Arc::new(ExportTable::new());
    let err = NbdServer::new(table.clone())
        .spawn("0.0.0.0:0")
        .err()
        .expect("a plain listener on 0.0.0.0 started");
    assert!(matches!(err, ListenError::TlsRequired { .. }), "{err}");
    assert!(err.to_string().contains("--tls-cert"), "{err}");
    let tls = TlsConfig::from_pem_files(&pki.server_cert, &pki.server_key, None).unwrap();
    let srv = NbdServer::new(table).with_tls(tls).spawn("0.0.0.0:0");
    assert!(srv.is_ok(), "a TLS listener on 0.0.0.0 did not start");
}

#[test]
fn bad_tls_files_are_named_in_the_error() {
    let (_pki_dir, pki) = pki();
    let missing = Path::new("/nonexistent/cert.pem");
    let e = TlsConfig::from_pem_files(missing, &pki.server_key, None).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/cert.pem"), "{e}");
    // A key that is not the certificate's.
    let other_key = pki.client_dir.join("client-key.pem");
    let e = TlsConfig::from_pem_files(&pki.server_cert, &other_key, None).unwrap_err();
    assert!(e.to_string().contains("certificate and key"), "{e}");
    // A certificate where the key should be.
    let e = TlsConfig::from_pem_files(&pki.server_cert, &pki.server_cert, None).unwrap_err();
    assert!(e.to_string().contains("private key"), "{e}");
}
