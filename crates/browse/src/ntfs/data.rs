//! A file's unnamed `$DATA` as a map of extents, and [`DataReader`], which
//! streams it straight from the volume.
//!
//! Why not the crate's value reader: `ntfs` 0.4 picks the first `$DATA`
//! fragment its attribute iterator meets, and when the attribute list puts
//! the fragment at VCN 0 in the base record and later ones in extension
//! records (what ntfs-3g writes for a fragmented file), it starts from a
//! later fragment whose data size is 0: the file reads as empty. Here the
//! fragments are taken from the `$ATTRIBUTE_LIST` entries (or the single
//! `$DATA` of the base record), ordered by their lowest VCN, and each one's
//! data runs (decoded by the crate) become extents: (file offset, length,
//! volume offset or a hole). Sparse runs are holes; bytes past the
//! initialized size are zeros (see `io`).

use super::io::{initialized_size, InitSizeError};
use super::{ntfs_err, NtfsFs, VolumeIo};
use crate::error::repo_damage;
use crate::Error;
use ntfs::attribute_value::NtfsAttributeValue;
use ntfs::structured_values::NtfsAttributeList;
use ntfs::{
    NtfsAttribute, NtfsAttributeFlags, NtfsAttributeType, NtfsError, NtfsFile, NtfsReadSeek,
};
use std::io::{self, Read};

/// One fragment of a `$DATA` value: the record holding it and its
/// attribute instance there.
struct Fragment<'n> {
    vcn: u64,
    record: NtfsFile<'n>,
    instance: u16,
}

impl<'n> Fragment<'n> {
    fn attribute(&self) -> Result<NtfsAttribute<'n, '_>, NtfsError> {
        for attr in self.record.attributes_raw() {
            let attr = attr?;
            if attr.instance() == self.instance && attr.ty()? == NtfsAttributeType::Data {
                return Ok(attr);
            }
        }
        Err(NtfsError::AttributeNotFound {
            position: self.record.position(),
            ty: NtfsAttributeType::Data,
        })
    }
}

/// The fragments of `file`'s unnamed `$DATA`, by ascending VCN (empty
/// when it has none).
fn fragments<'n>(
    io: &mut VolumeIo<'_>,
    file: &NtfsFile<'n>,
) -> Result<Vec<Fragment<'n>>, NtfsError> {
    let mut list = None;
    let mut single = None;
    for attr in file.attributes_raw() {
        let attr = attr?;
        match attr.ty()? {
            NtfsAttributeType::AttributeList => {
                list = Some(attr.structured_value::<_, NtfsAttributeList>(io)?);
            }
            NtfsAttributeType::Data if attr.name_length() == 0 && single.is_none() => {
                single = Some(attr.instance());
            }
            _ => {}
        }
    }
    let Some(list) = list else {
        return Ok(single
            .map(|instance| Fragment {
                vcn: 0,
                record: file.clone(),
                instance,
            })
            .into_iter()
            .collect());
    };
    let mut out = Vec::new();
    let mut entries = list.entries();
    while let Some(entry) = entries.next(io) {
        let entry = entry?;
        if entry.ty()? != NtfsAttributeType::Data || entry.name_length() != 0 {
            continue;
        }
        let vcn = u64::try_from(entry.lowest_vcn().value()).unwrap_or(u64::MAX);
        let record = entry.to_file(file.ntfs(), io)?;
        out.push(Fragment {
            vcn,
            record,
            instance: entry.instance(),
        });
    }
    out.sort_by_key(|f| f.vcn);
    Ok(out)
}

/// The data size of `file` (0 without `$DATA`).
pub(crate) fn data_size(io: &mut VolumeIo<'_>, file: &NtfsFile<'_>) -> Result<u64, NtfsError> {
    match fragments(io, file)?.first() {
        Some(f) => Ok(f.attribute()?.value_length()),
        None => Ok(0),
    }
}

/// A run of the file: `len` bytes at file offset `start`, stored at
/// volume offset `disk` (`None`: a hole).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Extent {
    start: u64,
    len: u64,
    disk: Option<u64>,
}

/// Where the bytes of a file are.
enum Source {
    Resident(Vec<u8>),
    Extents(Vec<Extent>),
}

/// Streams one file; errors name the volume and path.
pub(crate) struct DataReader<'a> {
    fs: &'a NtfsFs,
    path: String,
    len: u64,
    initialized: u64,
    source: Source,
    pos: u64,
    /// Index of the extent holding `pos` (extents ascend).
    cur: usize,
}

