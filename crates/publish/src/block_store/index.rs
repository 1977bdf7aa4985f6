//! The index file of a [`super::BlockStore`] (`blocks.idx`): the 80-byte
//! records naming each stored block (layout in the parent module's doc),
//! their encoding and their loading. A record's number is its position in
//! the file (0 for the first record after the magic); the hits file
//! (`hits.rs`) names entries by it.

use super::{BlockKey, Slot, BLOCK};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

pub(super) const MAGIC: &[u8; 16] = b"lifeboat-blocks2";
pub(super) const RECORD_LEN: usize = 80;

/// The records of an index file that point inside the data file.
pub(super) struct Parsed {
    /// Each key's slot (the last record of a key wins).
    pub map: HashMap<BlockKey, Slot>,
    /// Whole records in the file, good or bad: the number the next one gets.
    pub records: u64,
    /// Bytes of the file to keep: the magic and the whole records (0 when
    /// the file is absent or not a store index).
    pub keep: u64,
}

pub(super) fn encode(key: &BlockKey, slot: &Slot) -> [u8; RECORD_LEN] {
    let mut r = [0u8; RECORD_LEN];
    r[0..32].copy_from_slice(&key.digest);
    r[32..36].copy_from_slice(&key.block.to_le_bytes());
    r[36..44].copy_from_slice(&slot.pos.to_le_bytes());
    r[44..56].copy_from_slice(&slot.nonce);
    r[56..72].copy_from_slice(&slot.tag);
    let check = blake3::hash(&r[0..76]);
    r[76..80].copy_from_slice(&check.as_bytes()[0..4]);
    r
}

/// A record's key and slot (numbered `rec`), or `None` when its check fails.
fn decode(r: &[u8], rec: u64) -> Option<(BlockKey, Slot)> {
    let field = |a: usize, b: usize| r.get(a..b);
    let check = blake3::hash(field(0, 76)?);
    if field(76, 80)? != &check.as_bytes()[0..4] {
        return None;
    }
    Some((
        BlockKey {
            digest: field(0, 32)?.try_into().ok()?,
            block: u32::from_le_bytes(field(32, 36)?.try_into().ok()?),
        },
        Slot {
            pos: u64::from_le_bytes(field(36, 44)?.try_into().ok()?),
            nonce: field(44, 56)?.try_into().ok()?,
            tag: field(56, 72)?.try_into().ok()?,
            rec,
        },
    ))
}

/// True when `path` exists and does not start with this format's magic
/// (or a prefix of it) (an older store's, or something else): the store starts over.
pub(super) fn is_foreign(path: &Path) -> Result<bool> {
    let mut head = [0u8; 16];
    let n = match File::open(path) {
        Ok(f) => f.read_at(&mut head, 0).map_err(|e| Error::io(path, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(path, e)),
    };
    // A prefix of the magic alone is this format's, torn at creation.
    Ok(head.get(..n).is_some_and(|h| !MAGIC.starts_with(h)))
}

/// Reads the index at `path` and keeps the records whose block lies inside
/// a data file of `data_len` bytes; logs skipped records and torn bytes.
pub(super) fn parse(path: &Path, data_len: u64) -> Result<Parsed> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut parsed = Parsed {
        map: HashMap::new(),
        records: 0,
        keep: 0,
    };
    if let Some(body) = bytes.strip_prefix(MAGIC.as_slice()) {
        let whole = body.len() / RECORD_LEN * RECORD_LEN;
        parsed.keep = (MAGIC.len() + whole) as u64;
        let mut skipped = 0usize;
        for r in body.chunks_exact(RECORD_LEN) {
            let rec = parsed.records;
            parsed.records += 1;
            match decode(r, rec) {
                Some((key, slot))
                    if slot.pos.is_multiple_of(BLOCK as u64)
                        && slot
                            .pos
                            .checked_add(BLOCK as u64)
                            .is_some_and(|e| e <= data_len) =>
                {
                    parsed.map.insert(key, slot);
                }
                _ => skipped += 1,
            }
        }
        if skipped > 0 || whole != body.len() {
            eprintln!(
                "block store {}: {skipped} bad records skipped, {} torn bytes cut off",
                path.display(),
                body.len() - whole
            );
        }
    } else if !bytes.is_empty() {
        eprintln!(
            "block store {}: not a block store index, starting it over",
            path.display()
        );
    }
    Ok(parsed)
}

/// Loads the index at `path` (see [`parse`]), cuts off a torn last record
/// (or starts the file when it is absent or not a store index) and returns
/// it open with appends going after the last whole record.
pub(super) fn load(path: &Path, data_len: u64) -> Result<(Parsed, File)> {
    let mut parsed = parse(path, data_len)?;
    let mut log = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    log.set_len(parsed.keep).map_err(|e| Error::io(path, e))?;
    if parsed.keep == 0 {
        log.write_all_at(MAGIC, 0).map_err(|e| Error::io(path, e))?;
        parsed.keep = MAGIC.len() as u64;
    }
    std::io::Seek::seek(&mut log, std::io::SeekFrom::Start(parsed.keep))
        .map_err(|e| Error::io(path, e))?;
    Ok((parsed, log))
}
