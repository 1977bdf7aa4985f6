//! Every on-disk constant of repository format v1, each with how it was
//! derived (the proxmox-backup `file_formats.rs` rule: one file, size asserts).
//!
//! ```text
//! <repo>/
//!   config                          JSON, see config.rs (format_version, keys)
//!   keys/<16 hex>.key               key slots: a copy of the config + its own key wrap (keyslot.rs)
//!   chunks/<xx>/<64 hex>            chunk blobs, xx = first 2 hex of the digest
//!   chunks/<xx>/.lock               flock: shared by store_chunk, exclusive by gc sweep
//!   chunks/<xx>/.tmp-*              chunk being written (renamed into place)
//!   indexes/<vm>/<id>/<disk>.idx    index blobs of one restore point
//!   snapshots/<vm>/<id>.manifest    manifest blob: the restore point exists iff this exists
//!   writers/<uuid>                  one per running backup, flock-ed exclusively by it
//!   locks/snapshots.lock            flock serialising lock / scan record / forget / prune; names its holder
//!   locks/gc.lock                   flock held by gc; names its holder
//!   quarantine/                     damaged files moved aside (see quarantine.rs)
//! ```
//!
//! Blob header (chunks, indexes, manifests), 48 bytes, little endian:
//!
//! ```text
//! off len field
//!   0   4 magic         BLOB_MAGIC_* (one per kind, so a file cannot pose as another kind)
//!   4   1 version       BLOB_VERSION
//!   5   1 flags         FLAG_COMPRESSED | FLAG_ENCRYPTED; other bits must be zero
//!   6   2 reserved      zero
//!   8   8 plain_len     length of the payload after decryption and decompression
//!  16  32 salt_or_sum   encrypted: random salt of the one-time key;
//!                       plain: blake3(header[0..16] || context || body)
//!  48   . body          encrypted: AES-256-GCM ciphertext || 16-byte tag
//!                       plain: the (possibly zstd-compressed) payload
//! ```

/// Format version written to `config` and to every manifest. Readers refuse
/// any other value with `Error::UnknownVersion`.
pub const FORMAT_VERSION: u32 = 1;

/// File name of the repository configuration.
pub const CONFIG_FILE: &str = "config";
/// Directory of key slots (`keys/<16 hex>.key`, see keyslot.rs).
pub const KEYS_DIR: &str = "keys";
/// Suffix of key slot files.
pub const KEY_SLOT_SUFFIX: &str = ".key";
/// Where `repo repair` moves a damaged key slot it cannot rewrite.
pub const QUARANTINE_KEYS_DIR: &str = "quarantine/keys";
/// Directory of chunk blobs.
pub const CHUNKS_DIR: &str = "chunks";
/// Directory of index blobs.
pub const INDEXES_DIR: &str = "indexes";
/// Directory of manifests.
pub const SNAPSHOTS_DIR: &str = "snapshots";
/// Directory of running-writer registrations.
pub const WRITERS_DIR: &str = "writers";
/// Directory of repository-wide lock files.
pub const LOCKS_DIR: &str = "locks";
/// Lock file serialising manifest changes (lock, scan records, forget,
/// prune) and the legacy config upgrade (see lock.rs).
pub const SNAPSHOTS_LOCK: &str = "snapshots.lock";
/// Lock file held by gc, so two do not run at once (see lock.rs).
pub const GC_LOCK: &str = "gc.lock";
/// `locks/verify.lock`: serialises updates of `state/verified`.
pub const VERIFY_LOCK: &str = "verify.lock";
/// Directory of state the repository keeps about itself (not restore points).
pub const STATE_DIR: &str = "state";
/// `state/verified`: when each chunk was last verified intact.
pub const VERIFIED_FILE: &str = "verified";
/// Directory of damaged files moved aside (see quarantine.rs); never
/// read as restore points or chunks, never swept by gc.
pub const QUARANTINE_DIR: &str = "quarantine";
/// `quarantine/chunks/`: `<digest>.<unix secs>` and its `.json` note.
pub const QUARANTINE_CHUNKS: &str = "chunks";
/// `quarantine/points/<vm>/<id>.<unix secs>/`: a whole restore point.
pub const QUARANTINE_POINTS: &str = "points";
/// The note inside a quarantined restore point's directory.
pub const QUARANTINE_NOTE: &str = "note.json";
/// Per-prefix lock file inside `chunks/<xx>/`.
pub const PREFIX_LOCK: &str = ".lock";
/// Prefix of every temporary file; list and gc-mark ignore such files, gc
/// sweep removes the ones older than its cutoff.
pub const TMP_PREFIX: &str = ".tmp-";
/// Suffix of manifest files.
pub const MANIFEST_SUFFIX: &str = ".manifest";
/// Suffix of index files.
pub const INDEX_SUFFIX: &str = ".idx";
/// `indexes/<vm>/<id>/.committed`: written after the manifest, removed
/// before a forget removes it; an index dir holding it without a manifest
/// lost its manifest (damage), one without it is a leftover gc removes.
pub const COMMITTED_MARKER: &str = ".committed";

