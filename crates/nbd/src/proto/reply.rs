//! Replies in transmission mode: simple replies and structured reply chunks.
//!
//! ```text
//! simple:     0x67446698 u32 | error u32 | cookie u64 | (READ: data)
//! structured: 0x668e33ef u32 | flags u16 | type u16 | cookie u64 | length u32 | payload
//!   OFFSET_DATA   offset u64 | data
//!   OFFSET_HOLE   offset u64 | hole size u32
//!   BLOCK_STATUS  context id u32 | (length u32 | status flags u32)*
//!   ERROR         error u32 | message length u16 | message
//!   NONE          (empty; only with NBD_REPLY_FLAG_DONE)
//! ```
//!
//! The data of OFFSET_DATA is not copied here: the caller writes the header
//! from [`encode_offset_data_header`] and then the data itself.

use super::consts::*;

/// One BLOCK_STATUS descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusDescriptor {
    pub length: u32,
    /// `NBD_STATE_*` bits of base:allocation.
    pub flags: u32,
}

/// Appends a simple reply header (a READ's data follows it on success).
pub fn encode_simple_reply(out: &mut Vec<u8>, cookie: u64, error: u32) {
    out.extend_from_slice(&NBD_SIMPLE_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&error.to_be_bytes());
    out.extend_from_slice(&cookie.to_be_bytes());
}

fn chunk_header(out: &mut Vec<u8>, cookie: u64, done: bool, kind: u16, length: u32) {
    let flags = if done { NBD_REPLY_FLAG_DONE } else { 0 };
    out.extend_from_slice(&NBD_STRUCTURED_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&cookie.to_be_bytes());
    out.extend_from_slice(&length.to_be_bytes());
}

/// Appends the header of an OFFSET_DATA chunk carrying `data_len` bytes
/// (at most [`MAX_PAYLOAD`]) read at `offset`; the data follows.
pub fn encode_offset_data_header(
    out: &mut Vec<u8>,
    cookie: u64,
    done: bool,
    offset: u64,
    data_len: u32,
) {
    let length = data_len.saturating_add(8);
    chunk_header(out, cookie, done, NBD_REPLY_TYPE_OFFSET_DATA, length);
    out.extend_from_slice(&offset.to_be_bytes());
}

/// Appends an OFFSET_HOLE chunk: `size` bytes at `offset` read as zeros.
pub fn encode_offset_hole(out: &mut Vec<u8>, cookie: u64, done: bool, offset: u64, size: u32) {
    chunk_header(out, cookie, done, NBD_REPLY_TYPE_OFFSET_HOLE, 12);
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(&size.to_be_bytes());
}

/// Appends a BLOCK_STATUS chunk for context `context_id`. The caller bounds
/// the number of descriptors ([`MAX_STATUS_DESCRIPTORS`]).
pub fn encode_block_status(
    out: &mut Vec<u8>,
    cookie: u64,
    done: bool,
    context_id: u32,
    descriptors: &[StatusDescriptor],
) {
    let count = descriptors.len().min(MAX_STATUS_DESCRIPTORS);
    // 4 + 8 * 65536 fits a u32.
    let length = 4 + 8 * count as u32;
    chunk_header(out, cookie, done, NBD_REPLY_TYPE_BLOCK_STATUS, length);
    out.extend_from_slice(&context_id.to_be_bytes());
    for d in descriptors.iter().take(count) {
        out.extend_from_slice(&d.length.to_be_bytes());
        out.extend_from_slice(&d.flags.to_be_bytes());
    }
}

/// Appends an ERROR chunk (always the last: DONE is set) with a message
/// for humans, cut to 4096 bytes at a character boundary.
pub fn encode_error_chunk(out: &mut Vec<u8>, cookie: u64, error: u32, message: &str) {
    let mut end = message.len().min(4096);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let msg = message.get(..end).unwrap_or("");
    // end <= 4096 fits u16 and u32.
    chunk_header(out, cookie, true, NBD_REPLY_TYPE_ERROR, 6 + end as u32);
    out.extend_from_slice(&error.to_be_bytes());
    out.extend_from_slice(&(end as u16).to_be_bytes());
    out.extend_from_slice(msg.as_bytes());
}

/// Appends a NONE chunk with DONE: the end of a structured reply.
pub fn encode_none_chunk(out: &mut Vec<u8>, cookie: u64) {
    chunk_header(out, cookie, true, NBD_REPLY_TYPE_NONE, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_have_the_documented_layout() {
        let mut out = Vec::new();
        encode_offset_hole(&mut out, 0x1122, false, 4096, 512);
        assert_eq!(
            out,
            [
                0x66, 0x8e, 0x33, 0xef, // magic
                0, 0, // flags
                0, 2, // OFFSET_HOLE
                0, 0, 0, 0, 0, 0, 0x11, 0x22, // cookie
                0, 0, 0, 12, // length
                0, 0, 0, 0, 0, 0, 0x10, 0, // offset
                0, 0, 2, 0, // hole size
            ]
        );

        out.clear();
        encode_error_chunk(&mut out, 1, NBD_EIO, "é".repeat(3000).as_str());
        assert_eq!(out[4..8], [0, 1, 0x80, 1], "DONE flag and ERROR type");
        let msg_len = u16::from_be_bytes([out[24], out[25]]) as usize;
        assert_eq!(msg_len, 4096);
        assert_eq!(out.len(), 20 + 6 + msg_len);

        out.clear();
        encode_block_status(
            &mut out,
            1,
            true,
            1,
            &[StatusDescriptor {
                length: 9,
                flags: 3,
            }],
        );
        assert_eq!(out.len(), 20 + 4 + 8);
        assert_eq!(out[16..20], [0, 0, 0, 12]);

        out.clear();
        encode_simple_reply(&mut out, 5, NBD_EINVAL);
        assert_eq!(
            out,
            [0x67, 0x44, 0x66, 0x98, 0, 0, 0, 22, 0, 0, 0, 0, 0, 0, 0, 5]
        );
    }
}
