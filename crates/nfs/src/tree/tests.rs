//! Unit tests of the session tree through the backend trait, and of the
//! NFS program over it (READDIR paging, random arguments).

use super::*;
use crate::backend::*;
use crate::rpc::msg::{decode_reply, encode_call, AuthSys, CallHeader, Credential, ReplyHeader};
use crate::rpc::{Dispatcher, RpcProgram};
use crate::xdr::{XdrReader, XdrWrite};
use lifeboat_vdisk::MemDisk;

fn tree() -> (tempfile::TempDir, Arc<SessionTree>) {
    let dir = tempfile::tempdir().unwrap();
    let t = Arc::new(SessionTree::new(HandleKey::from_bytes([3; 32])));
    let d: Arc<dyn WriteDisk> = Arc::new(MemDisk::new("d", vec![7; 8192]));
    t.add_session(
        "s1",
        "vm",
        vec![("disk0".into(), d)],
        &dir.path().join("s1"),
    )
    .unwrap();
    (dir, t)
}

#[test]
fn create_modes_rename_remove_and_disk_rules() {
    let (_d, t) = tree();
    let sdir = t.mount("s1").unwrap();
    let (fh, a) = t
        .create(&sdir, "a.lck", &CreateHow::Guarded(SetAttr::default()))
        .unwrap();
    assert_eq!(a.size, 0);
    let e = t
        .create(&sdir, "a.lck", &CreateHow::Guarded(SetAttr::default()))
        .unwrap_err();
    assert_eq!(e.status, Status::Exist);
    assert!(t
        .create(&sdir, "a.lck", &CreateHow::Unchecked(SetAttr::default()))
        .is_ok());
    let v = *b"verifier";
    let (x1, _) = t.create(&sdir, "x", &CreateHow::Exclusive(v)).unwrap();
    let (x2, _) = t.create(&sdir, "x", &CreateHow::Exclusive(v)).unwrap();
    assert_eq!(x1, x2, "a retried EXCLUSIVE create finds its file");
    assert_eq!(
        t.create(&sdir, "x", &CreateHow::Exclusive(*b"other!!!"))
            .unwrap_err()
            .status,
        Status::Exist
    );
    t.write(&fh, 0, b"lock", Stable::FileSync).unwrap();
    t.rename(&sdir, "a.lck", &sdir, "b.lck").unwrap();
    assert_eq!(
        t.getattr(&fh).unwrap().size,
        4,
        "the handle survives a rename"
    );
    let (sub, _) = t.mkdir(&sdir, "logs", &SetAttr::default()).unwrap();
    assert_eq!(t.rmdir(&sdir, "logs").map(|_| ()), Ok(()));
    assert_eq!(t.getattr(&sub).unwrap_err().status, Status::Stale);
    assert_eq!(
        t.remove(&sdir, "vm-disk0-flat.vmdk").unwrap_err().status,
        Status::Acces
    );
    assert_eq!(
        t.rename(&sdir, "vm-disk0-flat.vmdk", &sdir, "y")
            .unwrap_err()
            .status,
        Status::Acces
    );
    let (disk, _) = t.lookup(&sdir, "vm-disk0-flat.vmdk").unwrap();
    let grow = SetAttr {
        size: Some(1 << 20),
        ..SetAttr::default()
    };
    assert_eq!(t.setattr(&disk, &grow).unwrap_err().status, Status::Inval);
    let chmod = SetAttr {
        mode: Some(0o600),
        mtime: SetTime::ServerTime,
        ..SetAttr::default()
    };
    assert_eq!(t.setattr(&disk, &chmod).unwrap().mode, 0o600);
    let root = t.mount("").unwrap();
    assert_eq!(
        t.mkdir(&root, "new", &SetAttr::default())
            .unwrap_err()
            .status,
        Status::Acces
    );
    assert_eq!(t.lookup(&root, "nope").unwrap_err().status, Status::NoEnt);
    assert_eq!(
        t.mount("s1/vm-disk0.vmdk").unwrap_err().status,
        Status::NotDir
    );
}

