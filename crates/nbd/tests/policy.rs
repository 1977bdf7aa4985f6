//! The per-client access policy over a real socket: nbdinfo (libnbd-bin)
//! sees the server's NBD_REP_ERR_POLICY (and its message) for a refused
//! export and only the
//! permitted exports in a listing; a raw client gets the connection closed
//! on NBD_OPT_EXPORT_NAME; the policy hears of every refusal.

mod common;

use common::*;
use lifeboat_nbd::proto::consts::*;
use lifeboat_nbd::{AccessPolicy, Export, ExportTable, NbdServer, ServerHandle};
use lifeboat_testsupport::{run_stdout, tool};
use lifeboat_vdisk::MemDisk;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Refuses "secret" to every client and records the refusals.
#[derive(Default)]
struct NoSecret {
    refused: Mutex<Vec<(String, IpAddr)>>,
}

impl AccessPolicy for NoSecret {
    fn permits(&self, export: &str, _peer: IpAddr) -> bool {
        export != "secret"
    }
    fn refused(&self, export: &str, peer: IpAddr) {
        self.refused.lock().unwrap().push((export.to_owned(), peer));
    }
}

fn server(policy: Arc<NoSecret>) -> ServerHandle {
    let table = Arc::new(ExportTable::new());
    for name in ["open", "secret"] {
        table.insert(Export::read_only(
            name,
            Arc::new(MemDisk::new(name, vec![7; 64 << 10])),
        ));
    }
    NbdServer::new(table)
        .with_policy(policy)
        .spawn("127.0.0.1:0")
        .unwrap()
}

#[test]
fn nbdinfo_gets_err_policy_for_a_refused_export_and_lists_only_the_others() {
    let policy = Arc::new(NoSecret::default());
    let srv = server(policy.clone());
    let url = |e: &str| format!("nbd://{}/{e}", srv.local_addr());

    let ok = run_stdout(tool("nbdinfo", "libnbd-bin").arg(url("open")));
    assert!(ok.contains("export-size: 65536"), "{ok}");

    // libnbd 1.14 reports NBD_REP_ERR_POLICY as ENOTSUP (an unknown export
    // is ENOENT, "No such file or directory") and shows the server's own
    // message in its debug output.
    let refused = tool("nbdinfo", "libnbd-bin")
        .env("LIBNBD_DEBUG", "1")
        .arg(url("secret"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "nbdinfo read a refused export");
    assert!(
        stderr.contains("opt_go request: Operation not supported"),
        "nbdinfo did not report the policy refusal: {stderr}"
    );
    assert!(
        stderr.contains(
            "server error message: access to export \"secret\" is not permitted to this client"
        ),
        "nbdinfo did not show the server's message: {stderr}"
    );
    let heard = policy.refused.lock().unwrap().clone();
    assert!(
        heard
            .iter()
            .any(|(e, ip)| e == "secret" && ip.is_loopback()),
        "{heard:?}"
    );

    let list = run_stdout(tool("nbdinfo", "libnbd-bin").arg("--list").arg(url("")));
    assert!(list.contains("export=\"open\""), "{list}");
    assert!(!list.contains("secret"), "the listing leaks it: {list}");
}

#[test]
fn export_name_of_a_refused_export_closes_and_go_keeps_negotiating() {
    let policy = Arc::new(NoSecret::default());
    let srv = server(policy.clone());

    let mut r = Raw::handshake(srv.local_addr());
    let mut go = 6u32.to_be_bytes().to_vec();
    go.extend_from_slice(b"secret");
    go.extend_from_slice(&0u16.to_be_bytes());
    r.option(NBD_OPT_GO, &go);
    let (opt, ty, msg) = r.option_reply();
    assert_eq!((opt, ty), (NBD_OPT_GO, NBD_REP_ERR_POLICY));
    let msg = String::from_utf8(msg).unwrap();
    assert!(msg.contains("not permitted"), "{msg}");
    // Still negotiating: the permitted export can be chosen next.
    let mut go = 4u32.to_be_bytes().to_vec();
    go.extend_from_slice(b"open");
    go.extend_from_slice(&0u16.to_be_bytes());
    r.option(NBD_OPT_GO, &go);
    assert_eq!(r.option_reply().1, NBD_REP_INFO);
    assert_eq!(r.option_reply().1, NBD_REP_ACK);

    let mut r = Raw::handshake(srv.local_addr());
    r.option(NBD_OPT_EXPORT_NAME, b"secret");
    assert!(r.closed_by_server(), "EXPORT_NAME of a refused export");
    assert_eq!(policy.refused.lock().unwrap().len(), 2);
}
