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

/// Stops `log` as a crash would once everything was written: synced, without writing a
/// clean-shutdown record. A log opened from one and left unchanged still has it, and the next
/// open trusts it; otherwise that open scans every batch past the recovery point.
fn crash(mut log: Log) {
    log.flush().unwrap();
    drop(log);
}

/// A log of `batches` batches of 2 records, synced and dropped as by a crash; returns its
/// last segment file.
fn crashed_log(dir: &Path, batches: usize) -> PathBuf {
    let mut log = open(dir, small_segments());
    for _ in 0..batches {
        log.append(&mut batch_of(2, 50, 0), 0).unwrap();
    }
    let path = last_segment_path(&log);
    crash(log);
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
    let path = crashed_log(dir.path(), 12);
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
    let path = crashed_log(dir.path(), 3);
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
    crash(log);
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
    crashed_log(dir.path(), 20);
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
    crashed_log(dir.path(), 20);
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

/// Flips a bit inside the records of the second batch of the second segment (only the CRC
/// tells); returns the segment files and the damaged segment's base offset.
fn damage_second_segment(dir: &Path) -> (Vec<PathBuf>, i64) {
    let files = segment_files(dir);
    let base: i64 = files[1]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    flip_bit(&files[1], batch_of(2, 50, 0).len() + 70);
    (files, base)
}

/// A log without its recovery point, as one written by an earlier version or just compacted:
/// the next open scans every segment.
fn forget_recovery_point(dir: &Path) {
    fs::remove_file(dir.join("recovery-point")).unwrap();
}

#[test]
fn crc_damage_in_an_older_segment_truncates_there_and_drops_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    crashed_log(dir.path(), 20);
    forget_recovery_point(dir.path());
    let (files, first_base) = damage_second_segment(dir.path());
    assert!(files.len() >= 3);
    let batch_len = batch_of(2, 50, 0).len();

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
    crash(log);
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

/// A log with a bit of everything: plain batches with rising timestamps across several
/// segments, two idempotent producers, a committed, an aborted and an open transaction.
fn varied_log(dir: &Path) -> Log {
    use crate::batch::{build_idempotent_batch, build_marker, build_transactional_batch};
    let mut log = open(dir, small_segments());
    let value = [b'v'; 60];
    let records: Vec<crate::batch::KeyValue> = vec![(Some(b"k"), Some(&value[..])); 2];
    for i in 0..40i64 {
        let ts = 1_000 + i * 10;
        let mut batch = match i % 8 {
            0 => build_idempotent_batch(&records, ts, 7, 0, (i / 8 * 2) as i32),
            1 => build_idempotent_batch(&records, ts, 8, 2, (i / 8 * 2) as i32),
            2 => build_transactional_batch(&records, ts, 9, 0, (i / 8 * 2) as i32),
            3 => build_marker(9, 0, i % 16 == 3, 0, ts),
            _ => batch_of(2, 60, ts),
        };
        log.append(&mut batch, ts).unwrap();
    }
    log.append(
        &mut build_transactional_batch(&records, 2_000, 10, 0, 0),
        2_000,
    )
    .unwrap();
    log
}

/// Everything a reader or writer of `log` can observe.
fn observe(log: &Log) -> String {
    let mut seen = format!(
        "start {} end {} stable {} size {} producers {:?} aborted {:?} marks {:?} max {:?}",
        log.log_start_offset(),
        log.log_end_offset(),
        log.last_stable_offset(),
        log.size_bytes(),
        log.producers(),
        log.aborted_transactions(i64::MIN, i64::MAX),
        log.timestamp_marks(1_000),
        log.max_timestamp().unwrap(),
    );
    for producer_id in [7, 8, 9, 10] {
        seen += &format!(" entry {:?}", log.producers.entry(producer_id));
    }
    for ts in [0, 1_000, 1_155, 1_390, 5_000] {
        seen += &format!(" ts {ts} {:?}", log.offset_for_timestamp(ts).unwrap());
    }
    for offset in 0..log.log_end_offset() {
        seen += &format!(
            " {offset}:{:?}",
            base_offsets(&log.read(offset, 1).unwrap())
        );
        let committed = log.read_committed(offset, 200).unwrap();
        seen += &format!("/{}/{:?}", committed.0.len(), committed.1);
    }
    for segment in log.segments.values() {
        let meta = segment.meta();
        seen += &format!(" {meta:?}");
    }
    seen
}

#[test]
fn a_clean_restart_opens_the_log_as_a_scan_would_without_reading_it() {
    let clean = tempfile::tempdir().unwrap();
    let log = varied_log(clean.path());
    let before = observe(&log);
    log.close().unwrap();
    assert!(clean.path().join("clean-shutdown").exists());
    // The same files, without the record: opened by a scan.
    let scanned = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(clean.path()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "clean-shutdown" {
            fs::copy(entry.path(), scanned.path().join(entry.file_name())).unwrap();
        }
    }
    let mut from_record = open(clean.path(), small_segments());
    let mut from_scan = open(scanned.path(), small_segments());
    assert_eq!(observe(&from_record), before);
    assert_eq!(observe(&from_scan), before);
    // Kept while nothing changed: the files are still as it says, and a crash now would
    // trust it again, rightly.
    assert!(clean.path().join("clean-shutdown").exists());
    let still = open(clean.path(), small_segments());
    assert_eq!(observe(&still), before);
    drop(still);
    // And they go on alike: the duplicate check, the open transaction, new index entries.
    assert_go_on_alike(&mut from_record, &mut from_scan);
    assert!(
        !clean.path().join("clean-shutdown").exists(),
        "deleted by the first change"
    );
}

#[test]
fn a_clean_restart_reads_no_batch_and_still_serves_no_damaged_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_segments());
    for _ in 0..20 {
        log.append(&mut batch_of(2, 50, 0), 0).unwrap();
    }
    log.close().unwrap();
    let (files, second_base) = damage_second_segment(dir.path());
    let batch_len = batch_of(2, 50, 0).len();

    // Nothing was read, so nothing was truncated...
    let log = open(dir.path(), small_segments());
    assert_eq!(log.log_end_offset(), 40);
    assert_eq!(segment_files(dir.path()), files);
    // ...but the damaged batch is refused when read, and what precedes it served.
    assert!(matches!(
        log.read(second_base + 2, 1),
        Err(LogError::Corrupt(_))
    ));
    let before = log.read(0, usize::MAX).unwrap();
    assert_eq!(
        base_offsets(&before),
        (0..second_base + 2).step_by(2).collect::<Vec<_>>()
    );
    // The scrub goes through the segments opened unread and finds the damage.
    let mut log = log;
    let mut found = Vec::new();
    let mut checked = 0u64;
    while let Some(target) = log.next_to_scrub().unwrap() {
        if let Some(damage) = target
            .check(100, &mut |bytes| {
                checked += bytes;
                true
            })
            .unwrap()
        {
            found.push((target.base_offset(), damage.position));
        }
        log.scrubbed(&target);
    }
    assert_eq!(found, [(second_base, batch_len as u64)]);
    assert!(checked > 0);
    assert!(log.next_to_scrub().unwrap().is_none());
    // After a crash with nothing changed, the record still holds. Without it (a change
    // would have deleted it), a segment before the recovery point is not read either; without
    // the recovery point, the scan truncates there as before.
    crash(log);
    assert_eq!(open(dir.path(), small_segments()).log_end_offset(), 40);
    fs::remove_file(dir.path().join("clean-shutdown")).unwrap();
    assert_eq!(open(dir.path(), small_segments()).log_end_offset(), 40);
    forget_recovery_point(dir.path());
    let log = open(dir.path(), small_segments());
    assert_eq!(log.log_end_offset(), second_base + 2);
}

