//! Tests of the block store on real files: reopening, torn and garbled
//! index records and blocks, the cap, and the full-store policy (kept,
//! compacted, started over, interrupted compaction).

use super::compact::{DATA_NEXT, DATA_TMP, LOG_NEXT, LOG_TMP};
use super::hits::HITS_FILE;
use super::index::{MAGIC, RECORD_LEN};
use super::*;

fn key(n: u8, block: u32) -> BlockKey {
    BlockKey {
        digest: [n; 32],
        block,
    }
}

fn block(n: u8) -> Vec<u8> {
    (0..BLOCK).map(|i| (i as u8).wrapping_mul(7) ^ n).collect()
}

/// The store in `dir`, sealed with its own key file (as for an unencrypted
/// repository).
fn open(dir: &Path, cap: u64) -> BlockStore {
    match BlockStore::open(dir, cap, None) {
        Ok(Some(s)) => s,
        Ok(None) => panic!("{}: locked", dir.display()),
        Err(e) => panic!("{}: {e}", dir.display()),
    }
}

fn read(s: &BlockStore, k: &BlockKey) -> Option<Vec<u8>> {
    let mut out = [0u8; BLOCK];
    s.get(k, &mut out).then(|| out.to_vec())
}

#[test]
fn blocks_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path(), DEFAULT_CAP_BYTES);
        let (a, b) = (block(1), block(2));
        s.put(&[(key(1, 0), &a), (key(1, 5), &b), (key(1, 0), &a)]);
        s.put(&[(key(2, 3), &b[..100])]); // not a whole block: ignored
        let st = s.stats();
        assert_eq!((st.entries, st.recorded, st.data_bytes), (2, 2, 8192));
    }
    let s = open(dir.path(), DEFAULT_CAP_BYTES);
    assert_eq!(read(&s, &key(1, 0)), Some(block(1)));
    assert_eq!(read(&s, &key(1, 5)), Some(block(2)));
    assert_eq!(read(&s, &key(2, 3)), None);
    // More appends land after the loaded ones.
    s.put(&[(key(3, 1), &block(3))]);
    drop(s);
    let s = open(dir.path(), DEFAULT_CAP_BYTES);
    assert_eq!(s.stats().entries, 3);
    assert_eq!(read(&s, &key(3, 1)), Some(block(3)));
    assert_eq!(s.stats().bad, 0);
}

#[test]
fn a_torn_last_record_is_skipped_and_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path(), DEFAULT_CAP_BYTES);
        s.put(&[(key(1, 0), &block(1))]);
        s.put(&[(key(2, 0), &block(2))]);
    }
    let log = dir.path().join(LOG_FILE);
    let len = std::fs::metadata(&log).unwrap().len();
    let f = OpenOptions::new().write(true).open(&log).unwrap();
    f.set_len(len - 30).unwrap();
    drop(f);
    let s = open(dir.path(), DEFAULT_CAP_BYTES);
    assert_eq!(read(&s, &key(1, 0)), Some(block(1)));
    assert_eq!(read(&s, &key(2, 0)), None);
    // The next record is whole and found after reopening.
    s.put(&[(key(4, 2), &block(4))]);
    drop(s);
    assert_eq!(
        std::fs::metadata(&log).unwrap().len(),
        (MAGIC.len() + 2 * RECORD_LEN) as u64
    );
    let s = open(dir.path(), DEFAULT_CAP_BYTES);
    assert_eq!(read(&s, &key(4, 2)), Some(block(4)));
    assert_eq!(read(&s, &key(1, 0)), Some(block(1)));
}

#[test]
fn a_flipped_data_byte_is_detected_and_the_entry_dropped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path(), DEFAULT_CAP_BYTES);
        s.put(&[(key(1, 0), &block(1)), (key(1, 1), &block(2))]);
    }
    let data = dir.path().join(DATA_FILE);
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[BLOCK + 17] ^= 0x40;
    std::fs::write(&data, &bytes).unwrap();
    let s = open(dir.path(), DEFAULT_CAP_BYTES);
    assert_eq!(read(&s, &key(1, 0)), Some(block(1)));
    assert_eq!(read(&s, &key(1, 1)), None);
    assert!(!s.contains(&key(1, 1)));
    assert_eq!(s.stats().bad, 1);
}

