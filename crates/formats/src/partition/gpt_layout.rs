//! The on-disk layout of a GUID Partition Table, owned here once for the
//! writer ([`crate::gpt`]) and the reader ([`super::gpt_read`]): the field
//! offsets of the header and of one entry, their encoding and decoding, and
//! the two CRC32s (zlib polynomial, `crc32fast`).
//!
//! Layout (UEFI 2.10, section 5.3), little-endian. The header sits at LBA 1,
//! its backup at the last LBA of the disk; the rest of its block is zero.
//!
//! ```text
//! header  0  8  signature "EFI PART"
//!         8  4  revision (1.0 = 0x0001_0000)
//!        12  4  header size (92 up to one block)
//!        16  4  header CRC32 over `header size` bytes, this field zeroed
//!        20  4  reserved
//!        24  8  my LBA             32  8  alternate LBA
//!        40  8  first usable LBA   48  8  last usable LBA
//!        56 16  disk GUID
//!        72  8  entry array LBA
//!        80  4  entry count        84  4  entry size (128 x 2^n)
//!        88  4  entry array CRC32 (over count x size bytes)
//! entry   0 16  type GUID (all zero = unused)
//!        16 16  unique GUID
//!        32  8  first LBA          40  8  last LBA (inclusive)
//!        48  8  attributes
//!        56 72  name, UTF-16LE, NUL-padded (36 units)
//! ```
//!
//! An entry slot may be larger than 128 bytes (the header says so); only
//! its first 128 bytes carry fields.

/// "EFI PART", the header signature.
pub const SIGNATURE: &[u8; 8] = b"EFI PART";
/// Header revision 1.0.
pub const REVISION: u32 = 0x0001_0000;
/// Size of the header proper (the smallest valid `header size`).
pub const HEADER_SIZE: usize = 92;
/// Size of the fields of one entry (the smallest valid `entry size`).
pub const ENTRY_SIZE: usize = 128;
/// Where the header CRC32 sits in the header.
const HEADER_CRC: std::ops::Range<usize> = 16..20;
/// Where the name sits in an entry, and how many UTF-16 units it holds.
const NAME: std::ops::Range<usize> = 56..128;
const NAME_UNITS: usize = (NAME.end - NAME.start) / 2;

/// The fields of a GPT header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub revision: u32,
    /// How many bytes the header CRC covers.
    pub header_size: u32,
    /// The header CRC32 as stored (ignored by [`Header::encode`], which
    /// computes it).
    pub header_crc: u32,
    pub my_lba: u64,
    pub alternate_lba: u64,
    pub first_usable: u64,
    pub last_usable: u64,
    pub disk_guid: [u8; 16],
    pub array_lba: u64,
    pub entry_count: u32,
    pub entry_size: u32,
    pub array_crc: u32,
}

impl Header {
    /// The header of a new table (revision 1.0, 92 bytes, 128-byte entries).
    pub fn new(my_lba: u64, alternate_lba: u64, array_lba: u64) -> Header {
        Header {
            revision: REVISION,
            header_size: HEADER_SIZE as u32,
            header_crc: 0,
            my_lba,
            alternate_lba,
            first_usable: 0,
            last_usable: 0,
            disk_guid: [0; 16],
            array_lba,
            entry_count: 0,
            entry_size: ENTRY_SIZE as u32,
            array_crc: 0,
        }
    }

    /// A `block`-byte block holding this header with its CRC computed over
    /// the first [`HEADER_SIZE`] bytes (`header_size` is written as
    /// [`HEADER_SIZE`]); a block shorter than that is made that long.
    pub fn encode(&self, block: usize) -> Vec<u8> {
        let mut h = vec![0u8; block.max(HEADER_SIZE)];
        h[0..8].copy_from_slice(SIGNATURE);
        h[8..12].copy_from_slice(&self.revision.to_le_bytes());
        h[12..16].copy_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
        h[24..32].copy_from_slice(&self.my_lba.to_le_bytes());
        h[32..40].copy_from_slice(&self.alternate_lba.to_le_bytes());
        h[40..48].copy_from_slice(&self.first_usable.to_le_bytes());
        h[48..56].copy_from_slice(&self.last_usable.to_le_bytes());
        h[56..72].copy_from_slice(&self.disk_guid);
        h[72..80].copy_from_slice(&self.array_lba.to_le_bytes());
        h[80..84].copy_from_slice(&self.entry_count.to_le_bytes());
        h[84..88].copy_from_slice(&self.entry_size.to_le_bytes());
        h[88..92].copy_from_slice(&self.array_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..HEADER_SIZE]);
        h[HEADER_CRC].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// The fields of the header at the start of `block`; `None` when the
    /// block is shorter than [`HEADER_SIZE`] or has no signature. Nothing
    /// is checked beyond that (see [`header_crc`]).
    pub fn decode(block: &[u8]) -> Option<Header> {
        let h: &[u8; HEADER_SIZE] = block.get(..HEADER_SIZE)?.try_into().ok()?;
        if &h[0..8] != SIGNATURE {
            return None;
        }
        Some(Header {
            revision: u32_at(h, 8),
            header_size: u32_at(h, 12),
            header_crc: u32_at(h, 16),
            my_lba: u64_at(h, 24),
            alternate_lba: u64_at(h, 32),
            first_usable: u64_at(h, 40),
            last_usable: u64_at(h, 48),
            disk_guid: guid_at(h, 56),
            array_lba: u64_at(h, 72),
            entry_count: u32_at(h, 80),
            entry_size: u32_at(h, 84),
            array_crc: u32_at(h, 88),
        })
    }
}

