//! On-disk constants of VHDX, from Microsoft's [MS-VHDX] specification
//! (sections 2.2 "File Type Identifier", 2.2.2 "Headers", 2.2.3 "Region
//! Table", 2.5 "BAT", 2.6 "Metadata Region"), cross-checked against QEMU's
//! `block/vhdx.h`.
//!
//! ```text
//! 0        64 KiB  File Type Identifier  "vhdxfile" + creator (UTF-16)
//! 64 KiB    4 KiB  header 1              \ the valid one with the higher
//! 128 KiB   4 KiB  header 2              / sequence number is current
//! 192 KiB  64 KiB  region table 1        \ copies; BAT and metadata
//! 256 KiB  64 KiB  region table 2        / region locations
//! 1 MiB ...        log, BAT, metadata, payload and sector-bitmap blocks
//!
//! header (4 KiB, CRC-32C over all of it with the checksum field zeroed)
//!   0 u32 "head"  4 u32 checksum  8 u64 sequence number
//!  16 guid file write  32 guid data write  48 guid log (zero: log empty)
//!  64 u16 log version (0)  66 u16 version (1)  68 u32 log length  72 u64 log offset
//! region table (64 KiB, CRC-32C likewise)
//!   0 u32 "regi"  4 u32 checksum  8 u32 entry count  12 reserved
//!  16 + 32*i: guid, u64 file offset, u32 length, u32 flags (bit 0: required)
//! metadata table (first 64 KiB of the metadata region)
//!   0 "metadata"  10 u16 entry count
//!  32 + 32*i: guid item id, u32 offset (from region start), u32 length, u32 flags
//! BAT entry (u64): bits 0-2 state, bits 20-63 file offset in MiB
//! ```
//!
//! GUIDs are stored as Windows writes them: the first three fields
//! little-endian, the last eight bytes as written.

/// Bytes of the File Type Identifier at offset 0 ([MS-VHDX] 2.2.1).
pub const FILE_ID_SIZE: u64 = 64 * 1024;
/// Signature at offset 0 ([MS-VHDX] 2.2.1 `Signature`, "vhdxfile").
pub const FILE_SIGNATURE: &[u8; 8] = b"vhdxfile";

/// Offsets of the two headers ([MS-VHDX] 2.2.2: 64 KiB and 128 KiB).
pub const HEADER_OFFSETS: [u64; 2] = [64 * 1024, 128 * 1024];
/// Bytes of one header covered by its checksum ([MS-VHDX] 2.2.2.1: 4 KiB).
pub const HEADER_SIZE: usize = 4096;
/// Header signature ([MS-VHDX] 2.2.2.1, "head").
pub const HEADER_SIGNATURE: &[u8; 4] = b"head";
/// The only header `Version` defined ([MS-VHDX] 2.2.2.1: "MUST be set to 1").
pub const HEADER_VERSION: u16 = 1;

/// Offsets of the two region tables ([MS-VHDX] 2.2.3: 192 KiB and 256 KiB).
pub const REGION_TABLE_OFFSETS: [u64; 2] = [192 * 1024, 256 * 1024];
/// Bytes of one region table covered by its checksum ([MS-VHDX] 2.2.3: 64 KiB).
pub const REGION_TABLE_SIZE: usize = 64 * 1024;
/// Region table signature ([MS-VHDX] 2.2.3.1, "regi").
pub const REGION_SIGNATURE: &[u8; 4] = b"regi";
/// Most entries a region table may hold ([MS-VHDX] 2.2.3.1: "MUST be less than or equal to 2047").
pub const MAX_REGION_ENTRIES: u32 = 2047;
/// Size of the region table header: signature, checksum, entry count, reserved ([MS-VHDX] 2.2.3.1).
pub const REGION_HEADER_SIZE: usize = 16;
/// Size of each region table entry: GUID, file offset, length, flags ([MS-VHDX] 2.2.3.2).
pub const REGION_ENTRY_SIZE: usize = 32;
/// Region entry flag bit 0: a reader must understand this region ([MS-VHDX] 2.2.3.2 `Required`).
pub const REGION_REQUIRED: u32 = 1;

