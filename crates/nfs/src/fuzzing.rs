//! The body of fuzz target `rpc_xdr` (`fuzz/`), replayed over its corpus by
//! `tests/fuzz_corpus.rs`: the whole sans-IO NFS stack.
//!
//! Input layout:
//!
//! ```text
//! byte 0      mode: bit 0 set   = the rest is a TCP stream of RPC records
//!                                 (record marking, parse_record, several calls)
//!                   bit 0 clear = the rest is one message (as over UDP)
//!                   bit 1 set   = the caller is NOT on the allow list
//! bytes 1..   the stream or the message
//! ```
//!
//! Every message goes through `rpc::Dispatcher::handle` with the three real
//! programs (portmapper, MOUNT v3, NFS v3) over a `SessionTree` holding one
//! session with an 8 KiB `MemDisk` (the tree and its cache folder are created
//! once per process in `$TMPDIR/lifeboat-fuzz-rpc_xdr-<pid>`; the programs are rebuilt per input so
//! their registries do not grow). The call header, AUTH_SYS credential and
//! every procedure's argument decoder are reached this way.
//!
//! Handles: handles are MAC'd and the session folder's handle contains an
//! inode number, so no seed can hold a valid one across runs. Any 28 bytes
//! starting with `@FH@` are therefore replaced before dispatch by the live
//! handle number `byte[4] % N` (root, session folder, disk file, descriptor,
//! a sub-folder, a cache file), which lets the fuzzer reach every procedure
//! body. Other handles are decoded as they are (BADHANDLE / STALE paths).
//!
//! Checked invariant besides "no panic": a reply the dispatcher produced
//! always decodes with `rpc::msg::decode_reply` and echoes the call's xid.
use crate::mount::MountProgram;
use crate::nfs::NfsProgram;
use crate::portmap::{Mapping, Portmap};
use crate::rpc::msg::{decode_reply, ReplyHeader};
use crate::rpc::record::{parse_record, Parse};
use crate::rpc::{Dispatcher, RpcProgram};
use crate::tree::HANDLE_LEN;
use crate::{AllowList, HandleKey, NfsBackend, ServiceLog, SessionTree};
use lifeboat_vdisk::{MemDisk, WriteDisk};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

/// Largest record accepted in stream mode (small: inputs are small).
const MAX_RECORD: usize = 256 << 10;
/// Most records handled from one input.
const MAX_RECORDS: usize = 64;

struct World {
    tree: Arc<SessionTree>,
    handles: Vec<Vec<u8>>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        // libFuzzer exits without running destructors, so the folder is
        // named (not a TempDir): `rm -rf /tmp/lifeboat-fuzz-*` cleans up.
        let dir =
            std::env::temp_dir().join(format!("lifeboat-fuzz-rpc_xdr-{}", std::process::id()));
        let tree = Arc::new(SessionTree::new(HandleKey::from_bytes([0x5a; 32])));
        let disk: Arc<dyn WriteDisk> = Arc::new(MemDisk::new("fuzz", vec![0xa5; 8192]));
        tree.add_session("s1", "vm", vec![("disk0".into(), disk)], &dir.join("s1"))
            .expect("session of the fuzz tree");
        let root = tree.mount("").expect("root handle");
        let session = tree.mount("s1").expect("session handle");
        let (flat, _) = tree
            .lookup(&session, "vm-disk0-flat.vmdk")
            .expect("disk file handle");
        let (desc, _) = tree
            .lookup(&session, "vm-disk0.vmdk")
            .expect("descriptor handle");
        let sub = match tree.mkdir(&session, "sub", &Default::default()) {
            Ok((h, _)) => h,
            Err(_) => tree.lookup(&session, "sub").expect("sub-folder").0,
        };
        let (file, _) = tree
            .create(
                &sub,
                "a.lck",
                &crate::backend::CreateHow::Unchecked(Default::default()),
            )
            .expect("cache file");
        World {
            tree,
            handles: vec![root, session, flat, desc, sub, file],
        }
    })
}

fn dispatcher(w: &World) -> Dispatcher {
    let allow = Arc::new(AllowList::parse(["127.0.0.1"]).expect("allow list"));
    let log = Arc::new(ServiceLog::default());
    let backend: Arc<dyn NfsBackend> = w.tree.clone();
    let portmap = Arc::new(Portmap::new());
    portmap.set(Mapping {
        prog: crate::nfs::PROGRAM,
        vers: crate::nfs::VERSION,
        prot: crate::portmap::IPPROTO_TCP,
        port: 2049,
    });
    let programs: Vec<Arc<dyn RpcProgram>> = vec![
        portmap,
        Arc::new(MountProgram::new(
            backend.clone(),
            allow.clone(),
            "/lifeboat",
        )),
        Arc::new(NfsProgram::new(backend, allow, log)),
    ];
    Dispatcher::new(programs)
}

/// Replaces every `@FH@<n>...` placeholder (28 bytes) by a live handle.
fn substitute(msg: &mut [u8], handles: &[Vec<u8>]) {
    let mut i = 0;
    while i + HANDLE_LEN <= msg.len() {
        if &msg[i..i + 4] == b"@FH@" {
            let h = &handles[msg[i + 4] as usize % handles.len()];
            msg[i..i + HANDLE_LEN].copy_from_slice(h);
            i += HANDLE_LEN;
        } else {
            i += 1;
        }
    }
}

fn one_message(d: &Dispatcher, w: &World, msg: &[u8], peer: IpAddr) {
    let mut msg = msg.to_vec();
    substitute(&mut msg, &w.handles);
    let mut reply = crate::rpc::Reply::new();
    let _ = d.handle(&msg, peer, &mut reply);
    let out = reply.to_vec_from(0);
    if !out.is_empty() {
        let (header, _) = decode_reply(&out).expect("the dispatcher's reply must decode");
        let xid = match header {
            ReplyHeader::Accepted { xid, .. }
            | ReplyHeader::AuthError { xid, .. }
            | ReplyHeader::RpcMismatch { xid, .. } => xid,
        };
        if let Some(x) = msg.get(..4) {
            assert_eq!(xid.to_be_bytes(), x, "reply xid differs from the call's");
        }
    }
}

/// One fuzz input (see the module doc). Panics on a broken invariant.
pub fn rpc_xdr(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let w = world();
    let d = dispatcher(w);
    let peer: IpAddr = if mode & 2 != 0 {
        [10, 9, 9, 9].into()
    } else {
        [127, 0, 0, 1].into()
    };
    if mode & 1 == 0 {
        one_message(&d, w, rest, peer);
        return;
    }
    let mut buf = rest;
    for _ in 0..MAX_RECORDS {
        match parse_record(buf, MAX_RECORD) {
            Ok(Parse::Done { value, consumed }) => {
                assert!(consumed > 0 && consumed <= buf.len());
                one_message(&d, w, &value, peer);
                buf = &buf[consumed..];
            }
            Ok(Parse::Incomplete { need }) => {
                assert!(need > buf.len(), "Incomplete without asking for more");
                break;
            }
            Err(_) => break,
        }
    }
}
