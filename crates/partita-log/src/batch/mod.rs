//! Kafka record batches (magic v2), handled as opaque bytes.
//!
//! Only the fixed 61-byte header is interpreted on the produce and fetch paths: the records that
//! follow it may be compressed and are never decoded there. [`decode_records`] exists for the few
//! places that need individual records of an uncompressed batch (compaction, timestamp lookups,
//! internal topics).

mod builder;
pub mod compression;
mod control;
mod records;

use std::ops::Range;

pub(crate) use builder::BatchWriter;
pub use builder::{build_batch, build_idempotent_batch, build_transactional_batch, KeyValue};
pub use control::{build_marker, marker_of, ControlType};
pub use records::{decode_records, find_by_timestamp, offset_of_timestamp, Record, RecordHeader};

/// Size in bytes of the v2 record batch header.
pub const HEADER_SIZE: usize = 61;
/// The only batch format version Partita stores.
pub const MAGIC_V2: i8 = 2;
/// Bytes before and including the `batchLength` field (`baseOffset` + `batchLength`).
pub const LOG_OVERHEAD: usize = 12;

const BASE_OFFSET_AT: usize = 0;
const BATCH_LENGTH_AT: usize = 8;
const PARTITION_LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
/// The CRC covers everything from the attributes field to the end of the batch.
const CRC_COVERED_FROM: usize = 21;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORD_COUNT_AT: usize = 57;

pub(crate) const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// Why a byte slice is not an acceptable record batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Bad CRC, inconsistent lengths or counts, or truncated bytes.
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    /// The batch is not in the v2 format (magic 2).
    #[error("unsupported record batch magic {0}")]
    UnsupportedMagic(i8),
}

/// Compression codec of a batch (attribute bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Records are stored as is.
    None,
    /// gzip.
    Gzip,
    /// Snappy (xerial framing).
    Snappy,
    /// LZ4 frame.
    Lz4,
    /// Zstandard.
    Zstd,
    /// A codec id Kafka does not define (5-7).
    Unknown(u8),
}

impl Compression {
    /// The codec id stored in the attributes (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
            Compression::Unknown(id) => id,
        }
    }

    fn from_id(id: u8) -> Compression {
        match id {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => Compression::Unknown(other),
        }
    }
}

/// The fixed header of a v2 record batch, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Length in bytes of everything after this field.
    pub batch_length: i32,
    /// Leader epoch when the batch was appended (opaque to a single broker).
    pub partition_leader_epoch: i32,
    /// Format version; always 2 for an accepted batch.
    pub magic: i8,
    /// CRC-32C over the bytes from `attributes` to the end of the batch.
    pub crc: u32,
    /// Compression, timestamp type, transactional and control flags.
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record (CreateTime batches).
    pub base_timestamp: i64,
    /// Largest record timestamp, or the log append time for LogAppendTime batches.
    pub max_timestamp: i64,
    /// Idempotent producer id, -1 if none.
    pub producer_id: i64,
    /// Idempotent producer epoch, -1 if none.
    pub producer_epoch: i16,
    /// Sequence number of the first record, -1 if none.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub record_count: i32,
}

