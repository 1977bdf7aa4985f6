//! qcow2 on-disk constants, in one place.
//!
//! Every value comes from the qcow2 specification in QEMU's
//! `docs/interop/qcow2.txt` (sections "Header", "Header extensions",
//! "Cluster mapping", "Host cluster management"); the section is named in the
//! comment of each constant. All numbers on disk are big endian.
//!
//! ```text
//!  header (cluster 0)          byte  field
//!   magic "QFI\xfb"              0   u32
//!   version (2 or 3)             4   u32
//!   backing_file_offset          8   u64
//!   backing_file_size           16   u32
//!   cluster_bits                20   u32
//!   size (virtual, bytes)       24   u64
//!   crypt_method                32   u32
//!   l1_size (entries)           36   u32
//!   l1_table_offset             40   u64
//!   refcount_table_offset       48   u64
//!   refcount_table_clusters     56   u32
//!   nb_snapshots                60   u32
//!   snapshots_offset            64   u64
//!   --- v3 only ---
//!   incompatible_features       72   u64
//!   compatible_features         80   u64
//!   autoclear_features          88   u64
//!   refcount_order              96   u32
//!   header_length              100   u32
//!   compression_type           104   u8  (only if header_length > 104)
//! ```

/// "Header", bytes 0-3: the QCOW magic string `QFI\xfb`.
pub const MAGIC: [u8; 4] = *b"QFI\xfb";

/// "Header", byte offsets of the fields (see the table in the module doc).
pub const OFF_VERSION: usize = 4;
pub const OFF_BACKING_FILE_OFFSET: usize = 8;
pub const OFF_BACKING_FILE_SIZE: usize = 16;
pub const OFF_CLUSTER_BITS: usize = 20;
pub const OFF_SIZE: usize = 24;
pub const OFF_CRYPT_METHOD: usize = 32;
pub const OFF_L1_SIZE: usize = 36;
pub const OFF_L1_TABLE_OFFSET: usize = 40;
pub const OFF_REFCOUNT_TABLE_OFFSET: usize = 48;
pub const OFF_REFCOUNT_TABLE_CLUSTERS: usize = 56;
pub const OFF_NB_SNAPSHOTS: usize = 60;
pub const OFF_SNAPSHOTS_OFFSET: usize = 64;
pub const OFF_INCOMPATIBLE_FEATURES: usize = 72;
pub const OFF_COMPATIBLE_FEATURES: usize = 80;
pub const OFF_AUTOCLEAR_FEATURES: usize = 88;
pub const OFF_REFCOUNT_ORDER: usize = 96;
pub const OFF_HEADER_LENGTH: usize = 100;
pub const OFF_COMPRESSION_TYPE: usize = 104;

/// "Header": a version 2 header ends after `snapshots_offset` (byte 71).
pub const V2_HEADER_LEN: usize = 72;
/// "Header": a version 3 header is at least 104 bytes (`header_length`
/// "for version 2 ... the header length is 72 bytes ... at least 104").
pub const V3_MIN_HEADER_LEN: usize = 104;
/// "Header": the length QEMU writes for v3 (104 + compression_type byte,
/// padded to a multiple of 8 as the spec requires).
pub const V3_HEADER_LEN: usize = 112;

/// "Header", cluster_bits: "must not be less than 9 (i.e. 512 byte
/// clusters)"; QEMU caps it at 21 (2 MiB clusters).
pub const MIN_CLUSTER_BITS: u32 = 9;
pub const MAX_CLUSTER_BITS: u32 = 21;

/// "Header", backing_file_size: "Must not be longer than 1023 bytes".
pub const MAX_BACKING_NAME: u32 = 1023;

/// QEMU's `QCOW_MAX_L1_SIZE` (block/qcow2.h): the L1 table may take at most
/// 32 MiB; larger values are treated as absurd.
pub const MAX_L1_BYTES: u64 = 32 << 20;

/// "Header", crypt_method: 0 = no encryption.
pub const CRYPT_NONE: u32 = 0;

/// "Header", incompatible_features bit 0: dirty bit (refcounts may be
/// inconsistent; data and mappings are valid, so reading is fine).
pub const INCOMPAT_DIRTY: u64 = 1 << 0;
/// Bit 1: corrupt bit (metadata known to be damaged; refuse).
pub const INCOMPAT_CORRUPT: u64 = 1 << 1;
/// Bit 2: external data file (guest data lives in another file).
pub const INCOMPAT_EXTERNAL_DATA: u64 = 1 << 2;
/// Bit 3: compression type (the compression_type header field is not 0).
pub const INCOMPAT_COMPRESSION: u64 = 1 << 3;
/// Bit 4: extended L2 entries (128-bit L2 entries with subclusters).
pub const INCOMPAT_EXTENDED_L2: u64 = 1 << 4;

/// "Header", compression_type: 0 = deflate (raw deflate, no zlib header).
pub const COMPRESSION_DEFLATE: u8 = 0;
/// compression_type 1 = zstd.
pub const COMPRESSION_ZSTD: u8 = 1;

/// "Header": "refcount_order ... Defaults to 4 (i.e. refcount_bits = 16)
/// for version 2 images".
pub const DEFAULT_REFCOUNT_ORDER: u32 = 4;

/// "Header extensions": type 0 ends the list.
pub const EXT_END: u32 = 0x0000_0000;
/// "Header extensions": backing file format name (a string, no NUL).
pub const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
/// "Header extensions": external data file name.
pub const EXT_DATA_FILE: u32 = 0x4441_5441;

/// "Cluster mapping", L1 entry bits 9-55: offset of the L2 table.
pub const L1E_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// "Cluster mapping", L2 entry bits 9-55 of a standard cluster descriptor:
/// host cluster offset.
pub const L2E_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// L1/L2 entry bit 63: "copied" (refcount is exactly one).
pub const OFLAG_COPIED: u64 = 1 << 63;
/// L2 entry bit 62: the cluster is compressed.
pub const OFLAG_COMPRESSED: u64 = 1 << 62;
/// Standard cluster descriptor bit 0 (v3 only): the cluster reads as zeros.
pub const OFLAG_ZERO: u64 = 1 << 0;

/// "Compressed Clusters Descriptor": compressed data is counted in 512-byte
/// sectors.
pub const COMPRESSED_SECTOR: u64 = 512;

/// Number of low bits of a compressed cluster descriptor holding the host
/// offset: `x = 62 - (cluster_bits - 8)`. Bits `x..=61` hold the number of
/// additional 512-byte sectors.
pub const fn compressed_offset_bits(cluster_bits: u32) -> u32 {
    62 - (cluster_bits - 8)
}

/// "Host cluster management", refcount table entry bits 9-63: offset of a
/// refcount block.
pub const REFT_OFFSET_MASK: u64 = 0xffff_ffff_ffff_fe00;

// Size asserts: the header field table is consistent with the lengths.
const _: () = assert!(OFF_SNAPSHOTS_OFFSET + 8 == V2_HEADER_LEN);
const _: () = assert!(OFF_HEADER_LENGTH + 4 == V3_MIN_HEADER_LEN);
const _: () = assert!(OFF_COMPRESSION_TYPE < V3_HEADER_LEN && V3_HEADER_LEN.is_multiple_of(8));
const _: () = assert!(compressed_offset_bits(16) == 54);