/// Copies the files of `from` to a new directory, without those named in `leave`.
fn copy_log(from: &Path, leave: &[&str]) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if !leave.iter().any(|name| entry.file_name() == *name) {
            fs::copy(entry.path(), to.path().join(entry.file_name())).unwrap();
        }
    }
    to
}

#[test]
fn a_crash_restart_reads_only_past_the_recovery_point_and_opens_the_log_as_a_full_scan_would() {
    let crashed = tempfile::tempdir().unwrap();
    let log = varied_log(crashed.path());
    let before = observe(&log);
    let segments = log.segments.len();
    assert!(segments > 3, "{segments} segments");
    crash(log);
    assert!(crashed.path().join("recovery-point").exists());
    let scanned = copy_log(crashed.path(), &["recovery-point"]);
    let mut from_point = open(crashed.path(), small_segments());
    let mut from_scan = open(scanned.path(), small_segments());
    assert_eq!(observe(&from_point), before);
    assert_eq!(observe(&from_scan), before);
    // Only the active segment was read: the scrub has every other one to check.
    let mut unread = Vec::new();
    while let Some(target) = from_point.next_to_scrub().unwrap() {
        assert!(target.check(1 << 20, &mut |_| true).unwrap().is_none());
        unread.push(target.base_offset());
        from_point.scrubbed(&target);
    }
    assert_eq!(unread.len(), segments - 1);
    assert!(from_scan.next_to_scrub().unwrap().is_none());
    // And they go on alike: the duplicate check, the open transaction, new segments.
    assert_go_on_alike(&mut from_point, &mut from_scan);
}

#[test]
fn a_torn_active_segment_is_truncated_after_the_recovery_point_as_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let active = crashed_log(dir.path(), 20);
    let len = fs::metadata(&active).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&active)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let without = copy_log(dir.path(), &["recovery-point"]);
    let log = open(dir.path(), small_segments());
    assert_eq!(log.log_end_offset(), 38, "the torn last batch is dropped");
    assert_eq!(
        observe_offsets(&log),
        observe_offsets(&open(without.path(), small_segments()))
    );
}

fn observe_offsets(log: &Log) -> (i64, i64, Vec<i64>) {
    let all = log.read(log.log_start_offset(), usize::MAX).unwrap();
    (
        log.log_start_offset(),
        log.log_end_offset(),
        base_offsets(&all),
    )
}

