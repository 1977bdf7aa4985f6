//! Every number of the NBD protocol this crate uses, in one place.
//!
//! Source: the NBD protocol specification (`doc/proto.md` of the
//! NetworkBlockDevice/nbd project), section by section. Magic numbers are
//! ASCII strings or values the reference implementation picked; the comment
//! on each says which. All integers travel big-endian.

// --- Handshake (section "Newstyle negotiation") ---------------------------

/// First 8 bytes the server sends: ASCII "NBDMAGIC".
pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
/// Second 8 bytes of the greeting and the prefix of every client option:
/// ASCII "IHAVEOPT".
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// Prefix of every option reply (a value chosen by the reference server).
pub const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;

/// Handshake flag (server, u16): the server speaks the fixed newstyle protocol.
pub const NBD_FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
/// Handshake flag (server, u16): the server can omit the 124 zero bytes after
/// NBD_OPT_EXPORT_NAME.
pub const NBD_FLAG_NO_ZEROES: u16 = 1 << 1;
/// Client flag (u32): the client speaks the fixed newstyle protocol.
pub const NBD_FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
/// Client flag (u32): the client wants no 124 zero bytes after NBD_OPT_EXPORT_NAME.
pub const NBD_FLAG_C_NO_ZEROES: u32 = 1 << 1;

// --- Options (client -> server) -------------------------------------------

/// Select an export by name and enter transmission; no reply on failure
/// (the server closes the connection).
pub const NBD_OPT_EXPORT_NAME: u32 = 1;
/// End the negotiation; the server acknowledges and closes.
pub const NBD_OPT_ABORT: u32 = 2;
/// List the exports (one NBD_REP_SERVER each, then NBD_REP_ACK).
pub const NBD_OPT_LIST: u32 = 3;
/// Upgrade the connection to TLS: after the server's NBD_REP_ACK both sides
/// run a TLS handshake, and negotiation continues inside TLS.
pub const NBD_OPT_STARTTLS: u32 = 5;
/// Ask about an export without entering transmission.
pub const NBD_OPT_INFO: u32 = 6;
/// Like NBD_OPT_INFO, then enter transmission on success.
pub const NBD_OPT_GO: u32 = 7;
/// Ask for structured replies during transmission.
pub const NBD_OPT_STRUCTURED_REPLY: u32 = 8;
/// List the metadata contexts matching some queries.
pub const NBD_OPT_LIST_META_CONTEXT: u32 = 9;
/// Select metadata contexts for NBD_CMD_BLOCK_STATUS.
pub const NBD_OPT_SET_META_CONTEXT: u32 = 10;

// --- Option reply types ----------------------------------------------------

/// The option succeeded (and ends a multi-reply answer).
pub const NBD_REP_ACK: u32 = 1;
/// One export in the answer to NBD_OPT_LIST.
pub const NBD_REP_SERVER: u32 = 2;
/// One information item in the answer to NBD_OPT_INFO / NBD_OPT_GO.
pub const NBD_REP_INFO: u32 = 3;
/// One metadata context in the answer to LIST/SET_META_CONTEXT.
pub const NBD_REP_META_CONTEXT: u32 = 4;
/// Bit 31 marks an error reply.
pub const NBD_REP_FLAG_ERROR: u32 = 1 << 31;
/// The option is not known or not supported.
pub const NBD_REP_ERR_UNSUP: u32 = NBD_REP_FLAG_ERROR | 1;
/// Forbidden by server policy.
pub const NBD_REP_ERR_POLICY: u32 = NBD_REP_FLAG_ERROR | 2;
/// The option was malformed or sent in the wrong order.
pub const NBD_REP_ERR_INVALID: u32 = NBD_REP_FLAG_ERROR | 3;
/// The server requires TLS: the client must send NBD_OPT_STARTTLS first.
pub const NBD_REP_ERR_TLS_REQD: u32 = NBD_REP_FLAG_ERROR | 5;
/// The export named does not exist.
pub const NBD_REP_ERR_UNKNOWN: u32 = NBD_REP_FLAG_ERROR | 6;
/// The option or its reply is too large to process.
pub const NBD_REP_ERR_TOO_BIG: u32 = NBD_REP_FLAG_ERROR | 9;