/// Number of chunk prefix directories: one per value of the digest's first
/// byte (2 hex digits), so no directory grows past ~1/256 of the chunks.
pub const PREFIX_DIRS: usize = 256;

/// Length of a digest in bytes (BLAKE3 output).
pub const DIGEST_LEN: usize = 32;
/// Digest stored in an index for an all-zero chunk (never stored). A real
/// BLAKE3 output equal to it has probability 2^-256.
pub const ZERO_DIGEST: [u8; DIGEST_LEN] = [0; DIGEST_LEN];

/// Blob magics: "LB" (Lifeboat) + two letters naming the kind.
pub const BLOB_MAGIC_CHUNK: [u8; 4] = *b"LBCK";
pub const BLOB_MAGIC_INDEX: [u8; 4] = *b"LBIX";
pub const BLOB_MAGIC_MANIFEST: [u8; 4] = *b"LBMF";
/// Version of the blob header layout.
pub const BLOB_VERSION: u8 = 1;
/// Payload is zstd-compressed (set only when compression shrank it).
pub const FLAG_COMPRESSED: u8 = 0x01;
/// Body is AES-256-GCM encrypted.
pub const FLAG_ENCRYPTED: u8 = 0x02;
/// Length of the salt / checksum field: 32 bytes, the BLAKE3 key size, so a
/// salt is used unchanged as the input of the one-time key derivation.
pub const SALT_LEN: usize = 32;
/// Blob header: magic 4 + version 1 + flags 1 + reserved 2 + plain_len 8 + salt 32.
pub const BLOB_HEADER_LEN: usize = 4 + 1 + 1 + 2 + 8 + SALT_LEN;
const _: () = assert!(BLOB_HEADER_LEN == 48);
/// AES-GCM authentication tag length.
pub const TAG_LEN: usize = 16;

/// Index payload header: chunk_size u32, reserved u32, disk_size u64,
/// chunk count u64; followed by `count` digests of 32 bytes.
pub const INDEX_HEADER_LEN: usize = 4 + 4 + 8 + 8;
const _: () = assert!(INDEX_HEADER_LEN == 24);

/// Smallest chunk size accepted: one 4 KiB page (the finest granularity of
/// changed-block maps worth tracking).
pub const MIN_CHUNK_SIZE: u32 = 4096;
/// Largest chunk size accepted: 64 MiB. Bounds the memory a reader allocates
/// for one chunk from an untrusted `plain_len`.
pub const MAX_CHUNK_SIZE: u32 = 64 << 20;
/// Chunk sizes must be multiples of this (page-aligned chunks).
pub const CHUNK_ALIGN: u32 = 4096;
/// Largest index payload: 2^30 bytes = ~33 M chunks, i.e. 128 TiB disks at
/// 4 MiB chunks. Bounds memory taken from an untrusted header.
pub const MAX_INDEX_PLAIN: u64 = 1 << 30;
/// Largest manifest payload (JSON): 16 MiB is far beyond any real VM.
pub const MAX_MANIFEST_PLAIN: u64 = 16 << 20;

