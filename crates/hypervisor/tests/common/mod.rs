//! The tests' QEMU (`lifeboat_testvm::PausedQemu`: paused, a qcow2 disk
//! `sda`/`disk0` and a raw disk `sdb`/`disk1` on virtio-scsi, a QMP socket),
//! its QMP client, writes through HMP `qemu-io` as the guest's, and reads
//! of QEMU's NBD exports with nbdinfo/qemu-img.

#![allow(dead_code, unused_imports)]

use std::path::Path;
use std::process::Command;

use lifeboat_testsupport::process::run_stdout as run;

use lifeboat_hypervisor::QmpClient;
use serde_json::{json, Value};

pub use lifeboat_testvm::{PausedQemu as Qemu, DISK_SIZE};

/// What the tests ask of [`Qemu`] that needs the QMP client.
pub trait QemuClient {
    fn client(&self) -> QmpClient;
}

impl QemuClient for Qemu {
    fn client(&self) -> QmpClient {
        QmpClient::connect(&self.qmp).expect("connect to QEMU's QMP socket")
    }
}

/// One `qemu-io` command through HMP on device `qdev` (as the guest writes).
pub fn qemu_io(client: &QmpClient, qdev: &str, cmd: &str) -> String {
    hmp_qemu_io(client, &format!("-d {qdev}"), cmd)
}

/// One `qemu-io` command through HMP on the named BlockBackend `drive`
/// (`-drive id=`), the one its device writes through.
pub fn qemu_io_drive(client: &QmpClient, drive: &str, cmd: &str) -> String {
    hmp_qemu_io(client, drive, cmd)
}

fn hmp_qemu_io(client: &QmpClient, target: &str, cmd: &str) -> String {
    let out = client
        .execute(
            "human-monitor-command",
            json!({"command-line": format!("qemu-io {target} \"{cmd}\"")}),
        )
        .unwrap();
    let out = out.as_str().unwrap_or("").to_string();
    assert!(
        !out.contains("Error") && !out.contains("failed"),
        "qemu-io {target} {cmd}: {out}"
    );
    out
}

/// Names of the block nodes with the lifeboat- prefix.
pub fn lifeboat_nodes(client: &QmpClient) -> Vec<String> {
    client
        .execute("query-named-block-nodes", json!({"flat": true}))
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.get("node-name").and_then(Value::as_str))
        .filter(|n| n.starts_with("lifeboat-"))
        .map(str::to_string)
        .collect()
}

/// Ids of the block exports.
pub fn exports(client: &QmpClient) -> Vec<String> {
    client
        .execute("query-block-exports", Value::Null)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.get("id").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// The extents `nbdinfo --map=<context>` reports for an export: (offset, length, description).
pub fn nbd_map(uri: &str, context: &str) -> Vec<(u64, u64, String)> {
    let out = run(Command::new("nbdinfo")
        .arg(format!("--map={context}"))
        .arg(uri));
    out.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[3..].join(" "),
            )
        })
        .collect()
}

/// The dirty extents (offset, length) of a bitmap context.
pub fn dirty_extents(uri: &str, bitmap: &str) -> Vec<(u64, u64)> {
    nbd_map(uri, &format!("qemu:dirty-bitmap:{bitmap}"))
        .into_iter()
        .filter(|(_, _, d)| d == "dirty")
        .map(|(o, l, _)| (o, l))
        .collect()
}

/// Reads a whole export into a file with nbdcopy and returns the bytes.
pub fn read_export(uri: &str, dir: &Path) -> Vec<u8> {
    let out = dir.join("export.img");
    run(Command::new("nbdcopy").arg(uri).arg(&out));
    let data = std::fs::read(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    data
}
