//! Reading compressed batches: the four codecs of Kafka's record format v2.
//!
//! Batches are stored and served as the producer compressed them. Compaction and the key
//! check of compacted topics need their records, so they decompress a copy; this is the only
//! place that does. Decompression stops at a size limit, so a small hostile batch cannot make
//! the broker allocate without bound.

use std::borrow::Cow;
use std::io::Read;

use super::{parse_header, BatchError, Compression, COMPRESSION_MASK, HEADER_SIZE};

/// Magic bytes that open a snappy stream in the framing of the Java `snappy-java` library,
/// which the Java client writes (librdkafka writes it too, and reads both).
const XERIAL_MAGIC: &[u8] = &[0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// Magic, then a version and a minimum compatible version of 4 bytes each.
const XERIAL_HEADER_SIZE: usize = XERIAL_MAGIC.len() + 8;

/// Largest decompressed records section read from one batch.
pub const MAX_DECOMPRESSED_BYTES: usize = 64 << 20;

/// The batch with its records section decompressed and its compression bits cleared, ready
/// for [`super::decode_records`]; an uncompressed batch is returned as it is. The CRC is not
/// recomputed: the result is for reading, never for storing.
pub fn uncompressed(batch: &[u8]) -> Result<Cow<'_, [u8]>, BatchError> {
    let header = parse_header(batch)?;
    let codec = header.compression();
    if codec == Compression::None {
        return Ok(Cow::Borrowed(batch));
    }
    let end = header.total_size().min(batch.len());
    let records = decompress(codec, &batch[HEADER_SIZE..end], MAX_DECOMPRESSED_BYTES)?;
    let mut plain = Vec::with_capacity(HEADER_SIZE + records.len());
    plain.extend_from_slice(&batch[..HEADER_SIZE]);
    plain.extend_from_slice(&records);
    // batchLength covers everything after the first 12 bytes (base offset and the length).
    let batch_length = i32::try_from(plain.len() - 12)
        .map_err(|_| BatchError::Corrupt("decompressed batch too large".to_string()))?;
    plain[8..12].copy_from_slice(&batch_length.to_be_bytes());
    let attributes = i16::from_be_bytes([plain[21], plain[22]]) & !COMPRESSION_MASK;
    plain[21..23].copy_from_slice(&attributes.to_be_bytes());
    Ok(Cow::Owned(plain))
}

/// Decompresses one records section, refusing output beyond `limit` bytes.
pub fn decompress(codec: Compression, data: &[u8], limit: usize) -> Result<Vec<u8>, BatchError> {
    let failed = |what: &str, e: std::io::Error| {
        BatchError::Corrupt(format!("{what} decompression failed: {e}"))
    };
    let out = match codec {
        Compression::None => data.to_vec(),
        Compression::Gzip => read_limited(flate2::read::MultiGzDecoder::new(data), limit)
            .map_err(|e| failed("gzip", e))?,
        Compression::Lz4 => read_limited(lz4_flex::frame::FrameDecoder::new(data), limit)
            .map_err(|e| failed("lz4", e))?,
        Compression::Zstd => zstd(data, limit).map_err(|e| failed("zstd", e))?,
        Compression::Snappy => snappy(data, limit)?,
        Compression::Unknown(id) => {
            return Err(BatchError::Corrupt(format!(
                "unknown compression codec {id}"
            )))
        }
    };
    Ok(out)
}

/// Reads `reader` to its end, failing once more than `limit` bytes came out.
fn read_limited(reader: impl Read, limit: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    reader.take(limit as u64 + 1).read_to_end(&mut out)?;
    if out.len() > limit {
        return Err(std::io::Error::other(format!(
            "decompressed size exceeds {limit} bytes"
        )));
    }
    Ok(out)
}

/// Every zstd frame of `data`, one after the other.
fn zstd(mut data: &[u8], limit: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let decoder = ruzstd::decoding::StreamingDecoder::new(&mut data)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let left = limit.saturating_sub(out.len());
        out.extend(read_limited(decoder, left)?);
    }
    Ok(out)
}

