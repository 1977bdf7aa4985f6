//! The jbd2 log: its superblock, and the walk that finds which copy of
//! which filesystem block the committed transactions leave, as the
//! kernel's and e2fsck's `do_one_pass` (fs/jbd2/recovery.c) decide it.
//!
//! Everything is big-endian. Block header (12 bytes): `h_magic`
//! 0xC03B3998, `h_blocktype` (1 descriptor, 2 commit, 3 superblock v1,
//! 4 superblock v2, 5 revoke), `h_sequence`. Superblock: `s_blocksize`
//! 0x0C, `s_maxlen` 0x10, `s_first` 0x14, `s_sequence` 0x18, `s_start`
//! 0x1C; v2 adds `s_feature_compat` 0x24, `s_feature_incompat` 0x28,
//! `s_uuid` 0x30, `s_checksum_type` 0x50, `s_checksum` 0xFC.
//! Descriptor tags: `t_blocknr` 0, then with csum v3 `t_flags` (u32) 4,
//! `t_blocknr_high` 8, `t_checksum` 12 (16 bytes); otherwise `t_checksum`
//! (u16) 4, `t_flags` (u16) 6, `t_blocknr_high` 8 when 64-bit (12 bytes,
//! 8 without 64-bit, plus 2 with csum v2: the kernel's
//! `journal_tag_bytes`); a tag without `SAME_UUID` is followed by a
//! 16-byte UUID. With csum v2/v3 a descriptor and a revoke block end in a
//! 4-byte checksum of the block; a commit block's checksum is `h_chksum[0]`
//! at 0x10. Revoke block: `r_count` 0x0C (bytes used, header included),
//! then 4- or 8-byte (64-bit) block numbers from 0x10.
//!
//! The walk: from `s_start` with sequence `s_sequence`, each block must
//! carry the journal magic and the expected sequence, else the log ends
//! there. Only transactions closed by a commit block whose checksum holds
//! are replayed. A block revoked by a transaction is skipped in that
//! transaction and every earlier one. The last copy of a block wins; a
//! copy whose checksum fails is skipped (the earlier one stays), as the
//! kernel does. Position wraps from `s_maxlen` back to `s_first`.

use super::fs::{BlockMap, Ext4Sb};
use super::{be_u16, be_u32, crc32c_raw, Damage};
use lifeboat_vdisk::ReadDisk;
use std::collections::{BTreeMap, HashMap};

pub(super) const JBD2_MAGIC: u32 = 0xC03B_3998;
const BT_DESCRIPTOR: u32 = 1;
const BT_COMMIT: u32 = 2;
const BT_SB_V1: u32 = 3;
const BT_SB_V2: u32 = 4;
const BT_REVOKE: u32 = 5;

const INCOMPAT_REVOKE: u32 = 0x1;
const INCOMPAT_64BIT: u32 = 0x2;
const INCOMPAT_ASYNC_COMMIT: u32 = 0x4;
const INCOMPAT_CSUM_V2: u32 = 0x8;
const INCOMPAT_CSUM_V3: u32 = 0x10;
const INCOMPAT_FAST_COMMIT: u32 = 0x20;
const INCOMPAT_KNOWN: u32 =
    INCOMPAT_REVOKE | INCOMPAT_64BIT | INCOMPAT_ASYNC_COMMIT | INCOMPAT_CSUM_V2 | INCOMPAT_CSUM_V3;
/// `s_checksum_type` of crc32c.
const CHECKSUM_CRC32C: u8 = 4;

/// Revoke records kept at most (a real log holds a few hundred).
const MAX_REVOKES: usize = 1 << 20;

const FLAG_ESCAPE: u32 = 0x1;
const FLAG_SAME_UUID: u32 = 0x2;
const FLAG_LAST_TAG: u32 = 0x8;

pub(super) const JSB_START: usize = 0x1C;
pub(super) const JSB_CHECKSUM: usize = 0xFC;
pub(super) const JSB_LEN: usize = 1024;

/// The journal superblock.
#[derive(Debug)]
pub(super) struct Jsb {
    pub maxlen: u64,
    pub first: u64,
    pub sequence: u32,
    pub start: u64,
    incompat: u32,
    /// The checksum seed (csum v2/v3).
    seed: Option<u32>,
}

