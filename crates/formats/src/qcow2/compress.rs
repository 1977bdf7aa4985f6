//! Decompression of qcow2 compressed clusters.
//!
//! The compressed bytes handed in are an upper bound on the stream (the
//! descriptor counts whole 512-byte sectors, and the last sector may hold the
//! start of the next cluster), so both decoders stop after one cluster of
//! output and ignore what follows: deflate is a raw deflate stream (no zlib
//! header, as QEMU writes it), zstd is one or more zstd frames.

use super::layout::{COMPRESSION_DEFLATE, COMPRESSION_ZSTD};
use std::io::Read;

/// Inflates `input` into `out` (exactly one cluster). Returns a description
/// of the failure, which the caller wraps in a corruption error naming the
/// image and the cluster.
pub(crate) fn decompress(compression_type: u8, input: &[u8], out: &mut [u8]) -> Result<(), String> {
    match compression_type {
        COMPRESSION_DEFLATE => {
            let mut decoder = flate2::read::DeflateDecoder::new(input);
            fill(&mut decoder, out, "deflate")
        }
        COMPRESSION_ZSTD => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(input)
                .map_err(|e| format!("zstd: {e}"))?
                .single_frame();
            fill(&mut decoder, out, "zstd")
        }
        other => Err(format!("unknown compression type {other}")),
    }
}

fn fill(reader: &mut dyn Read, out: &mut [u8], name: &str) -> Result<(), String> {
    let mut got = 0;
    while got < out.len() {
        match reader.read(&mut out[got..]) {
            Ok(0) => {
                return Err(format!(
                    "{name} stream ended after {got} of {} bytes",
                    out.len()
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("{name}: {e}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn both_codecs_inflate_with_trailing_bytes_and_fail_on_garbage() {
        let cluster: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
        let mut enc =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&cluster).unwrap();
        let mut deflated = enc.finish().unwrap();
        deflated.extend_from_slice(&[0xAB; 300]);
        let mut out = vec![0u8; 65536];
        decompress(COMPRESSION_DEFLATE, &deflated, &mut out).unwrap();
        assert_eq!(out, cluster);

        let mut zstded = zstd::bulk::compress(&cluster, 3).unwrap();
        zstded.extend_from_slice(&[0; 300]);
        let mut out = vec![0u8; 65536];
        decompress(COMPRESSION_ZSTD, &zstded, &mut out).unwrap();
        assert_eq!(out, cluster);

        assert!(decompress(COMPRESSION_DEFLATE, &[0xff; 100], &mut out).is_err());
        assert!(decompress(COMPRESSION_ZSTD, &[0xff; 100], &mut out).is_err());
    }
}