impl BatchHeader {
    /// Size in bytes of the whole batch, header included.
    pub fn total_size(&self) -> usize {
        usize::try_from(self.batch_length).unwrap_or(0) + LOG_OVERHEAD
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// Compression codec of the records.
    pub fn compression(&self) -> Compression {
        Compression::from_id((self.attributes & COMPRESSION_MASK) as u8)
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// Whether the batch holds control records (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// Whether timestamps are the broker's append time rather than the producer's create time.
    pub fn timestamp_type_log_append(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    /// Sequence number of the last record, wrapping past `i32::MAX` to 0 as Kafka does.
    pub fn last_sequence(&self) -> i32 {
        add_sequence(self.base_sequence, self.last_offset_delta)
    }
}

/// Adds `delta` to a producer sequence number, wrapping from `i32::MAX` to 0.
pub(crate) fn add_sequence(sequence: i32, delta: i32) -> i32 {
    let sum = i64::from(sequence) + i64::from(delta);
    (sum.rem_euclid(i64::from(i32::MAX) + 1)) as i32
}

fn read_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}

fn read_i32(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn read_i64(buf: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

/// Decodes the header at the start of `buf` without checking the CRC.
///
/// Checks that the header is complete, the magic is 2 and `batchLength` covers at least the
/// header; `buf` may extend past the batch.
pub fn parse_header(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    // The magic first: the messages of the older formats are shorter than this header, and
    // keep their magic at the same place.
    if let Some(&magic) = buf.get(MAGIC_AT) {
        if magic as i8 != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic(magic as i8));
        }
    }
    if buf.len() < HEADER_SIZE {
        return Err(BatchError::Corrupt(format!(
            "{} bytes is shorter than the {HEADER_SIZE}-byte batch header",
            buf.len()
        )));
    }
    let magic = MAGIC_V2;
    let header = BatchHeader {
        base_offset: read_i64(buf, BASE_OFFSET_AT),
        batch_length: read_i32(buf, BATCH_LENGTH_AT),
        partition_leader_epoch: read_i32(buf, PARTITION_LEADER_EPOCH_AT),
        magic,
        crc: read_i32(buf, CRC_AT) as u32,
        attributes: read_i16(buf, ATTRIBUTES_AT),
        last_offset_delta: read_i32(buf, LAST_OFFSET_DELTA_AT),
        base_timestamp: read_i64(buf, BASE_TIMESTAMP_AT),
        max_timestamp: read_i64(buf, MAX_TIMESTAMP_AT),
        producer_id: read_i64(buf, PRODUCER_ID_AT),
        producer_epoch: read_i16(buf, PRODUCER_EPOCH_AT),
        base_sequence: read_i32(buf, BASE_SEQUENCE_AT),
        record_count: read_i32(buf, RECORD_COUNT_AT),
    };
    if (header.batch_length as i64) < (HEADER_SIZE - LOG_OVERHEAD) as i64 {
        return Err(BatchError::Corrupt(format!(
            "batchLength {} is shorter than the header",
            header.batch_length
        )));
    }
    Ok(header)
}

/// CRC-32C of the part of a batch the header's `crc` field covers.
fn compute_crc(buf: &[u8]) -> u32 {
    crc32c::crc32c(&buf[CRC_COVERED_FROM..])
}

/// Checks that `buf` is exactly one whole, intact v2 batch and returns its header.
pub fn validate(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = parse_header(buf)?;
    if header.total_size() != buf.len() {
        return Err(BatchError::Corrupt(format!(
            "batchLength {} does not match the {} bytes received",
            header.batch_length,
            buf.len()
        )));
    }
    let crc = compute_crc(buf);
    if crc != header.crc {
        return Err(BatchError::Corrupt(format!(
            "CRC mismatch: header says {:#010x}, computed {crc:#010x}",
            header.crc
        )));
    }
    if header.record_count < 0 {
        return Err(BatchError::Corrupt(format!(
            "negative record count {}",
            header.record_count
        )));
    }
    if header.last_offset_delta < 0 {
        return Err(BatchError::Corrupt(format!(
            "negative lastOffsetDelta {}",
            header.last_offset_delta
        )));
    }
    // Compaction may leave fewer records than the offset span, never more.
    if i64::from(header.record_count) > i64::from(header.last_offset_delta) + 1 {
        return Err(BatchError::Corrupt(format!(
            "{} records cannot fit in lastOffsetDelta {}",
            header.record_count, header.last_offset_delta
        )));
    }
    if header
        .base_offset
        .checked_add(i64::from(header.last_offset_delta))
        .is_none()
    {
        return Err(BatchError::Corrupt("offset overflow".to_string()));
    }
    Ok(header)
}

/// Splits concatenated batches (a produce request's `records` field) into one range per batch.
///
/// Each range covers one whole batch according to its length field; a partial trailing batch is
/// an error. The batches themselves are not validated.
pub fn split_batches(buf: &[u8]) -> Result<Vec<Range<usize>>, BatchError> {
    let mut ranges = Vec::new();
    let mut start = 0;
    while start < buf.len() {
        let rest = &buf[start..];
        let header = parse_header(rest)?;
        let size = header.total_size();
        if size > rest.len() {
            return Err(BatchError::Corrupt(format!(
                "batch at byte {start} claims {size} bytes but only {} remain",
                rest.len()
            )));
        }
        ranges.push(start..start + size);
        start += size;
    }
    Ok(ranges)
}

/// Rewrites the base offset of the batch at the start of `buf` (not covered by the CRC).
///
/// Does nothing if `buf` is shorter than the field.
pub fn set_base_offset(buf: &mut [u8], base_offset: i64) {
    if let Some(field) = buf.get_mut(BASE_OFFSET_AT..BASE_OFFSET_AT + 8) {
        field.copy_from_slice(&base_offset.to_be_bytes());
    }
}

/// Marks the batch as LogAppendTime with timestamp `ts` and recomputes its CRC.
///
/// Sets attribute bit 3 and `maxTimestamp` as Kafka does (readers then use `maxTimestamp` for
/// every record). `buf` must be exactly one batch; does nothing if it is shorter than a header.
pub fn set_log_append_time(buf: &mut [u8], ts: i64) {
    if buf.len() < HEADER_SIZE {
        return;
    }
    let attributes = read_i16(buf, ATTRIBUTES_AT) | TIMESTAMP_TYPE_BIT;
    buf[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    buf[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&ts.to_be_bytes());
    update_crc(buf);
}

/// Recomputes and stores the CRC of the batch in `buf`.
pub(crate) fn update_crc(buf: &mut [u8]) {
    let crc = compute_crc(buf);
    buf[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// A writer for hand-made batches in tests (record timestamps relative to `base_timestamp`).
#[cfg(test)]
pub(crate) fn builder_for_tests(base_timestamp: i64) -> BatchWriter {
    BatchWriter::new(base_timestamp, -1, -1, -1)
}

#[cfg(test)]
mod tests;
