//! Behaviour of appends, reads, lookups, retention and idempotence.

use bytes::BytesMut;

use super::*;
use crate::batch::{
    build_batch, build_idempotent_batch, build_transactional_batch, split_batches, validate,
    KeyValue,
};
use crate::config::CleanupPolicy;

pub(super) fn values(n: usize, size: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| vec![b'a' + (i % 26) as u8; size]).collect()
}

/// A batch of `n` records of `size`-byte values, all at `timestamp`.
pub(super) fn batch_of(n: usize, size: usize, timestamp: i64) -> BytesMut {
    let values = values(n, size);
    let records: Vec<KeyValue> = values.iter().map(|v| (None, Some(&v[..]))).collect();
    build_batch(&records, timestamp)
}

pub(super) fn open(dir: &Path, config: LogConfig) -> Log {
    Log::open(dir, config).unwrap()
}

/// Base offsets of the batches in `bytes`, checking each one is intact.
pub(super) fn base_offsets(bytes: &[u8]) -> Vec<i64> {
    split_batches(bytes)
        .unwrap()
        .into_iter()
        .map(|range| validate(&bytes[range]).unwrap().base_offset)
        .collect()
}

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

#[test]
fn append_then_read_returns_the_same_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    let mut batch = batch_of(3, 10, 1000);
    let info = log.append(&mut batch, 2000).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (0, 2));
    assert!(!info.duplicate);
    assert_eq!(info.log_append_time, -1);
    assert_eq!(log.log_end_offset(), 3);
    let read = log.read(0, 1 << 20).unwrap();
    assert_eq!(&read[..], &batch[..]);
}

#[test]
fn offsets_continue_across_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    for expected in [0, 2, 4] {
        let info = log.append(&mut batch_of(2, 5, 0), 0).unwrap();
        assert_eq!(info.base_offset, expected);
    }
    assert_eq!(base_offsets(&log.read(0, 1 << 20).unwrap()), vec![0, 2, 4]);
}

#[test]
fn read_from_the_middle_of_a_batch_returns_the_containing_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    log.append(&mut batch_of(5, 5, 0), 0).unwrap();
    log.append(&mut batch_of(5, 5, 0), 0).unwrap();
    assert_eq!(base_offsets(&log.read(3, 1 << 20).unwrap()), vec![0, 5]);
    assert_eq!(base_offsets(&log.read(7, 1 << 20).unwrap()), vec![5]);
}

#[test]
fn max_bytes_limits_but_always_returns_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    let size = batch_of(1, 100, 0).len();
    for _ in 0..4 {
        log.append(&mut batch_of(1, 100, 0), 0).unwrap();
    }
    assert_eq!(base_offsets(&log.read(0, 1).unwrap()), vec![0]);
    assert_eq!(
        base_offsets(&log.read(0, 2 * size + 1).unwrap()),
        vec![0, 1]
    );
    assert_eq!(base_offsets(&log.read(1, 2 * size).unwrap()), vec![1, 2]);
}

#[test]
fn log_end_is_empty_and_beyond_it_is_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    assert!(log.read(0, 100).unwrap().is_empty());
    log.append(&mut batch_of(2, 5, 0), 0).unwrap();
    assert!(log.read(2, 100).unwrap().is_empty());
    assert!(matches!(log.read(3, 100), Err(LogError::OffsetOutOfRange)));
    assert!(matches!(log.read(-1, 100), Err(LogError::OffsetOutOfRange)));
}

#[test]
fn oversized_batch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        max_message_bytes: 100,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config);
    let result = log.append(&mut batch_of(1, 200, 0), 0);
    assert!(matches!(result, Err(LogError::MessageTooLarge)));
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn size_rolls_segments_and_reads_work_across_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_segments());
    for _ in 0..40 {
        log.append(&mut batch_of(2, 50, 0), 0).unwrap();
    }
    assert!(log.segments.len() > 5, "{} segments", log.segments.len());
    for segment in log.segments.values() {
        assert!(segment.size() <= 1024);
    }
    for offset in 0..80 {
        let read = log.read(offset, 1).unwrap();
        assert_eq!(base_offsets(&read), vec![offset - offset % 2]);
    }
    let everything = log.read(0, usize::MAX).unwrap();
    assert_eq!(everything.len() as u64, log.size_bytes());
    assert!(dir.path().join("00000000000000000000.index").exists());
}

