//! The extent map of a file on a mounted filesystem (the `FS_IOC_FIEMAP`
//! ioctl), for the dedup-aware re-scan: where each byte range of the file
//! lies on its volume, learnt without reading the file.
//!
//! Layout (linux/fiemap.h): `struct fiemap` is a 32-byte header (`fm_start`,
//! `fm_length`, `fm_flags`, `fm_mapped_extents`, `fm_extent_count`,
//! `fm_reserved`) followed by `fm_extent_count` 56-byte `struct
//! fiemap_extent` (`fe_logical`, `fe_physical`, `fe_length`, 2 reserved u64,
//! `fe_flags`, 3 reserved u32). The opcode is `_IOWR('f', 11, struct
//! fiemap)`, sized by the header alone. The map is asked for in batches of
//! [`BATCH`] extents from `fm_start`, moving past the last extent returned,
//! until an extent carries `FIEMAP_EXTENT_LAST` (or none is returned).
//!
//! A map is only returned when every extent's bytes are plainly at its
//! physical address: an extent flagged unknown, delayed-allocation, encoded
//! (compressed), encrypted, not aligned, inline or tail-packed gives `None`,
//! and so does a filesystem without FIEMAP (FUSE filesystems such as
//! ntfs-3g or fusefat): the caller then reads the file. Unwritten
//! (preallocated) extents read as zeros; they are kept, flagged. Extents
//! that continue one another are merged ([`merge_adjacent`]), so the map
//! does not depend on how the kernel's caches split it.

use std::fs::File;

use rustix::ioctl::{ioctl, opcode, Opcode, Updater};

/// One extent: bytes `[logical, logical + length)` of the file are stored at
/// `[physical, physical + length)` of the volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileExtent {
    pub logical: u64,
    pub physical: u64,
    pub length: u64,
    /// Preallocated, never written: reads as zeros.
    pub unwritten: bool,
}

/// `struct fiemap` without its flexible extent array.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct FiemapHeader {
    fm_start: u64,
    fm_length: u64,
    fm_flags: u32,
    fm_mapped_extents: u32,
    fm_extent_count: u32,
    fm_reserved: u32,
}

/// `struct fiemap_extent`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct FiemapExtent {
    fe_logical: u64,
    fe_physical: u64,
    fe_length: u64,
    fe_reserved64: [u64; 2],
    fe_flags: u32,
    fe_reserved: [u32; 3],
}

const _: () = assert!(std::mem::size_of::<FiemapHeader>() == 32);
const _: () = assert!(std::mem::size_of::<FiemapExtent>() == 56);

/// Extents asked for per ioctl.
const BATCH: usize = 64;
/// More extents than this: give up and read the file.
const MAX_EXTENTS: usize = 1 << 20;

/// The header and room for [`BATCH`] extents, as the kernel expects them.
#[repr(C)]
struct FiemapBuf {
    header: FiemapHeader,
    extents: [FiemapExtent; BATCH],
}

/// `FS_IOC_FIEMAP` = `_IOWR('f', 11, struct fiemap)`.
const FS_IOC_FIEMAP: Opcode = opcode::read_write::<FiemapHeader>(b'f', 11);

const EXTENT_LAST: u32 = 0x0001;
const EXTENT_UNKNOWN: u32 = 0x0002;
const EXTENT_DELALLOC: u32 = 0x0004;
const EXTENT_ENCODED: u32 = 0x0008;
const EXTENT_DATA_ENCRYPTED: u32 = 0x0080;
const EXTENT_NOT_ALIGNED: u32 = 0x0100;
const EXTENT_DATA_INLINE: u32 = 0x0200;
const EXTENT_DATA_TAIL: u32 = 0x0400;
const EXTENT_UNWRITTEN: u32 = 0x0800;

/// Flags saying the bytes are not plainly at `fe_physical`.
const NOT_PLAIN: u32 = EXTENT_UNKNOWN
    | EXTENT_DELALLOC
    | EXTENT_ENCODED
    | EXTENT_DATA_ENCRYPTED
    | EXTENT_NOT_ALIGNED
    | EXTENT_DATA_INLINE
    | EXTENT_DATA_TAIL;

/// The extents of `file`, in file order; `None` when the filesystem has no
/// FIEMAP or some extent is not plainly stored (see the module doc).
pub fn file_extents(file: &File) -> Option<Vec<FileExtent>> {
    let mut out = Vec::new();
    let mut start = 0u64;
    loop {
        let mut buf = FiemapBuf {
            header: FiemapHeader {
                fm_start: start,
                fm_length: u64::MAX,
                fm_extent_count: BATCH as u32,
                ..FiemapHeader::default()
            },
            extents: [FiemapExtent::default(); BATCH],
        };
        // SAFETY: FS_IOC_FIEMAP takes a pointer to a `struct fiemap`
        // followed by `fm_extent_count` `struct fiemap_extent`; `FiemapBuf`
        // is exactly that (repr(C), sizes checked above) with room for the
        // BATCH extents it announces, so the kernel writes only inside it.
        // The buffer is a plain-old-data local that outlives the call, and
        // every bit pattern the kernel may leave is a valid value of it.
        let done = unsafe {
            let updater = Updater::<'_, FS_IOC_FIEMAP, FiemapBuf>::new(&mut buf);
            ioctl(file, updater)
        };
        if done.is_err() {
            return None;
        }
        let mapped = (buf.header.fm_mapped_extents as usize).min(BATCH);
        let got = buf.extents.get(..mapped)?;
        let Some(last) = got.last() else {
            return Some(merge_adjacent(out));
        };
        for e in got {
            if e.fe_flags & NOT_PLAIN != 0 {
                return None;
            }
            out.push(FileExtent {
                logical: e.fe_logical,
                physical: e.fe_physical,
                length: e.fe_length,
                unwritten: e.fe_flags & EXTENT_UNWRITTEN != 0,
            });
        }
        if last.fe_flags & EXTENT_LAST != 0 {
            return Some(merge_adjacent(out));
        }
        let next = last.fe_logical.checked_add(last.fe_length)?;
        if next <= start || out.len() > MAX_EXTENTS {
            return None;
        }
        start = next;
    }
}

