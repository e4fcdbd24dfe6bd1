//! Compaction keeps the newest record per key at its original offset.

use std::fs;

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

/// Appends records `from..to`, one batch each, cycling through keys `k0`, `k1`, `k2`; each
/// record's value is its number.
fn fill_three_keys(log: &mut Log, from: u8, to: u8) {
    for i in from..to {
        let key = [b'k', b'0' + i % 3];
        log.append(&mut build_batch(&[(Some(&key), Some(&[i]))], 0), 0)
            .unwrap();
    }
}

#[test]
fn newest_record_per_key_survives_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), compacted_config());
    fill_three_keys(&mut log, 0, 60);
    let size_before = log.size_bytes();
    let recovery_point = dir.path().join("recovery-point");
    assert!(recovery_point.exists());
    let stats = log.compact(0).unwrap();
    assert!(stats.segments_cleaned > 0);
    assert!(stats.records_removed > 0);
    assert!(log.size_bytes() < size_before);
    assert_eq!(log.log_end_offset(), 60);
    // It described the segments as they were: a crash now must scan them.
    assert!(!recovery_point.exists());

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
    let mut log = open(dir.path(), compacted_config());
    assert_eq!(all_records(&log), records);
    assert_eq!(log.log_end_offset(), 60);
    log.flush().unwrap();
    drop(log);
    // Without the record (a change would have deleted it) and without the recovery point
    // (compaction deleted it): the compacted segments are scanned.
    fs::remove_file(dir.path().join("clean-shutdown")).unwrap();
    let log = open(dir.path(), compacted_config());
    assert_eq!(all_records(&log), records, "after a crash");
}

#[test]
fn compaction_reads_the_closed_segments_again_only_after_another_one_closes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), compacted_config());
    fill_three_keys(&mut log, 0, 60);
    assert!(log.compact(0).unwrap().records_removed > 0);
    // Nothing closed since: nothing read, nothing rewritten.
    fill_three_keys(&mut log, 60, 61);
    assert_eq!(log.compact(0).unwrap(), CompactionStats::default());
    // Once a segment closes, the older ones are cleaned against its keys.
    log.roll().unwrap();
    let stats = log.compact(0).unwrap();
    assert!(stats.bytes_before > 0);
    assert!(stats.records_removed > 0, "{stats:?}");
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
    log.compact(0).unwrap();
    log.close().unwrap();
    let mut log = open(dir.path(), compacted_config());
    let mut next = build_idempotent_batch(&[(Some(b"same"), Some(b"x"))], 0, 5, 0, 30);
    assert_eq!(log.append(&mut next, 0).unwrap().base_offset, 30);
}

/// Appends one record per key, in order, with `timestamp`; `None` values are tombstones.
fn append_records(log: &mut Log, records: &[(&[u8], Option<&[u8]>)], timestamp: i64) {
    for (key, value) in records {
        log.append(
            &mut build_batch(&[(Some(key), *value)], timestamp),
            timestamp,
        )
        .unwrap();
    }
}

#[test]
fn a_tombstone_is_kept_for_delete_retention_ms_then_removed() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        delete_retention_ms: 10_000,
        ..compacted_config()
    };
    let mut log = open(dir.path(), config);
    append_records(
        &mut log,
        &[(b"gone", Some(b"v1")), (b"kept", Some(b"v1"))],
        1_000,
    );
    append_records(&mut log, &[(b"gone", None)], 2_000);
    log.roll().unwrap();

    // Before the tombstone expires, the old value goes and the tombstone stays.
    log.compact(5_000).unwrap();
    let keys = |log: &Log| -> Vec<(Vec<u8>, bool)> {
        all_records(log)
            .into_iter()
            .map(|(_, key, value)| (key, value.is_some()))
            .collect()
    };
    assert_eq!(
        keys(&log),
        vec![(b"kept".to_vec(), true), (b"gone".to_vec(), false)]
    );
    // Nothing has closed since, but the tombstone's expiry makes the next run do work.
    assert_eq!(log.compact(11_999).unwrap(), CompactionStats::default());
    assert_eq!(log.compact(12_000).unwrap().records_removed, 1);
    assert_eq!(keys(&log), vec![(b"kept".to_vec(), true)]);
    assert_eq!(log.log_end_offset(), 3);
}

