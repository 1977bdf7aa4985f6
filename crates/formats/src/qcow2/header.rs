//! The qcow2 header: parsing with validation (reader) and encoding (writer).
//!
//! Validation refuses anything the reader could not map safely: a header
//! shorter than its version needs, a bad magic, cluster_bits outside 9..=21,
//! an L1 table that does not cover the virtual size or is absurdly large,
//! tables that lie outside the file, encryption, and the incompatible
//! features the reader does not implement (corrupt, external data file,
//! extended L2 entries, unknown bits). Header extensions are walked for the
//! backing file format name.

use super::layout::*;
use lifeboat_vdisk::{Error, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;

/// The fields of a qcow2 header the reader and writer use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub version: u32,
    pub cluster_bits: u32,
    pub size: u64,
    pub l1_size: u32,
    pub l1_table_offset: u64,
    pub refcount_table_offset: u64,
    pub refcount_table_clusters: u32,
    pub incompatible: u64,
    pub refcount_order: u32,
    pub header_length: u32,
    pub compression_type: u8,
    /// The backing file name as stored (not resolved), if any.
    pub backing_file: Option<Vec<u8>>,
    /// The backing format from the header extension, if any.
    pub backing_format: Option<String>,
}

fn be32(h: &[u8; V3_HEADER_LEN], off: usize) -> u32 {
    u32::from_be_bytes([h[off], h[off + 1], h[off + 2], h[off + 3]])
}

fn be64(h: &[u8; V3_HEADER_LEN], off: usize) -> u64 {
    (u64::from(be32(h, off)) << 32) | u64::from(be32(h, off + 4))
}

/// Reads exactly `buf.len()` bytes at `offset`, mapping a short file to a
/// corruption error that names `what` and `field`.
pub(crate) fn read_exact(
    file: &File,
    buf: &mut [u8],
    offset: u64,
    what: &str,
    field: &str,
) -> Result<()> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::corrupt(
                what,
                format!(
                    "{field} ({} bytes at offset {offset}) lies past the end of the file",
                    buf.len()
                ),
            )
        } else {
            Error::io(what, offset, e)
        }
    })
}

/// Fails unless `offset..offset+len` lies inside a file of `file_len` bytes.
pub(crate) fn check_inside(
    what: &str,
    field: &str,
    offset: u64,
    len: u64,
    file_len: u64,
) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= file_len => Ok(()),
        _ => Err(Error::corrupt(
            what,
            format!("{field} ({len} bytes at offset {offset}) lies past the end of the file ({file_len} bytes)"),
        )),
    }
}

impl Header {
    pub fn cluster_size(&self) -> u64 {
        1u64 << self.cluster_bits
    }

