//! Unit tests of per-session access: the tree's decision
//! ([`NfsBackend::permits`]) and how the NFS and MOUNT programs apply it
//! (ACCES on every handle, LOOKUP and MNT refused, listings filtered).

use super::tests::call_msg;
use super::*;
use crate::backend::*;
use crate::rpc::msg::{decode_reply, ReplyHeader};
use crate::rpc::{Dispatcher, RpcProgram};
use crate::xdr::{XdrReader, XdrWrite};
use lifeboat_vdisk::MemDisk;

const INSIDER: &str = "10.0.0.5";
const OUTSIDER: &str = "127.0.0.1";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Session "open" (no list of its own) and "kept" (only 10.0.0.0/29).
fn tree() -> (tempfile::TempDir, Arc<SessionTree>) {
    let dir = tempfile::tempdir().unwrap();
    let t = Arc::new(SessionTree::new(HandleKey::from_bytes([5; 32])));
    for (id, clients) in [
        ("open", None),
        ("kept", Some(AllowList::parse(["10.0.0.0/29"]).unwrap())),
    ] {
        let d: Arc<dyn WriteDisk> = Arc::new(MemDisk::new(id, vec![9; 8192]));
        t.add_session_for(
            id,
            "vm",
            vec![("disk0".into(), d)],
            &dir.path().join(id),
            clients,
        )
        .unwrap();
    }
    (dir, t)
}

/// Every kind of handle of session `id`: folder, disk, descriptor, a file
/// and a sub-folder in the cache folder.
fn handles(t: &SessionTree, id: &str) -> Vec<Vec<u8>> {
    let sdir = t.mount(id).unwrap();
    let (disk, _) = t.lookup(&sdir, "vm-disk0-flat.vmdk").unwrap();
    let (desc, _) = t.lookup(&sdir, "vm-disk0.vmdk").unwrap();
    let (file, _) = t
        .create(&sdir, "vm.lck", &CreateHow::Unchecked(SetAttr::default()))
        .unwrap();
    let (sub, _) = t.mkdir(&sdir, "logs", &SetAttr::default()).unwrap();
    vec![sdir, disk, desc, file, sub]
}

#[test]
fn a_session_list_admits_its_clients_only() {
    let (_d, t) = tree();
    let root = t.mount("").unwrap();
    let open = handles(&t, "open");
    for peer in [INSIDER, OUTSIDER, "::ffff:10.0.0.5"] {
        assert!(t.permits(ip(peer), &root), "the root is open to {peer}");
        for fh in &open {
            assert!(t.permits(ip(peer), fh), "open session, {peer}");
        }
    }
    let kept = handles(&t, "kept");
    for fh in &kept {
        assert!(t.permits(ip(INSIDER), fh));
        assert!(t.permits(ip("::ffff:10.0.0.7"), fh), "mapped IPv4 inside");
        assert!(!t.permits(ip(OUTSIDER), fh));
        assert!(!t.permits(ip("10.0.0.8"), fh), "just outside the /29");
    }
    // Forged and stale handles are left to the procedure.
    let mut forged = kept[1].clone();
    forged[5] ^= 1;
    assert!(t.permits(ip(OUTSIDER), &forged));
    assert_eq!(t.getattr(&forged).unwrap_err().status, Status::BadHandle);
    assert!(t.remove_session("kept"));
    assert!(t.permits(ip(OUTSIDER), &kept[1]));
    assert_eq!(t.getattr(&kept[1]).unwrap_err().status, Status::Stale);
}

#[test]
fn an_empty_session_list_shuts_everyone_out() {
    let dir = tempfile::tempdir().unwrap();
    let t = SessionTree::new(HandleKey::from_bytes([6; 32]));
    let d: Arc<dyn WriteDisk> = Arc::new(MemDisk::new("d", vec![0; 4096]));
    t.add_session_for(
        "s",
        "vm",
        vec![("disk0".into(), d)],
        dir.path(),
        Some(AllowList::default()),
    )
    .unwrap();
    let fh = t.mount("s").unwrap();
    assert!(!t.permits(ip(INSIDER), &fh));
    assert!(!t.permits(ip(OUTSIDER), &fh));
}

/// One call of `prog` v3 from `peer`; the reply body after the accepted
/// header.
fn call(d: &Dispatcher, peer: &str, prog: u32, proc_: u32, args: &[u8]) -> Vec<u8> {
    let mut out = crate::rpc::Reply::new();
    d.handle(&call_msg(prog, proc_, args), ip(peer), &mut out)
        .unwrap();
    let out = out.to_vec_from(0);
    let (h, body) = decode_reply(&out).unwrap();
    assert!(matches!(h, ReplyHeader::Accepted { stat: 0, .. }), "{h:?}");
    body.to_vec()
}

fn status(body: &[u8]) -> u32 {
    XdrReader::new(body).u32("status").unwrap()
}

fn programs(t: Arc<SessionTree>) -> Dispatcher {
    let allow = Arc::new(AllowList::parse([INSIDER, OUTSIDER]).unwrap());
    let nfs: Arc<dyn RpcProgram> = Arc::new(crate::nfs::NfsProgram::new(
        t.clone(),
        allow.clone(),
        Arc::default(),
    ));
    let mount: Arc<dyn RpcProgram> =
        Arc::new(crate::mount::MountProgram::new(t, allow, "/lifeboat"));
    Dispatcher::new(vec![nfs, mount])
}