#[test]
fn a_short_data_file_drops_its_records() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path(), DEFAULT_CAP_BYTES);
        s.put(&[(key(1, 0), &block(1)), (key(1, 1), &block(2))]);
    }
    let f = OpenOptions::new()
        .write(true)
        .open(dir.path().join(DATA_FILE))
        .unwrap();
    f.set_len(BLOCK as u64 + 10).unwrap();
    drop(f);
    let s = open(dir.path(), DEFAULT_CAP_BYTES);
    assert_eq!(s.stats().entries, 1);
    assert_eq!(read(&s, &key(1, 0)), Some(block(1)));
    // New blocks go after the partial one, never over it.
    s.put(&[(key(5, 0), &block(5))]);
    assert_eq!(s.stats().data_bytes, 3 * BLOCK as u64);
    assert_eq!(read(&s, &key(5, 0)), Some(block(5)));
}

#[test]
fn the_cap_stops_adding() {
    let dir = tempfile::tempdir().unwrap();
    let cap = 3 * BLOCK as u64;
    let s = open(dir.path(), cap);
    s.put(&[(key(1, 0), &block(1)), (key(1, 1), &block(2))]);
    s.put(&[(key(2, 0), &block(3)), (key(2, 1), &block(4))]);
    let st = s.stats();
    assert_eq!((st.entries, st.data_bytes, st.adding), (3, cap, false));
    s.put(&[(key(3, 0), &block(5))]);
    assert_eq!(s.stats().entries, 3);
    assert_eq!(read(&s, &key(2, 0)), Some(block(3)));
    assert_eq!(read(&s, &key(2, 1)), None);
}

#[test]
fn chunk_edges_have_a_reserve_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let b = BLOCK as u64;
    let (cap, reserve) = (4 * b, 2 * b);
    {
        let s = BlockStore::open_reserving(dir.path(), cap, reserve, None)
            .unwrap()
            .unwrap();
        // Other blocks stop at cap - reserve.
        s.put(&[
            (key(1, 0), &block(1)),
            (key(1, 1), &block(2)),
            (key(1, 2), &block(3)),
        ]);
        let st = s.stats();
        assert_eq!((st.entries, st.data_bytes, st.adding), (2, 2 * b, false));
        s.put(&[(key(2, 1), &block(4))]);
        assert_eq!(s.stats().entries, 2);
        // Edges go on into the reserve, up to the cap.
        s.put_edges(&[
            (key(3, 0), &block(5)),
            (key(4, 0), &block(6)),
            (key(5, 0), &block(7)),
        ]);
        let st = s.stats();
        assert_eq!((st.entries, st.data_bytes), (4, cap));
        assert_eq!(read(&s, &key(4, 0)), Some(block(6)));
        assert_eq!(read(&s, &key(5, 0)), None);
        s.put_edges(&[(key(6, 0), &block(8))]);
        assert_eq!(s.stats().entries, 4);
    }
    // Full at open means full for the other blocks: with no hits it is kept
    // and served.
    let s = BlockStore::open_reserving(dir.path(), cap, reserve, None)
        .unwrap()
        .unwrap();
    assert_eq!(s.stats().entries, 4);
    assert_eq!(read(&s, &key(1, 1)), Some(block(2)));
    assert_eq!(read(&s, &key(3, 0)), Some(block(5)));
}

#[test]
fn a_locked_store_is_not_opened() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path(), DEFAULT_CAP_BYTES);
    assert!(matches!(
        BlockStore::open(dir.path(), DEFAULT_CAP_BYTES, None),
        Ok(None)
    ));
    drop(first);
    assert!(matches!(
        BlockStore::open(dir.path(), DEFAULT_CAP_BYTES, None),
        Ok(Some(_))
    ));
}

#[test]
fn a_foreign_index_file_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(LOG_FILE), b"something else entirely").unwrap();
    let s = open(dir.path(), DEFAULT_CAP_BYTES);
    assert_eq!(s.stats().entries, 0);
    s.put(&[(key(1, 0), &block(1))]);
    drop(s);
    let s = open(dir.path(), DEFAULT_CAP_BYTES);
    assert_eq!(read(&s, &key(1, 0)), Some(block(1)));
}

/// Blocks of a full store of [`CAP_BLOCKS`]: key `(i, 0)` holds `block(i)`.
const CAP_BLOCKS: u8 = 10;
const CAP: u64 = CAP_BLOCKS as u64 * BLOCK as u64;