    /// Parses and validates the header of `file` (`file_len` bytes long);
    /// `what` names the image in errors.
    pub fn parse(file: &File, file_len: u64, what: &str) -> Result<Header> {
        let mut h = [0u8; V3_HEADER_LEN];
        let got = file_len.min(V3_HEADER_LEN as u64) as usize;
        if got < V2_HEADER_LEN {
            return Err(Error::corrupt(
                what,
                format!("truncated header: the file is {file_len} bytes, a qcow2 header needs {V2_HEADER_LEN}"),
            ));
        }
        read_exact(file, &mut h[..got], 0, what, "header")?;
        if h[..4] != MAGIC {
            return Err(Error::corrupt(
                what,
                format!("bad magic {:02x?}, expected \"QFI\\xfb\"", &h[..4]),
            ));
        }
        let version = be32(&h, OFF_VERSION);
        if version != 2 && version != 3 {
            return Err(Error::unsupported(
                what,
                format!("qcow2 version {version} (only 2 and 3 are known)"),
            ));
        }
        if version == 3 && got < V3_MIN_HEADER_LEN {
            return Err(Error::corrupt(
                what,
                format!("truncated header: the file is {file_len} bytes, a qcow2 v3 header needs {V3_MIN_HEADER_LEN}"),
            ));
        }
        let cluster_bits = be32(&h, OFF_CLUSTER_BITS);
        if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
            return Err(Error::corrupt(
                what,
                format!(
                    "cluster_bits {cluster_bits} outside {MIN_CLUSTER_BITS}..={MAX_CLUSTER_BITS}"
                ),
            ));
        }
        let cluster_size = 1u64 << cluster_bits;
        let (incompatible, refcount_order, header_length) = if version == 3 {
            (
                be64(&h, OFF_INCOMPATIBLE_FEATURES),
                be32(&h, OFF_REFCOUNT_ORDER),
                be32(&h, OFF_HEADER_LENGTH),
            )
        } else {
            (0, DEFAULT_REFCOUNT_ORDER, V2_HEADER_LEN as u32)
        };
        if version == 3 {
            if (header_length as usize) < V3_MIN_HEADER_LEN
                || u64::from(header_length) > cluster_size
            {
                return Err(Error::corrupt(
                    what,
                    format!("header_length {header_length} outside {V3_MIN_HEADER_LEN}..={cluster_size}"),
                ));
            }
            if refcount_order > 6 {
                return Err(Error::corrupt(
                    what,
                    format!("refcount_order {refcount_order} is above 6"),
                ));
            }
        }
        let compression_type = if header_length as usize > OFF_COMPRESSION_TYPE {
            h[OFF_COMPRESSION_TYPE]
        } else {
            COMPRESSION_DEFLATE
        };
        check_features(what, incompatible, compression_type)?;

        let crypt = be32(&h, OFF_CRYPT_METHOD);
        if crypt != CRYPT_NONE {
            return Err(Error::unsupported(
                what,
                format!("encrypted image (crypt_method {crypt})"),
            ));
        }

        let size = be64(&h, OFF_SIZE);
        let l1_size = be32(&h, OFF_L1_SIZE);
        let l1_table_offset = be64(&h, OFF_L1_TABLE_OFFSET);
        // One L1 entry maps cluster_size / 8 clusters.
        let l1_span = cluster_size * (cluster_size / 8);
        let needed = size.div_ceil(l1_span);
        if u64::from(l1_size) * 8 > MAX_L1_BYTES {
            return Err(Error::corrupt(
                what,
                format!("absurd L1 table size of {l1_size} entries"),
            ));
        }
        if needed > u64::from(l1_size) {
            return Err(Error::corrupt(
                what,
                format!(
                    "virtual size {size} needs {needed} L1 entries but the table has {l1_size}"
                ),
            ));
        }
        if l1_size > 0 {
            check_aligned(what, "L1 table offset", l1_table_offset, cluster_size)?;
            check_inside(
                what,
                "L1 table",
                l1_table_offset,
                u64::from(l1_size) * 8,
                file_len,
            )?;
        }
        let refcount_table_offset = be64(&h, OFF_REFCOUNT_TABLE_OFFSET);
        let refcount_table_clusters = be32(&h, OFF_REFCOUNT_TABLE_CLUSTERS);
        check_aligned(
            what,
            "refcount table offset",
            refcount_table_offset,
            cluster_size,
        )?;
        let reft_len = u64::from(refcount_table_clusters)
            .checked_mul(cluster_size)
            .ok_or_else(|| Error::corrupt(what, "absurd refcount table size"))?;
        check_inside(
            what,
            "refcount table",
            refcount_table_offset,
            reft_len,
            file_len,
        )?;
        let nb_snapshots = be32(&h, OFF_NB_SNAPSHOTS);
        if nb_snapshots > 0 {
            check_inside(
                what,
                "snapshot table",
                be64(&h, OFF_SNAPSHOTS_OFFSET),
                1,
                file_len,
            )?;
        }

