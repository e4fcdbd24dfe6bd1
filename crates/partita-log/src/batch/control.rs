//! Transaction markers: the control batches that end a transaction in a partition (KIP-98).
//!
//! A marker is a batch with the transactional and control attributes set, the producer's id
//! and epoch, no sequence, and one record whose key is `version int16 (0), type int16` (0 for
//! ABORT, 1 for COMMIT) and whose value is `version int16 (0), coordinator epoch int32`, as
//! Kafka writes them.

use bytes::BytesMut;

use super::builder::BatchWriter;
use super::{decode_records, BatchHeader, CONTROL_BIT, TRANSACTIONAL_BIT};

/// What a transaction marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    /// The transaction's records are to be dropped.
    Abort,
    /// The transaction's records are to be read.
    Commit,
}

/// A marker ending the transaction of `producer_id` at `producer_epoch`, written by a
/// coordinator of `coordinator_epoch`.
pub fn build_marker(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    timestamp_ms: i64,
) -> BytesMut {
    let mut key = [0u8; 4];
    key[2..].copy_from_slice(&i16::from(commit).to_be_bytes());
    let mut value = [0u8; 6];
    value[2..].copy_from_slice(&coordinator_epoch.to_be_bytes());
    let mut writer = BatchWriter::new(timestamp_ms, producer_id, producer_epoch, -1);
    writer.add_record(0, timestamp_ms, Some(&key), Some(&value), &[]);
    writer.finish(TRANSACTIONAL_BIT | CONTROL_BIT, 0)
}

/// The marker type and coordinator epoch of a control batch (`None` if `batch` is not one or
/// its record is not a marker Partita knows, as a future control type would be).
pub fn marker_of(header: &BatchHeader, batch: &[u8]) -> Option<(ControlType, i32)> {
    if !header.is_control() {
        return None;
    }
    let records = decode_records(batch).ok()?;
    let record = records.first()?;
    let key = record.key?;
    if key.len() < 4 || key[..2] != [0, 0] {
        return None;
    }
    let kind = match i16::from_be_bytes([key[2], key[3]]) {
        0 => ControlType::Abort,
        1 => ControlType::Commit,
        _ => return None,
    };
    let epoch = record
        .value
        .filter(|v| v.len() >= 6)
        .map_or(-1, |v| i32::from_be_bytes([v[2], v[3], v[4], v[5]]));
    Some((kind, epoch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{parse_header, validate};

    #[test]
    fn a_marker_is_a_valid_control_batch_that_reads_back() {
        for commit in [true, false] {
            let batch = build_marker(42, 3, commit, 7, 1_000);
            let header = validate(&batch).unwrap();
            assert!(header.is_control() && header.is_transactional());
            assert_eq!((header.producer_id, header.producer_epoch), (42, 3));
            assert_eq!(header.base_sequence, -1);
            assert_eq!(header.record_count, 1);
            let kind = if commit {
                ControlType::Commit
            } else {
                ControlType::Abort
            };
            assert_eq!(marker_of(&header, &batch), Some((kind, 7)));
        }
    }

    #[test]
    fn data_batches_are_not_markers() {
        let batch = crate::batch::build_batch(&[(Some(b"k"), Some(b"v"))], 0);
        let header = parse_header(&batch).unwrap();
        assert_eq!(marker_of(&header, &batch), None);
    }
}