/// Fills a store to [`CAP`] in one run, reading its own blocks back (not
/// hits of loaded entries: they must not count).
fn fill(dir: &Path) {
    let s = open(dir, CAP);
    for i in 0..CAP_BLOCKS {
        s.put(&[(key(i, 0), &block(i))]);
        assert_eq!(read(&s, &key(i, 0)), Some(block(i)));
    }
    s.put(&[(key(CAP_BLOCKS, 0), &block(CAP_BLOCKS))]);
    let st = s.stats();
    assert_eq!((st.data_bytes, st.adding, st.reused), (CAP, false, 0));
}

/// A run over the full store of `dir` that reads (and so hits) `hit`.
fn run_hitting(dir: &Path, hit: &[u8]) {
    let s = open(dir, CAP);
    assert_eq!(s.stats().entries, u64::from(CAP_BLOCKS), "not kept");
    for &i in hit {
        assert_eq!(read(&s, &key(i, 0)), Some(block(i)));
    }
    assert_eq!(read(&s, &key(200, 0)), None);
    let distinct = hit.iter().collect::<std::collections::HashSet<_>>().len();
    assert_eq!(s.stats().reused, distinct as u64);
}

/// The keys (first digest byte) of the store's entries in record order,
/// each checked to read back exact.
fn entries_in_order(s: &BlockStore) -> Vec<u8> {
    let mut slots: Vec<(u64, BlockKey)> = s
        .map
        .read()
        .unwrap()
        .iter()
        .map(|(k, slot)| (slot.rec, *k))
        .collect();
    slots.sort_unstable_by_key(|(rec, _)| *rec);
    slots
        .into_iter()
        .map(|(_, k)| {
            assert_eq!(read(s, &k), Some(block(k.digest[0])));
            k.digest[0]
        })
        .collect()
}

#[test]
fn a_full_store_without_hits_is_kept_and_served() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let s = open(dir.path(), CAP);
    let st = s.stats();
    assert_eq!((st.entries, st.data_bytes, st.adding), (10, CAP, false));
    assert_eq!(entries_in_order(&s), (0..CAP_BLOCKS).collect::<Vec<_>>());
    // Nothing more is added.
    s.put(&[(key(50, 0), &block(50))]);
    assert_eq!((s.stats().entries, s.stats().recorded), (10, 0));
    assert_eq!(
        std::fs::metadata(dir.path().join(DATA_FILE)).unwrap().len(),
        CAP
    );
}

#[test]
fn a_full_store_compacts_to_the_blocks_the_previous_run_hit() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    run_hitting(dir.path(), &[7, 2, 5, 7]);
    let s = open(dir.path(), CAP);
    let st = s.stats();
    assert_eq!(
        (st.entries, st.data_bytes, st.adding),
        (3, 3 * BLOCK as u64, true)
    );
    // Recorded order, not hit order; the blocks still verify.
    assert_eq!(entries_in_order(&s), vec![2, 5, 7]);
    assert_eq!(read(&s, &key(3, 0)), None);
    assert_eq!(s.stats().bad, 0);
    // The new store takes appends after the kept blocks.
    s.put(&[(key(60, 0), &block(60))]);
    drop(s);
    for name in [DATA_TMP, LOG_TMP, DATA_NEXT, LOG_NEXT] {
        assert!(!dir.path().join(name).exists(), "{name} left");
    }
    let s = open(dir.path(), CAP);
    assert_eq!(entries_in_order(&s), vec![2, 5, 7, 60]);
}

#[test]
fn a_torn_or_garbled_hits_file_keeps_a_full_store() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    run_hitting(dir.path(), &[1, 4]);
    let path = dir.path().join(HITS_FILE);
    let good = std::fs::read(&path).unwrap();
    let mut garbled = good.clone();
    let last = garbled.len() - 6;
    garbled[last] ^= 0x10;
    for bad in [good[..good.len() - 3].to_vec(), garbled, b"junk".to_vec()] {
        std::fs::write(&path, &bad).unwrap();
        let s = open(dir.path(), CAP);
        assert_eq!(entries_in_order(&s), (0..CAP_BLOCKS).collect::<Vec<_>>());
        // This run hit everything but its hits file is garbled next time.
        drop(s);
    }
}

#[test]
fn hits_filling_most_of_the_cap_start_over() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    run_hitting(dir.path(), &[0, 1, 2, 3, 4, 5, 6, 7, 8]);
    let s = open(dir.path(), CAP);
    let st = s.stats();
    assert_eq!((st.entries, st.data_bytes, st.adding), (0, 0, true));
    // This run's hits file names no entry yet (just its header).
    let hits = std::fs::metadata(dir.path().join(HITS_FILE)).unwrap().len();
    assert_eq!(hits, 32);
}