        let backing_offset = be64(&h, OFF_BACKING_FILE_OFFSET);
        let backing_file = if backing_offset != 0 {
            let len = be32(&h, OFF_BACKING_FILE_SIZE);
            if len == 0 || len > MAX_BACKING_NAME {
                return Err(Error::corrupt(
                    what,
                    format!("backing file name length {len} outside 1..=1023"),
                ));
            }
            check_inside(
                what,
                "backing file name",
                backing_offset,
                u64::from(len),
                file_len,
            )?;
            let mut name = vec![0u8; len as usize];
            read_exact(file, &mut name, backing_offset, what, "backing file name")?;
            Some(name)
        } else {
            None
        };

        let mut header = Header {
            version,
            cluster_bits,
            size,
            l1_size,
            l1_table_offset,
            refcount_table_offset,
            refcount_table_clusters,
            incompatible,
            refcount_order,
            header_length,
            compression_type,
            backing_file,
            backing_format: None,
        };
        header.read_extensions(file, file_len, what, backing_offset)?;
        Ok(header)
    }

    /// Walks the header extensions after the header, inside cluster 0 and
    /// before the backing file name, keeping the backing format.
    fn read_extensions(
        &mut self,
        file: &File,
        file_len: u64,
        what: &str,
        backing_offset: u64,
    ) -> Result<()> {
        let mut end = self.cluster_size().min(file_len);
        if backing_offset != 0 && backing_offset < end {
            end = backing_offset;
        }
        let start = u64::from(self.header_length);
        if end <= start {
            return Ok(());
        }
        let mut area = vec![0u8; (end - start) as usize];
        read_exact(file, &mut area, start, what, "header extensions")?;
        let mut pos = 0usize;
        while let Some(head) = area.get(pos..pos + 8) {
            let ty = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
            if ty == EXT_END {
                break;
            }
            let data = area.get(pos + 8..pos + 8 + len).ok_or_else(|| {
                Error::corrupt(
                    what,
                    format!("header extension {ty:#010x} of {len} bytes at offset {} runs past cluster 0", start + pos as u64),
                )
            })?;
            if ty == EXT_BACKING_FORMAT {
                self.backing_format = Some(String::from_utf8_lossy(data).into_owned());
            }
            pos += 8 + len.div_ceil(8) * 8;
        }
        Ok(())
    }

    /// Encodes a version 3 header of [`V3_HEADER_LEN`] bytes followed by the
    /// end-of-extensions marker (no backing file, no snapshots).
    pub fn encode_v3(&self) -> Vec<u8> {
        let mut h = vec![0u8; V3_HEADER_LEN + 8];
        let put32 =
            |h: &mut Vec<u8>, off: usize, v: u32| h[off..off + 4].copy_from_slice(&v.to_be_bytes());
        let put64 =
            |h: &mut Vec<u8>, off: usize, v: u64| h[off..off + 8].copy_from_slice(&v.to_be_bytes());
        h[..4].copy_from_slice(&MAGIC);
        put32(&mut h, OFF_VERSION, 3);
        put32(&mut h, OFF_CLUSTER_BITS, self.cluster_bits);
        put64(&mut h, OFF_SIZE, self.size);
        put32(&mut h, OFF_CRYPT_METHOD, CRYPT_NONE);
        put32(&mut h, OFF_L1_SIZE, self.l1_size);
        put64(&mut h, OFF_L1_TABLE_OFFSET, self.l1_table_offset);
        put64(
            &mut h,
            OFF_REFCOUNT_TABLE_OFFSET,
            self.refcount_table_offset,
        );
        put32(
            &mut h,
            OFF_REFCOUNT_TABLE_CLUSTERS,
            self.refcount_table_clusters,
        );
        put64(&mut h, OFF_INCOMPATIBLE_FEATURES, self.incompatible);
        put64(&mut h, OFF_COMPATIBLE_FEATURES, 0);
        put64(&mut h, OFF_AUTOCLEAR_FEATURES, 0);
        put32(&mut h, OFF_REFCOUNT_ORDER, self.refcount_order);
        put32(&mut h, OFF_HEADER_LENGTH, V3_HEADER_LEN as u32);
        h[OFF_COMPRESSION_TYPE] = self.compression_type;
        // Bytes V3_HEADER_LEN.. stay zero: extension type 0 (end), length 0.
        h
    }
}