/// BLAKE3 derive_key contexts (globally unique, versioned strings).
pub const KDF_CONTEXT_CHUNK_ID: &str = "lifeboat v1 chunk id";
pub const KDF_CONTEXT_BLOB_ENCRYPTION: &str = "lifeboat v1 blob encryption";
/// AAD prefix of the wrapped master key (followed by the repository id) of
/// a config written before `config_mac` existed (a legacy config).
pub const KEY_WRAP_AAD: &[u8] = b"lifeboat v1 key wrap";
/// AAD prefix of the wrapped master key (followed by the repository id) of
/// a config that carries a `config_mac`. A different AAD, so that a key
/// wrapped this way never opens as a legacy one: stripping the MAC from a
/// config does not turn it into a legacy config that is believed unchecked.
pub const KEY_WRAP_AAD_MAC: &[u8] = b"lifeboat v1 key wrap, config mac";
/// BLAKE3 derive_key context of the config MAC key (from the master).
pub const KDF_CONTEXT_CONFIG_MAC: &str = "lifeboat v1 config mac";
/// BLAKE3 derive_key context of the key slot MAC key (from the master).
pub const KDF_CONTEXT_KEY_SLOT_MAC: &str = "lifeboat v1 key slot mac";
/// BLAKE3 derive_key context of a key slot's id: the first 8 bytes of
/// `derive_key(this, salt)` (unencrypted: of the repository id), as hex.
pub const KDF_CONTEXT_KEY_SLOT_ID: &str = "lifeboat v1 key slot id";
/// Hex digits of a key slot id (the file name without `.key`).
pub const KEY_SLOT_ID_HEX: usize = 16;
/// Master secret length: 256 bits.
pub const MASTER_KEY_LEN: usize = 32;

/// Argon2id defaults: 64 MiB, 3 passes, 4 lanes (RFC 9106's second
/// recommended option, "t=3, p=4, m=64 MiB"). The lanes are computed on
/// all cores (the `argon2` crate's `parallel` feature): 94 ms on the 2-core
/// bench machine, against 126 ms for 1 lane with the same memory and
/// passes. Recorded in `config` and in each key slot, so repositories made
/// with other parameters (1 lane before) keep opening with theirs.
pub const ARGON2_M_COST_KIB: u32 = 64 * 1024;
pub const ARGON2_T_COST: u32 = 3;
pub const ARGON2_P_COST: u32 = 4;

/// Argon2id bounds, checked at init and at open before Argon2id runs with a
/// config's parameters (the config is only authenticated after). The floor
/// is the cheapest cost this code ever wrote (the tests' 8 MiB, t=1);
/// the ceiling keeps a config written by someone else from making an
/// open allocate gigabytes or run for minutes: 2 GiB, 16 passes, 16 lanes.
pub const ARGON2_MIN_M_COST_KIB: u32 = 8 * 1024;
pub const ARGON2_MIN_T_COST: u32 = 1;
pub const ARGON2_MAX_M_COST_KIB: u32 = 2 * 1024 * 1024;
pub const ARGON2_MAX_T_COST: u32 = 16;
pub const ARGON2_MAX_P_COST: u32 = 16;

/// VM and disk names: `[A-Za-z0-9._-]{1,64}`, not starting with '.' (so they
/// never collide with `.tmp-*` / `.lock`).
pub const MAX_NAME_LEN: usize = 64;
/// Random hex digits appended to a restore point id (`YYYYMMDD-HHMMSS-xxxx`)
/// so two backups of one VM in one second do not clash.
pub const ID_RANDOM_HEX: usize = 4;

/// Safety margin subtracted from the gc cutoff, covering coarse filesystem
/// timestamps and the kernel clock lagging `SystemTime::now` a little.
pub const GC_MARGIN_SECS: u64 = 2;

/// Default chunk size: 4 MiB (to be tuned by benchmark, 1-4 MiB).
pub const DEFAULT_CHUNK_SIZE: u32 = 4 << 20;
/// Default zstd level. Blobs written at this level use zstd's level-3
/// strategy (double fast) with the `TUNED_ZSTD_*` parameters below instead
/// of zstd's own; other levels (`repo init --compression-level`) use
/// zstd's parameters unchanged.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// zstd parameters of [`DEFAULT_ZSTD_LEVEL`], chosen by the parameter search
/// in docs/performance.md (`crates/repo/examples/zstd_params.rs`): on the
/// bench image they store 1.0% more than zstd's level 3 (2% below restic)
/// and cut the full backup's CPU time by 16%. Not part of the format:
/// a zstd frame decodes whatever parameters made it, so nothing records
/// them. windowLog 22 (4 MiB) lets a match reach back over a whole chunk;
/// the hash (2^16) and chain (2^15) tables, 384 KiB together, are half
/// the size of zstd's, which leaves more of the L2 cache to the data.
pub const TUNED_ZSTD_WINDOW_LOG: u32 = 22;
pub const TUNED_ZSTD_HASH_LOG: u32 = 16;
pub const TUNED_ZSTD_CHAIN_LOG: u32 = 15;