/// `extents` (in file order) with each run of extents that continue one
/// another (logically and physically adjacent, both written or both
/// unwritten) merged into one. Whether the kernel reports such a run as one
/// extent or several depends on its caches (ext4 merges them in its extent
/// status tree once it has read them), so extent keys are taken over the
/// merged map.
pub fn merge_adjacent(extents: Vec<FileExtent>) -> Vec<FileExtent> {
    let mut out: Vec<FileExtent> = Vec::with_capacity(extents.len());
    for e in extents {
        match out.last_mut() {
            Some(p)
                if p.unwritten == e.unwritten
                    && p.logical.checked_add(p.length) == Some(e.logical)
                    && p.physical.checked_add(p.length) == Some(e.physical) =>
            {
                p.length += e.length;
            }
            _ => out.push(e),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn extents_that_continue_one_another_merge() {
        let e = |logical, physical, length, unwritten| FileExtent {
            logical,
            physical,
            length,
            unwritten,
        };
        let map = vec![
            e(0, 100, 10, false),
            e(10, 110, 5, false),
            e(15, 115, 5, true),
            e(20, 200, 5, true),
            e(25, 205, 5, true),
            e(40, 210, 5, true),
        ];
        assert_eq!(
            merge_adjacent(map),
            vec![
                e(0, 100, 15, false),
                e(15, 115, 5, true),
                e(20, 200, 10, true),
                e(40, 210, 5, true)
            ]
        );
    }

    #[test]
    fn the_opcode_is_the_kernels() {
        // FS_IOC_FIEMAP as linux/fs.h computes it on x86-64 and arm64.
        assert_eq!(FS_IOC_FIEMAP as u64, 0xC020_660B);
    }

    /// A temporary directory on ext4 (where FIEMAP maps plainly).
    fn ext4_tempdir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let st = rustix::fs::statfs(dir.path()).unwrap();
        assert_eq!(
            st.f_type as u64,
            0xEF53,
            "these tests need the temporary directory ({}) on ext4: set TMPDIR",
            dir.path().display()
        );
        dir
    }

    #[test]
    fn sparse_and_preallocated_files_map_to_their_extents() {
        let dir = ext4_tempdir();
        let path = dir.path().join("sparse");
        let mut f = File::create(&path).unwrap();
        // 8 KiB of data at 8 MiB, a hole before it.
        rustix::fs::seek(&f, rustix::fs::SeekFrom::Start(8 << 20)).unwrap();
        f.write_all(&[7u8; 8192]).unwrap();
        f.sync_all().unwrap();
        let map = file_extents(&File::open(&path).unwrap()).expect("ext4 maps");
        assert_eq!(map.len(), 1, "{map:?}");
        assert_eq!((map[0].logical, map[0].length), (8 << 20, 8192));
        assert!(!map[0].unwritten && map[0].physical.is_multiple_of(4096));
        assert_eq!(file_extents(&File::open(&path).unwrap()), Some(map));

        let path = dir.path().join("prealloc");
        let f = File::create(&path).unwrap();
        rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, 1 << 20).unwrap();
        f.sync_all().unwrap();
        let map = file_extents(&File::open(&path).unwrap()).expect("ext4 maps");
        assert!(
            !map.is_empty() && map.iter().all(|e| e.unwritten),
            "{map:?}"
        );
        assert_eq!(map.iter().map(|e| e.length).sum::<u64>(), 1 << 20);

        let empty = dir.path().join("empty");
        File::create(&empty).unwrap();
        assert_eq!(file_extents(&File::open(&empty).unwrap()), Some(vec![]));
    }

    #[test]
    fn many_extents_are_read_in_batches() {
        let dir = ext4_tempdir();
        let path = dir.path().join("holes");
        let mut f = File::create(&path).unwrap();
        // 150 one-block extents separated by holes: more than two batches.
        for i in 0..150u64 {
            rustix::fs::seek(&f, rustix::fs::SeekFrom::Start(i * 65536)).unwrap();
            f.write_all(&[1u8; 4096]).unwrap();
        }
        f.sync_all().unwrap();
        let map = file_extents(&File::open(&path).unwrap()).expect("ext4 maps");
        let logical: Vec<u64> = map.iter().map(|e| e.logical).collect();
        assert_eq!(logical, (0..150u64).map(|i| i * 65536).collect::<Vec<_>>());
        assert!(map.iter().all(|e| e.length == 4096));
    }

    #[test]
    fn a_filesystem_without_fiemap_gives_none() {
        // procfs has no FIEMAP: the caller reads the file instead.
        let f = File::open("/proc/self/status").unwrap();
        assert_eq!(file_extents(&f), None);
    }
}