fn check_aligned(what: &str, field: &str, offset: u64, cluster_size: u64) -> Result<()> {
    if !offset.is_multiple_of(cluster_size) {
        return Err(Error::corrupt(
            what,
            format!("{field} {offset} is not aligned to the cluster size {cluster_size}"),
        ));
    }
    Ok(())
}

/// Refuses incompatible features the reader does not implement.
fn check_features(what: &str, incompatible: u64, compression_type: u8) -> Result<()> {
    if incompatible & INCOMPAT_CORRUPT != 0 {
        return Err(Error::corrupt(
            what,
            "the image is marked corrupt (incompatible feature bit 1); repair it with `qemu-img check -r all`",
        ));
    }
    if incompatible & INCOMPAT_EXTERNAL_DATA != 0 {
        return Err(Error::unsupported(
            what,
            "external data file (incompatible feature bit 2)",
        ));
    }
    if incompatible & INCOMPAT_EXTENDED_L2 != 0 {
        return Err(Error::unsupported(
            what,
            "extended L2 entries / subclusters (incompatible feature bit 4)",
        ));
    }
    let known = INCOMPAT_DIRTY
        | INCOMPAT_CORRUPT
        | INCOMPAT_EXTERNAL_DATA
        | INCOMPAT_COMPRESSION
        | INCOMPAT_EXTENDED_L2;
    let unknown = incompatible & !known;
    if unknown != 0 {
        return Err(Error::unsupported(
            what,
            format!(
                "unknown incompatible feature bit {}",
                unknown.trailing_zeros()
            ),
        ));
    }
    let flagged = incompatible & INCOMPAT_COMPRESSION != 0;
    match compression_type {
        COMPRESSION_DEFLATE => Ok(()),
        COMPRESSION_ZSTD if flagged => Ok(()),
        COMPRESSION_ZSTD => Err(Error::corrupt(
            what,
            "compression_type is zstd but incompatible feature bit 3 is clear",
        )),
        other => Err(Error::unsupported(
            what,
            format!("compression type {other}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn header() -> Header {
        Header {
            version: 3,
            cluster_bits: 16,
            size: 1 << 30,
            l1_size: 2,
            l1_table_offset: 65536,
            refcount_table_offset: 131072,
            refcount_table_clusters: 1,
            incompatible: 0,
            refcount_order: 4,
            header_length: V3_HEADER_LEN as u32,
            compression_type: 0,
            backing_file: None,
            backing_format: None,
        }
    }

    fn file_with(bytes: &[u8], len: u64) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f.as_file().set_len(len).unwrap();
        f
    }

    #[test]
    fn encoded_header_parses_back() {
        let h = header();
        let f = file_with(&h.encode_v3(), 3 << 16);
        assert_eq!(Header::parse(f.as_file(), 3 << 16, "t").unwrap(), h);
    }

    #[test]
    fn bad_fields_are_refused_with_names() {
        type Change<'a> = &'a dyn Fn(&mut Header);
        let cases: [(Change, &str); 4] = [
            (&|h| h.cluster_bits = 40, "cluster_bits 40"),
            (&|h| h.l1_size = 1, "needs 2 L1 entries"),
            (&|h| h.l1_table_offset = 1 << 40, "L1 table"),
            (&|h| h.incompatible = INCOMPAT_EXTENDED_L2, "extended L2"),
        ];
        for (change, needle) in cases {
            let mut h = header();
            change(&mut h);
            let f = file_with(&h.encode_v3(), 3 << 16);
            let err = Header::parse(f.as_file(), 3 << 16, "t")
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }
}
