//! The hypervisor probe: QEMU's QMP socket answers its greeting and
//! `query-version`, and the version has what a live backup needs.

use crate::check::Check;
use lifeboat_hypervisor::QmpClient;
use std::path::Path;
use std::time::Duration;

/// Connects to the QMP socket `socket` and reads QEMU's version.
pub fn check_qmp(socket: &Path, timeout: Duration) -> Check {
    const NAME: &str = "hypervisor (QMP)";
    let target = socket.display().to_string();
    let client = match QmpClient::connect_with_timeout(socket, timeout) {
        Ok(c) => c,
        Err(e) => {
            return Check::fail(
                NAME,
                &target,
                e.to_string(),
                "start QEMU with -qmp unix:SOCKET,server=on,wait=off and give that socket (run as a user that may open it)",
            )
        }
    };
    match client.query_version() {
        Ok(v) if v.at_least(5, 2) => Check::pass(
            NAME,
            &target,
            format!(
                "QEMU {}.{}.{} answers QMP; live backup uses {}",
                v.major,
                v.minor,
                v.micro,
                if v.at_least(7, 1) {
                    "copy-before-write with snapshot-access"
                } else {
                    "blockdev-backup sync=none"
                }
            ),
        ),
        Ok(v) => Check::fail(
            NAME,
            &target,
            format!(
                "QEMU {}.{}.{} is older than 5.2, the oldest a live backup supports",
                v.major, v.minor, v.micro
            ),
            "upgrade QEMU to 5.2 or newer",
        ),
        Err(e) => Check::fail(
            NAME,
            &target,
            format!("query-version: {e}"),
            "check that the socket is QEMU's QMP monitor",
        ),
    }
}