/// NBD_REP_INFO item (u16): size and transmission flags.
pub const NBD_INFO_EXPORT: u16 = 0;
/// NBD_REP_INFO item: the export's canonical name.
pub const NBD_INFO_NAME: u16 = 1;
/// NBD_REP_INFO item: a human description.
pub const NBD_INFO_DESCRIPTION: u16 = 2;
/// NBD_REP_INFO item: minimum, preferred and maximum block sizes.
pub const NBD_INFO_BLOCK_SIZE: u16 = 3;

// --- Transmission flags (u16, sent with the export size) ------------------

/// Always set: the other flags are meaningful.
pub const NBD_FLAG_HAS_FLAGS: u16 = 1 << 0;
/// The export is read-only.
pub const NBD_FLAG_READ_ONLY: u16 = 1 << 1;
/// NBD_CMD_FLUSH is supported.
pub const NBD_FLAG_SEND_FLUSH: u16 = 1 << 2;
/// NBD_CMD_FLAG_FUA is supported.
pub const NBD_FLAG_SEND_FUA: u16 = 1 << 3;
/// NBD_CMD_TRIM is supported.
pub const NBD_FLAG_SEND_TRIM: u16 = 1 << 5;
/// NBD_CMD_WRITE_ZEROES is supported.
pub const NBD_FLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
/// NBD_CMD_FLAG_DF is supported (structured replies only).
pub const NBD_FLAG_SEND_DF: u16 = 1 << 7;
/// Several connections to the export see one consistent disk, and a flush on
/// one covers writes completed on all.
pub const NBD_FLAG_CAN_MULTI_CONN: u16 = 1 << 8;
/// NBD_CMD_CACHE is supported.
pub const NBD_FLAG_SEND_CACHE: u16 = 1 << 10;

// --- Transmission requests -------------------------------------------------

/// Prefix of every request (value chosen by the reference implementation).
pub const NBD_REQUEST_MAGIC: u32 = 0x2560_9513;
/// Size of a request header: magic u32, flags u16, type u16, cookie u64,
/// offset u64, length u32.
pub const REQUEST_HEADER_LEN: usize = 4 + 2 + 2 + 8 + 8 + 4;

/// Read `length` bytes at `offset`.
pub const NBD_CMD_READ: u16 = 0;
/// Write the `length` payload bytes that follow the header.
pub const NBD_CMD_WRITE: u16 = 1;
/// Disconnect: no reply, the server closes after finishing earlier requests.
pub const NBD_CMD_DISC: u16 = 2;
/// Make every completed write durable.
pub const NBD_CMD_FLUSH: u16 = 3;
/// Hint that a range is no longer needed.
pub const NBD_CMD_TRIM: u16 = 4;
/// Hint to prefetch a range.
pub const NBD_CMD_CACHE: u16 = 5;
/// Write zeros to a range without a payload.
pub const NBD_CMD_WRITE_ZEROES: u16 = 6;
/// Report metadata (here: allocation) of a range.
pub const NBD_CMD_BLOCK_STATUS: u16 = 7;

/// Command flag: force unit access (flush this write before replying).
pub const NBD_CMD_FLAG_FUA: u16 = 1 << 0;
/// Command flag (WRITE_ZEROES): do not punch a hole.
pub const NBD_CMD_FLAG_NO_HOLE: u16 = 1 << 1;
/// Command flag (READ): don't fragment, reply with one data chunk.
pub const NBD_CMD_FLAG_DF: u16 = 1 << 2;
/// Command flag (BLOCK_STATUS): one descriptor is enough.
pub const NBD_CMD_FLAG_REQ_ONE: u16 = 1 << 3;
/// Command flag (WRITE_ZEROES): fail fast if zeroing would be slow.
pub const NBD_CMD_FLAG_FAST_ZERO: u16 = 1 << 4;