#[test]
fn a_full_store_with_an_unusable_index_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    std::fs::write(dir.path().join(LOG_FILE), b"something else entirely").unwrap();
    let s = open(dir.path(), CAP);
    let st = s.stats();
    assert_eq!((st.entries, st.data_bytes, st.adding), (0, 0, true));
}

#[test]
fn an_uncommitted_compaction_leaves_the_old_store() {
    for hit in [&[][..], &[3, 6][..]] {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path());
        run_hitting(dir.path(), hit);
        // Interrupted while writing, or between the two commit renames'
        // first one: temp files and a data file not committed.
        for name in [DATA_TMP, LOG_TMP, DATA_NEXT] {
            std::fs::write(dir.path().join(name), block(99)).unwrap();
        }
        let s = open(dir.path(), CAP);
        let want: Vec<u8> = if hit.is_empty() {
            (0..CAP_BLOCKS).collect()
        } else {
            hit.to_vec()
        };
        assert_eq!(entries_in_order(&s), want);
        for name in [DATA_TMP, LOG_TMP, DATA_NEXT] {
            assert!(!dir.path().join(name).exists(), "{name} left");
        }
    }
}

#[test]
fn a_committed_compaction_is_finished_at_open() {
    // `done` compacts to [3, 6]; `old` stays as it was before, and is given
    // the committed files in the states a crash can leave.
    let [done, old, old2] = [(); 3].map(|()| tempfile::tempdir().unwrap());
    // One key for the three (the files move between them).
    drop(open(done.path(), CAP));
    for d in [old.path(), old2.path()] {
        std::fs::copy(done.path().join(KEY_FILE), d.join(KEY_FILE)).unwrap();
    }
    for d in [done.path(), old.path(), old2.path()] {
        fill(d);
        run_hitting(d, &[3, 6]);
    }
    drop(open(done.path(), CAP));
    let new_data = std::fs::read(done.path().join(DATA_FILE)).unwrap();
    let new_log = std::fs::read(done.path().join(LOG_FILE)).unwrap();
    for d in [old.path(), old2.path()] {
        std::fs::remove_file(d.join(HITS_FILE)).unwrap();
    }
    // Both .next files renamed into place at open.
    std::fs::write(old.path().join(DATA_NEXT), &new_data).unwrap();
    std::fs::write(old.path().join(LOG_NEXT), &new_log).unwrap();
    let s = open(old.path(), CAP);
    assert_eq!(entries_in_order(&s), vec![3, 6]);
    drop(s);
    // Only the index left to rename: the data is already the new one.
    std::fs::write(old2.path().join(DATA_FILE), &new_data).unwrap();
    std::fs::write(old2.path().join(LOG_NEXT), &new_log).unwrap();
    let s = open(old2.path(), CAP);
    assert_eq!(entries_in_order(&s), vec![3, 6]);
    assert!(!old2.path().join(LOG_NEXT).exists());
}

/// The store of one repository in `dir`: each directory has a key of its
/// own (its key file).
fn open_keyed(dir: &Path) -> BlockStore {
    open(dir, DEFAULT_CAP_BYTES)
}

#[test]
fn a_planted_store_is_refused_and_blocks_are_not_stored_in_the_clear() {
    let victim = tempfile::tempdir().unwrap();
    let attacker = tempfile::tempdir().unwrap();
    {
        let s = open_keyed(victim.path());
        s.put(&[(key(1, 0), &block(1))]);
    }
    let data = std::fs::read(victim.path().join(DATA_FILE)).unwrap();
    assert!(
        !data.windows(64).any(|w| w == &block(1)[..64]),
        "the guest's bytes are stored in the clear"
    );
    // Whoever can write the store but has not the repository's key makes a
    // store of its own mapping the same chunk block to bytes of its choice,
    // and puts its files in place of the victim's.
    {
        let s = open_keyed(attacker.path());
        s.put(&[(key(1, 0), &block(66)), (key(2, 0), &block(67))]);
    }
    for f in [DATA_FILE, LOG_FILE] {
        std::fs::copy(attacker.path().join(f), victim.path().join(f)).unwrap();
    }
    let s = open_keyed(victim.path());
    assert_eq!(read(&s, &key(1, 0)), None, "a planted block was served");
    assert_eq!(read(&s, &key(2, 0)), None, "a planted block was served");
    assert_eq!(s.stats().bad, 2);
}

#[test]
fn the_store_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("blocks");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    {
        let s = open_keyed(&dir);
        s.put(&[(key(1, 0), &block(1))]);
    }
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
}