impl Jsb {
    /// Parses the journal superblock (the first 1024 bytes of journal
    /// block 0) of a journal of `map.blocks` blocks of `block_size`.
    pub fn parse(b: &[u8], block_size: u64, map: &BlockMap) -> Result<Jsb, Damage> {
        let bad = |what: String| Damage::new(format!("journal superblock: {what}"));
        if be_u32(b, 0) != JBD2_MAGIC {
            return Err(bad("no jbd2 magic".to_string()));
        }
        let v2 = match be_u32(b, 4) {
            BT_SB_V1 => false,
            BT_SB_V2 => true,
            t => return Err(bad(format!("unknown superblock type {t}"))),
        };
        if u64::from(be_u32(b, 0x0C)) != block_size {
            return Err(bad(format!(
                "block size {} is not the filesystem's {block_size}",
                be_u32(b, 0x0C)
            )));
        }
        let maxlen = u64::from(be_u32(b, 0x10));
        let first = u64::from(be_u32(b, 0x14));
        if maxlen > map.blocks || !map.covers(maxlen) {
            return Err(bad(format!(
                "the journal is {maxlen} blocks long but its inode maps only {} (truncated)",
                map.blocks
            )));
        }
        if first == 0 || first >= maxlen {
            return Err(bad(format!("first log block {first} outside 1..{maxlen}")));
        }
        let start = u64::from(be_u32(b, JSB_START));
        if start != 0 && !(first..maxlen).contains(&start) {
            return Err(bad(format!("log start {start} outside {first}..{maxlen}")));
        }
        let incompat = if v2 { be_u32(b, 0x28) } else { 0 };
        if incompat & INCOMPAT_FAST_COMMIT != 0 {
            return Err(bad("fast commits are not replayed".to_string()));
        }
        if incompat & !INCOMPAT_KNOWN != 0 {
            return Err(bad(format!(
                "unknown incompatible features {:#x}",
                incompat & !INCOMPAT_KNOWN
            )));
        }
        let csum = incompat & (INCOMPAT_CSUM_V2 | INCOMPAT_CSUM_V3);
        if csum == INCOMPAT_CSUM_V2 | INCOMPAT_CSUM_V3 {
            return Err(bad("checksums v2 and v3 both on".to_string()));
        }
        let seed = if csum != 0 {
            if b[0x50] != CHECKSUM_CRC32C {
                return Err(bad(format!("checksum type {} is not crc32c", b[0x50])));
            }
            let mut copy = b[..JSB_LEN].to_vec();
            copy[JSB_CHECKSUM..JSB_CHECKSUM + 4].fill(0);
            if crc32c_raw(!0, &copy) != be_u32(b, JSB_CHECKSUM) {
                return Err(bad("checksum mismatch".to_string()));
            }
            Some(crc32c_raw(!0, &b[0x30..0x40]))
        } else {
            None
        };
        Ok(Jsb {
            maxlen,
            first,
            sequence: be_u32(b, 0x18),
            start,
            incompat,
            seed,
        })
    }

    fn has(&self, feature: u32) -> bool {
        self.incompat & feature != 0
    }

    /// Bytes of one descriptor tag (the kernel's `journal_tag_bytes`).
    fn tag_bytes(&self) -> usize {
        if self.has(INCOMPAT_CSUM_V3) {
            return 16;
        }
        let mut sz = 12;
        if self.has(INCOMPAT_CSUM_V2) {
            sz += 2;
        }
        if self.has(INCOMPAT_64BIT) {
            sz
        } else {
            sz - 4
        }
    }

    /// The checksum seed when the journal has block checksums.
    pub fn checksummed(&self) -> bool {
        self.seed.is_some()
    }

    /// True when a descriptor or revoke block's tail checksum holds (or
    /// the journal has no checksums).
    fn tail_ok(&self, block: &[u8]) -> bool {
        let Some(seed) = self.seed else { return true };
        let n = block.len();
        let mut copy = block.to_vec();
        copy[n - 4..].fill(0);
        crc32c_raw(seed, &copy) == be_u32(block, n - 4)
    }

