//! The one way Lifeboat reads an ext2/3/4 volume whose journal needs
//! replay: [`replay`] walks the jbd2 journal of the volume (read-only, in
//! memory) and returns a [`JournalView`], a virtual disk serving the volume
//! as the kernel or `e2fsck` would leave it after replaying the journal:
//! each block the committed transactions log is served from its latest
//! copy in the journal, the superblock has `needs_recovery` cleared and the
//! journal superblock `s_start` = 0, so every reader above it (the kernel
//! mounting it `ro,noload`, `ext4-view` in the file browser, the scan's
//! userspace lister) sees one clean filesystem, the same one.
//!
//! ```text
//! volume (ReadDisk) ── replay ──> Replay { view: JournalView over the volume, problems }
//!                                   JournalView::read_at = volume bytes
//!                                     + latest journal copy of each logged block
//!                                     + superblock (RECOVER cleared) and
//!                                       journal superblock (s_start 0) patched
//! ```
//!
//! Hostile input: every byte of the volume, the journal included, was
//! written by the guest. Block numbers (the journal inode's map, every
//! descriptor tag) are checked against the filesystem's size; the walk is
//! bounded by the journal's length and the revoke records by a count;
//! memory is one small record per logged block. A journal that cannot be
//! replayed (damaged, external, fast-commit) gives a view with
//! `needs_recovery` cleared and nothing replayed, plus a problem saying
//! that the journal's content is not served: the readers still agree, on
//! the unreplayed volume. Nothing here panics on bad bytes and nothing is
//! ever written.
//!
//! Modules: `fs` (ext4 superblock, journal inode map), `log` (the jbd2
//! superblock and the log walk).

mod fs;
mod log;

pub use log::JournalCopy;

use crate::problem::VolumeProblem;
use crate::volumes::Volume;
use fs::{Ext4Sb, SB_CHECKSUM, SB_INCOMPAT, SB_LEN, SB_OFFSET, SB_RO_COMPAT};
use lifeboat_vdisk::{check_depth, check_range, ReadDisk, Result};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Why a journal could not be replayed (a message naming the block).
#[derive(Debug, Clone)]
pub(crate) struct Damage(String);

