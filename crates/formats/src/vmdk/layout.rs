//! On-disk constants of VMDK and the hosted sparse extent header.
//!
//! Sources: VMware "Virtual Disk Format 5.0" (the technical note, sections
//! "Hosted Sparse Extent Header", "Grain Directories and Grain Tables",
//! "Stream-Optimized Compressed Sparse Extents"), cross-checked against
//! QEMU's `block/vmdk.c` (`VMDK4Header`, `VMDK4_FLAG_*`, `VmdkGrainMarker`).
//!
//! ```text
//! SparseExtentHeader (little-endian, packed, one 512-byte sector)
//! off size field
//!   0   4  magicNumber        "KDMV"
//!   4   4  version            1, 2 or 3
//!   8   4  flags              FLAG_*
//!  12   8  capacity           virtual size of the extent, sectors
//!  20   8  grainSize          sectors per grain
//!  28   8  descriptorOffset   sector of the embedded descriptor (0: none)
//!  36   8  descriptorSize     sectors of the embedded descriptor
//!  44   4  numGTEsPerGT       entries per grain table (512)
//!  48   8  rgdOffset          sector of the redundant grain directory
//!  56   8  gdOffset           sector of the grain directory (or GD_AT_END)
//!  64   8  overHead           sectors before the first grain
//!  72   1  uncleanShutdown
//!  73   4  newline check bytes '\n' ' ' '\r' '\n'
//!  77   2  compressAlgorithm  0 none, 1 deflate
//!  79 433  pad
//! ```

use lifeboat_vdisk::{Error, Result};

/// Bytes per VMDK sector; every offset and size in the header counts these (spec: "SectorType").
pub const SECTOR: u64 = 512;

/// Size of the hosted sparse extent header: one sector (spec: `SparseExtentHeader`, 512 bytes with pad).
pub const HEADER_SIZE: usize = 512;

/// `magicNumber` of a hosted sparse extent: "KDMV" read as a little-endian u32 (spec: `SPARSE_MAGICNUMBER 0x564d444b`).
pub const SPARSE_MAGIC: &[u8; 4] = b"KDMV";

/// Magic of the older ESX "COWD" sparse format (VMDK3, vmfsSparse), which we do not read (QEMU `VMDK3_MAGIC`).
pub const COWD_MAGIC: &[u8; 4] = b"COWD";

/// First bytes of a text descriptor file (spec: "The Descriptor File", first line).
pub const DESCRIPTOR_SIGNATURE: &[u8] = b"# Disk DescriptorFile";

/// Lowest and highest header `version` we accept (spec: 1; 2 adds persistent change tracking; 3 for streamOptimized with zeroed grains; QEMU accepts 1-3).
pub const MIN_VERSION: u32 = 1;
/// See [`MIN_VERSION`].
pub const MAX_VERSION: u32 = 3;

/// flags bit 0: the newline check bytes are valid (spec: "bit 0: valid new line detection test"; QEMU `VMDK4_FLAG_NL_DETECT`).
pub const FLAG_NL_DETECT: u32 = 1 << 0;
/// flags bit 1: a redundant grain directory exists at rgdOffset (spec: "bit 1: redundant grain table will be used"; QEMU `VMDK4_FLAG_RGD`).
pub const FLAG_RGD: u32 = 1 << 1;
/// flags bit 2: a grain table entry of 1 means a zero grain (QEMU `VMDK4_FLAG_ZERO_GRAIN`; spec 5.0 "zeroed-grain GTE").
pub const FLAG_ZERO_GRAIN: u32 = 1 << 2;
/// flags bit 16: grains are compressed (spec: "bit 16: grains are compressed"; QEMU `VMDK4_FLAG_COMPRESS`).
pub const FLAG_COMPRESSED: u32 = 1 << 16;
/// flags bit 17: the extent holds markers (grain, GT, GD, footer, EOS) (spec: "bit 17: there are markers"; QEMU `VMDK4_FLAG_MARKER`).
pub const FLAG_MARKERS: u32 = 1 << 17;

/// `compressAlgorithm` value for deflate (RFC 1951 in a zlib RFC 1950 wrapper) (spec: `COMPRESSION_DEFLATE 1`).
pub const COMPRESSION_DEFLATE: u16 = 1;

/// gdOffset value meaning "the grain directory is found through the footer" (spec: `GD_AT_END`; QEMU `VMDK4_GD_AT_END`).
pub const GD_AT_END: u64 = 0xffff_ffff_ffff_ffff;