/// The names of a whole READDIR of `dir` as `peer` sees it.
fn names(d: &Dispatcher, peer: &str, dir: &[u8]) -> Vec<String> {
    let mut a = Vec::new();
    a.put_opaque(dir);
    a.put_u64(0);
    a.put_opaque_fixed(&[0; 8]);
    a.put_u32(8192);
    let body = call(d, peer, 100_003, 16, &a);
    let mut r = XdrReader::new(&body);
    assert_eq!(r.u32("status").unwrap(), 0);
    assert!(r.bool("attr").unwrap());
    r.opaque_fixed(84, "fattr").unwrap();
    r.opaque_fixed(8, "verf").unwrap();
    let mut names = Vec::new();
    while r.bool("entry").unwrap() {
        r.u64("fileid").unwrap();
        names.push(r.string(255, "name").unwrap().to_owned());
        r.u64("cookie").unwrap();
    }
    names
}

#[test]
fn nfs_and_mount_refuse_a_session_to_clients_off_its_list() {
    let (_d, t) = tree();
    let root = t.mount("").unwrap();
    let kept = handles(&t, "kept");
    let open = handles(&t, "open");
    let d = programs(t);
    const ACCES: u32 = Status::Acces as u32;
    // GETATTR (1), ACCESS (4), READ (6), FSSTAT (18) on every handle.
    for fh in &kept {
        for (proc_, extra) in [(1, 0), (4, 1), (6, 2), (18, 0)] {
            let mut a = Vec::new();
            a.put_opaque(fh);
            match extra {
                1 => a.put_u32(0x3f),
                2 => {
                    a.put_u64(0);
                    a.put_u32(4096);
                }
                _ => {}
            }
            assert_eq!(status(&call(&d, OUTSIDER, 100_003, proc_, &a)), ACCES);
            let inside = status(&call(&d, INSIDER, 100_003, proc_, &a));
            assert!(inside != ACCES, "proc {proc_}: the insider is let in");
        }
    }
    // READ of the disk file: the insider gets the bytes.
    let mut a = Vec::new();
    a.put_opaque(&kept[1]);
    a.put_u64(0);
    a.put_u32(16);
    assert_eq!(status(&call(&d, INSIDER, 100_003, 6, &a)), 0);
    // RENAME from an open folder into the kept one names a kept handle.
    let mut a = Vec::new();
    a.put_opaque(&open[0]);
    a.put_string("vm.lck");
    a.put_opaque(&kept[0]);
    a.put_string("stolen.lck");
    assert_eq!(status(&call(&d, OUTSIDER, 100_003, 14, &a)), ACCES);
    // LOOKUP of the session from the root.
    for (peer, want) in [(OUTSIDER, ACCES), (INSIDER, 0)] {
        let mut a = Vec::new();
        a.put_opaque(&root);
        a.put_string("kept");
        assert_eq!(status(&call(&d, peer, 100_003, 3, &a)), want, "{peer}");
    }
    // The root listing leaves the session out for the outsider only.
    assert_eq!(names(&d, OUTSIDER, &root), [".", "..", "open"]);
    assert_eq!(names(&d, INSIDER, &root), [".", "..", "kept", "open"]);
    // MNT of the session (the export itself stays mountable).
    for (path, peer, want) in [
        ("/lifeboat/kept", OUTSIDER, 13),
        ("/lifeboat/kept", INSIDER, 0),
        ("/lifeboat/open", OUTSIDER, 0),
        ("/lifeboat", OUTSIDER, 0),
    ] {
        let mut a = Vec::new();
        a.put_string(path);
        assert_eq!(
            status(&call(&d, peer, 100_005, 1, &a)),
            want,
            "{path} {peer}"
        );
    }
}

#[test]
fn export_says_nothing_to_a_peer_off_the_list_and_a_peer_is_admitted_by_some_session() {
    let (_d, t) = tree();
    let d = programs(t.clone());
    // Off the service list: an empty export list (the socket layer closes
    // such peers first; this is the second line).
    assert_eq!(call(&d, "192.0.2.1", 100_005, 5, &[]), [0, 0, 0, 0]);
    let body = call(&d, INSIDER, 100_005, 5, &[]);
    let mut r = XdrReader::new(&body);
    assert!(r.bool("entry").unwrap());
    assert_eq!(r.string(1024, "dir").unwrap(), "/lifeboat");
    assert!(r.bool("group").unwrap());
    assert_eq!(r.string(255, "group").unwrap(), "10.0.0.5/32");
    assert!(!r.bool("more groups").unwrap(), "only the caller's entry");
    // Connections: "open" admits every client the service allows.
    assert!(t.admits(ip(OUTSIDER)));
    assert!(t.remove_session("open"));
    assert!(!t.admits(ip(OUTSIDER)), "only \"kept\" is left, not for it");
    assert!(t.admits(ip(INSIDER)));
    assert!(t.remove_session("kept"));
    assert!(
        t.admits(ip(OUTSIDER)),
        "no session: the service list decides"
    );
}