impl Damage {
    pub(crate) fn new(msg: String) -> Damage {
        Damage(msg)
    }
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What [`replay`] made of a volume.
pub struct Replay {
    /// `None`: nothing to replay (not ext2/3/4, or its journal is clean):
    /// read the volume as it is. `Some`: read the volume through this view.
    pub view: Option<Arc<JournalView>>,
    /// What was not replayed, and why: the whole journal (the view then
    /// serves the volume unreplayed) or single blocks whose copy fails its
    /// checksum.
    pub problems: Vec<VolumeProblem>,
}

impl Replay {
    /// The disk to read: the view, or `volume` itself when there is none.
    pub fn disk(&self, volume: &Arc<dyn ReadDisk>) -> Arc<dyn ReadDisk> {
        match &self.view {
            Some(v) => v.clone(),
            None => volume.clone(),
        }
    }
}

/// The volume `volume` (named `name` in problems) as a reader must see it:
/// with its journal replayed when its superblock says it needs recovery.
pub fn replay(name: &str, volume: Arc<dyn ReadDisk>) -> Replay {
    let clean = Replay {
        view: None,
        problems: Vec::new(),
    };
    let sb = match Ext4Sb::read(volume.as_ref()) {
        Ok(Some(sb)) if sb.needs_recovery && !sb.is_journal_device() => sb,
        Ok(_) => return clean,
        Err(d) => {
            // The superblock could not be read: the readers above fail on
            // it the same way.
            let _ = d;
            return clean;
        }
    };
    let unreplayed = |why: String| -> Replay {
        let problem = VolumeProblem::unserved(format!(
            "{name}: the ext4 journal needs replay but {why}; the volume is read without it, \
             so what only the journal holds is not served"
        ));
        match JournalView::new(name, volume.clone(), &sb, BTreeMap::new(), None, 0) {
            Ok(view) => Replay {
                view: Some(Arc::new(view)),
                problems: vec![problem],
            },
            Err(e) => Replay {
                view: None,
                problems: vec![problem, VolumeProblem::unserved(format!("{name}: {e}"))],
            },
        }
    };
    if !sb.has_journal {
        return unreplayed("the filesystem has no journal".to_string());
    }
    if sb.journal_inum == 0 {
        return unreplayed("it is an external journal, which is not replayed".to_string());
    }
    match replay_log(&sb, volume.as_ref()) {
        Err(Damage(why)) => unreplayed(format!("it cannot be replayed: {why}")),
        Ok((log, jsb_block)) => {
            let mut problems: Vec<VolumeProblem> = log
                .skipped
                .iter()
                .map(|s| VolumeProblem::unserved(format!("{name}: ext4 journal: {s}")))
                .collect();
            if let Some(e) = &log.ended {
                problems.push(VolumeProblem::note(format!("{name}: ext4 journal: {e}")));
            }
            match JournalView::new(
                name,
                volume.clone(),
                &sb,
                log.copies,
                Some(jsb_block),
                log.transactions,
            ) {
                Ok(view) => Replay {
                    view: Some(Arc::new(view)),
                    problems,
                },
                Err(e) => unreplayed(format!("it cannot be served: {e}")),
            }
        }
    }
}

/// Puts every volume of `volumes` whose ext4 journal needs replay behind
/// its [`JournalView`] (its `disk` becomes the view, and `contiguous`
/// false: its bytes are no longer a window of its disk), adding what could
/// not be replayed to `problems`. LVM physical volumes are left alone.
/// Returns the names of the volumes now read through a view.
pub fn replay_volumes(volumes: &mut [Volume], problems: &mut Vec<VolumeProblem>) -> Vec<String> {
    let mut replayed = Vec::new();
    for v in volumes.iter_mut().filter(|v| v.type_hint != "lvm2-pv") {
        let r = replay(&v.name, v.disk.clone());
        problems.extend(r.problems);
        if let Some(view) = r.view {
            v.disk = view;
            v.contiguous = false;
            replayed.push(v.name.clone());
        }
    }
    replayed
}

/// Walks the journal; also returns the filesystem block of the journal
/// superblock.
fn replay_log(
    sb: &Ext4Sb,
    vol: &dyn ReadDisk,
) -> std::result::Result<(log::LogReplay, u64), Damage> {
    let map = sb.journal_map(vol)?;
    let jsb_block = map
        .get(0)
        .ok_or_else(|| Damage::new("journal block 0 is not mapped".to_string()))?;
    let mut block = vec![0u8; sb.block_size as usize];
    sb.read_block(vol, jsb_block, &mut block)
        .map_err(|Damage(e)| Damage::new(format!("journal superblock: {e}")))?;
    let jsb = log::Jsb::parse(&block, sb.block_size, &map)?;
    let replay = log::walk(sb, vol, &map, &jsb)?;
    Ok((replay, jsb_block))
}

/// An ext2/3/4 volume with its journal replayed, read-only (see the module
/// doc).
pub struct JournalView {
    base: Arc<dyn ReadDisk>,
    name: String,
    block_size: u64,
    copies: BTreeMap<u64, JournalCopy>,
    /// (volume byte, bytes) laid over everything else: the superblock and
    /// the journal superblock as a clean filesystem has them.
    patches: Vec<(u64, Vec<u8>)>,
    transactions: u32,
}

impl JournalView {
    fn new(
        name: &str,
        base: Arc<dyn ReadDisk>,
        sb: &Ext4Sb,
        copies: BTreeMap<u64, JournalCopy>,
        jsb_block: Option<u64>,
        transactions: u32,
    ) -> Result<JournalView> {
        check_depth(&format!("journal replay of {name}"), base.as_ref())?;
        let mut view = JournalView {
            base,
            name: name.to_string(),
            block_size: sb.block_size,
            copies,
            patches: Vec::new(),
            transactions,
        };
        // The superblock as replayed, with needs_recovery cleared.
        let mut s = vec![0u8; SB_LEN];
        view.read_at(&mut s, SB_OFFSET)?;
        let incompat = le_u32(&s, SB_INCOMPAT) & !fs::INCOMPAT_RECOVER;
        s[SB_INCOMPAT..SB_INCOMPAT + 4].copy_from_slice(&incompat.to_le_bytes());
        if le_u32(&s, SB_RO_COMPAT) & fs::RO_COMPAT_METADATA_CSUM != 0 {
            let c = crc32c_raw(!0, &s[..SB_CHECKSUM]);
            s[SB_CHECKSUM..SB_CHECKSUM + 4].copy_from_slice(&c.to_le_bytes());
        }
        // The journal superblock with an empty log.
        let mut jpatch = None;
        if let Some(b) = jsb_block {
            let at = b * sb.block_size;
            let mut j = vec![0u8; log::JSB_LEN];
            view.read_at(&mut j, at)?;
            if be_u32(&j, 0) == log::JBD2_MAGIC {
                j[log::JSB_START..log::JSB_START + 4].fill(0);
                let csum = be_u32(&j, 0x28) & 0x18 != 0 && be_u32(&j, 4) == 4;
                if csum {
                    j[log::JSB_CHECKSUM..log::JSB_CHECKSUM + 4].fill(0);
                    let c = crc32c_raw(!0, &j);
                    j[log::JSB_CHECKSUM..log::JSB_CHECKSUM + 4].copy_from_slice(&c.to_be_bytes());
                }
                jpatch = Some((at, j));
            }
        }
        view.patches.push((SB_OFFSET, s));
        view.patches.extend(jpatch);
        Ok(view)
    }

    /// Committed transactions replayed.
    pub fn transactions(&self) -> u32 {
        self.transactions
    }