#[test]
fn records_younger_than_min_compaction_lag_ms_are_not_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        min_compaction_lag_ms: 60_000,
        ..compacted_config()
    };
    let mut log = open(dir.path(), config);
    append_records(
        &mut log,
        &[(b"k", Some(b"old")), (b"k", Some(b"new"))],
        100_000,
    );
    log.roll().unwrap();
    assert_eq!(log.compact(130_000).unwrap(), CompactionStats::default());
    assert_eq!(all_records(&log).len(), 2);
    // Once the closed segment's newest record is a minute old, it is cleaned, without any
    // further segment closing.
    assert_eq!(log.compact(160_000).unwrap().records_removed, 1);
    assert_eq!(all_records(&log).len(), 1);
}

#[test]
fn compressed_batches_are_compacted_too() {
    use crate::batch::compression::gzipped;
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), compacted_config());
    // A gzip batch of 20 versions of one key and one of another key.
    let versions: Vec<[u8; 1]> = (0..20u8).map(|i| [i]).collect();
    let mut records: Vec<crate::batch::KeyValue<'_>> = versions
        .iter()
        .map(|v| (Some(&b"k"[..]), Some(&v[..])))
        .collect();
    records.push((Some(b"other"), Some(b"x")));
    let mut batch = gzipped(&build_batch(&records, 0));
    log.append(&mut batch, 0).unwrap();
    log.append(&mut build_batch(&[(Some(b"k"), Some(b"last"))], 0), 0)
        .unwrap();
    log.roll().unwrap();

    let stats = log.compact(0).unwrap();
    assert_eq!(stats.records_removed, 20, "{stats:?}");
    let left: Vec<_> = all_records(&log)
        .into_iter()
        .map(|(offset, key, value)| (offset, key, value.unwrap()))
        .collect();
    assert_eq!(
        left,
        vec![
            (20, b"other".to_vec(), b"x".to_vec()),
            (21, b"k".to_vec(), b"last".to_vec())
        ]
    );
}

#[test]
fn a_run_reads_and_writes_without_the_log_while_appends_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), compacted_config());
    fill_three_keys(&mut log, 0, 60);
    let plan = log.compaction_plan(0).expect("closed segments to clean");
    // The log takes more records while the plan runs without it.
    for i in 60..80u8 {
        let key = [b'k', b'0' + i % 3];
        log.append(&mut build_batch(&[(Some(&key), Some(&[i]))], 0), 0)
            .unwrap();
    }
    let output = plan.run().unwrap();
    let stats = log.install_compaction(output).unwrap();
    assert!(stats.records_removed > 0);
    assert_eq!(log.log_end_offset(), 80);
    let records = all_records(&log);
    assert_eq!(
        records.last().unwrap().0,
        79,
        "the appends made meanwhile are kept"
    );
    let latest: std::collections::BTreeMap<Vec<u8>, i64> =
        records.iter().map(|(o, k, _)| (k.clone(), *o)).collect();
    let mut newest: Vec<i64> = latest.values().copied().collect();
    newest.sort();
    assert_eq!(newest, vec![77, 78, 79]);
    // Another run finds the segment closed meanwhile.
    assert!(log.compaction_plan(0).is_some());
}

#[test]
fn a_cleaned_copy_of_a_segment_deleted_meanwhile_is_thrown_away() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), compacted_config());
    fill_three_keys(&mut log, 0, 60);
    let plan = log.compaction_plan(0).unwrap();
    let output = plan.run().unwrap();
    let first = *log.segments.keys().next().unwrap();
    let second = *log.segments.keys().nth(1).unwrap();
    log.delete_records_before(second).unwrap();
    assert!(!log.segments.contains_key(&first));
    log.install_compaction(output).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().to_string_lossy().ends_with(".cleaned"))
        .collect();
    assert!(leftovers.is_empty(), "no cleaned copy is left behind");
    assert_eq!(log.log_start_offset(), second);
    let records = all_records(&log);
    assert!(records.iter().all(|(offset, _, _)| *offset >= second));
    assert_eq!(records.last().unwrap().0, 59);
}

