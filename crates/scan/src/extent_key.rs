//! Extent keys: the identity of a file's bytes on a published restore point,
//! derived from its extent map and the repository chunk digests of the
//! disk under it, without reading the file.
//!
//! A volume served by a loop device at `offset` into a restore-point disk
//! file holds volume byte `p` at disk byte `offset + p`. For a file of
//! `size` bytes with extents (logical, physical, length, unwritten), the key
//! is BLAKE3 over:
//!
//! ```text
//! "lifeboat-extent-key-v1\0"  size:u64  extent count:u64
//! per extent: logical:u64 length:u64 unwritten:u8
//!   per chunk covering [offset + physical, offset + physical + length):
//!     1 + digest[32] (data chunk) | 0 (all-zero chunk)
//!     offset inside the chunk:u64  bytes taken from it:u64
//! ```
//!
//! (little-endian integers). The chunk digests are keyed BLAKE3 of the chunk
//! contents, so the same key means the same bytes at the same file offsets,
//! holes (zeros) included: the key can stand for the content in the
//! [`ScanCache`](crate::ScanCache). A file sharing a chunk with a changed
//! region of the disk gets a new key even if its own bytes did not change:
//! it is read again, which is conservative. Any extent outside the volume or
//! the disk gives no key (the caller reads the file).
//!
//! Against an older restore point's disk of the same layout (the *base*),
//! [`VolumeChunks::against`] gives the key the same extents have over the
//! base's digests (the *base key*: if the base scan cached a result under
//! it, the base file had exactly these extents and bytes) and the file
//! ranges whose chunk digests differ between base and new disk: outside
//! them the file's bytes are the same in both, which is what windowed
//! re-scans of local rules need (see [`crate::locality`]).

use std::ops::Range;

use crate::cache::ContentKey;
use crate::fiemap::FileExtent;
use crate::locality::merged;

/// Domain tag of extent keys.
const DOMAIN: &[u8] = b"lifeboat-extent-key-v1\0";

/// The chunk digests of one restore-point disk (`None` = all-zero chunk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskChunks {
    chunk_size: u64,
    disk_size: u64,
    digests: Vec<Option<[u8; 32]>>,
}

impl DiskChunks {
    /// The index of a disk; `None` when the digest count does not match
    /// the disk and chunk sizes (or the chunk size is 0).
    pub fn new(chunk_size: u32, disk_size: u64, digests: Vec<Option<[u8; 32]>>) -> Option<Self> {
        let cs = u64::from(chunk_size);
        if cs == 0 || disk_size.div_ceil(cs) != digests.len() as u64 {
            return None;
        }
        Some(DiskChunks {
            chunk_size: cs,
            disk_size,
            digests,
        })
    }

    /// The volume at `[offset, offset + length)` of this disk; `None` when
    /// it does not fit in the disk.
    pub fn volume(&self, offset: u64, length: u64) -> Option<VolumeChunks<'_>> {
        let end = offset.checked_add(length)?;
        (end <= self.disk_size).then_some(VolumeChunks {
            disk: self,
            offset,
            length,
            replaced: &[],
        })
    }
}

/// A volume's window of a disk: derives extent keys of its files.
#[derive(Debug, Clone, Copy)]
pub struct VolumeChunks<'a> {
    disk: &'a DiskChunks,
    offset: u64,
    length: u64,
    /// Volume byte ranges (sorted, disjoint) not served from the disk's
    /// bytes at their place (an ext4 volume served with its journal
    /// replayed): an extent touching one has no key.
    replaced: &'a [Range<u64>],
}

impl<'a> VolumeChunks<'a> {
    /// The same volume, whose bytes in `replaced` (sorted, disjoint volume
    /// byte ranges) are served from elsewhere than the disk at their
    /// place: a file with an extent there gets no key (it is read).
    pub fn with_replaced(self, replaced: &'a [Range<u64>]) -> VolumeChunks<'a> {
        VolumeChunks { replaced, ..self }
    }
}

impl VolumeChunks<'_> {
    /// The extent key of a file of `size` bytes mapped by `extents`
    /// (volume addresses); `None` when an extent lies outside the volume.
    pub fn key(&self, size: u64, extents: &[FileExtent]) -> Option<ContentKey> {
        let mut h = blake3::Hasher::new();
        h.update(DOMAIN);
        h.update(&size.to_le_bytes());
        h.update(&(extents.len() as u64).to_le_bytes());
        for e in extents {
            h.update(&e.logical.to_le_bytes());
            h.update(&e.length.to_le_bytes());
            h.update(&[u8::from(e.unwritten)]);
            self.walk(e, |p| {
                match self.disk.digests.get(p.chunk) {
                    Some(Some(d)) => {
                        h.update(&[1]);
                        h.update(d);
                    }
                    _ => {
                        h.update(&[0]);
                    }
                }
                h.update(&p.within.to_le_bytes());
                h.update(&p.take.to_le_bytes());
            })?;
        }
        Some(ContentKey::from_text(format!(
            "extents:{}",
            h.finalize().to_hex()
        )))
    }