/// The footer (a copy of the header with the real gdOffset) starts this many bytes before the end of a streamOptimized file: it is followed by the end-of-stream marker sector (spec: "the footer ... is the second-to-last sector"; QEMU reads `total_sectors - 2`).
pub const FOOTER_FROM_END: u64 = 2 * SECTOR;

/// The newline check bytes at header offset 73 (spec: singleEndLineChar, nonEndLineChar, doubleEndLineChar1/2).
pub const NL_CHECK: [u8; 4] = [b'\n', b' ', b'\r', b'\n'];

/// Size of a grain marker that precedes every compressed grain: lba (u64) + size (u32) (spec: `GrainMarker`; QEMU `VmdkGrainMarker`).
pub const GRAIN_MARKER_SIZE: usize = 12;

/// Grain table entry meaning "not allocated: reads as zeros (or from the parent)" (spec: "a GTE of 0").
pub const GTE_UNALLOCATED: u32 = 0;
/// Grain table entry meaning "a grain of zeros" (spec 5.0 zeroed-grain GTE; QEMU `VMDK_GTE_ZEROED`).
pub const GTE_ZEROED: u32 = 1;

/// Size of one grain directory or grain table entry: a u32 sector number (spec).
pub const GTE_SIZE: u64 = 4;

/// Largest grain we accept, in sectors (64 MiB). VMware writes 128 (64 KiB); QEMU refuses above 1 GiB. A bigger grain is a damaged header.
pub const MAX_GRAIN_SECTORS: u64 = 1 << 17;

/// Largest numGTEsPerGT we accept. The spec fixes 512; QEMU refuses more than 512; we allow some slack.
pub const MAX_GTES_PER_GT: u32 = 4096;

/// Largest extent capacity in sectors we accept (2^40 sectors = 512 TiB; VMware's hosted sparse extents stop at 2 TiB, QEMU's at 2^32 sectors).
pub const MAX_CAPACITY_SECTORS: u64 = 1 << 40;

/// Largest embedded or standalone descriptor we read (1 MiB; VMware writes 20 sectors, QEMU `DESC_SIZE`).
pub const MAX_DESCRIPTOR_BYTES: u64 = 1 << 20;