#[test]
fn time_rolls_segments() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_ms: 1000,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config);
    log.append(&mut batch_of(1, 5, 0), 10_000).unwrap();
    log.roll_if_due(10_500).unwrap();
    assert_eq!(log.segments.len(), 1);
    log.roll_if_due(11_000).unwrap();
    assert_eq!(log.segments.len(), 2);
    log.roll_if_due(20_000).unwrap(); // the new segment is empty: nothing to roll
    assert_eq!(log.segments.len(), 2);
    log.append(&mut batch_of(1, 5, 0), 20_000).unwrap();
    log.append(&mut batch_of(1, 5, 0), 21_000).unwrap(); // rolls before appending
    assert_eq!(
        log.segments.keys().copied().collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
}

#[test]
fn offset_for_timestamp_finds_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_segments());
    for i in 0..30 {
        log.append(&mut batch_of(2, 40, 1000 + i * 10), 0).unwrap();
    }
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 1000)));
    assert_eq!(log.offset_for_timestamp(1105).unwrap(), Some((22, 1110)));
    assert_eq!(log.offset_for_timestamp(1290).unwrap(), Some((58, 1290)));
    assert_eq!(log.offset_for_timestamp(1291).unwrap(), None);
    // Both records of the last batch have the max timestamp: the first of them is the answer.
    assert_eq!(log.max_timestamp().unwrap(), Some((58, 1290)));
}

#[test]
fn offset_for_timestamp_is_exact_inside_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    let mut writer = crate::batch::builder_for_tests(100);
    for (delta, ts) in [(0, 100), (1, 150), (2, 120), (3, 200)] {
        writer.add_record(delta, ts, None, Some(b"v"), &[]);
    }
    log.append(&mut writer.finish(0, 0), 0).unwrap();
    assert_eq!(log.offset_for_timestamp(130).unwrap(), Some((1, 150)));
    assert_eq!(log.offset_for_timestamp(160).unwrap(), Some((3, 200)));
    assert_eq!(log.max_timestamp().unwrap(), Some((3, 200)));
}

#[test]
fn timestamp_lookups_are_exact_inside_a_compressed_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    let mut writer = crate::batch::builder_for_tests(100);
    for (delta, ts) in [(0, 100), (1, 300), (2, 120), (3, 200)] {
        writer.add_record(delta, ts, None, Some(b"v"), &[]);
    }
    let plain = writer.finish(0, 0);
    let mut gzipped = crate::batch::compression::gzipped(&plain);
    log.append(&mut gzipped, 0).unwrap();
    assert_eq!(log.offset_for_timestamp(110).unwrap(), Some((1, 300)));
    assert_eq!(log.offset_for_timestamp(250).unwrap(), Some((1, 300)));
    // The max timestamp is the second record's, not the batch's last offset.
    assert_eq!(log.max_timestamp().unwrap(), Some((1, 300)));
}

#[test]
fn log_append_time_is_written_and_the_crc_still_validates() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config);
    let info = log.append(&mut batch_of(2, 5, 1), 123_456).unwrap();
    assert_eq!(info.log_append_time, 123_456);
    let read = log.read(0, 1 << 20).unwrap();
    let header = validate(&read).unwrap();
    assert!(header.timestamp_type_log_append());
    assert_eq!(header.max_timestamp, 123_456);
    assert_eq!(
        log.offset_for_timestamp(100_000).unwrap(),
        Some((0, 123_456))
    );
}

#[test]
fn retention_by_time_deletes_old_segments_and_moves_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: 1000,
        ..small_segments()
    };
    let mut log = open(dir.path(), config);
    for i in 0..20 {
        log.append(&mut batch_of(2, 50, i * 100), 0).unwrap();
    }
    let segments_before = log.segments.len();
    let deleted = log.enforce_retention(2500).unwrap();
    assert!(deleted > 0 && deleted < segments_before);
    assert_eq!(log.log_start_offset(), *log.segments.keys().next().unwrap());
    assert!(log.log_start_offset() > 0);
    // Everything left has a record newer than 1500 ms.
    for segment in log.segments.values() {
        assert!(segment.max_timestamp().unwrap().1 >= 1500);
    }
    assert!(matches!(log.read(0, 100), Err(LogError::OffsetOutOfRange)));
    let start = log.log_start_offset();
    assert_eq!(base_offsets(&log.read(start, 1).unwrap()), vec![start]);
    // The active segment is never deleted, however old.
    log.enforce_retention(1_000_000).unwrap();
    assert_eq!(log.segments.len(), 1);
}