#[test]
fn aborted_records_are_removed_and_open_transactions_are_left_alone() {
    use crate::batch::{build_marker, build_transactional_batch};
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), compacted_config());
    let filler = |log: &mut Log, from: u8| {
        for i in from..from + 30 {
            append_records(log, &[(&[b'f', i], Some(b"x"))], 0);
        }
    };
    append_records(&mut log, &[(b"aborted-key", Some(b"old"))], 0);
    append_records(&mut log, &[(b"open-key", Some(b"old"))], 0);
    let txn = |producer_id: i64, key: &[u8]| {
        build_transactional_batch(&[(Some(key), Some(b"new"))], 0, producer_id, 0, 0)
    };
    log.append(&mut txn(7, b"aborted-key"), 0).unwrap();
    log.append(&mut build_marker(7, 0, false, 0, 0), 0).unwrap();
    filler(&mut log, 0);
    log.append(&mut txn(8, b"open-key"), 0).unwrap();
    filler(&mut log, 50);

    let value_of = |log: &Log, key: &[u8]| -> Vec<Vec<u8>> {
        all_records(log)
            .into_iter()
            .filter(|(_, k, _)| k == key)
            .filter_map(|(_, _, v)| v)
            .collect()
    };
    // Producer 7's transaction (offset 2) was aborted by the marker at 3: its index entry
    // and file stay with the compacted copy of that segment.
    let marker_segment = *log.segments.range(..=3).next_back().unwrap().0;
    let txn_index = dir.path().join(format!("{marker_segment:020}.txnindex"));
    let indexed = std::fs::read(&txn_index).unwrap();
    let seven = AbortedTxn {
        producer_id: 7,
        first_offset: 2,
        last_offset: 3,
    };
    log.compact(0).unwrap();
    assert_eq!(log.aborted_transactions(0, 4), [seven]);
    assert_eq!(std::fs::read(&txn_index).unwrap(), indexed);
    // The aborted record is gone and replaced nothing; the open transaction's record has
    // not replaced the committed one yet.
    assert_eq!(value_of(&log, b"aborted-key"), vec![b"old".to_vec()]);
    assert_eq!(
        value_of(&log, b"open-key"),
        vec![b"old".to_vec(), b"new".to_vec()]
    );

    // Once the transaction aborts, its record goes and the committed one stays.
    log.append(&mut build_marker(8, 0, false, 0, 0), 0).unwrap();
    filler(&mut log, 150);
    log.compact(0).unwrap();
    assert_eq!(value_of(&log, b"open-key"), vec![b"old".to_vec()]);
    assert_eq!(log.last_stable_offset(), log.log_end_offset());
    log.close().unwrap();
    let log = open(dir.path(), compacted_config());
    assert_eq!(value_of(&log, b"aborted-key"), vec![b"old".to_vec()]);
    assert_eq!(value_of(&log, b"open-key"), vec![b"old".to_vec()]);
    assert_eq!(log.last_stable_offset(), log.log_end_offset());
}

#[test]
fn segments_opened_unread_are_compacted_only_once_the_scrub_has_checked_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), compacted_config());
    fill_three_keys(&mut log, 0, 60);
    log.close().unwrap();
    // A clean start reads no batch: a damaged one must not be rewritten with a valid CRC.
    let mut log = open(dir.path(), compacted_config());
    assert_eq!(log.compact(0).unwrap().segments_cleaned, 0);
    while let Some(target) = log.next_to_scrub().unwrap() {
        assert!(target.check(4096, &mut |_| true).unwrap().is_none());
        log.scrubbed(&target);
    }
    assert!(log.compact(0).unwrap().segments_cleaned > 0);
}

#[test]
fn compaction_of_a_log_opened_from_its_clean_shutdown_record_deletes_the_record_first() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("clean-shutdown");
    let mut log = open(dir.path(), compacted_config());
    fill_three_keys(&mut log, 0, 60);
    log.close().unwrap();
    let mut log = open(dir.path(), compacted_config());
    assert!(record.exists(), "opened from its record");
    while let Some(target) = log.next_to_scrub().unwrap() {
        assert!(target.check(4096, &mut |_| true).unwrap().is_none());
        log.scrubbed(&target);
    }
    assert!(record.exists(), "the scrub changes nothing");
    assert!(log.compact(0).unwrap().records_removed > 0);
    assert!(
        !record.exists(),
        "the record describes segments compaction rewrote"
    );
    let kept = all_records(&log);
    let end = log.log_end_offset();
    // A crash now: the next start scans what compaction left, and finds the same records.
    log.flush().unwrap();
    drop(log);
    let reopened = open(dir.path(), compacted_config());
    assert_eq!(all_records(&reopened), kept);
    assert_eq!(reopened.log_end_offset(), end);
    assert_eq!(kept.last().map(|r| r.0), Some(59));
}
