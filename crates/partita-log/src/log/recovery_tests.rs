//! Reopening a log: clean restarts, torn tails, corruption and lost index files.

use std::fs::{self, OpenOptions};
use std::io::Write;

use super::tests::{base_offsets, batch_of, open};
use super::*;

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

fn last_segment_path(log: &Log) -> PathBuf {
    log.active().log_path()
}

/// A log of `batches` batches of 2 records, closed; returns its last segment file.
fn closed_log(dir: &Path, batches: usize) -> PathBuf {
    let mut log = open(dir, small_segments());
    for _ in 0..batches {
        log.append(&mut batch_of(2, 50, 0), 0).unwrap();
    }
    let path = last_segment_path(&log);
    log.close().unwrap();
    path
}

#[test]
fn reopen_after_close_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_segments());
    for _ in 0..30 {
        log.append(&mut batch_of(2, 50, 7), 0).unwrap();
    }
    let before = log.read(0, usize::MAX).unwrap();
    let segments = log.segments.len();
    log.close().unwrap();
    let mut log = open(dir.path(), small_segments());
    assert_eq!(log.log_end_offset(), 60);
    assert_eq!(log.log_start_offset(), 0);
    assert_eq!(log.segments.len(), segments);
    assert_eq!(log.read(0, usize::MAX).unwrap(), before);
    assert_eq!(base_offsets(&log.read(31, 1).unwrap()), vec![30]);
    assert_eq!(
        log.append(&mut batch_of(1, 5, 0), 0).unwrap().base_offset,
        60
    );
}

#[test]
fn torn_tail_is_truncated_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let path = closed_log(dir.path(), 12);
    let good_len = fs::metadata(&path).unwrap().len();
    // Half a batch, as a crash in the middle of a write leaves it.
    let partial = batch_of(2, 50, 0);
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(&partial[..partial.len() / 2]).unwrap();
    drop(file);

    let mut log = open(dir.path(), small_segments());
    assert_eq!(log.log_end_offset(), 24);
    assert_eq!(fs::metadata(&path).unwrap().len(), good_len);
    assert_eq!(
        log.append(&mut batch_of(2, 5, 0), 0).unwrap().base_offset,
        24
    );
    assert_eq!(base_offsets(&log.read(24, 1).unwrap()), vec![24]);
}

#[test]
fn garbage_tail_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let path = closed_log(dir.path(), 3);
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(&[0xab; 100]).unwrap();
    drop(file);
    let mut log = open(dir.path(), small_segments());
    assert_eq!(log.log_end_offset(), 6);
    assert_eq!(
        log.append(&mut batch_of(1, 5, 0), 0).unwrap().base_offset,
        6
    );
}

#[test]
fn crc_damage_in_the_last_segment_truncates_from_there() {
    let dir = tempfile::tempdir().unwrap();
    let batch_len = batch_of(2, 50, 0).len();
    let mut log = open(dir.path(), LogConfig::default());
    for _ in 0..5 {
        log.append(&mut batch_of(2, 50, 0), 0).unwrap();
    }
    let path = last_segment_path(&log);
    log.close().unwrap();
    let mut bytes = fs::read(&path).unwrap();
    bytes[2 * batch_len + 70] ^= 0xff; // inside the third batch's records
    fs::write(&path, &bytes).unwrap();

    let mut log = open(dir.path(), LogConfig::default());
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(fs::metadata(&path).unwrap().len(), 2 * batch_len as u64);
    assert_eq!(
        log.append(&mut batch_of(1, 5, 0), 0).unwrap().base_offset,
        4
    );
}

#[test]
fn segments_after_a_damaged_one_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 20);
    let mut bases: Vec<PathBuf> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    bases.sort();
    assert!(bases.len() >= 3);
    // A torn header in a middle segment: recovery keeps what precedes it.
    let middle = &bases[1];
    let len = fs::metadata(middle).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(middle)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let log = open(dir.path(), small_segments());
    assert_eq!(log.segments.len(), 2);
    assert!(!bases[2].exists());
    let end = log.log_end_offset();
    assert!(end > 0 && end < 40);
    let all = log.read(0, usize::MAX).unwrap();
    assert_eq!(base_offsets(&all).last().copied(), Some(end - 2));
}