impl<'a> DataReader<'a> {
    /// Maps `file`'s data; compressed and encrypted data are refused.
    pub(crate) fn open(
        fs: &'a NtfsFs,
        io: &mut VolumeIo<'_>,
        path: String,
        file: &NtfsFile<'_>,
        encrypted: bool,
    ) -> crate::Result<DataReader<'a>> {
        let err = |e| ntfs_err(&fs.volume, &path, e);
        let corrupt = |detail: String| Error::Corrupt {
            volume: fs.volume.clone(),
            path: path.clone(),
            fs: "ntfs",
            detail,
        };
        let frags = fragments(io, file).map_err(err)?;
        let (mut len, mut initialized) = (0, 0);
        let mut source = Source::Extents(Vec::new());
        let cluster = u64::from(fs.ntfs.cluster_size());
        let mut extents = Vec::new();
        for (n, frag) in frags.iter().enumerate() {
            let attr = frag.attribute().map_err(err)?;
            let flags = attr.flags();
            let how = if encrypted || flags.contains(NtfsAttributeFlags::ENCRYPTED) {
                Some("encrypted (EFS)")
            } else if flags.contains(NtfsAttributeFlags::COMPRESSED) {
                Some("NTFS-compressed (LZNT1)")
            } else {
                None
            };
            if let Some(how) = how {
                return Err(Error::Unsupported {
                    volume: fs.volume.clone(),
                    detail: format!("{path}: the file is {how}: reading it is not supported"),
                });
            }
            if n == 0 {
                len = attr.value_length();
                initialized = if attr.is_resident() {
                    len
                } else {
                    initialized_size(io, &frag.record, &attr).map_err(|e| match e {
                        InitSizeError::Read(e) => err(e),
                        InitSizeError::Corrupt(detail) => corrupt(detail),
                    })?
                };
            }
            let value = attr.value(io).map_err(err)?;
            match value {
                NtfsAttributeValue::Resident(mut v) if frags.len() == 1 => {
                    let mut bytes = vec![0u8; usize::try_from(v.len()).unwrap_or(0)];
                    v.read_exact(io, &mut bytes).map_err(err)?;
                    source = Source::Resident(bytes);
                }
                NtfsAttributeValue::NonResident(v) => {
                    let mut at = frag
                        .vcn
                        .checked_mul(cluster)
                        .ok_or_else(|| corrupt(format!("VCN {} is out of range", frag.vcn)))?;
                    let expected = extents.last().map_or(0, |e: &Extent| e.start + e.len);
                    if at != expected {
                        return Err(corrupt(format!(
                            "the $DATA fragment at byte {at} does not follow the one ending at {expected}"
                        )));
                    }
                    for run in v.data_runs() {
                        let run = run.map_err(err)?;
                        let len = run.allocated_size();
                        let disk = run.data_position().value().map(|p| p.get());
                        extents.push(Extent {
                            start: at,
                            len,
                            disk,
                        });
                        at = at
                            .checked_add(len)
                            .ok_or_else(|| corrupt("the data runs overflow".to_string()))?;
                    }
                }
                _ => {
                    return Err(corrupt(
                        "a resident $DATA fragment in an attribute list".to_string(),
                    ))
                }
            }
        }
        if let Source::Extents(e) = &mut source {
            *e = extents;
        }
        Ok(DataReader {
            fs,
            path,
            len,
            initialized,
            source,
            pos: 0,
            cur: 0,
        })
    }

    fn error(&self, detail: String, damaged: bool) -> io::Error {
        io::Error::other(Error::Io {
            volume: self.fs.volume.clone(),
            path: self.path.clone(),
            detail,
            damaged,
        })
    }
}

impl Read for DataReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(out.len());
        if want == 0 {
            return Ok(0);
        }
        let valid = self.initialized.saturating_sub(self.pos);
        let n = if valid == 0 {
            let dst = out.get_mut(..want).unwrap_or_default();
            dst.fill(0);
            want
        } else {
            let want = want.min(usize::try_from(valid).unwrap_or(usize::MAX));
            match &self.source {
                Source::Resident(bytes) => {
                    let from = usize::try_from(self.pos).unwrap_or(usize::MAX);
                    let src = bytes.get(from..).unwrap_or_default();
                    let n = want.min(src.len());
                    if n == 0 {
                        return Err(self.error("resident data shorter than its size".into(), false));
                    }
                    out[..n].copy_from_slice(&src[..n]);
                    n
                }
                Source::Extents(extents) => {
                    while extents
                        .get(self.cur)
                        .is_some_and(|e| e.start + e.len <= self.pos)
                    {
                        self.cur += 1;
                    }
                    let Some(ext) = extents.get(self.cur).filter(|e| e.start <= self.pos) else {
                        let detail = format!(
                            "no data run covers byte {} of a {}-byte file",
                            self.pos, self.len
                        );
                        return Err(self.error(detail, false));
                    };
                    let inside = self.pos - ext.start;
                    let in_ext = usize::try_from(ext.len - inside).unwrap_or(usize::MAX);
                    let n = want.min(in_ext);
                    let dst = out.get_mut(..n).unwrap_or_default();
                    match ext.disk {
                        None => dst.fill(0),
                        Some(disk) => {
                            let at = disk.checked_add(inside);
                            let end = at.and_then(|a| a.checked_add(n as u64));
                            let size = self.fs.disk.size();
                            match (at, end) {
                                (Some(at), Some(end)) if end <= size => {
                                    self.fs.disk.read_at(dst, at).map_err(|e| {
                                        let damaged = repo_damage(&e);
                                        self.error(e.to_string(), damaged)
                                    })?
                                }
                                _ => {
                                    let detail = format!(
                                        "a data run at volume byte {disk} goes beyond the end of the volume ({size} bytes)"
                                    );
                                    return Err(self.error(detail, false));
                                }
                            }
                        }
                    }
                    n
                }
            }
        };
        self.pos += n as u64;
        Ok(n)
    }
}
