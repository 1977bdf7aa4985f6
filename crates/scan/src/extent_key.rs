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

use crate::cache::ContentKey;
use crate::fiemap::FileExtent;

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
        })
    }
}

/// A volume's window of a disk: derives extent keys of its files.
#[derive(Debug, Clone, Copy)]
pub struct VolumeChunks<'a> {
    disk: &'a DiskChunks,
    offset: u64,
    length: u64,
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
            let end = e.physical.checked_add(e.length)?;
            if end > self.length {
                return None;
            }
            h.update(&e.logical.to_le_bytes());
            h.update(&e.length.to_le_bytes());
            h.update(&[u8::from(e.unwritten)]);
            let mut at = self.offset.checked_add(e.physical)?;
            let stop = self.offset.checked_add(end)?;
            while at < stop {
                let i = at / self.disk.chunk_size;
                let within = at % self.disk.chunk_size;
                let chunk_end = i
                    .checked_add(1)?
                    .checked_mul(self.disk.chunk_size)?
                    .min(self.disk.disk_size);
                let take = chunk_end.checked_sub(at)?.min(stop - at);
                if take == 0 {
                    return None;
                }
                match self.disk.digests.get(usize::try_from(i).ok()?)? {
                    Some(d) => {
                        h.update(&[1]);
                        h.update(d);
                    }
                    None => {
                        h.update(&[0]);
                    }
                }
                h.update(&within.to_le_bytes());
                h.update(&take.to_le_bytes());
                at += take;
            }
        }
        Some(ContentKey::from_text(format!(
            "extents:{}",
            h.finalize().to_hex()
        )))
    }
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
}