#[test]
fn retention_by_size_keeps_at_least_retention_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: 2048,
        retention_ms: -1,
        ..small_segments()
    };
    let mut log = open(dir.path(), config);
    for _ in 0..40 {
        log.append(&mut batch_of(2, 50, 0), 0).unwrap();
    }
    let deleted = log.enforce_retention(0).unwrap();
    assert!(deleted > 0);
    assert!(log.size_bytes() >= 2048);
    let oldest = log.segments.values().next().unwrap().size();
    assert!(log.size_bytes() - oldest < 2048);
    assert_eq!(log.log_start_offset(), *log.segments.keys().next().unwrap());
}

#[test]
fn compact_only_logs_ignore_retention() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: 0,
        cleanup_policy: CleanupPolicy::Compact,
        ..small_segments()
    };
    let mut log = open(dir.path(), config);
    for _ in 0..20 {
        log.append(&mut batch_of(2, 50, 0), 0).unwrap();
    }
    assert_eq!(log.enforce_retention(1_000_000).unwrap(), 0);
}

#[test]
fn delete_records_moves_the_start_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_segments());
    for _ in 0..20 {
        log.append(&mut batch_of(2, 50, 0), 0).unwrap();
    }
    log.delete_records_before(25).unwrap();
    assert_eq!(log.log_start_offset(), 25);
    assert!(*log.segments.keys().next().unwrap() <= 25);
    assert!(matches!(log.read(24, 1), Err(LogError::OffsetOutOfRange)));
    assert_eq!(base_offsets(&log.read(25, 1).unwrap()), vec![24]);
    assert!(matches!(
        log.delete_records_before(41),
        Err(LogError::OffsetOutOfRange)
    ));
    log.close().unwrap();
    let log = open(dir.path(), small_segments());
    assert_eq!(log.log_start_offset(), 25);
    assert_eq!(log.log_end_offset(), 40);
}

#[test]
fn idempotent_retry_returns_the_original_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    let records: [KeyValue; 2] = [(None, Some(b"a")), (None, Some(b"b"))];
    let first = build_idempotent_batch(&records, 0, 9, 0, 0);
    log.append(&mut first.clone(), 0).unwrap();
    log.append(&mut build_idempotent_batch(&records, 0, 9, 0, 2), 0)
        .unwrap();
    let retry = log.append(&mut first.clone(), 0).unwrap();
    assert!(retry.duplicate);
    assert_eq!((retry.base_offset, retry.last_offset), (0, 1));
    assert_eq!(log.log_end_offset(), 4);
}

#[test]
fn sequence_gaps_and_fenced_epochs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    let records: [KeyValue; 1] = [(None, Some(b"a"))];
    log.append(&mut build_idempotent_batch(&records, 0, 9, 1, 0), 0)
        .unwrap();
    let gap = log.append(&mut build_idempotent_batch(&records, 0, 9, 1, 2), 0);
    assert!(matches!(gap, Err(LogError::OutOfOrderSequence)));
    let old = log.append(&mut build_idempotent_batch(&records, 0, 9, 0, 1), 0);
    assert!(matches!(old, Err(LogError::InvalidProducerEpoch)));
    let bumped = log.append(&mut build_idempotent_batch(&records, 0, 9, 2, 0), 0);
    assert_eq!(bumped.unwrap().base_offset, 1);
    // A producer the log has never seen may start anywhere.
    let fresh = log.append(&mut build_idempotent_batch(&records, 0, 10, 0, 7), 0);
    assert_eq!(fresh.unwrap().base_offset, 2);
}

