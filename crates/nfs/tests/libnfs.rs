//! End-to-end tests with the real libnfs tools (nfs-ls, nfs-cat, nfs-cp).
mod common;
use common::*;
use lifeboat_testsupport::{output, run};

#[test]
fn nfs_ls_lists_the_session_folder_with_sizes() {
    let f = Fixture::new();
    let root = String::from_utf8(run(nfs_tool("nfs-ls").arg(f.url(""))).stdout).unwrap();
    assert!(root.contains(SESSION), "root listing: {root}");
    let out = String::from_utf8(run(nfs_tool("nfs-ls").arg(f.url(SESSION))).stdout).unwrap();
    eprintln!("{out}");
    let flat = out
        .lines()
        .find(|l| l.ends_with(FLAT))
        .unwrap_or_else(|| panic!("no {FLAT} in {out}"));
    assert!(flat.contains(&SIZE.to_string()), "size of {FLAT}: {flat}");
    assert!(
        out.lines().any(|l| l.ends_with(DESC)),
        "no descriptor in {out}"
    );
}

#[test]
fn nfs_cat_and_nfs_cp_copy_disk_files_out_bit_exact() {
    let f = Fixture::new();
    let cat = run(nfs_tool("nfs-cat").arg(f.url(&format!("{SESSION}/{FLAT}")))).stdout;
    assert!(
        cat == f.bytes,
        "nfs-cat of the overlay disk differs ({} bytes)",
        cat.len()
    );
    let local = f.dir.path().join("copy.raw");
    run(nfs_tool("nfs-cp")
        .arg(f.url(&format!("{SESSION}/web01-disk1-flat.vmdk")))
        .arg(&local));
    assert!(
        std::fs::read(&local).unwrap() == f.bytes,
        "nfs-cp of the memory disk differs"
    );
    let desc = run(nfs_tool("nfs-cat").arg(f.url(&format!("{SESSION}/{DESC}")))).stdout;
    let desc = String::from_utf8(desc).unwrap();
    assert!(
        desc.contains(&format!("RW {} VMFS \"{FLAT}\"", SIZE / 512)),
        "{desc}"
    );
}

#[test]
fn nfs_cp_into_the_session_folder_lands_in_the_cache_dir() {
    let f = Fixture::new();
    let local = f.dir.path().join("web01.vmx");
    let content: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&local, &content).unwrap();
    run(nfs_tool("nfs-cp")
        .arg(&local)
        .arg(f.url(&format!("{SESSION}/web01.vmx"))));
    assert_eq!(
        std::fs::read(f.files_dir().join("web01.vmx")).unwrap(),
        content
    );
    let ls = String::from_utf8(run(nfs_tool("nfs-ls").arg(f.url(SESSION))).stdout).unwrap();
    assert!(
        ls.lines()
            .any(|l| l.ends_with("web01.vmx") && l.contains("10000")),
        "{ls}"
    );
    let back = run(nfs_tool("nfs-cat").arg(f.url(&format!("{SESSION}/web01.vmx")))).stdout;
    assert_eq!(back, content);
}

#[test]
fn writing_the_flat_file_goes_to_the_overlay_and_the_base_is_unchanged() {
    // nfs-cp always creates with GUARDED (EXIST on any server, the file
    // exists) and QEMU's nfs block module is not installed here, so the
    // writes are raw NFS WRITEs over TCP; nfs-cat reads the result.
    let f = Fixture::new();
    let base_before = std::fs::read(&f.base).unwrap();
    let mut s = connect(f.service.nfs_addr());
    let fh = session_file(&mut s, FLAT);
    let patch = vec![0x5au8; 300_000];
    let (st, n, committed, verf) = write(&mut s, &fh, 0, &patch[..200_000], 0);
    assert_eq!((st, n, committed), (0, 200_000, 0), "UNSTABLE write");
    let (st, n, committed, verf2) = write(&mut s, &fh, 200_000, &patch[200_000..], 2);
    assert_eq!((st, n, committed), (0, 100_000, 2), "FILE_SYNC write");
    assert_eq!(verf, verf2, "the verifier is stable for the instance");
    assert_eq!(verf, f.service.write_verifier().to_vec());
    let cat = run(nfs_tool("nfs-cat").arg(f.url(&format!("{SESSION}/{FLAT}")))).stdout;
    assert_eq!(cat.len(), SIZE, "the disk file keeps its size");
    assert!(
        cat[..patch.len()] == patch[..],
        "the written bytes read back"
    );
    assert!(
        cat[patch.len()..] == f.bytes[patch.len()..],
        "the rest is the base"
    );
    assert!(
        std::fs::read(&f.base).unwrap() == base_before,
        "the base file changed"
    );
    assert!(
        !f.overlay.allocated_ranges().is_empty(),
        "nothing landed in the overlay"
    );
}

#[test]
fn a_client_not_on_the_allow_list_is_refused() {
    let f = Fixture::with_allow(&["10.0.0.0/8"]);
    let out = output(nfs_tool("nfs-ls").arg(f.url(SESSION)));
    assert!(
        !out.status.success(),
        "nfs-ls from 127.0.0.1 succeeded: {out:?}"
    );
    // On the wire: the connection is closed before the MNT is read.
    let mut s = connect(f.service.mount_addr());
    let mut path = Vec::new();
    lifeboat_nfs::xdr::XdrWrite::put_string(&mut path, "/lifeboat");
    let _ = std::io::Write::write_all(&mut s, &call_record(1, MOUNT, 3, 1, sys_cred(), &path));
    assert!(drain(&mut s).is_empty(), "MOUNT answered a refused client");
    assert!(f.service.log().refused_peers() > 0);
}

#[test]
fn a_corrupt_chunk_fails_the_read_instead_of_returning_bytes() {
    let f = Fixture::new();
    let out = output(nfs_tool("nfs-cat").arg(f.url(&format!("{SESSION}/web01-bad-flat.vmdk"))));
    assert!(!out.status.success(), "nfs-cat of a corrupt disk succeeded");
    assert!(
        out.stdout.len() <= 1 << 20,
        "bytes past the corrupt chunk were sent"
    );
    assert!(
        out.stdout[..] == f.bytes[..out.stdout.len()],
        "wrong bytes before the corrupt chunk"
    );
    assert!(f.service.log().io_errors() > 0);
    assert!(
        f.service
            .log()
            .lines()
            .iter()
            .any(|l| l.contains("chunk 0123abcd")),
        "{:?}",
        f.service.log().lines()
    );
}
