//! The control protocol between `lifeboat instant-recovery ...` and the
//! running service, sans-IO: one JSON object per line each way.
//!
//! ```text
//! client → {"op":"start","restore_point":"web01@latest","repo":"/r","allow":[],"nbd":true}
//! service ← {"result":"started","session":{...SessionInfo...},"start_ms":12}
//! client → {"op":"list"}                 ← {"result":"sessions","service":{..},"sessions":[..]}
//! client → {"op":"stop","session":"web01-3f2a1c","keep_overlay":false}
//!                                         ← {"result":"stopped","session":"..","overlay_kept":false}
//! client → {"op":"migrate","session":"..","to":"/vms/web01.qcow2","format":"qcow2"}
//!                                         ← {"result":"migrated",...MigrateInfo}
//! client → {"op":"status"}               ← {"result":"status",...ServiceInfo}
//! any failure                             ← {"result":"error","message":"..."}
//! ```
//!
//! A connection may carry several requests in turn. Lines longer than
//! [`MAX_LINE`] are refused. The helpers at the bottom render what a user
//! pastes into QEMU or ESXi for a session.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Longest request or response line, in bytes.
pub const MAX_LINE: usize = 1 << 20;

/// Port the QEMU nfs:// driver (libnfs) asks the portmapper on.
pub const PORTMAP_STANDARD_PORT: u16 = 111;

/// Start a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartRequest {
    /// `vm@id`, `vm@latest` or a unique id prefix.
    pub restore_point: String,
    /// The repository the client means; refused when it is not the
    /// service's (the service is bound to one repository).
    #[serde(default)]
    pub repo: Option<PathBuf>,
    /// Client addresses or CIDR networks recorded with the session.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Also export the disks over NBD.
    #[serde(default)]
    pub nbd: bool,
}

/// A request to the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Start(StartRequest),
    List,
    Stop {
        session: String,
        #[serde(default)]
        keep_overlay: bool,
    },
    Migrate {
        session: String,
        to: PathBuf,
        /// `raw` or `qcow2`; default from the extension of `to`.
        #[serde(default)]
        format: Option<String>,
    },
    Status,
}

/// Where and how the service listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    pub repo: PathBuf,
    pub repo_id: String,
    pub cache_dir: PathBuf,
    /// The host name or address clients should use.
    pub host: String,
    /// The NFS export path (`/lifeboat`).
    pub export_path: String,
    pub portmap_port: Option<u16>,
    pub mount_port: u16,
    pub nfs_port: u16,
    pub nbd_port: Option<u16>,
    /// The NBD server is TLS-only (`nbds://` URLs).
    #[serde(default)]
    pub nbd_tls: bool,
    pub allow: Vec<String>,
}

/// One disk of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskInfo {
    /// Name in the restore point (`disk0`).
    pub name: String,
    /// Exported flat file (`web01-disk0-flat.vmdk`).
    pub file: String,
    pub size: u64,
    pub overlay: PathBuf,
    /// Bytes the overlay holds (written by the VM).
    pub overlay_bytes: u64,
    /// NBD export name, when the session is exported over NBD.
    pub nbd_export: Option<String>,
}

/// A running session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: String,
    /// `vm@id`.
    pub restore_point: String,
    pub vm: String,
    pub created: DateTime<Utc>,
    pub nbd: bool,
    pub allow: Vec<String>,
    pub disks: Vec<DiskInfo>,
    /// The session folder below the export (`/lifeboat/<id>`).
    pub nfs_dir: String,
    pub service: ServiceInfo,
}

/// What a migrate did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrateInfo {
    pub session: String,
    pub disk: String,
    pub path: PathBuf,
    pub format: String,
    pub size: u64,
    pub bytes_written: u64,
    pub elapsed_ms: u64,
}

/// The service's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Started {
        session: SessionInfo,
        /// Time from request to exports ready.
        start_ms: u64,
    },
    Sessions {
        service: ServiceInfo,
        sessions: Vec<SessionInfo>,
    },
    Stopped {
        session: String,
        overlay_kept: bool,
    },
    Migrated {
        migrated: Vec<MigrateInfo>,
    },
    Status(ServiceInfo),
    Error {
        message: String,
    },
}