#[test]
fn producer_state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let records: [KeyValue; 1] = [(None, Some(b"a"))];
    let first = build_idempotent_batch(&records, 0, 9, 4, 0);
    {
        let mut log = open(dir.path(), LogConfig::default());
        log.append(&mut first.clone(), 0).unwrap();
        log.append(&mut batch_of(1, 5, 0), 0).unwrap();
        log.close().unwrap();
    }
    let mut log = open(dir.path(), LogConfig::default());
    let retry = log.append(&mut first.clone(), 0).unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.base_offset, 0);
    let gap = log.append(&mut build_idempotent_batch(&records, 0, 9, 4, 5), 0);
    assert!(matches!(gap, Err(LogError::OutOfOrderSequence)));
    let old = log.append(&mut build_idempotent_batch(&records, 0, 9, 3, 1), 0);
    assert!(matches!(old, Err(LogError::InvalidProducerEpoch)));
    let next = log.append(&mut build_idempotent_batch(&records, 0, 9, 4, 1), 0);
    assert_eq!(next.unwrap().base_offset, 2);
}

#[test]
fn flush_every_message_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders-0");
    let config = LogConfig {
        flush_messages: 1,
        ..LogConfig::default()
    };
    let mut log = open(&path, config);
    log.append(&mut batch_of(3, 5, 0), 0).unwrap();
    assert_eq!(log.unflushed_messages, 0);
    log.delete().unwrap();
    assert!(!path.exists());
}

#[test]
fn a_log_can_move_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Log>();
}

#[test]
fn transactions_hold_the_last_stable_offset_and_aborted_ones_are_remembered() {
    use crate::batch::build_marker;
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    let records: Vec<KeyValue> = vec![(None, Some(b"v")); 2];
    // offsets 0-1: plain records; 2-3: producer 7's transaction; 4-5: producer 8's.
    log.append(&mut build_batch(&records, 0), 0).unwrap();
    assert_eq!(log.last_stable_offset(), 2);
    log.append(&mut build_transactional_batch(&records, 0, 7, 0, 0), 0)
        .unwrap();
    log.append(&mut build_transactional_batch(&records, 0, 8, 0, 0), 0)
        .unwrap();
    assert_eq!(
        log.last_stable_offset(),
        2,
        "producer 7's transaction is open"
    );
    // Producer 7 commits (marker at 6): the partition is stable up to producer 8's start.
    log.append(&mut build_marker(7, 0, true, 0, 0), 0).unwrap();
    assert_eq!(log.last_stable_offset(), 4);
    // Producer 8 aborts (marker at 7): nothing is open any more.
    log.append(&mut build_marker(8, 0, false, 0, 0), 0).unwrap();
    assert_eq!(log.last_stable_offset(), 8);
    let aborted = AbortedTxn {
        producer_id: 8,
        first_offset: 4,
        last_offset: 7,
    };
    assert_eq!(log.aborted_transactions(0, 8), [aborted]);
    assert_eq!(
        log.aborted_transactions(0, 4),
        [],
        "reading below it meets none"
    );
    assert_eq!(
        log.aborted_transactions(8, 9),
        [],
        "nor reading after its marker"
    );
    // A transaction left open survives a restart, as does the aborted one.
    log.append(&mut build_transactional_batch(&records, 0, 9, 0, 0), 0)
        .unwrap();
    log.close().unwrap();
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(log.last_stable_offset(), 8);
    assert_eq!(log.aborted_transactions(0, 10), [aborted]);
}

#[test]
fn a_marker_under_a_newer_epoch_fences_the_older_producer() {
    use crate::batch::build_marker;
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    let records: Vec<KeyValue> = vec![(None, Some(b"v"))];
    log.append(&mut build_transactional_batch(&records, 0, 7, 3, 0), 0)
        .unwrap();
    // The coordinator aborted the transaction under epoch 4 (a newer producer took over).
    log.append(&mut build_marker(7, 4, false, 0, 0), 0).unwrap();
    // The older instance can write nothing more, and neither can an older marker.
    assert!(matches!(
        log.append(&mut build_transactional_batch(&records, 0, 7, 3, 1), 0),
        Err(LogError::InvalidProducerEpoch)
    ));
    assert!(matches!(
        log.append(&mut build_marker(7, 3, true, 0, 0), 0),
        Err(LogError::InvalidProducerEpoch)
    ));
    // The new one starts its sequence again.
    log.append(&mut build_transactional_batch(&records, 0, 7, 4, 0), 0)
        .unwrap();
    assert_eq!(log.last_stable_offset(), 2);
}