    /// The same file seen on `base`, an older restore point's disk with
    /// the same chunk and disk sizes, at the same place: its extent key
    /// there (the key the file had if the base holds the same extents) and
    /// the file ranges whose chunk digests differ between `base` and this
    /// disk, sorted and merged (clipped to `size`; unwritten extents and
    /// holes read as zeros on both, so never differ). `None` when the
    /// layouts differ or an extent lies outside the volume.
    pub fn against(
        &self,
        base: &VolumeChunks<'_>,
        size: u64,
        extents: &[FileExtent],
    ) -> Option<Rebased> {
        let same_layout = self.disk.chunk_size == base.disk.chunk_size
            && self.disk.disk_size == base.disk.disk_size
            && self.offset == base.offset
            && self.length == base.length;
        if !same_layout {
            return None;
        }
        let base_key = base.key(size, extents)?;
        let mut changed: Vec<Range<u64>> = Vec::new();
        for e in extents.iter().filter(|e| !e.unwritten) {
            let mut ok = true;
            self.walk(e, |p| {
                if self.disk.digests.get(p.chunk) == base.disk.digests.get(p.chunk) {
                    return;
                }
                let start = e.logical.checked_add(p.into_extent);
                let end = start.and_then(|s| s.checked_add(p.take));
                match (start, end) {
                    (Some(s), Some(t)) if s < size => changed.push(s..t.min(size)),
                    (Some(_), Some(_)) => {}
                    _ => ok = false,
                }
            })?;
            if !ok {
                return None;
            }
        }
        Some(Rebased {
            base_key,
            changed: merged(changed),
        })
    }

    /// Calls `f` for each piece of `e` inside one disk chunk, in order;
    /// `None` when the extent lies outside the volume or the disk.
    fn walk(&self, e: &FileExtent, mut f: impl FnMut(Piece)) -> Option<()> {
        let end = e.physical.checked_add(e.length)?;
        if end > self.length {
            return None;
        }
        // The first replaced range ending after the extent's start.
        let i = self.replaced.partition_point(|r| r.end <= e.physical);
        if self.replaced.get(i).is_some_and(|r| r.start < end) {
            return None;
        }
        let first = self.offset.checked_add(e.physical)?;
        let mut at = first;
        let stop = self.offset.checked_add(end)?;
        while at < stop {
            let i = at / self.disk.chunk_size;
            let within = at % self.disk.chunk_size;
            let chunk_end = i
                .checked_add(1)?
                .checked_mul(self.disk.chunk_size)?
                .min(self.disk.disk_size);
            let take = chunk_end.checked_sub(at)?.min(stop - at);
            let chunk = usize::try_from(i).ok()?;
            if take == 0 || chunk >= self.disk.digests.len() {
                return None;
            }
            f(Piece {
                chunk,
                within,
                take,
                into_extent: at - first,
            });
            at += take;
        }
        Some(())
    }
}

/// One piece of an extent inside one disk chunk.
struct Piece {
    chunk: usize,
    /// Offset inside the chunk.
    within: u64,
    /// Bytes taken from the chunk.
    take: u64,
    /// Offset of the piece inside its extent.
    into_extent: u64,
}

