//! Building uncompressed v2 batches: for tests, internal topics and compaction.

use bytes::{BufMut, BytesMut};

use super::{update_crc, RecordHeader, HEADER_SIZE, LOG_OVERHEAD, MAGIC_V2};

/// A record to build: its key and value, each `None` for null.
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Builds an uncompressed, non-idempotent batch of `records` (key, value) at base offset 0.
///
/// Every record gets `timestamp_ms` as its CreateTime; the producer id, epoch and base sequence
/// are -1.
pub fn build_batch(records: &[KeyValue<'_>], timestamp_ms: i64) -> BytesMut {
    build_idempotent_batch(records, timestamp_ms, -1, -1, -1)
}

/// Builds an uncompressed batch like [`build_batch`], stamped with an idempotent producer's
/// id, epoch and the sequence number of its first record.
pub fn build_idempotent_batch(
    records: &[KeyValue<'_>],
    timestamp_ms: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> BytesMut {
    let producer = (producer_id, producer_epoch, base_sequence);
    build_with_attributes(records, timestamp_ms, producer, 0)
}

/// Builds an uncompressed batch like [`build_idempotent_batch`] with the transactional
/// attribute set, as a transactional producer writes its records.
pub fn build_transactional_batch(
    records: &[KeyValue<'_>],
    timestamp_ms: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> BytesMut {
    let producer = (producer_id, producer_epoch, base_sequence);
    build_with_attributes(records, timestamp_ms, producer, super::TRANSACTIONAL_BIT)
}

/// One uncompressed batch of `records` at `timestamp_ms`, of `(producer id, epoch, base
/// sequence)`, with `attributes`.
fn build_with_attributes(
    records: &[KeyValue<'_>],
    timestamp_ms: i64,
    (producer_id, producer_epoch, base_sequence): (i64, i16, i32),
    attributes: i16,
) -> BytesMut {
    let mut writer = BatchWriter::new(timestamp_ms, producer_id, producer_epoch, base_sequence);
    for (offset_delta, (key, value)) in records.iter().enumerate() {
        let offset_delta = i32::try_from(offset_delta).unwrap_or(i32::MAX);
        writer.add_record(offset_delta, timestamp_ms, *key, *value, &[]);
    }
    writer.finish(attributes, 0)
}

/// Accumulates records and produces one uncompressed v2 batch.
pub(crate) struct BatchWriter {
    buf: BytesMut,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    record_count: i32,
    last_offset_delta: i32,
}

impl BatchWriter {
    pub(crate) fn new(
        base_timestamp: i64,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> BatchWriter {
        let mut buf = BytesMut::with_capacity(HEADER_SIZE + 64);
        buf.resize(HEADER_SIZE, 0);
        BatchWriter {
            buf,
            base_timestamp,
            max_timestamp: base_timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
            record_count: 0,
            last_offset_delta: 0,
        }
    }

    /// Appends one record; `timestamp` is absolute and stored relative to the base timestamp.
    pub(crate) fn add_record(
        &mut self,
        offset_delta: i32,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader<'_>],
    ) {
        let mut body = BytesMut::new();
        body.put_i8(0); // record attributes: unused
        put_varlong(&mut body, timestamp.wrapping_sub(self.base_timestamp));
        put_varlong(&mut body, i64::from(offset_delta));
        put_bytes(&mut body, key);
        put_bytes(&mut body, value);
        put_varlong(&mut body, headers.len() as i64);
        for header in headers {
            put_bytes(&mut body, Some(header.key));
            put_bytes(&mut body, header.value);
        }
        put_varlong(&mut self.buf, body.len() as i64);
        self.buf.extend_from_slice(&body);
        self.record_count += 1;
        self.last_offset_delta = self.last_offset_delta.max(offset_delta);
        self.max_timestamp = self.max_timestamp.max(timestamp);
    }

    /// Uses `max_timestamp` as the batch's max timestamp if larger than the records'.
    pub(crate) fn raise_max_timestamp(&mut self, max_timestamp: i64) {
        self.max_timestamp = self.max_timestamp.max(max_timestamp);
    }

    /// Writes the header and CRC. `attributes` must not claim compression.
    ///
    /// `min_last_offset_delta` keeps the batch's offset span when trailing records were removed.
    pub(crate) fn finish(mut self, attributes: i16, min_last_offset_delta: i32) -> BytesMut {
        let last_offset_delta = self.last_offset_delta.max(min_last_offset_delta);
        let batch_length = (self.buf.len() - LOG_OVERHEAD) as i32;
        let mut header = &mut self.buf[..HEADER_SIZE];
        header.put_i64(0); // base offset, assigned on append
        header.put_i32(batch_length);
        header.put_i32(-1); // partition leader epoch
        header.put_i8(MAGIC_V2);
        header.put_u32(0); // CRC, computed below
        header.put_i16(attributes);
        header.put_i32(last_offset_delta);
        header.put_i64(self.base_timestamp);
        header.put_i64(self.max_timestamp);
        header.put_i64(self.producer_id);
        header.put_i16(self.producer_epoch);
        header.put_i32(self.base_sequence);
        header.put_i32(self.record_count);
        update_crc(&mut self.buf);
        self.buf
    }
}

fn put_bytes(buf: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => {
            put_varlong(buf, bytes.len() as i64);
            buf.extend_from_slice(bytes);
        }
        None => put_varlong(buf, -1),
    }
}

/// Zigzag-encoded variable-length integer, as used inside v2 records.
fn put_varlong(buf: &mut BytesMut, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        buf.put_u8((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    buf.put_u8(zigzag as u8);
}