/// Byte offset of the checksum field in a header or region table ([MS-VHDX] 2.2.2.1, 2.2.3.1).
pub const CHECKSUM_AT: usize = 4;

/// GUID of the BAT region, 2DC27766-F623-4200-9D64-115E9BFD4A08 ([MS-VHDX] 2.2.3.2), as stored.
pub const BAT_GUID: [u8; 16] = guid(
    0x2DC2_7766,
    0xF623,
    0x4200,
    [0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08],
);
/// GUID of the metadata region, 8B7CA206-4790-4B9A-B8FE-575F050F886E ([MS-VHDX] 2.2.3.2), as stored.
pub const METADATA_GUID: [u8; 16] = guid(
    0x8B7C_A206,
    0x4790,
    0x4B9A,
    [0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E],
);

/// Metadata table signature ([MS-VHDX] 2.6.1.1, "metadata").
pub const METADATA_SIGNATURE: &[u8; 8] = b"metadata";
/// Bytes of the metadata table at the start of the metadata region ([MS-VHDX] 2.6.1: 64 KiB).
pub const METADATA_TABLE_SIZE: usize = 64 * 1024;
/// Size of the metadata table header and of each entry ([MS-VHDX] 2.6.1.1, 2.6.1.2).
pub const METADATA_ENTRY_SIZE: usize = 32;
/// Most entries a metadata table may hold ([MS-VHDX] 2.6.1.1: "MUST be less than or equal to 2047").
pub const MAX_METADATA_ENTRIES: u16 = 2047;
/// Metadata entry flag bit 2: a reader must understand this item ([MS-VHDX] 2.6.1.2 `IsRequired`).
pub const METADATA_IS_REQUIRED: u32 = 1 << 2;

/// File Parameters item CAA16737-FA36-4D43-B3B6-33F0AA44E76B: u32 block size, u32 flags ([MS-VHDX] 2.6.2.1).
pub const FILE_PARAMETERS_GUID: [u8; 16] = guid(
    0xCAA1_6737,
    0xFA36,
    0x4D43,
    [0xB3, 0xB6, 0x33, 0xF0, 0xAA, 0x44, 0xE7, 0x6B],
);
/// Virtual Disk Size item 2FA54224-CD1B-4876-B211-5DBED83BF4B8: u64 bytes ([MS-VHDX] 2.6.2.2).
pub const VIRTUAL_DISK_SIZE_GUID: [u8; 16] = guid(
    0x2FA5_4224,
    0xCD1B,
    0x4876,
    [0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8],
);
/// Virtual Disk ID item BECA12AB-B2E6-4523-93EF-C309E000C746 ([MS-VHDX] 2.6.2.3), known and ignored.
pub const VIRTUAL_DISK_ID_GUID: [u8; 16] = guid(
    0xBECA_12AB,
    0xB2E6,
    0x4523,
    [0x93, 0xEF, 0xC3, 0x09, 0xE0, 0x00, 0xC7, 0x46],
);
/// Logical Sector Size item 8141BF1D-A96F-4709-BA47-F233A8FAAB5F: u32, 512 or 4096 ([MS-VHDX] 2.6.2.4).
pub const LOGICAL_SECTOR_SIZE_GUID: [u8; 16] = guid(
    0x8141_BF1D,
    0xA96F,
    0x4709,
    [0xBA, 0x47, 0xF2, 0x33, 0xA8, 0xFA, 0xAB, 0x5F],
);
/// Physical Sector Size item CDA348C7-445D-4471-9CC9-E9885251C556 ([MS-VHDX] 2.6.2.5), known and ignored.
pub const PHYSICAL_SECTOR_SIZE_GUID: [u8; 16] = guid(
    0xCDA3_48C7,
    0x445D,
    0x4471,
    [0x9C, 0xC9, 0xE9, 0x88, 0x52, 0x51, 0xC5, 0x56],
);
/// Parent Locator item A8D35F2D-B30B-454D-ABF7-D3D84834AB0C ([MS-VHDX] 2.6.2.6): only in differencing disks.
pub const PARENT_LOCATOR_GUID: [u8; 16] = guid(
    0xA8D3_5F2D,
    0xB30B,
    0x454D,
    [0xAB, 0xF7, 0xD3, 0xD8, 0x48, 0x34, 0xAB, 0x0C],
);

