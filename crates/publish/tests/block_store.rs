//! Publishing with a block store, end to end (needs root, /dev/fuse,
//! util-linux, fdisk, e2fsprogs): a publisher fills the store under
//! `<dir>/<repository id>/`, the next one loads it, reads the same files
//! exact and records the blocks it reused, one facing a store whose every
//! block is corrupt still reads them exact (and logs that they do not
//! authenticate), and one
//! facing a store locked by another process publishes without it.

mod common;

use common::*;
use lifeboat_publish::block_store::{key_of, DEFAULT_CAP_BYTES};
use lifeboat_publish::{log_path, BlockStore};
use lifeboat_repo::LocalKey;
use std::path::Path;
use std::time::{Duration, Instant};

/// The store in `dir` (sealed with `key`), once the last publisher using
/// it has exited.
fn store_when_free(dir: &Path, key: &Option<LocalKey>) -> BlockStore {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match BlockStore::open(dir, DEFAULT_CAP_BYTES, key.clone()) {
            Ok(Some(s)) => return s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => panic!("{}: still locked after 10 s", dir.display()),
            Err(e) => panic!("{}: {e}", dir.display()),
        }
    }
}

/// Publishes with `opts`, checks the tree and returns the publisher's log.
fn publish_and_check(dirs: &Dirs, opts: &lifeboat_publish::PublishOptions) -> String {
    let s = Published::with(dirs, opts);
    check_tree(&s.mounted("disk0p1").mount_point, "disk0p1", 7);
    let log = std::fs::read_to_string(log_path(&dirs.state_dir, &s.state.session)).unwrap();
    s.finish();
    log
}

#[test]
fn publishers_fill_share_and_survive_a_block_store() {
    let (_serial, dirs) = start(&[]);
    let (disk, parts) = dirs.disk("disk.img", 24 * MIB, "label: dos\nsize=16MiB, type=83\n");
    let src = dirs.path("src");
    write_tree(&src, "disk0p1", 7).unwrap();
    let img = dirs.path("p1.ext4");
    ext4_image(&img, &src, parts[0].size);
    write_image(&disk, parts[0].start, &img);
    let (repo, _) = backed_up(&dirs.repo, "web01", &[("disk0", &disk)]);
    let root = dirs.path("blocks");
    let store_dir = root.join(repo.id());
    // Unencrypted: the store keeps a key of its own (`<dir>/key`).
    let key = key_of(&repo);
    let mut opts = dirs.options("web01@latest");
    opts.block_store = Some(root.clone());

    // The first publisher records the small reads of mounting and walking.
    let log = publish_and_check(&dirs, &opts);
    assert!(log.contains(&*store_dir.to_string_lossy()), "{log}");
    let store = store_when_free(&store_dir, &key);
    let first = store.stats();
    assert!(first.entries > 0, "nothing recorded: {first:?}\n{log}");
    drop(store);

    // The next one loads them.
    let log = publish_and_check(&dirs, &opts);
    assert!(
        log.contains(&format!("; {} blocks,", first.entries)),
        "store not loaded with its {} blocks:\n{log}",
        first.entries
    );
    // ... and has written which of them it served as they were hit (read
    // before any open: opening starts the file over), although it was
    // sent SIGTERM as soon as its mount was gone.
    let hits = std::fs::metadata(store_dir.join("hits")).map_or(0, |m| m.len());
    assert!(hits > 32, "no hits recorded ({hits} bytes):\n{log}");

    // Every stored block corrupt: the files still read exact.
    let data = store_dir.join("blocks.dat");
    let mut bytes = std::fs::read(&data).unwrap();
    for b in bytes.iter_mut().step_by(4096) {
        *b ^= 0x5A;
    }
    std::fs::write(&data, bytes).unwrap();
    drop(store_when_free(&store_dir, &key));
    let log = publish_and_check(&dirs, &opts);
    assert!(log.contains("does not authenticate"), "{log}");

    // Locked by another process (here: this test): published without it.
    let held = store_when_free(&store_dir, &key);
    let log = publish_and_check(&dirs, &opts);
    assert!(log.contains("in use by another process"), "{log}");
    drop(held);
}
