//! Journal replay (`lifeboat_formats::ext4_journal`) against `e2fsck` as
//! the oracle, on filesystems whose journal the kernel wrote (see
//! `lifeboat_testsupport::journal`): with and without journal checksums
//! (csum v3 with 64-bit tags; no checksums with 32-bit tags) and ext3's
//! block-mapped journal inode. The replayed view must hold the same bytes
//! as `e2fsck -E journal_only` leaves, be a clean filesystem to `e2fsck
//! -fn`, and show the file that only the journal holds. Hostile journals
//! (a descriptor naming a block past the filesystem, a log that never
//! commits and runs round the journal, a journal longer than its inode, a
//! log wrapping round the end) fall back or replay as they must, never
//! hang or panic.

use lifeboat_formats::ext4_journal::{replay, JournalView};
use lifeboat_testsupport::{
    ext4_journal_only, output, patch_file, require_root, run_stdout, serial, tool, JOURNAL_MARKER,
    JOURNAL_ONLY_FILE,
};
use lifeboat_vdisk::{FileDisk, ReadDisk};
use std::path::Path;
use std::sync::Arc;

const SIZE: u64 = 64 << 20;
const BS: usize = 4096;
const NO_CSUM: &[&str] = &["-O", "^metadata_csum,^64bit"];

fn open(image: &Path) -> Arc<dyn ReadDisk> {
    Arc::new(FileDisk::open(image).unwrap())
}

fn bytes_of(view: &JournalView) -> Vec<u8> {
    let mut all = vec![0u8; view.size() as usize];
    view.read_at(&mut all, 0).unwrap();
    all
}

fn debugfs(image: &Path, cmd: &str) -> String {
    run_stdout(tool("debugfs", "e2fsprogs").args(["-R", cmd]).arg(image))
}

/// Journal block -> filesystem block, from `debugfs stat <8>`.
fn journal_blocks(image: &Path) -> Vec<u64> {
    let stat = debugfs(image, "stat <8>");
    let mut map = Vec::new();
    let text = stat
        .split_once("EXTENTS:")
        .or_else(|| stat.split_once("BLOCKS:"))
        .expect("debugfs lists the journal's blocks")
        .1;
    for run in text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|s| s.starts_with('('))
    {
        let (logical, physical) = run.split_once("):").unwrap();
        let logical = logical.trim_start_matches('(');
        if logical.starts_with("IND") || logical.starts_with("DIND") || logical.starts_with("TIND")
        {
            continue;
        }
        let range = |s: &str| -> (u64, u64) {
            match s.split_once('-') {
                Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                None => (s.parse().unwrap(), s.parse().unwrap()),
            }
        };
        let (l0, l1) = range(logical);
        let (p0, _) = range(physical);
        for i in 0..=(l1 - l0) {
            assert_eq!(
                map.len() as u64,
                l0 + i,
                "debugfs lists the journal in order"
            );
            map.push(p0 + i);
        }
    }
    map
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// Superblock fields e2fsck's journal replay updates besides what a clean
/// filesystem needs (times, write counters, checksum): masked when the
/// replayed superblock is compared with e2fsck's.
const SB_MASKED: &[(usize, usize)] = &[
    (0x2C, 8),  // s_mtime, s_wtime
    (0x34, 2),  // s_mnt_count
    (0x3A, 2),  // s_state
    (0x60, 4),  // s_feature_incompat: compared on its own below
    (0x178, 8), // s_kbytes_written
    (0x3FC, 4), // s_checksum
    (0x0C, 4),  // s_free_blocks_count_lo
    (0x10, 4),  // s_free_inodes_count
    (0x158, 4), // s_free_blocks_count_hi
];

fn masked_sb(block: &[u8], sb_at: usize) -> Vec<u8> {
    let mut s = block[sb_at..sb_at + 1024].to_vec();
    for &(at, n) in SB_MASKED {
        s[at..at + n].fill(0);
    }
    s
}