/// A call message of `prog` v3 procedure `proc_`, AUTH_SYS as root.
pub(super) fn call_msg(prog: u32, proc_: u32, args: &[u8]) -> Vec<u8> {
    let mut msg = Vec::new();
    let cred = Credential::Sys(AuthSys {
        stamp: 0,
        machine: "t".into(),
        uid: 0,
        gid: 0,
        gids: vec![],
    });
    let header = CallHeader {
        xid: 1,
        prog,
        vers: 3,
        proc_,
        cred,
    };
    encode_call(&mut msg, &header);
    msg.extend_from_slice(args);
    msg
}

fn call(d: &Dispatcher, proc_: u32, args: &[u8]) -> Vec<u8> {
    let mut out = crate::rpc::Reply::new();
    d.handle(
        &call_msg(100_003, proc_, args),
        "127.0.0.1".parse().unwrap(),
        &mut out,
    )
    .unwrap();
    out.to_vec_from(0)
}

fn program(t: Arc<SessionTree>) -> Dispatcher {
    let allow = Arc::new(crate::AllowList::parse(["127.0.0.1"]).unwrap());
    let p: Arc<dyn RpcProgram> = Arc::new(crate::nfs::NfsProgram::new(t, allow, Arc::default()));
    Dispatcher::new(vec![p])
}

#[test]
fn readdir_pages_with_cookies_and_checks_the_verifier() {
    let (_d, t) = tree();
    let sdir = t.mount("s1").unwrap();
    for i in 0..20 {
        t.create(
            &sdir,
            &format!("f{i:02}"),
            &CreateHow::Unchecked(SetAttr::default()),
        )
        .unwrap();
    }
    let d = program(t);
    let (mut cookie, mut verf, mut names) = (0u64, [0u8; 8], Vec::new());
    for _ in 0..100 {
        let mut a = Vec::new();
        a.put_opaque(&sdir);
        a.put_u64(cookie);
        a.put_opaque_fixed(&verf);
        a.put_u32(400);
        let out = call(&d, 16, &a);
        let (h, body) = decode_reply(&out).unwrap();
        assert!(matches!(h, ReplyHeader::Accepted { stat: 0, .. }));
        let mut r = XdrReader::new(body);
        assert_eq!(r.u32("status").unwrap(), 0);
        assert!(r.bool("attr").unwrap());
        r.opaque_fixed(84, "fattr").unwrap();
        verf.copy_from_slice(r.opaque_fixed(8, "verf").unwrap());
        while r.bool("entry").unwrap() {
            r.u64("fileid").unwrap();
            names.push(r.string(255, "name").unwrap().to_owned());
            cookie = r.u64("cookie").unwrap();
        }
        if r.bool("eof").unwrap() {
            break;
        }
    }
    assert_eq!(names.len(), 2 + 1 + 1 + 20, "{names:?}");
    assert_eq!(&names[..3], [".", "..", "vm-disk0-flat.vmdk"]);
    let mut a = Vec::new();
    a.put_opaque(&sdir);
    a.put_u64(3);
    a.put_opaque_fixed(b"badverf!");
    a.put_u32(4096);
    let (_, body) = decode_reply(&call(&d, 16, &a))
        .map(|(h, b)| (h, b.to_vec()))
        .unwrap();
    assert_eq!(
        XdrReader::new(&body).u32("status").unwrap(),
        Status::BadCookie as u32
    );
}

#[test]
fn nfs_procedures_survive_random_arguments() {
    let (_d, t) = tree();
    let sdir = t.mount("s1").unwrap();
    let (disk, _) = t.lookup(&sdir, "vm-disk0-flat.vmdk").unwrap();
    let d = program(t);
    let mut next = crate::rpc::tests::rng(0x1234_5678_9abc_def1);
    for round in 0..6000 {
        let proc_ = (round % 23) as u32;
        let mut seed = Vec::new();
        seed.put_opaque(if round % 2 == 0 { &sdir } else { &disk });
        seed.put_u32(4);
        seed.extend_from_slice(b"name");
        for _ in 0..12 {
            seed.put_u32(next() as u32 % 3);
        }
        let args = crate::rpc::tests::mutate(&seed, round, &mut next);
        let out = call(&d, proc_, &args);
        assert!(decode_reply(&out).is_ok(), "proc {proc_}: unreadable reply");
    }
}
