//! Compaction keeps the newest record per key at its original offset.

use super::tests::open;
use super::*;
use crate::batch::{build_batch, build_idempotent_batch, decode_records, split_batches};
use crate::config::CleanupPolicy;

fn compacted_config() -> LogConfig {
    LogConfig {
        segment_bytes: 512,
        index_interval_bytes: 128,
        cleanup_policy: CleanupPolicy::Compact,
        ..LogConfig::default()
    }
}

/// Every record in the log as (offset, key, value).
fn all_records(log: &Log) -> Vec<(i64, Vec<u8>, Option<Vec<u8>>)> {
    let bytes = log.read(log.log_start_offset(), usize::MAX).unwrap();
    let mut out = Vec::new();
    for range in split_batches(&bytes).unwrap() {
        for record in decode_records(&bytes[range]).unwrap() {
            out.push((
                record.offset,
                record.key.unwrap().to_vec(),
                record.value.map(<[u8]>::to_vec),
            ));
        }
    }
    out
}

#[test]
fn newest_record_per_key_survives_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), compacted_config());
    for i in 0..60u8 {
        let key = [b'k', b'0' + i % 3];
        let value = [i];
        log.append(&mut build_batch(&[(Some(&key), Some(&value))], 0), 0)
            .unwrap();
    }
    let size_before = log.size_bytes();
    let stats = log.compact().unwrap();
    assert!(stats.segments_cleaned > 0);
    assert!(stats.records_removed > 0);
    assert!(log.size_bytes() < size_before);
    assert_eq!(log.log_end_offset(), 60);

    let active_base = *log.segments.keys().next_back().unwrap();
    let records = all_records(&log);
    let closed: Vec<_> = records.iter().filter(|r| r.0 < active_base).collect();
    // At most one record per key is left in the closed segments, each at its original offset.
    assert!(closed.len() <= 3);
    for (offset, key, value) in &closed {
        assert_eq!(value.as_deref(), Some(&[*offset as u8][..]));
        assert_eq!(key[1] - b'0', (*offset % 3) as u8);
    }
    // Reads from any offset still work, also after a restart.
    for offset in 0..60 {
        log.read(offset, 1).unwrap();
    }
    log.close().unwrap();
    let log = open(dir.path(), compacted_config());
    assert_eq!(all_records(&log), records);
    assert_eq!(log.log_end_offset(), 60);
}

#[test]
fn idempotent_producer_state_survives_compaction_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), compacted_config());
    for sequence in 0..30 {
        let value = [sequence as u8];
        let mut batch = build_idempotent_batch(&[(Some(b"same"), Some(&value))], 0, 5, 0, sequence);
        log.append(&mut batch, 0).unwrap();
    }
    log.roll().unwrap();
    log.compact().unwrap();
    log.close().unwrap();
    let mut log = open(dir.path(), compacted_config());
    let mut next = build_idempotent_batch(&[(Some(b"same"), Some(b"x"))], 0, 5, 0, 30);
    assert_eq!(log.append(&mut next, 0).unwrap().base_offset, 30);
}