    /// The filesystem block size.
    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    /// Filesystem blocks served from the journal, each with where its copy
    /// lies.
    pub fn copies(&self) -> &BTreeMap<u64, JournalCopy> {
        &self.copies
    }

    /// The volume byte ranges served other than from the volume's own
    /// bytes at that place (journal copies, the patched superblocks),
    /// sorted and merged.
    pub fn replaced_ranges(&self) -> Vec<std::ops::Range<u64>> {
        let bs = self.block_size;
        let mut all: Vec<std::ops::Range<u64>> = self
            .copies
            .keys()
            .map(|b| b * bs..(b + 1) * bs)
            .chain(self.patches.iter().map(|(at, p)| *at..at + p.len() as u64))
            .collect();
        all.sort_by_key(|r| r.start);
        let mut out: Vec<std::ops::Range<u64>> = Vec::with_capacity(all.len());
        for r in all {
            match out.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => out.push(r),
            }
        }
        out
    }
}

impl ReadDisk for JournalView {
    fn size(&self) -> u64 {
        self.base.size()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(&|| self.describe(), offset, buf.len() as u64, self.size())?;
        self.base.read_at(buf, offset)?;
        if buf.is_empty() {
            return Ok(());
        }
        let end = offset + buf.len() as u64;
        let bs = self.block_size;
        let (first, last) = (offset / bs, (end - 1) / bs);
        let mut copy = Vec::new();
        for (&block, c) in self.copies.range(first..=last) {
            copy.resize(bs as usize, 0);
            self.base.read_at(&mut copy, c.block * bs)?;
            if c.escaped {
                copy[..4].copy_from_slice(&log::JBD2_MAGIC.to_be_bytes());
            }
            lay(buf, offset, block * bs, &copy);
        }
        for (at, p) in &self.patches {
            lay(buf, offset, *at, p);
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("{} with its ext4 journal replayed", self.name)
    }

    fn depth(&self) -> u32 {
        self.base.depth() + 1
    }
}

/// Copies the part of `src` (which starts at volume byte `src_at`) that
/// overlaps `buf` (which starts at `buf_at`).
fn lay(buf: &mut [u8], buf_at: u64, src_at: u64, src: &[u8]) {
    let start = buf_at.max(src_at);
    let end = (buf_at + buf.len() as u64).min(src_at + src.len() as u64);
    if start >= end {
        return;
    }
    let (b, s, n) = (
        (start - buf_at) as usize,
        (start - src_at) as usize,
        (end - start) as usize,
    );
    buf[b..b + n].copy_from_slice(&src[s..s + n]);
}

/// The kernel's `crc32c(seed, data)` (no inversions), as ext4 and jbd2
/// keep it.
pub(crate) fn crc32c_raw(seed: u32, data: &[u8]) -> u32 {
    !crc32c::crc32c_append(!seed, data)
}

pub(crate) fn le_u16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}

pub(crate) fn le_u32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

pub(crate) fn be_u16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_be_bytes([s[0], s[1]]))
}

pub(crate) fn be_u32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_vdisk::MemDisk;

    #[test]
    fn lay_copies_only_the_overlap() {
        let mut buf = [0u8; 8];
        lay(&mut buf, 100, 96, &[1, 2, 3, 4, 5, 6]);
        assert_eq!(buf, [5, 6, 0, 0, 0, 0, 0, 0]);
        lay(&mut buf, 100, 106, &[7, 8, 9]);
        assert_eq!(buf, [5, 6, 0, 0, 0, 0, 7, 8]);
        lay(&mut buf, 100, 200, &[1]);
        assert_eq!(buf, [5, 6, 0, 0, 0, 0, 7, 8]);
    }

    #[test]
    fn a_volume_too_small_or_without_ext4_is_read_as_it_is() {
        for len in [0, 100, 4096] {
            let r = replay("v", Arc::new(MemDisk::new("m", vec![0; len])));
            assert!(r.view.is_none() && r.problems.is_empty());
        }
        // ext4 magic, needs_recovery, no journal: refused with a problem,
        // the view clears needs_recovery.
        let mut b = vec![0u8; 64 << 10];
        b[1024 + 0x38..1024 + 0x3A].copy_from_slice(&0xEF53u16.to_le_bytes());
        b[1024 + 0x04..1024 + 0x08].copy_from_slice(&64u32.to_le_bytes());
        b[1024 + 0x60..1024 + 0x64].copy_from_slice(&4u32.to_le_bytes());
        let r = replay("disk0p1", Arc::new(MemDisk::new("m", b)));
        assert_eq!(r.problems.len(), 1);
        assert!(
            r.problems[0].message.contains("disk0p1")
                && r.problems[0].message.contains("no journal")
        );
        let mut sb = [0u8; 4];
        r.view.unwrap().read_at(&mut sb, 1024 + 0x60).unwrap();
        assert_eq!(u32::from_le_bytes(sb), 0);
    }
}
