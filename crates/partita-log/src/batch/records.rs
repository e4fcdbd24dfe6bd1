//! Decoding the records of an uncompressed v2 batch.

use super::{parse_header, BatchError, Compression, HEADER_SIZE};

/// One record of an uncompressed batch, borrowing from the batch bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// Absolute offset (batch base offset + offset delta).
    pub offset: i64,
    /// Absolute timestamp; for LogAppendTime batches, the batch's `maxTimestamp`.
    pub timestamp: i64,
    /// Key, `None` if null.
    pub key: Option<&'a [u8]>,
    /// Value, `None` if null (a tombstone in a compacted topic).
    pub value: Option<&'a [u8]>,
    /// Record headers, in order.
    pub headers: Vec<RecordHeader<'a>>,
}

/// A record header: a string key (not checked for UTF-8) and an optional value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader<'a> {
    /// Header key.
    pub key: &'a [u8],
    /// Header value, `None` if null.
    pub value: Option<&'a [u8]>,
}

/// Decodes every record of one whole, uncompressed batch.
///
/// Returns `BatchError::Corrupt` for a compressed batch (which Partita never decompresses) and
/// for any malformed record.
pub fn decode_records(batch: &[u8]) -> Result<Vec<Record<'_>>, BatchError> {
    let header = parse_header(batch)?;
    if header.compression() != Compression::None {
        return Err(BatchError::Corrupt(
            "cannot decode the records of a compressed batch".to_string(),
        ));
    }
    let end = header.total_size();
    if end > batch.len() {
        return Err(BatchError::Corrupt("truncated batch".to_string()));
    }
    let mut cursor = Cursor {
        buf: &batch[..end],
        at: HEADER_SIZE,
    };
    let count = usize::try_from(header.record_count).unwrap_or(0);
    // Every record takes at least 7 bytes, so a hostile count cannot make us over-allocate.
    let mut records = Vec::with_capacity(count.min(batch.len() / 7));
    for _ in 0..count {
        let length = cursor.varint_len()?;
        let record_end = cursor.at.checked_add(length).filter(|e| *e <= end);
        let record_end =
            record_end.ok_or_else(|| BatchError::Corrupt("record overruns batch".to_string()))?;
        let mut record = Cursor {
            buf: &cursor.buf[..record_end],
            at: cursor.at,
        };
        let _attributes = record.take(1)?;
        let timestamp_delta = record.varlong()?;
        let offset_delta = record.varlong()?;
        let key = record.nullable_bytes()?;
        let value = record.nullable_bytes()?;
        let header_count = record.varint_len()?;
        let mut headers = Vec::with_capacity(header_count.min(length / 2));
        for _ in 0..header_count {
            let key = record
                .nullable_bytes()?
                .ok_or_else(|| BatchError::Corrupt("null record header key".to_string()))?;
            let value = record.nullable_bytes()?;
            headers.push(RecordHeader { key, value });
        }
        let timestamp = if header.timestamp_type_log_append() {
            header.max_timestamp
        } else {
            header.base_timestamp.wrapping_add(timestamp_delta)
        };
        records.push(Record {
            offset: header.base_offset.wrapping_add(offset_delta),
            timestamp,
            key,
            value,
            headers,
        });
        cursor.at = record_end;
    }
    Ok(records)
}

struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BatchError> {
        let end = self.at.checked_add(n).filter(|end| *end <= self.buf.len());
        let end = end.ok_or_else(|| BatchError::Corrupt("record field overruns".to_string()))?;
        let bytes = &self.buf[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn varlong(&mut self) -> Result<i64, BatchError> {
        let mut value: u64 = 0;
        for shift in (0..70).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err(BatchError::Corrupt(
            "varint longer than 10 bytes".to_string(),
        ))
    }

    /// A non-negative varint used as a length or count.
    fn varint_len(&mut self) -> Result<usize, BatchError> {
        let value = self.varlong()?;
        usize::try_from(value).map_err(|_| BatchError::Corrupt(format!("negative length {value}")))
    }

    fn nullable_bytes(&mut self) -> Result<Option<&'a [u8]>, BatchError> {
        let length = self.varlong()?;
        if length < 0 {
            return Ok(None);
        }
        let length = usize::try_from(length)
            .map_err(|_| BatchError::Corrupt(format!("bad length {length}")))?;
        self.take(length).map(Some)
    }
}

/// The first record of `batch` at or after `min_offset` whose timestamp is `>= ts`, as
/// `(offset, timestamp)`, for ListOffsets by time. A batch whose records cannot be read (an
/// unknown codec) answers with its first offset from `min_offset` and its max timestamp.
pub fn find_by_timestamp(batch: &[u8], ts: i64, min_offset: i64) -> Result<(i64, i64), BatchError> {
    let header = parse_header(batch)?;
    let fallback = (header.base_offset.max(min_offset), header.max_timestamp);
    let Ok(plain) = super::compression::uncompressed(batch) else {
        return Ok(fallback);
    };
    let exact = decode_records(&plain)?
        .iter()
        .find(|r| r.offset >= min_offset && r.timestamp >= ts)
        .map(|r| (r.offset, r.timestamp));
    Ok(exact.unwrap_or(fallback))
}

/// The offset of the first record of `batch` whose timestamp is `ts`, or the batch's last
/// offset when none can be read: for ListOffsets with MAX_TIMESTAMP.
pub fn offset_of_timestamp(batch: &[u8], ts: i64) -> Result<i64, BatchError> {
    let header = parse_header(batch)?;
    let record = super::compression::uncompressed(batch)
        .ok()
        .and_then(|plain| {
            let records = decode_records(&plain).ok()?;
            records.iter().find(|r| r.timestamp == ts).map(|r| r.offset)
        });
    Ok(record.unwrap_or(header.last_offset()))
}