// --- Replies -----------------------------------------------------------------

/// Prefix of a simple reply (magic u32, error u32, cookie u64).
pub const NBD_SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// Size of a simple reply header.
pub const SIMPLE_REPLY_LEN: usize = 4 + 4 + 8;
/// Prefix of a structured reply chunk (magic u32, flags u16, type u16,
/// cookie u64, length u32).
pub const NBD_STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;
/// Size of a structured reply chunk header.
pub const STRUCTURED_REPLY_LEN: usize = 4 + 2 + 2 + 8 + 4;
/// Chunk flag: this is the last chunk of the reply.
pub const NBD_REPLY_FLAG_DONE: u16 = 1 << 0;

/// Chunk type: no payload (used to end a reply).
pub const NBD_REPLY_TYPE_NONE: u16 = 0;
/// Chunk type: offset u64 then data.
pub const NBD_REPLY_TYPE_OFFSET_DATA: u16 = 1;
/// Chunk type: offset u64 and hole size u32; the range reads as zeros.
pub const NBD_REPLY_TYPE_OFFSET_HOLE: u16 = 2;
/// Chunk type: context id u32 then (length u32, flags u32) descriptors.
pub const NBD_REPLY_TYPE_BLOCK_STATUS: u16 = 5;
/// Chunk type: error u32, message length u16, message (bit 15 marks errors).
pub const NBD_REPLY_TYPE_ERROR: u16 = (1 << 15) | 1;

// --- Errors (values of Linux errno, fixed by the spec) ---------------------

/// Operation not permitted (a write to a read-only export).
pub const NBD_EPERM: u32 = 1;
/// Input/output error (the disk under the export failed).
pub const NBD_EIO: u32 = 5;
/// Cannot allocate memory.
pub const NBD_ENOMEM: u32 = 12;
/// Invalid argument (a read past the end, an unknown command, a bad flag).
pub const NBD_EINVAL: u32 = 22;
/// No space left (a write past the end).
pub const NBD_ENOSPC: u32 = 28;
/// Value too large (a read longer than the maximum block size).
pub const NBD_EOVERFLOW: u32 = 75;
/// Operation not supported (NBD_CMD_FLAG_FAST_ZERO when zeroing is not fast).
pub const NBD_ENOTSUP: u32 = 95;

// --- Metadata contexts -------------------------------------------------------

/// The only metadata context this server offers.
pub const BASE_ALLOCATION: &str = "base:allocation";
/// Its id in NBD_REP_META_CONTEXT and BLOCK_STATUS chunks (any non-zero
/// server-chosen value; 1 since there is only one).
pub const BASE_ALLOCATION_ID: u32 = 1;
/// base:allocation flag: the range is not allocated.
pub const NBD_STATE_HOLE: u32 = 1 << 0;
/// base:allocation flag: the range reads as zeros.
pub const NBD_STATE_ZERO: u32 = 1 << 1;

// --- Limits of this server -------------------------------------------------

/// Largest READ/WRITE payload accepted (the spec's recommended maximum
/// block size): larger requests get EINVAL / EOVERFLOW, never an allocation.
pub const MAX_PAYLOAD: u32 = 32 << 20;
/// Largest option payload accepted during negotiation. Names and queries
/// are at most 4096 bytes each by the spec; 64 KiB leaves room for a few.
pub const MAX_OPTION_LEN: u32 = 64 << 10;
/// Longest export name or metadata context string (the spec's limit).
pub const MAX_STRING_LEN: u32 = 4096;
/// Most BLOCK_STATUS descriptors in one reply; the spec lets a server
/// describe less than the requested range.
pub const MAX_STATUS_DESCRIPTORS: usize = 1 << 16;
/// Preferred block size reported in NBD_INFO_BLOCK_SIZE.
pub const PREFERRED_BLOCK: u32 = 4096;

const _: () = assert!(REQUEST_HEADER_LEN == 28);
const _: () = assert!(SIMPLE_REPLY_LEN == 16);
const _: () = assert!(STRUCTURED_REPLY_LEN == 20);