/// Compares the view with e2fsck's replay of a copy, block by block.
fn check_against_e2fsck(dir: &Path, image: &Path, name: &str) {
    let oracle = dir.join(format!("{name}.e2fsck"));
    std::fs::copy(image, &oracle).unwrap();
    let out = output(
        tool("e2fsck", "e2fsprogs")
            .args(["-p", "-E", "journal_only"])
            .arg(&oracle),
    );
    assert!(out.status.success(), "e2fsck -E journal_only: {out:?}");
    let r = replay(name, open(image));
    assert!(r.problems.is_empty(), "{name}: {:?}", r.problems);
    let view = r.view.expect("the journal needs replay");
    assert!(view.transactions() >= 4, "{name}: {}", view.transactions());
    let got = bytes_of(&view);
    let want = std::fs::read(&oracle).unwrap();
    assert_eq!(got.len(), want.len());
    let journal_sb = journal_blocks(&oracle)[0] as usize;
    let mut differing = Vec::new();
    for (b, (g, w)) in got.chunks(BS).zip(want.chunks(BS)).enumerate() {
        if g == w {
            continue;
        }
        if b == 0 {
            assert_eq!(masked_sb(g, 1024), masked_sb(w, 1024), "{name}: superblock");
            assert_eq!(g[1024 + 0x60..1024 + 0x64], w[1024 + 0x60..1024 + 0x64]);
            assert_eq!(g[..1024], w[..1024]);
            assert_eq!(g[2048..], w[2048..]);
        } else if b == journal_sb {
            // e2fsck also moves s_sequence on; both empty the log.
            assert_eq!(be32(g, 0x1C), 0, "{name}: s_start");
            assert_eq!(be32(w, 0x1C), 0, "{name}: e2fsck's s_start");
            assert_eq!(g[..0x18], w[..0x18], "{name}: journal superblock");
            assert_eq!(g[0x20..0xFC], w[0x20..0xFC], "{name}: journal superblock");
        } else {
            differing.push(b);
        }
    }
    assert!(
        differing.is_empty(),
        "{name}: blocks differ from e2fsck's replay: {differing:?}"
    );

    // The replayed bytes are a clean filesystem holding the file.
    let replayed = dir.join(format!("{name}.replayed"));
    std::fs::write(&replayed, &got).unwrap();
    let fsck = output(tool("e2fsck", "e2fsprogs").arg("-fn").arg(&replayed));
    assert!(
        fsck.status.success(),
        "{name}: e2fsck -fn of the view: {fsck:?}"
    );
    let cat = debugfs(&replayed, &format!("cat {JOURNAL_ONLY_FILE}"));
    assert!(cat.contains(JOURNAL_MARKER), "{name}: {cat}");
}

#[test]
fn replay_gives_the_bytes_e2fsck_gives() {
    require_root("mount -o loop");
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    for (name, mkfs, opts) in [
        ("csum-v3", "mkfs.ext4", &[][..]),
        ("no-csum", "mkfs.ext4", NO_CSUM),
        ("ext3", "mkfs.ext3", &[][..]),
    ] {
        let image = dir.path().join(format!("{name}.img"));
        ext4_journal_only(&image, SIZE, mkfs, opts);
        check_against_e2fsck(dir.path(), &image, name);
    }
}

#[test]
fn a_clean_filesystem_and_other_volumes_are_read_as_they_are() {
    require_root("mount -o loop");
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("clean.img");
    ext4_journal_only(&image, SIZE, "mkfs.ext4", &[]);
    let out = output(tool("e2fsck", "e2fsprogs").arg("-fy").arg(&image));
    assert!(out.status.code().is_some_and(|c| c <= 1), "{out:?}");
    let r = replay("clean", open(&image));
    assert!(r.view.is_none() && r.problems.is_empty());
    let zeros = dir.path().join("zeros");
    std::fs::write(&zeros, vec![0u8; 1 << 20]).unwrap();
    let r = replay("zeros", open(&zeros));
    assert!(r.view.is_none() && r.problems.is_empty());
}

