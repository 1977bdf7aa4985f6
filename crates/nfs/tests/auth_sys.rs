//! AUTH_SYS identities are honoured: a uid other than root gets the
//! owner / group / other bits of what it touches (the root-owned 0644 disk
//! file of the overlay is read-only to it), what it creates is its own,
//! and no mode ever keeps a setuid or setgid bit.
mod common;
use common::*;
use lifeboat_nfs::rpc::msg::{AuthSys, Credential};
use lifeboat_nfs::xdr::{XdrReader, XdrWrite};
use lifeboat_testsupport::{output, run};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;

fn user(uid: u32) -> Credential {
    Credential::Sys(AuthSys {
        stamp: 1,
        machine: "test".into(),
        uid,
        gid: uid,
        gids: vec![],
    })
}

/// One NFS call: the status and the rest of the body.
fn call(s: &mut TcpStream, proc_: u32, cred: Credential, args: &[u8]) -> (u32, Vec<u8>) {
    let (h, body) = rpc(s, NFS, 3, proc_, cred, args);
    assert_eq!(accepted(&h), 0, "{h:?}");
    let st = XdrReader::new(&body).u32("status").unwrap();
    (st, body[4..].to_vec())
}

/// sattr3 setting only the mode.
fn mode_sattr(a: &mut Vec<u8>, mode: u32) {
    a.put_bool(true);
    a.put_u32(mode);
    for _ in 0..3 {
        a.put_bool(false); // uid, gid, size
    }
    a.put_u32(0); // atime: don't change
    a.put_u32(0); // mtime: don't change
}

fn setattr_mode(s: &mut TcpStream, cred: Credential, fh: &[u8], mode: u32) -> u32 {
    let mut a = Vec::new();
    a.put_opaque(fh);
    mode_sattr(&mut a, mode);
    a.put_bool(false); // no guard
    call(s, 2, cred, &a).0
}

/// GETATTR: (mode, uid).
fn mode_owner(s: &mut TcpStream, fh: &[u8]) -> (u32, u32) {
    let mut a = Vec::new();
    a.put_opaque(fh);
    let (st, body) = call(s, 1, sys_cred(), &a);
    assert_eq!(st, 0);
    let mut r = XdrReader::new(&body);
    r.u32("type").unwrap();
    let mode = r.u32("mode").unwrap();
    r.u32("nlink").unwrap();
    (mode, r.u32("uid").unwrap())
}

/// CREATE UNCHECKED with `mode` in the session folder: (status, handle).
fn create(
    s: &mut TcpStream,
    cred: Credential,
    dir: &[u8],
    name: &str,
    mode: u32,
) -> (u32, Vec<u8>) {
    let mut a = Vec::new();
    a.put_opaque(dir);
    a.put_string(name);
    a.put_u32(0); // UNCHECKED
    mode_sattr(&mut a, mode);
    let (st, body) = call(s, 8, cred, &a);
    if st != 0 {
        return (st, vec![]);
    }
    let mut r = XdrReader::new(&body);
    assert!(r.bool("handle follows").unwrap());
    (st, r.opaque(64, "fh").unwrap().to_vec())
}

/// ACCESS asking for READ | MODIFY | EXTEND: what is granted.
fn access(s: &mut TcpStream, cred: Credential, fh: &[u8]) -> u32 {
    let mut a = Vec::new();
    a.put_opaque(fh);
    a.put_u32(0x01 | 0x04 | 0x08);
    let (st, body) = call(s, 4, cred, &a);
    assert_eq!(st, 0);
    let mut r = XdrReader::new(&body);
    if r.bool("post_op_attr").unwrap() {
        r.opaque_fixed(84, "fattr3").unwrap();
    }
    r.u32("access").unwrap()
}

fn write_as(s: &mut TcpStream, cred: Credential, fh: &[u8], data: &[u8]) -> u32 {
    let mut a = Vec::new();
    a.put_opaque(fh);
    a.put_u64(0);
    a.put_u32(data.len() as u32);
    a.put_u32(2); // FILE_SYNC
    a.put_opaque(data);
    call(s, 7, cred, &a).0
}