#[test]
fn missing_or_corrupt_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 20);
    let first_index = dir.path().join("00000000000000000000.index");
    let first_time_index = dir.path().join("00000000000000000000.timeindex");
    let good_index = fs::read(&first_index).unwrap();
    assert!(good_index.len() >= 16, "several sparse entries expected");
    fs::remove_file(&first_index).unwrap();
    fs::write(&first_time_index, [1, 2, 3]).unwrap();

    let log = open(dir.path(), small_segments());
    assert_eq!(fs::read(&first_index).unwrap(), good_index);
    assert_eq!(fs::metadata(&first_time_index).unwrap().len() % 12, 0);
    for offset in 0..40 {
        assert_eq!(
            base_offsets(&log.read(offset, 1).unwrap()),
            vec![offset - offset % 2]
        );
    }
    drop(log);

    // An index pointing at the wrong places is replaced as well.
    fs::write(&first_index, [0xff; 16]).unwrap();
    let log = open(dir.path(), small_segments());
    assert_eq!(fs::read(&first_index).unwrap(), good_index);
    assert_eq!(base_offsets(&log.read(5, 1).unwrap()), vec![4]);
}

#[test]
fn empty_and_foreign_files_are_tolerated() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
    fs::write(dir.path().join("00000000000000000000.log"), b"").unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    assert_eq!(log.log_end_offset(), 0);
    log.append(&mut batch_of(1, 5, 0), 0).unwrap();
    assert_eq!(log.log_end_offset(), 1);
}

/// The `.log` files of `dir`, by base offset.
fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

fn flip_bit(path: &Path, position: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[position] ^= 0x10;
    fs::write(path, &bytes).unwrap();
}

#[test]
fn crc_damage_in_an_older_segment_truncates_there_and_drops_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 20);
    let files = segment_files(dir.path());
    assert!(files.len() >= 3);
    let batch_len = batch_of(2, 50, 0).len();
    let first_base: i64 = files[1]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // Inside the records of the second batch of the second segment: only the CRC tells.
    flip_bit(&files[1], batch_len + 70);

    let log = open(dir.path(), small_segments());
    assert_eq!(log.log_end_offset(), first_base + 2);
    assert_eq!(segment_files(dir.path()).len(), 2);
    assert_eq!(fs::metadata(&files[1]).unwrap().len(), batch_len as u64);
    let all = log.read(0, usize::MAX).unwrap();
    let offsets = base_offsets(&all);
    assert_eq!(offsets, (0..first_base + 2).step_by(2).collect::<Vec<_>>());
    for range in batch::split_batches(&all).unwrap() {
        batch::validate(&all[range]).unwrap();
    }
}

#[test]
fn damage_after_start_up_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let batch_len = batch_of(2, 50, 0).len();
    let mut log = open(dir.path(), LogConfig::default());
    for _ in 0..5 {
        log.append(&mut batch_of(2, 50, 0), 0).unwrap();
    }
    // The disk rots under a running broker: the third batch's records change.
    flip_bit(&last_segment_path(&log), 2 * batch_len + 70);

    // Reads that reach the damaged batch stop just before it...
    assert_eq!(base_offsets(&log.read(0, usize::MAX).unwrap()), vec![0, 2]);
    // ...and a read that starts at it fails rather than hand it out.
    assert!(matches!(log.read(4, usize::MAX), Err(LogError::Corrupt(_))));
    assert!(matches!(log.read(5, 1), Err(LogError::Corrupt(_))));
    assert_eq!(base_offsets(&log.read(6, usize::MAX).unwrap()), vec![6, 8]);
}

#[test]
fn an_abort_marker_cut_off_by_a_crash_leaves_its_transaction_open() {
    use crate::batch::{build_marker, build_transactional_batch, KeyValue};
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<KeyValue> = vec![(None, Some(b"v"))];
    let mut log = open(dir.path(), LogConfig::default());
    log.append(&mut build_transactional_batch(&records, 0, 7, 0, 0), 0)
        .unwrap();
    log.append(&mut build_marker(7, 0, false, 0, 0), 0).unwrap();
    let txn_index = dir.path().join(format!("{:020}.txnindex", 0));
    assert!(txn_index.exists());
    let segment = last_segment_path(&log);
    log.close().unwrap();
    // The marker's last bytes never reached the disk.
    let len = fs::metadata(&segment).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(log.log_end_offset(), 1);
    assert_eq!(log.last_stable_offset(), 0, "the transaction is open again");
    assert_eq!(log.aborted_transactions(0, 1), []);
    assert!(!txn_index.exists());
}