#[test]
fn segments_deleted_by_retention_leave_the_recovery_point_usable() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_segments());
    for _ in 0..20 {
        log.append(&mut batch_of(2, 50, 0), 0).unwrap();
    }
    log.delete_records_before(12).unwrap();
    let start = log.log_start_offset();
    let files = segment_files(dir.path());
    crash(log);
    let (_, second_base) = damage_second_segment(dir.path());
    let log = open(dir.path(), small_segments());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (start, 40));
    assert_eq!(
        segment_files(dir.path()),
        files,
        "nothing truncated: not read"
    );
    assert!(log.next_to_scrub().unwrap().is_some());
    assert!(matches!(
        log.read(second_base + 2, 1),
        Err(LogError::Corrupt(_))
    ));
}

#[test]
fn any_change_after_a_clean_shutdown_record_deletes_it() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("clean-shutdown");
    let mut log = open(dir.path(), small_segments());
    log.append(&mut batch_of(2, 50, 0), 0).unwrap();
    log.write_clean_shutdown().unwrap();
    assert!(record.exists());
    log.append(&mut batch_of(2, 50, 0), 0).unwrap();
    assert!(!record.exists());
    crash(log);
    // The scan sees both batches.
    assert_eq!(open(dir.path(), small_segments()).log_end_offset(), 4);

    // A record that does not match the files is ignored.
    let mut log = open(dir.path(), small_segments());
    log.write_clean_shutdown().unwrap();
    drop(log);
    let active = segment_files(dir.path()).pop().unwrap();
    let mut file = OpenOptions::new().append(true).open(&active).unwrap();
    let mut batch = batch_of(2, 50, 0);
    batch::set_base_offset(&mut batch, 4);
    file.write_all(&batch).unwrap();
    let log = open(dir.path(), small_segments());
    assert_eq!(
        log.log_end_offset(),
        6,
        "scanned: the appended batch is found"
    );
    assert!(!record.exists());
}

/// Appends the same to both logs (a duplicate of producer 8's last batch, the commit of
/// producer 10's open transaction, enough batches for new index entries and segments) and
/// checks they answer alike and end alike.
fn assert_go_on_alike(a: &mut Log, b: &mut Log) {
    for log in [&mut *a, &mut *b] {
        let value = [b'w'; 60];
        let records: Vec<crate::batch::KeyValue> = vec![(None, Some(&value[..])); 3];
        let duplicate = crate::batch::build_idempotent_batch(&records[..2], 3_000, 8, 2, 8);
        let again = log.append(&mut duplicate.clone(), 3_000);
        log.append(
            &mut crate::batch::build_marker(10, 0, false, 0, 3_000),
            3_000,
        )
        .unwrap();
        for _ in 0..6 {
            log.append(&mut batch_of(3, 60, 3_100), 3_100).unwrap();
        }
        assert!(again.is_err() || again.unwrap().duplicate);
    }
    assert_eq!(observe(a), observe(b));
}

#[test]
fn a_log_opened_from_its_record_and_left_unchanged_stops_without_writing_it_again() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("clean-shutdown");
    let mut log = open(dir.path(), small_segments());
    log.append(&mut batch_of(2, 50, 0), 0).unwrap();
    log.close().unwrap();
    // The record is replaced by a rename when written: a new inode, while a second link
    // keeps the old one (and its number) taken.
    let witness = dir.path().join("witness");
    fs::hard_link(&record, &witness).unwrap();
    let inode = |path: &Path| fs::metadata(path).unwrap().ino();
    open(dir.path(), small_segments()).close().unwrap();
    assert_eq!(inode(&record), inode(&witness), "not written again");
    // Changed, it is written anew, and describes the change.
    let mut log = open(dir.path(), small_segments());
    log.append(&mut batch_of(2, 50, 0), 0).unwrap();
    log.close().unwrap();
    assert_ne!(inode(&record), inode(&witness));
    assert_eq!(open(dir.path(), small_segments()).log_end_offset(), 4);
}

#[test]
fn roll_retention_and_delete_records_on_a_log_opened_from_its_record_delete_it_first() {
    type Change = fn(&mut Log);
    let changes: [(&str, Change); 3] = [
        ("roll by time", |log| log.roll_if_due(i64::MAX / 2).unwrap()),
        ("retention", |log| {
            assert!(log.enforce_retention(i64::MAX / 2).unwrap() > 0);
        }),
        ("delete records", |log| {
            log.delete_records_before(8).unwrap()
        }),
    ];
    for (what, change) in changes {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("clean-shutdown");
        let config = LogConfig {
            retention_ms: 1,
            segment_ms: 1,
            ..small_segments()
        };
        let mut log = open(dir.path(), config.clone());
        for _ in 0..8 {
            log.append(&mut batch_of(2, 100, 0), 0).unwrap();
        }
        log.close().unwrap();
        let mut log = open(dir.path(), config.clone());
        assert!(record.exists(), "{what}: opened from its record");
        change(&mut log);
        assert!(!record.exists(), "{what}: the record outlived the change");
        let expected = observe_offsets(&log);
        crash(log);
        let reopened = open(dir.path(), config);
        assert_eq!(observe_offsets(&reopened), expected, "{what}");
    }
}