/// A line that is not a valid message.
#[derive(Debug, thiserror::Error)]
#[error("control message: {0}")]
pub struct DecodeError(String);

fn encode<T: Serialize>(v: &T) -> String {
    // Serialising these plain structs cannot fail (string keys, no maps
    // with non-string keys); fall back to an error object just in case.
    let mut s = serde_json::to_string(v).unwrap_or_else(|e| {
        format!(
            "{{\"result\":\"error\",\"message\":{:?}}}",
            format!("cannot encode: {e}")
        )
    });
    s.push('\n');
    s
}

fn decode<T: for<'de> Deserialize<'de>>(line: &str) -> Result<T, DecodeError> {
    if line.len() > MAX_LINE {
        return Err(DecodeError(format!(
            "line of {} bytes exceeds {MAX_LINE}",
            line.len()
        )));
    }
    serde_json::from_str(line.trim_end()).map_err(|e| DecodeError(e.to_string()))
}

impl Request {
    /// One line, newline included.
    pub fn encode(&self) -> String {
        encode(self)
    }
    pub fn decode(line: &str) -> Result<Self, DecodeError> {
        decode(line)
    }
}

impl Response {
    /// One line, newline included.
    pub fn encode(&self) -> String {
        encode(self)
    }
    pub fn decode(line: &str) -> Result<Self, DecodeError> {
        decode(line)
    }
}

impl SessionInfo {
    /// `nfs://host/lifeboat/<id>/<file>`: what QEMU's nfs driver opens
    /// (it finds MOUNT and NFS through the portmapper on port 111).
    pub fn nfs_url(&self, disk: &DiskInfo) -> String {
        format!(
            "nfs://{}{}/{}",
            url_host(&self.service.host),
            self.nfs_dir,
            disk.file
        )
    }

    /// The URL with explicit ports, for libnfs tools (`nfs-ls`, `nfs-cp`)
    /// when no portmapper answers on 111.
    pub fn libnfs_url(&self, disk: &DiskInfo) -> String {
        format!(
            "{}?version=3&mountport={}&nfsport={}",
            self.nfs_url(disk),
            self.service.mount_port,
            self.service.nfs_port
        )
    }

    /// `nbd://host:port/<export>` when the disk is exported over NBD
    /// (`nbds://` when the server is TLS-only).
    pub fn nbd_url(&self, disk: &DiskInfo) -> Option<String> {
        let export = disk.nbd_export.as_ref()?;
        let port = self.service.nbd_port?;
        let scheme = if self.service.nbd_tls { "nbds" } else { "nbd" };
        Some(format!(
            "{scheme}://{}:{port}/{export}",
            url_host(&self.service.host)
        ))
    }

    /// The QEMU `-drive` argument for `disk` over NFS.
    pub fn qemu_drive(&self, disk: &DiskInfo) -> String {
        format!(
            "-drive file={},format=raw,if=virtio",
            self.nfs_url(disk).replace(',', ",,")
        )
    }

    /// The QEMU command line that boots the session from its NFS export,
    /// every disk as a `-drive`.
    pub fn qemu_command(&self) -> String {
        let drives: Vec<String> = self.disks.iter().map(|d| self.qemu_drive(d)).collect();
        format!("qemu-system-x86_64 -m 2048 {}", drives.join(" "))
    }

    /// The esxcli line that mounts the session folder as a datastore.
    pub fn esxcli(&self) -> String {
        format!(
            "esxcli storage nfs add -H {} -s {} -v lifeboat-{}",
            self.service.host, self.nfs_dir, self.id
        )
    }

    /// Why the QEMU line may not work as printed, if it may not.
    pub fn qemu_caveat(&self) -> Option<String> {
        match self.service.portmap_port {
            Some(PORTMAP_STANDARD_PORT) => None,
            Some(p) => Some(format!(
                "the portmapper listens on {p}, not 111: QEMU's nfs driver cannot find the service"
            )),
            None => Some(
                "the service runs without a portmapper: QEMU's nfs driver cannot find it".into(),
            ),
        }
    }
}

