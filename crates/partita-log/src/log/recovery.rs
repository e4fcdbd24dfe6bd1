//! Opening a log: finding its segments, the recovery scan, and rebuilding derived state.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use super::clean_shutdown::{self, CLEAN_SHUTDOWN_FILE, RECOVERY_POINT_FILE};
use super::compaction::CLEANED_EXTENSION;
use super::Log;
use crate::batch;
use crate::config::LogConfig;
use crate::error::LogError;
use crate::producer_state::ProducerStateTable;
use crate::segment::{remove_if_present, segment_path, Segment};

/// File holding a log start offset moved by DeleteRecords.
const LOG_START_OFFSET_FILE: &str = "log-start-offset";

impl Log {
    /// Opens the log in `dir`, creating the directory if missing.
    ///
    /// After a clean shutdown (see [`Log::write_clean_shutdown`]) no batch is read: the
    /// segments, indexes and producer state are as the shutdown recorded them, also after a
    /// crash that came before any change to the log (the record stays until then). After a
    /// crash that followed a change,
    /// the segments closed before the last roll are trusted the same way, from the recovery
    /// point that roll wrote (they were fsynced by it), and only the later segments are
    /// scanned batch by batch, checking each batch's length, offsets and CRC, to rebuild
    /// their indexes (offsets, times and aborted transactions) and the idempotent producer
    /// state from the recovery point's. Without a recovery point matching the files, every
    /// segment is scanned. At the first torn or corrupt batch the file is truncated and any
    /// later segments are deleted (as Kafka's recovery does: offsets past a hole would no
    /// longer connect), with a warning saying which file, byte range and offsets were
    /// dropped. Segments opened without being read are checked later by the scrub
    /// ([`Log::next_to_scrub`]), and a damaged batch is never served: reads check every CRC.
    pub fn open(dir: &Path, config: LogConfig) -> Result<Log, LogError> {
        fs::create_dir_all(dir)?;
        let base_offsets = list_segments(dir)?;
        let clean = match clean_shutdown::read_record(dir, CLEAN_SHUTDOWN_FILE)? {
            Some(record) => clean_shutdown::open_segments(dir, &base_offsets, &record)?,
            None => None,
        };
        // A record the files match stays until the first change deletes it (syncing the
        // directory) before making it: until then it still describes them exactly, and a start
        // after a crash may trust it again. Deleting it here cost an unlink per partition, a
        // third of a start with 100,000 partitions. A record that does not match is deleted
        // now, so that it is never trusted.
        let trusted = clean.is_some();
        let clean_shutdown_pending = match trusted {
            true => true,
            false => clean_shutdown::unlink_record(dir)?,
        };
        let (segments, producers) = match clean {
            Some((segments, producers)) => {
                let segments = segments.into_iter().map(|s| (s.base_offset(), s)).collect();
                (segments, producers)
            }
            None => Self::recover(dir, &config, &base_offsets)?,
        };
        let mut log = Self::assemble(dir, config, segments, producers)?;
        log.clean_shutdown_current = trusted;
        log.clean_shutdown_pending = clean_shutdown_pending;
        Ok(log)
    }

    /// Opens a log that was not shut down cleanly: the segments before its recovery point
    /// unread, the others scanned (see [`Log::open`]).
    fn recover(
        dir: &Path,
        config: &LogConfig,
        base_offsets: &[i64],
    ) -> Result<(BTreeMap<i64, Segment>, ProducerStateTable), LogError> {
        let recovered = match clean_shutdown::read_record(dir, RECOVERY_POINT_FILE)? {
            Some(record) => clean_shutdown::open_recovered(dir, base_offsets, &record)?
                .map(|(segments, producers, first)| (segments, producers, first, record)),
            None => None,
        };
        let (mut segments, producers, first_scanned, min_offset) = match recovered {
            Some((trusted, producers, first, record)) => {
                let trusted = trusted.into_iter().map(|s| (s.base_offset(), s)).collect();
                (trusted, producers, first, record.log_end_offset)
            }
            None => (BTreeMap::new(), ProducerStateTable::default(), 0, 0),
        };
        let trusted = segments.len();
        let (scanned, producers) = Self::scan(
            dir,
            config,
            &base_offsets[first_scanned..],
            producers,
            min_offset,
        )?;
        let bytes: u64 = scanned.values().map(Segment::size).sum();
        if bytes > 0 {
            tracing::info!(
                dir = %dir.display(),
                segments = scanned.len(),
                bytes,
                trusted_segments = trusted,
                "recovered the log by reading the segments past its recovery point: it was \
                 not shut down cleanly"
            );
        }
        segments.extend(scanned);
        Ok((segments, producers))
    }

