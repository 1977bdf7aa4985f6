//! The byte plumbing under the NTFS reader: [`VolumeIo`], the `Read +
//! Seek` cursor the `ntfs` crate wants, over a `ReadDisk` (read-only, every
//! offset checked; a read past the end of the volume is an error, not a
//! short read); and [`initialized_size`], which the crate does not expose.
//!
//! Initialized size: a non-resident `$DATA` records its data size and the
//! size of its initialized part (the valid data length). Bytes past the
//! initialized size read as zeros whatever the clusters hold (Windows
//! leaves them stale after `SetEndOfFile`/`SetFileValidData`). The crate
//! reads the clusters, so the field is read here from the raw MFT record
//! (update sequence fixups applied), at offset 0x38 of the attribute.

use crate::error::repo_damage;
use lifeboat_vdisk::ReadDisk;
use ntfs::{NtfsAttribute, NtfsError, NtfsFile};
use std::io::{self, Read, Seek, SeekFrom};

/// A read-only cursor over a volume.
pub(crate) struct VolumeIo<'d> {
    disk: &'d dyn ReadDisk,
    pos: u64,
    /// How the last read failed (`None` when it succeeded).
    failed: Option<FailedRead>,
}

/// A failed read, kept for the panic boundary (`guard`).
pub(crate) struct FailedRead {
    pub(crate) detail: String,
    /// True when the cause is a missing or corrupt repository chunk.
    pub(crate) damaged: bool,
}

impl<'d> VolumeIo<'d> {
    pub(crate) fn new(disk: &'d dyn ReadDisk) -> VolumeIo<'d> {
        VolumeIo {
            disk,
            pos: 0,
            failed: None,
        }
    }

    /// How the last read failed, if it did.
    pub(crate) fn take_failed_read(&mut self) -> Option<FailedRead> {
        self.failed.take()
    }

    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.seek(SeekFrom::Start(offset))?;
        self.read_exact(buf)
    }
}

impl Read for VolumeIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.failed = None;
        if buf.is_empty() {
            return Ok(0);
        }
        let size = self.disk.size();
        let end = self.pos.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > size) {
            let detail = format!(
                "read of {} bytes at offset {} goes beyond the end of the volume ({size} bytes)",
                buf.len(),
                self.pos
            );
            self.failed = Some(FailedRead {
                detail: detail.clone(),
                damaged: false,
            });
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, detail));
        }
        if let Err(e) = self.disk.read_at(buf, self.pos) {
            self.failed = Some(FailedRead {
                detail: e.to_string(),
                damaged: repo_damage(&e),
            });
            return Err(io::Error::other(e));
        }
        self.pos = end.unwrap_or(size);
        Ok(buf.len())
    }
}

impl Seek for VolumeIo<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.disk.size().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek outside the range of the volume",
            )
        })?;
        Ok(self.pos)
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// Applies the update sequence fixups of one multi-sector record in place.
fn fixup(rec: &mut [u8]) -> Result<(), String> {
    if rec.get(..4) != Some(b"FILE".as_slice()) {
        return Err("no FILE signature".to_string());
    }
    let bad = || "bad update sequence array".to_string();
    let usa = usize::from(u16_at(rec, 4).ok_or_else(bad)?);
    let count = usize::from(u16_at(rec, 6).ok_or_else(bad)?);
    let usn = u16_at(rec, usa).ok_or_else(bad)?;
    for i in 1..count {
        let tail = i.checked_mul(512).and_then(|e| e.checked_sub(2));
        let tail = tail.ok_or_else(bad)?;
        let fix = u16_at(rec, usa + 2 * i).ok_or_else(bad)?;
        if u16_at(rec, tail) != Some(usn) {
            return Err(format!("update sequence mismatch in sector {}", i - 1));
        }
        if let Some(s) = rec.get_mut(tail..tail + 2) {
            s.copy_from_slice(&fix.to_le_bytes());
        }
    }
    Ok(())
}

