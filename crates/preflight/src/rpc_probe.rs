//! The NFS probe: the portmapper's GETPORT for MOUNT v3 and NFS v3 over
//! TCP, then a NULL call to each at the port it gave. A NULL reply proves
//! the program answers RPC on that port (not that an export is mounted).

use crate::check::Check;
use crate::tcp;
use lifeboat_nfs::rpc::client::{call_tcp, getport_tcp};
use std::net::SocketAddr;
use std::time::Duration;

/// The programs a hypervisor needs from the Instant VM Recovery service.
const PROGRAMS: [(&str, u32); 2] = [
    ("MOUNT v3", lifeboat_nfs::mount::PROGRAM),
    ("NFS v3", lifeboat_nfs::nfs::PROGRAM),
];

/// Probes the NFS service on `host` through its portmapper at
/// `portmapper_port`: one check for the portmapper, one per program.
pub fn check_nfs(host: &str, portmapper_port: u16, timeout: Duration) -> Vec<Check> {
    let target = tcp::with_port(host, portmapper_port);
    let name = "portmapper";
    let pm = match tcp::resolve(&target) {
        Ok(addrs) => addrs[0],
        Err(e) => {
            return vec![Check::fail(
                name,
                &target,
                e,
                "give the NFS host by a name this host resolves",
            )]
        }
    };
    let mut checks = Vec::new();
    let mut ports = Vec::new();
    for (program, number) in PROGRAMS {
        match getport_tcp(pm, number, 3, timeout) {
            Ok(0) => ports.push((
                program,
                number,
                Err(format!("{program} over TCP is not registered")),
            )),
            Ok(port) => ports.push((program, number, Ok(port as u16))),
            Err(e) => {
                checks.push(Check::fail(
                    name,
                    &target,
                    format!("GETPORT failed: {e}"),
                    format!("open TCP {portmapper_port} (portmapper) from the hypervisor to the NFS service, and check it runs"),
                ));
                return checks;
            }
        }
    }
    checks.push(Check::pass(
        name,
        &target,
        "GETPORT answered for MOUNT v3 and NFS v3 over TCP",
    ));
    for (program, number, port) in ports {
        let check_name = format!("{program} NULL");
        let port = match port {
            Ok(p) => p,
            Err(detail) => {
                checks.push(Check::fail(
                    &check_name,
                    &target,
                    detail,
                    "start the Instant VM Recovery service (lifeboat nfs serve)",
                ));
                continue;
            }
        };
        let at = SocketAddr::new(pm.ip(), port);
        checks.push(match call_tcp(at, number, 3, 0, &[], timeout) {
            Ok(_) => Check::pass(
                &check_name,
                &at.to_string(),
                format!("the NULL procedure answered on the port the portmapper gave ({port})"),
            ),
            Err(e) => Check::fail(
                &check_name,
                &at.to_string(),
                e.to_string(),
                format!("open TCP {port} from the hypervisor to the NFS service"),
            ),
        });
    }
    checks
}