fn url_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> SessionInfo {
        SessionInfo {
            id: "web01-3f2a1c".into(),
            restore_point: "web01@20261122-110930-3f2a".into(),
            vm: "web01".into(),
            created: DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
            nbd: true,
            allow: vec!["10.0.0.0/24".into()],
            disks: vec![DiskInfo {
                name: "disk0".into(),
                file: "web01-disk0-flat.vmdk".into(),
                size: 1 << 30,
                overlay: "/c/sessions/web01-3f2a1c/disk0.overlay".into(),
                overlay_bytes: 0,
                nbd_export: Some("web01-3f2a1c-disk0".into()),
            }],
            nfs_dir: "/lifeboat/web01-3f2a1c".into(),
            service: ServiceInfo {
                repo: "/r".into(),
                repo_id: "abc".into(),
                cache_dir: "/c".into(),
                host: "10.0.0.1".into(),
                export_path: "/lifeboat".into(),
                portmap_port: Some(111),
                mount_port: 1058,
                nfs_port: 2049,
                nbd_port: Some(10809),
                nbd_tls: false,
                allow: vec![],
            },
        }
    }

    #[test]
    fn requests_and_responses_round_trip_as_single_lines() {
        let reqs = [
            Request::Start(StartRequest {
                restore_point: "web01@latest".into(),
                repo: Some("/r".into()),
                allow: vec!["10.0.0.5".into()],
                nbd: true,
            }),
            Request::List,
            Request::Stop {
                session: "s".into(),
                keep_overlay: true,
            },
            Request::Migrate {
                session: "s".into(),
                to: "/vms/a.qcow2".into(),
                format: None,
            },
            Request::Status,
        ];
        for r in reqs {
            let line = r.encode();
            assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
            assert_eq!(Request::decode(&line).unwrap(), r);
        }
        let resp = Response::Started {
            session: info(),
            start_ms: 3,
        };
        assert_eq!(Response::decode(&resp.encode()).unwrap(), resp);
        // Defaults for optional fields.
        let r = Request::decode(r#"{"op":"stop","session":"x"}"#).unwrap();
        assert_eq!(
            r,
            Request::Stop {
                session: "x".into(),
                keep_overlay: false
            }
        );
    }

    #[test]
    fn bad_lines_are_refused() {
        assert!(Request::decode("").is_err());
        assert!(Request::decode("{\"op\":\"explode\"}").is_err());
        assert!(Request::decode("{\"op\":\"start\"}").is_err());
        assert!(Request::decode(&"x".repeat(MAX_LINE + 1)).is_err());
        assert!(Response::decode("[1,2]").is_err());
    }

    #[test]
    fn paste_lines_name_host_export_and_session() {
        let s = info();
        let d = &s.disks[0];
        assert_eq!(
            s.qemu_drive(d),
            "-drive file=nfs://10.0.0.1/lifeboat/web01-3f2a1c/web01-disk0-flat.vmdk,format=raw,if=virtio"
        );
        assert_eq!(
            s.esxcli(),
            "esxcli storage nfs add -H 10.0.0.1 -s /lifeboat/web01-3f2a1c -v lifeboat-web01-3f2a1c"
        );
        assert_eq!(
            s.nbd_url(d).unwrap(),
            "nbd://10.0.0.1:10809/web01-3f2a1c-disk0"
        );
        assert!(s
            .libnfs_url(d)
            .ends_with("?version=3&mountport=1058&nfsport=2049"));
        assert!(s.qemu_caveat().is_none());
        let mut v6 = info();
        v6.service.host = "fd00::1".into();
        v6.service.portmap_port = Some(5111);
        assert!(v6.nfs_url(d).starts_with("nfs://[fd00::1]/"));
        assert!(v6.qemu_caveat().is_some());
    }
}