/// Why [`initialized_size`] failed.
pub(crate) enum InitSizeError {
    /// Reading the MFT record failed (keeps the disk's error and so its
    /// damage flag).
    Read(NtfsError),
    /// The record does not hold the attribute as expected.
    Corrupt(String),
}

impl From<&str> for InitSizeError {
    fn from(detail: &str) -> Self {
        InitSizeError::Corrupt(detail.to_string())
    }
}

/// The initialized size of the non-resident `attr` (a `$DATA` of `file`
/// or of one of its extension records), clamped to its data size.
pub(crate) fn initialized_size(
    io: &mut VolumeIo<'_>,
    file: &NtfsFile<'_>,
    attr: &NtfsAttribute<'_, '_>,
) -> Result<u64, InitSizeError> {
    let data_size = attr.value_length();
    let at = attr
        .position()
        .value()
        .ok_or("the $DATA attribute has no position")?
        .get();
    let rs = u64::from(file.ntfs().file_record_size());
    // The record holding the attribute: the file's own, or (for an
    // attribute list) an extension record, aligned to the record size.
    let own = file.position().value().map(|p| p.get());
    let mut candidates = Vec::new();
    if let Some(p) = own.filter(|p| at >= *p && at - p < rs) {
        candidates.push(p);
    }
    candidates.push(at - at % rs);
    for start in candidates {
        let mut rec = vec![0u8; rs as usize];
        io.read_exact_at(&mut rec, start)
            .map_err(|e| InitSizeError::Read(NtfsError::Io(e)))?;
        if fixup(&mut rec).is_err() {
            continue;
        }
        let off = usize::try_from(at - start).map_err(|e| InitSizeError::Corrupt(e.to_string()))?;
        let ty = rec.get(off..off + 4);
        if ty != Some(0x80u32.to_le_bytes().as_slice()) || rec.get(off + 8) != Some(&1) {
            continue;
        }
        if u64_at(&rec, off + 0x30) != Some(data_size) {
            continue;
        }
        let init = u64_at(&rec, off + 0x38).ok_or("truncated $DATA attribute header")?;
        return Ok(init.min(data_size));
    }
    Err(InitSizeError::Corrupt(format!(
        "cannot find the MFT record of the $DATA attribute at byte {at}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_vdisk::MemDisk;

    #[test]
    fn cursor_refuses_reads_past_the_end() {
        let disk = MemDisk::new("mem", (0..100u8).collect());
        let mut io = VolumeIo::new(&disk);
        let mut b = [0u8; 10];
        io.seek(SeekFrom::Start(90)).unwrap();
        io.read_exact(&mut b).unwrap();
        assert_eq!(b[0], 90);
        let e = io.read(&mut b).unwrap_err().to_string();
        assert!(e.contains("beyond the end of the volume"), "{e}");
        assert!(io.seek(SeekFrom::Current(-1000)).is_err());
        assert_eq!(io.seek(SeekFrom::End(-1)).unwrap(), 99);
    }

    #[test]
    fn fixups_restore_sector_tails() {
        let mut rec = vec![0u8; 1024];
        rec[..4].copy_from_slice(b"FILE");
        rec[4..6].copy_from_slice(&48u16.to_le_bytes());
        rec[6..8].copy_from_slice(&3u16.to_le_bytes());
        rec[48..50].copy_from_slice(&[7, 7]);
        rec[50..54].copy_from_slice(&[1, 2, 3, 4]);
        rec[510..512].copy_from_slice(&[7, 7]);
        rec[1022..1024].copy_from_slice(&[7, 7]);
        let mut bad = rec.clone();
        fixup(&mut rec).unwrap();
        assert_eq!(
            (&rec[510..512], &rec[1022..1024]),
            (&[1, 2][..], &[3, 4][..])
        );
        bad[1022] = 0;
        assert!(fixup(&mut bad)
            .unwrap_err()
            .contains("mismatch in sector 1"));
        assert!(fixup(&mut [0u8; 3]).is_err());
    }
}