    /// Scans the segments at `base_offsets`, whose batches start at `min_offset` or later,
    /// from the producer state before them, truncating at the first damaged batch (see
    /// [`Log::open`]).
    fn scan(
        dir: &Path,
        config: &LogConfig,
        base_offsets: &[i64],
        mut producers: ProducerStateTable,
        mut min_offset: i64,
    ) -> Result<(BTreeMap<i64, Segment>, ProducerStateTable), LogError> {
        let mut segments = BTreeMap::new();
        for (i, &base_offset) in base_offsets.iter().enumerate() {
            let mut aborted = Vec::new();
            let (mut segment, truncation) = Segment::open_existing(
                dir,
                base_offset,
                min_offset,
                true,
                config.index_interval_bytes,
                &mut |header, bytes| match batch::marker_of(header, bytes) {
                    Some((kind, _)) => {
                        let commit = kind == batch::ControlType::Commit;
                        if let Some(txn) = producers.record_marker(header, commit) {
                            aborted.push(super::aborted_entry(&producers, txn));
                        }
                    }
                    None => producers.record(header),
                },
            )?;
            segment.set_aborted(aborted)?;
            min_offset = segment.next_offset();
            if let Some(truncation) = truncation {
                tracing::warn!(
                    file = %segment.log_path().display(),
                    position = truncation.position,
                    dropped_bytes = truncation.dropped_bytes,
                    first_dropped_offset = segment.next_offset(),
                    reason = %truncation.reason,
                    "truncated damaged log segment: kept the batches before position, dropped \
                     the bytes from there on and every record from first_dropped_offset on"
                );
                segments.insert(base_offset, segment);
                drop_later_segments(dir, &base_offsets[i + 1..])?;
                break;
            }
            segments.insert(base_offset, segment);
        }
        Ok((segments, producers))
    }

    /// The log over `segments` (possibly none yet) and their producer state.
    fn assemble(
        dir: &Path,
        config: LogConfig,
        mut segments: BTreeMap<i64, Segment>,
        producers: ProducerStateTable,
    ) -> Result<Log, LogError> {
        let persisted_start = read_log_start_offset(dir)?;
        if segments.is_empty() {
            let base_offset = persisted_start.unwrap_or(0).max(0);
            segments.insert(base_offset, Segment::create(dir, base_offset)?);
        }
        let first_base = *segments.keys().next().expect("at least one segment");
        let log_end_offset = segments
            .values()
            .next_back()
            .expect("segment")
            .next_offset();
        let log_start_offset = persisted_start
            .unwrap_or(first_base)
            .max(first_base)
            .min(log_end_offset);
        Ok(Log {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset,
            log_end_offset,
            producers,
            unflushed_messages: 0,
            last_flush_ms: None,
            compacted_through: None,
            compaction_due_ms: None,
            clean_shutdown_pending: false,
            clean_shutdown_current: false,
        })
    }

    /// Writes the log start offset so that a DeleteRecords survives a restart.
    pub(super) fn persist_log_start_offset(&self) -> io::Result<()> {
        let path = self.dir.join(LOG_START_OFFSET_FILE);
        crate::files::replace(&path, self.log_start_offset.to_string().as_bytes())
    }
}

/// Base offsets of the `.log` files in `dir`, ascending.
fn list_segments(dir: &Path) -> io::Result<Vec<i64>> {
    let mut base_offsets = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(name) = name.to_str().filter(|n| n.ends_with(CLEANED_EXTENSION)) {
            // An interrupted compaction: the original segment is still in place.
            tracing::warn!(file = name, "removing unfinished compaction output");
            fs::remove_file(dir.join(name))?;
            continue;
        }
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".log")) else {
            continue;
        };
        if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(base_offset) = stem.parse::<i64>() {
                base_offsets.push(base_offset);
            }
        }
    }
    base_offsets.sort_unstable();
    Ok(base_offsets)
}

/// Deletes the files of segments that follow a truncated one: their data no longer connects.
fn drop_later_segments(dir: &Path, base_offsets: &[i64]) -> io::Result<()> {
    for &base_offset in base_offsets {
        let path = segment_path(dir, base_offset, "log");
        let bytes = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        tracing::warn!(
            file = %path.display(),
            base_offset,
            dropped_bytes = bytes,
            "deleted log segment following a truncated one"
        );
        for extension in ["log", "index", "timeindex", "txnindex"] {
            remove_if_present(&segment_path(dir, base_offset, extension))?;
        }
    }
    Ok(())
}

fn read_log_start_offset(dir: &Path) -> io::Result<Option<i64>> {
    match fs::read_to_string(dir.join(LOG_START_OFFSET_FILE)) {
        Ok(text) => match text.trim().parse::<i64>() {
            Ok(offset) => Ok(Some(offset)),
            Err(_) => {
                tracing::warn!(dir = %dir.display(), "ignoring unreadable log-start-offset file");
                Ok(None)
            }
        },
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}