    fn commit_ok(&self, block: &[u8]) -> bool {
        let Some(seed) = self.seed else { return true };
        let mut copy = block.to_vec();
        copy[0x10..0x14].fill(0);
        crc32c_raw(seed, &copy) == be_u32(block, 0x10)
    }

    fn data_ok(&self, block: &[u8], sequence: u32, tag_csum: u32) -> bool {
        let Some(seed) = self.seed else { return true };
        let c = crc32c_raw(crc32c_raw(seed, &sequence.to_be_bytes()), block);
        if self.has(INCOMPAT_CSUM_V3) {
            c == tag_csum
        } else {
            (c & 0xFFFF) == tag_csum
        }
    }
}

/// One block a transaction logs.
struct Logged {
    fs_block: u64,
    /// Its position in the journal.
    at: u64,
    escaped: bool,
    csum: u32,
}

/// A committed transaction.
struct Transaction {
    sequence: u32,
    logged: Vec<Logged>,
    revoked: Vec<u64>,
}

/// Where the replayed copy of a filesystem block lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalCopy {
    /// The filesystem block holding the copy (inside the journal).
    pub block: u64,
    /// The copy's first four bytes were the journal magic, stored as zero.
    pub escaped: bool,
}

/// What the walk found.
pub(super) struct LogReplay {
    pub copies: BTreeMap<u64, JournalCopy>,
    pub transactions: u32,
    /// Copies skipped (failed checksums), each naming its journal block.
    pub skipped: Vec<String>,
    /// Why the log ended early, when a commit block was damaged.
    pub ended: Option<String>,
}