/// File Parameters flag bit 0: blocks are never unmapped (fixed disks) ([MS-VHDX] 2.6.2.1 `LeaveBlocksAllocated`).
pub const FP_LEAVE_BLOCKS_ALLOCATED: u32 = 1 << 0;
/// File Parameters flag bit 1: a differencing disk with a parent ([MS-VHDX] 2.6.2.1 `HasParent`).
pub const FP_HAS_PARENT: u32 = 1 << 1;

/// Smallest and largest block size ([MS-VHDX] 2.6.2.1: "at least 1 MB and at most 256 MB", a power of two).
pub const MIN_BLOCK_SIZE: u32 = 1 << 20;
/// See [`MIN_BLOCK_SIZE`].
pub const MAX_BLOCK_SIZE: u32 = 256 << 20;
/// Largest virtual disk ([MS-VHDX] 2.6.2.2: "at most 64 TB").
pub const MAX_DISK_SIZE: u64 = 64 << 40;

/// Sectors described by one sector-bitmap block: 1 MiB of bits = 2^23 ([MS-VHDX] 2.5: chunk ratio = 2^23 * LogicalSectorSize / BlockSize).
pub const SECTORS_PER_BITMAP: u64 = 1 << 23;

/// Mask of the state field of a BAT entry, bits 0-2 ([MS-VHDX] 2.5.1).
pub const BAT_STATE_MASK: u64 = 0x7;
/// Shift of the FileOffsetMB field of a BAT entry, bits 20-63 ([MS-VHDX] 2.5.1).
pub const BAT_OFFSET_SHIFT: u32 = 20;
/// Payload block state: no data, reads as zeros for a non-differencing disk ([MS-VHDX] 2.5.1.1 `PAYLOAD_BLOCK_NOT_PRESENT`).
pub const PAYLOAD_NOT_PRESENT: u64 = 0;
/// Payload block state: content undefined, we read zeros ([MS-VHDX] 2.5.1.1 `PAYLOAD_BLOCK_UNDEFINED`).
pub const PAYLOAD_UNDEFINED: u64 = 1;
/// Payload block state: reads as zeros ([MS-VHDX] 2.5.1.1 `PAYLOAD_BLOCK_ZERO`).
pub const PAYLOAD_ZERO: u64 = 2;
/// Payload block state: unmapped, we read zeros ([MS-VHDX] 2.5.1.1 `PAYLOAD_BLOCK_UNMAPPED`).
pub const PAYLOAD_UNMAPPED: u64 = 3;
/// Payload block state: all data at the entry's file offset ([MS-VHDX] 2.5.1.1 `PAYLOAD_BLOCK_FULLY_PRESENT`).
pub const PAYLOAD_FULLY_PRESENT: u64 = 6;
/// Payload block state: partly in this file, partly in the parent ([MS-VHDX] 2.5.1.1 `PAYLOAD_BLOCK_PARTIALLY_PRESENT`; differencing only).
pub const PAYLOAD_PARTIALLY_PRESENT: u64 = 7;

/// Unit of FileOffsetMB and alignment of every region and block ([MS-VHDX] 2.5.1).
pub const MIB: u64 = 1 << 20;

/// Builds a GUID in its on-disk byte order from its textual fields.
const fn guid(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
    let a = a.to_le_bytes();
    let b = b.to_le_bytes();
    let c = c.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6],
        d[7],
    ]
}

const _: () = assert!(REGION_TABLE_OFFSETS[1] + REGION_TABLE_SIZE as u64 <= MIB);
const _: () = assert!(HEADER_OFFSETS[1] + HEADER_SIZE as u64 <= REGION_TABLE_OFFSETS[0]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_match_the_bytes_qemu_writes() {
        // Region table entry 0 of a qemu-img 10 VHDX, offsets 0x30010..0x30020.
        assert_eq!(
            BAT_GUID,
            [
                0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42, 0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd,
                0x4a, 0x08
            ]
        );
        assert_eq!(
            METADATA_GUID,
            [
                0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b, 0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f,
                0x88, 0x6e
            ]
        );
    }
}