#[test]
fn a_user_may_read_but_not_write_the_root_owned_disk_file() {
    let f = Fixture::new();
    let mut s = connect(f.service.nfs_addr());
    let flat = session_file(&mut s, FLAT);
    assert_eq!(mode_owner(&mut s, &flat), (0o644, 0));
    assert_eq!(access(&mut s, user(1000), &flat), 0x01, "READ only");
    assert_eq!(access(&mut s, sys_cred(), &flat), 0x01 | 0x04 | 0x08);
    assert_eq!(
        write_as(&mut s, user(1000), &flat, b"evil"),
        13,
        "NFS3ERR_ACCES"
    );
    assert!(
        f.overlay.allocated_ranges().is_empty(),
        "the refused write reached the overlay"
    );
    assert_eq!(
        setattr_mode(&mut s, user(1000), &flat, 0o666),
        1,
        "NFS3ERR_PERM"
    );
    // A user reads it (0644), with a real client as that user.
    let url = f.url(&format!("{SESSION}/{FLAT}")) + "&uid=1000&gid=1000";
    assert!(run(nfs_tool("nfs-cat").arg(&url)).stdout == f.bytes);
    // Root may give it away; then the user writes.
    assert_eq!(setattr_mode(&mut s, sys_cred(), &flat, 0o666), 0);
    assert_eq!(write_as(&mut s, user(1000), &flat, b"mine"), 0);
    assert!(!f.overlay.allocated_ranges().is_empty());
}

#[test]
fn a_user_creates_only_where_it_may_and_owns_what_it_creates() {
    let f = Fixture::new();
    let mut s = connect(f.service.nfs_addr());
    let local = f.dir.path().join("local.txt");
    std::fs::write(&local, b"hello").unwrap();
    // The session folder is root's (0755): a user may not add to it.
    let as_user = |path: &str| f.url(path) + "&uid=1000&gid=1000";
    let out = output(
        nfs_tool("nfs-cp")
            .arg(&local)
            .arg(as_user(&format!("{SESSION}/u.txt"))),
    );
    assert!(
        !out.status.success(),
        "uid 1000 created a file in root's folder: {out:?}"
    );
    assert!(!f.files_dir().join("u.txt").exists());
    // Root's own file, 0644: a user may not write it.
    let (mnt_st, root) = mnt(&mut connect(f.service.mount_addr()), "/lifeboat");
    assert_eq!(mnt_st, 0);
    let (st, dir) = lookup(&mut s, &root, SESSION);
    assert_eq!(st, 0);
    let (st, vmx) = create(&mut s, sys_cred(), &dir, "web01.vmx", 0o644);
    assert_eq!(st, 0);
    assert_eq!(write_as(&mut s, user(1000), &vmx, b"x"), 13);
    assert_eq!(write_as(&mut s, sys_cred(), &vmx, b"x"), 0);
    // In a folder open to all, what the user creates is the user's.
    let mut a = Vec::new();
    a.put_opaque(&dir);
    a.put_string("shared");
    mode_sattr(&mut a, 0o777);
    assert_eq!(call(&mut s, 9, sys_cred(), &a).0, 0, "MKDIR");
    run(nfs_tool("nfs-cp")
        .arg(&local)
        .arg(as_user(&format!("{SESSION}/shared/u.txt"))));
    let m = std::fs::metadata(f.files_dir().join("shared/u.txt")).unwrap();
    assert_eq!(
        (m.uid(), m.gid()),
        (1000, 1000),
        "owner of a user's new file"
    );
}

#[test]
fn setuid_and_setgid_bits_are_never_kept() {
    let f = Fixture::new();
    let mut s = connect(f.service.nfs_addr());
    let (st, root) = mnt(&mut connect(f.service.mount_addr()), "/lifeboat");
    assert_eq!(st, 0);
    let (_, dir) = lookup(&mut s, &root, SESSION);
    let (st, tool) = create(&mut s, sys_cred(), &dir, "tool", 0o6755);
    assert_eq!(st, 0);
    assert_eq!(
        mode_owner(&mut s, &tool).0,
        0o755,
        "CREATE kept setuid/setgid"
    );
    assert_eq!(setattr_mode(&mut s, sys_cred(), &tool, 0o4755), 0);
    assert_eq!(mode_owner(&mut s, &tool).0, 0o755, "SETATTR kept setuid");
    let on_disk = std::fs::metadata(f.files_dir().join("tool"))
        .unwrap()
        .mode();
    assert_eq!(on_disk & 0o7777, 0o755, "setuid file in the cache folder");
    let flat = session_file(&mut s, FLAT);
    assert_eq!(setattr_mode(&mut s, sys_cred(), &flat, 0o2755), 0);
    assert_eq!(mode_owner(&mut s, &flat).0, 0o755, "disk file kept setgid");
}
