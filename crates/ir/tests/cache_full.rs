//! A full cache folder: the service's cache is a 1 MiB tmpfs (private mount
//! namespace via `unshare -Urm`, like crates/vdisk's overlay test); NFS
//! WRITEs fill the overlay until the client gets NFS3ERR_NOSPC, the service
//! logs it, the written blocks still read back, and the restore point is
//! untouched.
mod common;
use common::*;
use lifeboat_testsupport::nfs::{addr, connect, file_handle, read, write};
use lifeboat_testsupport::repo::repo_snapshot;
use lifeboat_testsupport::run_ignored_in_tmpfs;

#[test]
fn a_full_cache_folder_gives_nospc_and_leaves_the_restore_point_alone() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let text = run_ignored_in_tmpfs(
        "nospc_inside_a_small_tmpfs",
        &cache,
        "1m",
        ("LIFEBOAT_IR_FULL_DIR", dir.path()),
    );
    println!("{text}");
}

#[test]
#[ignore = "run by a_full_cache_folder_gives_nospc_and_leaves_the_restore_point_alone inside a tmpfs"]
fn nospc_inside_a_small_tmpfs() {
    let dir = std::path::PathBuf::from(
        std::env::var("LIFEBOAT_IR_FULL_DIR").expect("LIFEBOAT_IR_FULL_DIR"),
    );
    let cache = dir.join("cache");
    let image = dir.join("web01.raw");
    let bytes = make_image(&image, 8 << 20);
    let (repo, manifest) = backup(&dir, "web01", &image);
    let before = repo_snapshot(&repo);
    let svc = service(&repo, &cache, "127.0.0.1", None);
    let (s, _) = start_session(&cache, "web01@latest", false);
    let disk = &s.disks[0];
    let nfs = addr("127.0.0.1", s.service.nfs_port);
    let fh = file_handle(
        addr("127.0.0.1", s.service.mount_port),
        nfs,
        &s.id,
        &disk.file,
    );
    let mut conn = connect(nfs);
    let block = vec![0x5au8; 64 << 10];
    let mut status = 0;
    let mut written = 0u64;
    while written < (8 << 20) {
        status = write(&mut conn, &fh, written, &block, 2).0;
        if status != 0 {
            break;
        }
        written += block.len() as u64;
    }
    println!("NFS WRITE status {status} after {written} bytes");
    assert_eq!(
        status, 28,
        "NFS3ERR_NOSPC expected once the 1 MiB cache is full"
    );
    assert!(written > 0, "some writes fit before the cache filled");
    assert!(svc.log().nospc_errors() >= 1);
    let lines = svc.log().lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("overlay") || l.to_lowercase().contains("space")),
        "{lines:?}"
    );
    // Blocks written before still read back; the failed one reads the base.
    let (st, got, _) = read(&mut conn, &fh, 0, 4096);
    assert_eq!(st, 0);
    assert!(got.iter().all(|&b| b == 0x5a));
    let (st, got, _) = read(&mut conn, &fh, written + (64 << 10), 4096);
    assert_eq!(st, 0);
    let at = (written + (64 << 10)) as usize;
    assert!(got == bytes[at..at + 4096]);
    drop(conn);
    drop(svc);
    assert_restore_point_untouched(&repo, &manifest, &before);
}