/// `a` is later than `b` in the wrapping sequence space (`tid_gt`).
fn later(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// Walks the log of a journal (`jsb`, mapped by `map`) on `vol`.
pub(super) fn walk(
    sb: &Ext4Sb,
    vol: &dyn ReadDisk,
    map: &BlockMap,
    jsb: &Jsb,
) -> Result<LogReplay, Damage> {
    let bs = sb.block_size as usize;
    let read = |pos: u64, buf: &mut [u8]| -> Result<(), Damage> {
        let phys = map
            .get(pos)
            .ok_or_else(|| Damage::new(format!("journal block {pos} is not mapped")))?;
        sb.read_block(vol, phys, buf)
            .map_err(|e| Damage::new(format!("journal block {pos}: {e}")))
    };
    let wrap = |p: u64| {
        if p >= jsb.maxlen {
            jsb.first + (p - jsb.maxlen)
        } else {
            p
        }
    };
    let area = jsb.maxlen - jsb.first;
    let mut out = LogReplay {
        copies: BTreeMap::new(),
        transactions: 0,
        skipped: Vec::new(),
        ended: None,
    };
    if jsb.start == 0 {
        return Ok(out);
    }
    let mut pos = jsb.start;
    let mut walked = 0u64;
    let mut step = |pos: &mut u64| -> Result<u64, Damage> {
        walked += 1;
        if walked > area {
            return Err(Damage::new(format!(
                "journal block {pos}: the log runs all the way round the journal ({area} blocks) without ending",
                pos = *pos
            )));
        }
        let here = *pos;
        *pos = wrap(*pos + 1);
        Ok(here)
    };
    let mut committed: Vec<Transaction> = Vec::new();
    let mut tx = Transaction {
        sequence: jsb.sequence,
        logged: Vec::new(),
        revoked: Vec::new(),
    };
    let mut block = vec![0u8; bs];
    let mut revokes = 0usize;
    loop {
        let here = step(&mut pos)?;
        read(here, &mut block)?;
        if be_u32(&block, 0) != JBD2_MAGIC || be_u32(&block, 8) != tx.sequence {
            break;
        }
        match be_u32(&block, 4) {
            BT_DESCRIPTOR => {
                if !jsb.tail_ok(&block) {
                    // A stale block of an earlier use of the journal.
                    break;
                }
                let tag_bytes = jsb.tag_bytes();
                let end = bs - if jsb.checksummed() { 4 } else { 0 };
                let v3 = jsb.has(INCOMPAT_CSUM_V3);
                let mut at = 12;
                while at + tag_bytes <= end {
                    let t = &block[at..at + tag_bytes];
                    let flags = if v3 {
                        be_u32(t, 4)
                    } else {
                        u32::from(be_u16(t, 6))
                    };
                    let mut fs_block = u64::from(be_u32(t, 0));
                    if jsb.has(INCOMPAT_64BIT) {
                        fs_block |= u64::from(be_u32(t, 8)) << 32;
                    }
                    let csum = if v3 {
                        be_u32(t, 12)
                    } else {
                        u32::from(be_u16(t, 4))
                    };
                    if fs_block >= sb.blocks {
                        return Err(Damage::new(format!(
                            "journal block {here}: descriptor of transaction {} logs block {fs_block}, \
                             past the filesystem's {} blocks",
                            tx.sequence, sb.blocks
                        )));
                    }
                    let data_at = step(&mut pos)?;
                    tx.logged.push(Logged {
                        fs_block,
                        at: data_at,
                        escaped: flags & FLAG_ESCAPE != 0,
                        csum,
                    });
                    at += tag_bytes;
                    if flags & FLAG_SAME_UUID == 0 {
                        at += 16;
                    }
                    if flags & FLAG_LAST_TAG != 0 {
                        break;
                    }
                }
            }
            BT_COMMIT => {
                if !jsb.commit_ok(&block) {
                    out.ended = Some(format!(
                        "journal block {here}: the commit block of transaction {} fails its \
                         checksum; the log ends before it",
                        tx.sequence
                    ));
                    break;
                }
                let next = tx.sequence.wrapping_add(1);
                committed.push(std::mem::replace(
                    &mut tx,
                    Transaction {
                        sequence: next,
                        logged: Vec::new(),
                        revoked: Vec::new(),
                    },
                ));
            }
            BT_REVOKE => {
                if !jsb.tail_ok(&block) {
                    return Err(Damage::new(format!(
                        "journal block {here}: revoke block of transaction {} fails its checksum",
                        tx.sequence
                    )));
                }
                let count = be_u32(&block, 12) as usize;
                let limit = bs - if jsb.checksummed() { 4 } else { 0 };
                if !(16..=limit).contains(&count) {
                    return Err(Damage::new(format!(
                        "journal block {here}: revoke block says it holds {count} bytes of {limit}"
                    )));
                }
                let rsize = if jsb.has(INCOMPAT_64BIT) { 8 } else { 4 };
                revokes += (count - 16) / rsize;
                if revokes > MAX_REVOKES {
                    return Err(Damage::new(format!(
                        "journal block {here}: more than {MAX_REVOKES} revoke records"
                    )));
                }
                for r in block[16..count].chunks_exact(rsize) {
                    let b = if rsize == 8 {
                        (u64::from(be_u32(r, 0)) << 32) | u64::from(be_u32(r, 4))
                    } else {
                        u64::from(be_u32(r, 0))
                    };
                    tx.revoked.push(b);
                }
            }
            _ => break,
        }
    }
    // Revokes of every committed transaction, the latest for each block.
    let mut revoked: HashMap<u64, u32> = HashMap::new();
    for t in &committed {
        for &b in &t.revoked {
            let e = revoked.entry(b).or_insert(t.sequence);
            if later(t.sequence, *e) {
                *e = t.sequence;
            }
        }
    }
    for t in &committed {
        for l in &t.logged {
            if revoked
                .get(&l.fs_block)
                .is_some_and(|&r| !later(t.sequence, r))
            {
                continue;
            }
            let phys = map
                .get(l.at)
                .ok_or_else(|| Damage::new(format!("journal block {} is not mapped", l.at)))?;
            if jsb.checksummed() {
                read(l.at, &mut block)?;
                if !jsb.data_ok(&block, t.sequence, l.csum) {
                    out.skipped.push(format!(
                        "journal block {}: the copy of block {} in transaction {} fails its \
                         checksum, not replayed",
                        l.at, l.fs_block, t.sequence
                    ));
                    continue;
                }
            }
            out.copies.insert(
                l.fs_block,
                JournalCopy {
                    block: phys,
                    escaped: l.escaped,
                },
            );
        }
    }
    out.transactions = u32::try_from(committed.len()).unwrap_or(u32::MAX);
    Ok(out)
}