#[test]
fn aborted_transactions_are_indexed_beside_the_segment_of_their_marker() {
    use crate::batch::build_marker;
    let dir = tempfile::tempdir().unwrap();
    let txn_index = |base: i64| dir.path().join(format!("{base:020}.txnindex"));
    let big = vec![b'x'; 600];
    let records: Vec<KeyValue> = vec![(None, Some(&big[..]))];
    let mut log = open(dir.path(), small_segments());
    // Producer 7's transaction starts at 0 and producer 8's at 1, in the first segment; each
    // record of 600 bytes leaves no room for another in a 1,024-byte segment, so the markers
    // land in later ones (a marker fits beside a record).
    log.append(&mut build_transactional_batch(&records, 0, 7, 0, 0), 0)
        .unwrap();
    log.append(&mut build_transactional_batch(&records, 0, 8, 0, 0), 0)
        .unwrap();
    log.append(&mut build_marker(7, 0, false, 0, 0), 0).unwrap(); // offset 2
    log.append(&mut batch_of(1, 600, 0), 0).unwrap(); // offset 3
    log.append(&mut build_marker(8, 0, false, 0, 0), 0).unwrap(); // offset 4
    let bases: Vec<i64> = log.segments.keys().copied().collect();
    assert_eq!(bases, [0, 1, 3]);
    let seven = AbortedTxn {
        producer_id: 7,
        first_offset: 0,
        last_offset: 2,
    };
    let eight = AbortedTxn {
        producer_id: 8,
        first_offset: 1,
        last_offset: 4,
    };
    // Only the segments holding an ABORT marker have a .txnindex, in Kafka's layout: version
    // 0, producer id, first offset, marker offset, and the last stable offset once it ended
    // (producer 8's transaction, from 1, was still open when 7's ended).
    let mut expected_1 = vec![0, 0];
    for value in [7i64, 0, 2, 1] {
        expected_1.extend_from_slice(&value.to_be_bytes());
    }
    assert_eq!(std::fs::read(txn_index(1)).unwrap(), expected_1);
    assert!(txn_index(3).exists());
    assert!(!txn_index(0).exists());
    // A read of the first segment meets both, though their markers are further on.
    assert_eq!(log.aborted_transactions(0, 1), [seven]);
    assert_eq!(log.aborted_transactions(0, 2), [seven, eight]);
    assert_eq!(log.aborted_transactions(3, 4), [eight]);
    assert_eq!(log.aborted_transactions(5, 6), []);

    // A damaged index is rebuilt from the log at the next start, a stray one removed.
    log.close().unwrap();
    std::fs::write(txn_index(1), b"garbage").unwrap();
    std::fs::write(txn_index(0), vec![0u8; 34]).unwrap();
    let mut log = open(dir.path(), small_segments());
    assert_eq!(std::fs::read(txn_index(1)).unwrap(), expected_1);
    assert!(!txn_index(0).exists());
    assert_eq!(log.aborted_transactions(0, 5), [seven, eight]);

    // Retention takes a segment's index with it.
    log.set_config(LogConfig {
        retention_bytes: 700,
        ..small_segments()
    });
    log.enforce_retention(0).unwrap();
    assert!(!txn_index(1).exists());
    assert_eq!(log.aborted_transactions(log.log_start_offset(), 5), [eight]);
}

#[test]
fn an_aborted_transaction_is_kept_when_its_index_file_cannot_be_written() {
    use crate::batch::build_marker;
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<KeyValue> = vec![(None, Some(b"v"))];
    let mut log = open(dir.path(), LogConfig::default());
    // Something in the way of the .txnindex file: it cannot be created.
    let txn_index = dir.path().join(format!("{:020}.txnindex", 0));
    std::fs::create_dir(&txn_index).unwrap();
    log.append(&mut build_transactional_batch(&records, 0, 7, 0, 0), 0)
        .unwrap();
    log.append(&mut build_marker(7, 0, false, 0, 0), 0).unwrap();
    let aborted = AbortedTxn {
        producer_id: 7,
        first_offset: 0,
        last_offset: 1,
    };
    assert_eq!(log.aborted_transactions(0, 1), [aborted]);
    // Out of the way again, the next start writes the file from the log.
    log.close().unwrap();
    std::fs::remove_dir(&txn_index).unwrap();
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(log.aborted_transactions(0, 1), [aborted]);
    assert_eq!(std::fs::metadata(&txn_index).unwrap().len(), 34);
}
