//! The demo's Instant VM Recovery step: the real IR service, started
//! in-process on 127.0.0.1 with ephemeral ports and a cache folder under the
//! demo directory, serves a session on the latest restore point.
//!
//! ```text
//! Service::start(ephemeral) ── control socket <dir>/ir/control.sock
//!   request(Start web01@latest, nbd)  → NFS export path, QEMU line
//!   NBD client (lifeboat_nbd::NbdClient): write a block, read it back merged
//!   request(List)                     → the overlay holds the write
//!   index file re-read, base re-read  → restore point unchanged
//!   request(Stop)                     → session folder removed
//!   drop the service                  → listeners closed
//! ```

use crate::output::bytes;
use anyhow::{bail, Context};
use lifeboat_ir::{Request, Response, Service, ServiceConfig, SessionInfo, StartRequest};
use lifeboat_nbd::NbdClient;
use lifeboat_repo::{DiskIndex, Manifest, Repository};
use lifeboat_vdisk::ReadDisk;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Instant;

/// Where the demo writes on the session's disk: inside the ext4 partition.
const WRITE_OFFSET: u64 = 3 << 20;
const WRITE_LEN: usize = 64 << 10;
/// Bytes read back on each side of the write, to show the merge.
const MARGIN: usize = 16 << 10;

/// Runs the step on restore point `spec` of `repo` (opened with `passphrase`).
pub fn run(repo: &Repository, passphrase: &str, spec: &str, dir: &Path) -> anyhow::Result<()> {
    let manifest = repo.resolve(spec)?;
    let index_before = repo.open_disk(&manifest, "disk0")?.index().clone();
    let base_before = base_bytes(repo, &manifest)?;

    let cache = dir.join("ir");
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut config = ServiceConfig::ephemeral(repo.path(), &cache, ip);
    config.passphrase = Some(passphrase.to_owned());
    let service = Service::start(config).context("starting the Instant Recovery service")?;
    let info = service.info().clone();
    println!(
        "    service on {ip}: NFS {} (mount {}), NBD {}, cache {}",
        info.nfs_port,
        info.mount_port,
        info.nbd_port.map_or("-".into(), |p| p.to_string()),
        cache.display()
    );

    let t = Instant::now();
    let session = start(&cache, spec)?;
    let disk = session
        .disks
        .first()
        .with_context(|| format!("session {} has no disk", session.id))?;
    println!(
        "    session {} on {} started in {} ms (nothing copied)",
        session.id,
        session.restore_point,
        t.elapsed().as_millis()
    );
    println!("    NFS export     {}:{}", info.host, session.nfs_dir);
    println!("    QEMU           {}", session.qemu_command());
    if let Some(c) = session.qemu_caveat() {
        println!("                   (note: {c}; `lifeboat nfs serve` uses 111)");
    }
    if let Some(url) = session.nbd_url(disk) {
        println!("    NBD            {url}");
    }
    let export = disk
        .nbd_export
        .clone()
        .with_context(|| format!("session {} has no NBD export", session.id))?;
    let port = info.nbd_port.context("the service runs without NBD")?;

    // The guest writes: one block, over NBD, then reads around it.
    let mut nbd = NbdClient::connect_tcp(
        SocketAddr::new(ip, port),
        &export,
        &[],
        std::time::Duration::from_secs(30),
    )?;
    if nbd.size() != disk.size {
        bail!(
            "NBD export {export} is {} bytes, the session's disk {}",
            nbd.size(),
            disk.size
        );
    }
    let block = pattern(WRITE_LEN);
    nbd.write(WRITE_OFFSET, &block)?;
    nbd.flush()?;
    let start = WRITE_OFFSET - MARGIN as u64;
    let merged = nbd.read(start, u32::try_from(WRITE_LEN + 2 * MARGIN)?)?;
    nbd.disconnect()?;
    let mut expected = base_before.clone();
    expected[MARGIN..MARGIN + WRITE_LEN].copy_from_slice(&block);
    if merged != expected {
        bail!("reading the session's disk around the write at {WRITE_OFFSET} did not return the write merged with the restore point");
    }
    if base_before[MARGIN..MARGIN + WRITE_LEN] == block[..] {
        bail!("the demo's write equals what the restore point holds: it proves nothing");
    }
    println!(
        "    NBD client wrote {} at offset {}, read back {} around it: the write merged with the backup",
        bytes(WRITE_LEN as u64),
        bytes(WRITE_OFFSET),
        bytes(merged.len() as u64)
    );

    let listed = list_one(&cache, &session.id)?;
    let overlay_bytes: u64 = listed.disks.iter().map(|d| d.overlay_bytes).sum();
    if overlay_bytes < WRITE_LEN as u64 {
        bail!("the session's overlay holds {overlay_bytes} bytes after a write of {WRITE_LEN}");
    }
    println!(
        "    the write landed in the overlay: {} in {}",
        bytes(overlay_bytes),
        disk.overlay.display()
    );

    // open_disk reads the index file again; the bytes come from the chunks.
    let index_after = repo.open_disk(&manifest, "disk0")?.index().clone();
    let base_after = base_bytes(repo, &manifest)?;
    if index_after != index_before || base_after != base_before {
        bail!("the restore point {spec} changed under the Instant Recovery session");
    }
    println!(
        "    restore point untouched: {} chunk digests identical (index {}), base bytes at the write unchanged",
        index_after.digests.len(),
        index_hash(&index_after)
    );

    stop(&cache, &session.id)?;
    let session_dir = cache.join("sessions").join(&session.id);
    if session_dir.exists() {
        bail!(
            "session folder {} still exists after stop",
            session_dir.display()
        );
    }
    drop(service);
    println!(
        "    session {} stopped, overlay deleted, service shut down",
        session.id
    );
    Ok(())
}