/// The CRC32 of the first `header_size` bytes of `block` with the header
/// CRC field zeroed; `None` when `header_size` is below [`HEADER_SIZE`] or
/// beyond the block.
pub fn header_crc(block: &[u8], header_size: usize) -> Option<u32> {
    if header_size < HEADER_SIZE {
        return None;
    }
    let mut copy = block.get(..header_size)?.to_vec();
    copy[HEADER_CRC].fill(0);
    Some(crc32fast::hash(&copy))
}

/// The CRC32 of an entry array (all `entry count` x `entry size` bytes).
pub fn array_crc(array: &[u8]) -> u32 {
    crc32fast::hash(array)
}

/// The fields of one GPT entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub type_guid: [u8; 16],
    pub unique_guid: [u8; 16],
    pub first_lba: u64,
    /// Inclusive.
    pub last_lba: u64,
    pub attributes: u64,
    /// Up to 36 UTF-16 units are stored; the rest is cut.
    pub name: String,
}

impl Entry {
    /// True for an unused slot (its type GUID is all zero).
    pub fn is_unused(&self) -> bool {
        self.type_guid == [0; 16]
    }

    /// The [`ENTRY_SIZE`] bytes of this entry.
    pub fn encode(&self) -> [u8; ENTRY_SIZE] {
        let mut e = [0u8; ENTRY_SIZE];
        e[0..16].copy_from_slice(&self.type_guid);
        e[16..32].copy_from_slice(&self.unique_guid);
        e[32..40].copy_from_slice(&self.first_lba.to_le_bytes());
        e[40..48].copy_from_slice(&self.last_lba.to_le_bytes());
        e[48..56].copy_from_slice(&self.attributes.to_le_bytes());
        let name = &mut e[NAME];
        for (slot, unit) in name
            .chunks_exact_mut(2)
            .zip(self.name.encode_utf16().take(NAME_UNITS))
        {
            slot.copy_from_slice(&unit.to_le_bytes());
        }
        e
    }

    /// The fields of the entry at the start of `slot`; `None` when the slot
    /// is shorter than [`ENTRY_SIZE`]. The name ends at its first NUL;
    /// invalid UTF-16 becomes U+FFFD.
    pub fn decode(slot: &[u8]) -> Option<Entry> {
        let e: &[u8; ENTRY_SIZE] = slot.get(..ENTRY_SIZE)?.try_into().ok()?;
        let units: Vec<u16> = e[NAME]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        Some(Entry {
            type_guid: guid_at(e, 0),
            unique_guid: guid_at(e, 16),
            first_lba: u64_at(e, 32),
            last_lba: u64_at(e, 40),
            attributes: u64_at(e, 48),
            name: String::from_utf16_lossy(&units),
        })
    }
}

/// The little-endian u32 at `at` of a fixed-size record (offsets are the
/// constants above, always inside it).
fn u32_at<const N: usize>(b: &[u8; N], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at<const N: usize>(b: &[u8; N], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn guid_at<const N: usize>(b: &[u8; N], at: usize) -> [u8; 16] {
    let mut g = [0u8; 16];
    g.copy_from_slice(&b[at..at + 16]);
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_with_a_valid_crc() {
        let mut h = Header::new(1, 4095, 2);
        h.first_usable = 34;
        h.last_usable = 4062;
        h.disk_guid = [9; 16];
        h.entry_count = 128;
        h.array_crc = 0xDEAD_BEEF;
        let block = h.encode(512);
        assert_eq!(block.len(), 512);
        assert_eq!(&block[0..8], SIGNATURE);
        let back = Header::decode(&block).unwrap();
        assert_eq!(Some(back.header_crc), header_crc(&block, HEADER_SIZE));
        assert_eq!(
            Header {
                header_crc: 0,
                ..back
            },
            h
        );
        // The CRC covers the header: any byte of it changes the sum.
        let mut bad = block.clone();
        bad[40] ^= 1;
        assert_ne!(header_crc(&bad, HEADER_SIZE), Some(back.header_crc));
        assert_eq!(header_crc(&block, 91), None);
        assert_eq!(header_crc(&block, 513), None);
        assert!(Header::decode(&block[..91]).is_none());
        assert!(Header::decode(&[0u8; 512]).is_none());
    }

    #[test]
    fn entry_round_trips_and_cuts_long_names() {
        let e = Entry {
            type_guid: [1; 16],
            unique_guid: [2; 16],
            first_lba: 2048,
            last_lba: 4095,
            attributes: 1 << 63,
            name: "root é".into(),
        };
        let bytes = e.encode();
        assert_eq!(u64_at(&bytes, 32), 2048);
        assert_eq!(Entry::decode(&bytes).unwrap(), e);
        let mut slot = bytes.to_vec();
        slot.extend_from_slice(&[0xFF; 128]); // a 256-byte slot
        assert_eq!(Entry::decode(&slot).unwrap(), e);
        assert!(Entry::decode(&bytes[..127]).is_none());

        let long = Entry {
            name: "x".repeat(40),
            ..e
        };
        assert_eq!(Entry::decode(&long.encode()).unwrap().name, "x".repeat(36));
        assert!(Entry::decode(&[0u8; 128]).unwrap().is_unused());
    }
}