/// A file compared with an older restore point: see
/// [`VolumeChunks::against`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebased {
    /// The file's extent key over the base disk's digests.
    pub base_key: ContentKey,
    /// File ranges whose chunks differ from the base, sorted and merged.
    pub changed: Vec<Range<u64>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(logical: u64, physical: u64, length: u64) -> FileExtent {
        FileExtent {
            logical,
            physical,
            length,
            unwritten: false,
        }
    }

    /// A disk of `n` chunks of 1 MiB (the last `short` bytes shorter),
    /// digest i = [i; 32], chunk 3 all-zero.
    fn disk(n: u8, short: u64) -> DiskChunks {
        let digests = (0..n).map(|i| (i != 3).then_some([i; 32])).collect();
        DiskChunks::new(1 << 20, u64::from(n) * (1 << 20) - short, digests).unwrap()
    }

    /// The same disk with chunk `i`'s digest changed.
    fn changed(d: &DiskChunks, i: usize) -> DiskChunks {
        let mut d = d.clone();
        d.digests[i] = Some([0xEE; 32]);
        d
    }

    #[test]
    fn an_extent_over_replaced_bytes_has_no_key() {
        let d = disk(8, 0);
        let replaced = [4096..8192, 1 << 20..(1 << 20) + 4096];
        let v = d.volume(0, 8 << 20).unwrap().with_replaced(&replaced);
        assert!(v.key(4096, &[ext(0, 0, 4096)]).is_some());
        assert!(v.key(4096, &[ext(0, 8192, 4096)]).is_some());
        assert!(v.key(8192, &[ext(0, 0, 8192)]).is_none());
        assert!(v.key(4096, &[ext(0, 4096, 4096)]).is_none());
        assert!(v.key(4096, &[ext(0, (1 << 20) + 4095, 1)]).is_none());
        assert!(v
            .key(4096, &[ext(0, 0, 4096), ext(4096, 1 << 20, 8)])
            .is_none());
        let base = d.volume(0, 8 << 20).unwrap();
        assert!(v.against(&base, 8192, &[ext(0, 0, 8192)]).is_none());
    }

    #[test]
    fn inconsistent_indexes_and_volumes_outside_the_disk_are_refused() {
        assert!(DiskChunks::new(0, 0, vec![]).is_none());
        assert!(DiskChunks::new(1 << 20, 3 << 20, vec![None; 2]).is_none());
        assert!(DiskChunks::new(1 << 20, (2 << 20) + 1, vec![None; 3]).is_some());
        let d = disk(8, 0);
        assert!(d.volume(1 << 20, 7 << 20).is_some());
        assert!(d.volume(1 << 20, (7 << 20) + 1).is_none());
        assert!(d.volume(u64::MAX, 2).is_none());
    }

    #[test]
    fn a_key_depends_only_on_the_chunks_under_the_file() {
        let d = disk(8, 0);
        // Volume at 1 MiB; the file at volume 512 KiB..1536 KiB spans disk
        // chunks 1 and 2 (1.5 MiB..2.5 MiB).
        let v = d.volume(1 << 20, 7 << 20).unwrap();
        let map = [ext(0, 512 << 10, 1 << 20)];
        let k = v.key(1 << 20, &map).unwrap();
        assert!(k.as_str().starts_with("extents:"));
        assert_eq!(v.key(1 << 20, &map), Some(k.clone()));
        // Chunks outside the file's range do not matter...
        for other in [0, 4, 7] {
            let d2 = changed(&d, other);
            assert_eq!(
                d2.volume(1 << 20, 7 << 20).unwrap().key(1 << 20, &map),
                Some(k.clone())
            );
        }
        // ... every chunk it touches does.
        for under in [1, 2] {
            let d2 = changed(&d, under);
            assert_ne!(
                d2.volume(1 << 20, 7 << 20).unwrap().key(1 << 20, &map),
                Some(k.clone())
            );
        }
        // Size, logical offset, unwritten flag and the volume's place count.
        assert_ne!(v.key((1 << 20) - 1, &map), Some(k.clone()));
        assert_ne!(
            v.key(1 << 20, &[ext(4096, 512 << 10, 1 << 20)]),
            Some(k.clone())
        );
        let mut unwritten = map;
        unwritten[0].unwritten = true;
        assert_ne!(v.key(1 << 20, &unwritten), Some(k.clone()));
        let shifted = d.volume(0, 8 << 20).unwrap();
        assert_ne!(shifted.key(1 << 20, &map), Some(k));
    }

    #[test]
    fn chunk_boundaries_split_extents_exactly() {
        let d = disk(8, 0);
        let v = d.volume(0, 8 << 20).unwrap();
        // Ending exactly at a chunk boundary touches one chunk only.
        let one = [ext(0, 1 << 20, 1 << 20)];
        let k = v.key(1 << 20, &one).unwrap();
        assert_eq!(
            changed(&d, 2)
                .volume(0, 8 << 20)
                .unwrap()
                .key(1 << 20, &one),
            Some(k.clone())
        );
        assert_ne!(
            changed(&d, 1)
                .volume(0, 8 << 20)
                .unwrap()
                .key(1 << 20, &one),
            Some(k)
        );
        // One byte more reaches the next chunk.
        let two = [ext(0, 1 << 20, (1 << 20) + 1)];
        let k = v.key(1 << 20, &two).unwrap();
        assert_ne!(
            changed(&d, 2)
                .volume(0, 8 << 20)
                .unwrap()
                .key(1 << 20, &two),
            Some(k)
        );
        // Same chunks, different offsets inside them: different bytes.
        let a = v.key(4096, &[ext(0, 0, 4096)]).unwrap();
        let b = v.key(4096, &[ext(0, 8192, 4096)]).unwrap();
        assert_ne!(a, b);
        // Same bytes in a different chunk with the same digest: same key
        // (dedup across places), e.g. after the filesystem moved a block.
        let mut same = d.clone();
        same.digests[5] = same.digests[1];
        let w = same.volume(0, 8 << 20).unwrap();
        assert_eq!(
            w.key(4096, &[ext(0, 1 << 20, 4096)]),
            w.key(4096, &[ext(0, 5 << 20, 4096)])
        );
        // A zero chunk and a data chunk differ.
        assert_ne!(
            v.key(4096, &[ext(0, 3 << 20, 4096)]),
            v.key(4096, &[ext(0, 2 << 20, 4096)])
        );
    }

    #[test]
    fn extents_outside_the_volume_or_a_short_disk_give_no_key() {
        let d = disk(4, 1000);
        let v = d.volume(1 << 20, (3 << 20) - 1000).unwrap();
        let last = (3 << 20) - 1000;
        assert!(v.key(10, &[ext(0, last - 10, 10)]).is_some());
        assert!(v.key(10, &[ext(0, last - 9, 10)]).is_none());
        assert!(v.key(10, &[ext(0, u64::MAX - 4, 10)]).is_none());
        // An empty or all-hole file has a key from its size alone.
        assert!(v.key(0, &[]).is_some());
        assert_ne!(v.key(0, &[]), v.key(4096, &[]));
    }
    #[test]
    fn against_a_base_gives_its_key_and_the_changed_file_ranges() {
        let d = disk(8, 0);
        let v = d.volume(1 << 20, 7 << 20).unwrap();
        // Disk 1.5 MiB..2.5 MiB: chunk 1 holds file 0..512 KiB, chunk 2
        // file 512 KiB..1 MiB.
        let map = [ext(0, 512 << 10, 1 << 20)];
        let k = v.key(1 << 20, &map).unwrap();
        let same = v.against(&v, 1 << 20, &map).unwrap();
        assert_eq!(
            same,
            Rebased {
                base_key: k.clone(),
                changed: vec![]
            }
        );
        let d2 = changed(&d, 2);
        let v2 = d2.volume(1 << 20, 7 << 20).unwrap();
        let r = v2.against(&v, 1 << 20, &map).unwrap();
        assert_eq!(r.base_key, k);
        assert_eq!(r.changed, vec![(512 << 10)..(1 << 20)]);
        assert_ne!(v2.key(1 << 20, &map), Some(k));
        // Two extents with a hole between; the tail clipped to the size.
        let v0 = d.volume(0, 8 << 20).unwrap();
        let map = [ext(0, 0, 1 << 20), ext(3 << 20, 4 << 20, 1 << 20)];
        let size = (7 << 19) - 5;
        let d4 = changed(&d, 4);
        let r = d4
            .volume(0, 8 << 20)
            .unwrap()
            .against(&v0, size, &map)
            .unwrap();
        assert_eq!(r.base_key, v0.key(size, &map).unwrap());
        assert_eq!(r.changed, vec![(3 << 20)..size]);
        // Adjacent changed pieces merge; a zero chunk becoming data counts.
        let map = [ext(0, 2 << 20, 1 << 20), ext(1 << 20, 3 << 20, 1 << 20)];
        let d23 = changed(&changed(&d, 2), 3);
        let r = d23
            .volume(0, 8 << 20)
            .unwrap()
            .against(&v0, 2 << 20, &map)
            .unwrap();
        assert_eq!(r.changed, vec![0..(2 << 20)]);
        // Unwritten extents read as zeros in both: never changed.
        let mut unwritten = [ext(0, 4 << 20, 1 << 20)];
        unwritten[0].unwritten = true;
        let r = d4
            .volume(0, 8 << 20)
            .unwrap()
            .against(&v0, 1 << 20, &unwritten)
            .unwrap();
        assert_eq!(r.changed, vec![]);
        // Another layout or an extent outside the volume: no answer.
        let other = disk(9, 0);
        assert!(v0
            .against(&other.volume(0, 8 << 20).unwrap(), 10, &map)
            .is_none());
        let short = d.volume(0, 7 << 20).unwrap();
        let shifted = d.volume(4096, 7 << 20).unwrap();
        assert!(short.against(&short, 10, &map).is_some());
        assert!(short.against(&shifted, 10, &map).is_none());
        assert!(v0.against(&short, 10, &map).is_none());
        assert!(v0.against(&v0, 10, &[ext(0, 8 << 20, 1)]).is_none());
    }
}