fn ask(cache: &Path, req: &Request) -> anyhow::Result<Response> {
    match lifeboat_ir::request(cache, req)? {
        Response::Error { message } => bail!("Instant Recovery service: {message}"),
        r => Ok(r),
    }
}

fn start(cache: &Path, spec: &str) -> anyhow::Result<SessionInfo> {
    let req = Request::Start(StartRequest {
        restore_point: spec.to_owned(),
        repo: None,
        allow: Vec::new(),
        nbd: true,
    });
    match ask(cache, &req)? {
        Response::Started { session, .. } => Ok(session),
        other => bail!("unexpected answer to start: {other:?}"),
    }
}

fn list_one(cache: &Path, id: &str) -> anyhow::Result<SessionInfo> {
    match ask(cache, &Request::List)? {
        Response::Sessions { sessions, .. } => sessions
            .into_iter()
            .find(|s| s.id == id)
            .with_context(|| format!("session {id} missing from the list")),
        other => bail!("unexpected answer to list: {other:?}"),
    }
}

fn stop(cache: &Path, id: &str) -> anyhow::Result<()> {
    let req = Request::Stop {
        session: id.to_owned(),
        keep_overlay: false,
    };
    match ask(cache, &req)? {
        Response::Stopped { .. } => Ok(()),
        other => bail!("unexpected answer to stop: {other:?}"),
    }
}

/// The restore point's bytes around the demo's write.
fn base_bytes(repo: &Repository, m: &Manifest) -> anyhow::Result<Vec<u8>> {
    let disk = repo.open_disk(m, "disk0")?;
    let mut buf = vec![0u8; WRITE_LEN + 2 * MARGIN];
    disk.read_at(&mut buf, WRITE_OFFSET - MARGIN as u64)?;
    Ok(buf)
}

/// BLAKE3 over the index's digests, shortened, for the printout.
fn index_hash(index: &DiskIndex) -> String {
    let mut h = blake3::Hasher::new();
    for d in &index.digests {
        h.update(&d.map_or([0u8; 32], |d| d.0));
    }
    h.finalize().to_hex()[..16].to_string()
}

/// A recognisable, non-zero block: "lifeboat instant recovery write " repeated.
fn pattern(len: usize) -> Vec<u8> {
    b"lifeboat instant recovery write "
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}