/// The parsed hosted sparse extent header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparseHeader {
    pub version: u32,
    pub flags: u32,
    pub capacity: u64,
    pub grain_sectors: u64,
    pub descriptor_offset: u64,
    pub descriptor_size: u64,
    pub gtes_per_gt: u32,
    pub rgd_offset: u64,
    pub gd_offset: u64,
    pub overhead: u64,
    pub nl_check: [u8; 4],
    pub compress_algorithm: u16,
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(a)
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl SparseHeader {
    /// Parses the 512-byte header sector; `what` names the file in errors.
    /// Only the magic is checked here; [`SparseHeader::validate`] checks values.
    pub fn parse(what: &str, sector: &[u8; HEADER_SIZE]) -> Result<Self> {
        if &sector[0..4] != SPARSE_MAGIC {
            if &sector[0..4] == COWD_MAGIC {
                return Err(Error::unsupported(
                    what,
                    "ESX COWD sparse extents (VMDK3, vmfsSparse) are not supported",
                ));
            }
            return Err(Error::corrupt(
                what,
                format!(
                    "bad sparse extent magic {:02x?} (expected \"KDMV\")",
                    &sector[0..4]
                ),
            ));
        }
        let mut nl_check = [0u8; 4];
        nl_check.copy_from_slice(&sector[73..77]);
        Ok(SparseHeader {
            version: le_u32(sector, 4),
            flags: le_u32(sector, 8),
            capacity: le_u64(sector, 12),
            grain_sectors: le_u64(sector, 20),
            descriptor_offset: le_u64(sector, 28),
            descriptor_size: le_u64(sector, 36),
            gtes_per_gt: le_u32(sector, 44),
            rgd_offset: le_u64(sector, 48),
            gd_offset: le_u64(sector, 56),
            overhead: le_u64(sector, 64),
            nl_check,
            compress_algorithm: le_u16(sector, 77),
        })
    }

    /// Checks the values that sizes and allocations depend on.
    pub fn validate(&self, what: &str) -> Result<()> {
        if !(MIN_VERSION..=MAX_VERSION).contains(&self.version) {
            return Err(Error::unsupported(
                what,
                format!(
                    "sparse extent version {} (only 1 to 3 are known)",
                    self.version
                ),
            ));
        }
        if self.flags & FLAG_NL_DETECT != 0 && self.nl_check != NL_CHECK {
            return Err(Error::corrupt(
                what,
                "the newline check bytes of the header are damaged (was the file copied in text mode?)",
            ));
        }
        if self.flags & FLAG_COMPRESSED != 0 && self.compress_algorithm != COMPRESSION_DEFLATE {
            return Err(Error::unsupported(
                what,
                format!(
                    "compression algorithm {} (only 1, deflate, is known)",
                    self.compress_algorithm
                ),
            ));
        }
        if self.grain_sectors == 0
            || !self.grain_sectors.is_power_of_two()
            || self.grain_sectors > MAX_GRAIN_SECTORS
        {
            return Err(Error::corrupt(
                what,
                format!(
                    "absurd grain size of {} sectors (expected a power of two up to {MAX_GRAIN_SECTORS})",
                    self.grain_sectors
                ),
            ));
        }
        if self.gtes_per_gt == 0 || self.gtes_per_gt > MAX_GTES_PER_GT {
            return Err(Error::corrupt(
                what,
                format!(
                    "absurd number of grain table entries per table: {} (expected 1 to {MAX_GTES_PER_GT}, normally 512)",
                    self.gtes_per_gt
                ),
            ));
        }
        if self.capacity > MAX_CAPACITY_SECTORS {
            return Err(Error::corrupt(
                what,
                format!(
                    "absurd capacity of {} sectors (more than {MAX_CAPACITY_SECTORS})",
                    self.capacity
                ),
            ));
        }
        Ok(())
    }

    /// Bytes per grain (valid after [`SparseHeader::validate`]).
    pub fn grain_bytes(&self) -> u64 {
        self.grain_sectors * SECTOR
    }

    /// Number of grains covering the capacity.
    pub fn grains(&self) -> u64 {
        self.capacity.div_ceil(self.grain_sectors)
    }

    /// Number of grain directory entries (one per grain table).
    pub fn gd_entries(&self) -> u64 {
        self.grains().div_ceil(u64::from(self.gtes_per_gt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header as QEMU writes it for a 6 MiB streamOptimized image.
    fn sample() -> [u8; HEADER_SIZE] {
        let mut s = [0u8; HEADER_SIZE];
        s[0..4].copy_from_slice(b"KDMV"); // magic
        s[4..8].copy_from_slice(&3u32.to_le_bytes()); // version
        s[8..12].copy_from_slice(&0x0003_0003u32.to_le_bytes()); // NL|RGD|COMPRESSED|MARKERS
        s[12..20].copy_from_slice(&12288u64.to_le_bytes()); // capacity: 6 MiB
        s[20..28].copy_from_slice(&128u64.to_le_bytes()); // grain: 64 KiB
        s[28..36].copy_from_slice(&1u64.to_le_bytes()); // descriptor at sector 1
        s[36..44].copy_from_slice(&20u64.to_le_bytes()); // 20 sectors of descriptor
        s[44..48].copy_from_slice(&512u32.to_le_bytes()); // GTEs per GT
        s[48..56].copy_from_slice(&21u64.to_le_bytes()); // rgd
        s[56..64].copy_from_slice(&26u64.to_le_bytes()); // gd
        s[64..72].copy_from_slice(&128u64.to_le_bytes()); // overhead
        s[73..77].copy_from_slice(&NL_CHECK); // newline check
        s[77..79].copy_from_slice(&1u16.to_le_bytes()); // deflate
        s
    }

    #[test]
    fn parses_and_validates_a_qemu_header() {
        let h = SparseHeader::parse("t", &sample()).unwrap();
        h.validate("t").unwrap();
        assert_eq!(h.capacity, 12288);
        assert_eq!(h.grain_bytes(), 65536);
        assert_eq!(h.grains(), 96);
        assert_eq!(h.gd_entries(), 1);
        assert_eq!(h.gd_offset, 26);
        assert_eq!(h.flags & FLAG_MARKERS, FLAG_MARKERS);
    }

    #[test]
    fn refuses_bad_magic_and_absurd_values() {
        let mut s = sample();
        s[0] = b'X';
        assert!(matches!(
            SparseHeader::parse("t", &s),
            Err(Error::Corrupt { .. })
        ));
        let mut s = sample();
        s[20..28].copy_from_slice(&3u64.to_le_bytes());
        let h = SparseHeader::parse("t", &s).unwrap();
        assert!(h
            .validate("t")
            .unwrap_err()
            .to_string()
            .contains("grain size"));
        let mut s = sample();
        s[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
        let h = SparseHeader::parse("t", &s).unwrap();
        assert!(h
            .validate("t")
            .unwrap_err()
            .to_string()
            .contains("capacity"));
        let mut s = sample();
        s[75] = b'\n';
        let h = SparseHeader::parse("t", &s).unwrap();
        assert!(h.validate("t").unwrap_err().to_string().contains("newline"));
    }
}