/// The journal position of the first descriptor block, from logdump.
fn first_descriptor(image: &Path) -> u64 {
    let log = debugfs(image, "logdump");
    let line = log
        .lines()
        .find(|l| l.contains("(descriptor block) at block"))
        .unwrap_or_else(|| panic!("no descriptor in logdump:\n{log}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Asserts the view serves the volume unreplayed (no /dir) but clean.
fn assert_unreplayed(dir: &Path, view: &JournalView, image: &Path) {
    let got = bytes_of(view);
    let orig = std::fs::read(image).unwrap();
    assert_eq!(got[..1024], orig[..1024]);
    assert_eq!(got[4096..], orig[4096..], "nothing replayed");
    let incompat = u32::from_le_bytes(got[1024 + 0x60..1024 + 0x64].try_into().unwrap());
    assert_eq!(incompat & 0x4, 0, "needs_recovery cleared");
    let f = dir.join("unreplayed.img");
    std::fs::write(&f, &got).unwrap();
    let ls = debugfs(&f, "ls -l /");
    assert!(ls.contains(" old") && !ls.contains(" dir"), "{ls}");
}

#[test]
fn a_descriptor_naming_a_block_past_the_filesystem_falls_back_unreplayed() {
    require_root("mount -o loop");
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("past.img");
    ext4_journal_only(&image, SIZE, "mkfs.ext4", NO_CSUM);
    let at = first_descriptor(&image);
    let phys = journal_blocks(&image)[at as usize] as usize;
    patch_file(&image, |b| {
        // The first tag's t_blocknr.
        b[phys * BS + 12..phys * BS + 16].copy_from_slice(&0x00F0_0000u32.to_be_bytes());
    });
    let r = replay("disk0p1", open(&image));
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    let p = &r.problems[0];
    assert!(p.kind.leaves_data_unserved());
    for word in [
        "disk0p1",
        &format!("journal block {at}"),
        "block 15728640",
        "past the filesystem",
        "not served",
    ] {
        assert!(p.message.contains(word), "{word:?} in {p}");
    }
    assert_unreplayed(dir.path(), r.view.as_ref().unwrap(), &image);
}

#[test]
fn a_log_that_never_commits_and_runs_round_the_journal_is_refused() {
    require_root("mount -o loop");
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("loop.img");
    ext4_journal_only(&image, SIZE, "mkfs.ext4", NO_CSUM);
    let map = journal_blocks(&image);
    patch_file(&image, |b| {
        let jsb = map[0] as usize * BS;
        let (first, maxlen) = (be32(b, jsb + 0x14) as usize, be32(b, jsb + 0x10) as usize);
        let seq = be32(b, jsb + 0x18);
        b[jsb + 0x1C..jsb + 0x20].copy_from_slice(&(first as u32).to_be_bytes());
        // Descriptor, data, descriptor, data... all the same transaction,
        // all the way round: without a bound a walk never ends.
        for (i, &phys) in map[first..maxlen].iter().enumerate() {
            let at = phys as usize * BS;
            let blk = &mut b[at..at + BS];
            blk.fill(0);
            if i % 2 == 0 {
                blk[0..4].copy_from_slice(&0xC03B_3998u32.to_be_bytes());
                blk[4..8].copy_from_slice(&1u32.to_be_bytes());
                blk[8..12].copy_from_slice(&seq.to_be_bytes());
                blk[12..16].copy_from_slice(&100u32.to_be_bytes());
                // t_flags: LAST_TAG | SAME_UUID.
                blk[18..20].copy_from_slice(&0x000Au16.to_be_bytes());
            }
        }
    });
    let started = std::time::Instant::now();
    let r = replay("disk0", open(&image));
    assert!(started.elapsed().as_secs() < 30);
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    assert!(
        r.problems[0]
            .message
            .contains("runs all the way round the journal"),
        "{}",
        r.problems[0]
    );
    assert_unreplayed(dir.path(), r.view.as_ref().unwrap(), &image);
}

#[test]
fn a_journal_longer_than_its_inode_is_refused() {
    require_root("mount -o loop");
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("short.img");
    ext4_journal_only(&image, SIZE, "mkfs.ext4", NO_CSUM);
    let map = journal_blocks(&image);
    let jsb = map[0] as usize * BS;
    patch_file(&image, |b| {
        let maxlen = be32(b, jsb + 0x10);
        b[jsb + 0x10..jsb + 0x14].copy_from_slice(&(maxlen + 500).to_be_bytes());
    });
    let r = replay("disk0", open(&image));
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    assert!(
        r.problems[0].message.contains("truncated"),
        "{}",
        r.problems[0]
    );
    assert_unreplayed(dir.path(), r.view.as_ref().unwrap(), &image);
}

#[test]
fn a_log_wrapping_round_the_end_of_the_journal_replays_the_same() {
    require_root("mount -o loop");
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("wrap.img");
    ext4_journal_only(&image, SIZE, "mkfs.ext4", NO_CSUM);
    let straight = bytes_of(&replay("a", open(&image)).view.unwrap());
    let map = journal_blocks(&image);
    let in_journal: std::collections::HashSet<u64> = map.iter().copied().collect();
    patch_file(&image, |b| {
        let jsb = map[0] as usize * BS;
        let (first, maxlen) = (be32(b, jsb + 0x14) as usize, be32(b, jsb + 0x10) as usize);
        let start = be32(b, jsb + 0x1C) as usize;
        // Move the used area [start, start + 200) (the log is well under
        // 200 blocks, and the block after its end has no magic) so that
        // it begins 3 blocks before the end of the journal.
        let end = start + 200;
        let used: Vec<Vec<u8>> = (start..end)
            .map(|p| b[map[p] as usize * BS..][..BS].to_vec())
            .collect();
        let new_start = maxlen - 3;
        for (i, blk) in used.iter().enumerate() {
            let mut p = new_start + i;
            if p >= maxlen {
                p = first + (p - maxlen);
            }
            b[map[p] as usize * BS..][..BS].copy_from_slice(blk);
        }
        b[jsb + 0x1C..jsb + 0x20].copy_from_slice(&(new_start as u32).to_be_bytes());
    });
    let view = replay("b", open(&image)).view.unwrap();
    let wrapped = bytes_of(&view);
    for (i, (x, y)) in straight.chunks(BS).zip(wrapped.chunks(BS)).enumerate() {
        if i != 0 && in_journal.contains(&(i as u64)) {
            continue;
        }
        assert!(x == y, "block {i} differs once the log wraps");
    }
    let f = dir.path().join("wrapped.replayed");
    std::fs::write(&f, &wrapped).unwrap();
    assert!(debugfs(&f, &format!("cat {JOURNAL_ONLY_FILE}")).contains(JOURNAL_MARKER));
}