/// A raw snappy block, or a stream in snappy-java's framing (chunks of a 4-byte length and a
/// raw block).
fn snappy(data: &[u8], limit: usize) -> Result<Vec<u8>, BatchError> {
    let corrupt = |why: String| BatchError::Corrupt(format!("snappy decompression failed: {why}"));
    let mut decoder = snap::raw::Decoder::new();
    let mut block = |chunk: &[u8], out: &mut Vec<u8>| -> Result<(), BatchError> {
        let size = snap::raw::decompress_len(chunk).map_err(|e| corrupt(e.to_string()))?;
        if out.len() + size > limit {
            return Err(corrupt(format!("decompressed size exceeds {limit} bytes")));
        }
        let start = out.len();
        out.resize(start + size, 0);
        decoder
            .decompress(chunk, &mut out[start..])
            .map_err(|e| corrupt(e.to_string()))?;
        Ok(())
    };
    let mut out = Vec::new();
    if !data.starts_with(XERIAL_MAGIC) {
        block(data, &mut out)?;
        return Ok(out);
    }
    let mut rest = data
        .get(XERIAL_HEADER_SIZE..)
        .ok_or_else(|| corrupt("truncated snappy-java header".to_string()))?;
    while !rest.is_empty() {
        let (length, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt("truncated chunk length".to_string()))?;
        let length = u32::from_be_bytes(*length) as usize;
        let chunk = tail
            .get(..length)
            .ok_or_else(|| corrupt("chunk overruns the batch".to_string()))?;
        block(chunk, &mut out)?;
        rest = &tail[length..];
    }
    Ok(out)
}

/// An uncompressed batch with its records section compressed by `compress`, marked `codec`.
#[cfg(test)]
pub(crate) fn recompressed(
    plain: &[u8],
    codec: Compression,
    compress: impl Fn(&[u8]) -> Vec<u8>,
) -> Vec<u8> {
    let records = compress(&plain[HEADER_SIZE..]);
    let mut batch = plain[..HEADER_SIZE].to_vec();
    batch.extend_from_slice(&records);
    let length = (batch.len() - 12) as i32;
    batch[8..12].copy_from_slice(&length.to_be_bytes());
    let attributes = i16::from_be_bytes([batch[21], batch[22]]) | i16::from(codec.id());
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    super::update_crc(&mut batch);
    batch
}

/// `plain` with its records gzip-compressed.
#[cfg(test)]
pub(crate) fn gzipped(plain: &[u8]) -> Vec<u8> {
    use std::io::Write;
    recompressed(plain, Compression::Gzip, |data| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{build_batch, decode_records};
    use std::io::Write;

    /// `build_batch`'s records recompressed with `codec` by `compress`.
    fn compressed_batch(codec: Compression, compress: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
        let plain = build_batch(&[(Some(b"k1"), Some(b"v1")), (Some(b"k2"), None)], 7);
        recompressed(&plain, codec, compress)
    }

    fn assert_decodes(batch: &[u8]) {
        let plain = uncompressed(batch).unwrap();
        let records = decode_records(&plain).unwrap();
        let pairs: Vec<_> = records.iter().map(|r| (r.key, r.value)).collect();
        assert_eq!(
            pairs,
            vec![
                (Some(&b"k1"[..]), Some(&b"v1"[..])),
                (Some(&b"k2"[..]), None)
            ]
        );
    }

    #[test]
    fn every_codec_decodes_to_the_same_records() {
        assert_decodes(&gzipped(&build_batch(
            &[(Some(b"k1"), Some(b"v1")), (Some(b"k2"), None)],
            7,
        )));
        assert_decodes(&compressed_batch(Compression::Lz4, |data| {
            let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
            encoder.write_all(data).unwrap();
            encoder.finish().unwrap()
        }));
        assert_decodes(&compressed_batch(Compression::Snappy, |data| {
            snap::raw::Encoder::new().compress_vec(data).unwrap()
        }));
        assert_decodes(&compressed_batch(Compression::Snappy, |data| {
            // snappy-java's framing, in two chunks.
            let mut out = XERIAL_MAGIC.to_vec();
            out.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
            let (first, second) = data.split_at(data.len() / 2);
            for part in [first, second] {
                let block = snap::raw::Encoder::new().compress_vec(part).unwrap();
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            out
        }));
        assert_decodes(&compressed_batch(Compression::Zstd, |data| {
            ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
        }));
    }

    #[test]
    fn a_decompression_bomb_is_refused() {
        let zeros = vec![0u8; 1 << 20];
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&zeros).unwrap();
        let bomb = encoder.finish().unwrap();
        assert!(decompress(Compression::Gzip, &bomb, 1 << 16).is_err());
        assert_eq!(
            decompress(Compression::Gzip, &bomb, 1 << 20).unwrap().len(),
            1 << 20
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            assert!(decompress(codec, b"\x82SNAPPY\x00garbage", 1 << 20).is_err());
            assert!(
                decompress(codec, &[0xff; 64], 1 << 20).is_err(),
                "{codec:?}"
            );
        }
    }
}
