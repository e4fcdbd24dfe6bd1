//! Opening a log: finding its segments, the recovery scan, and rebuilding derived state.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use super::compaction::CLEANED_EXTENSION;
use super::{clean_shutdown, Log};
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
    /// segments, indexes and producer state are as the shutdown recorded them. Otherwise
    /// every segment is scanned batch by batch, checking each batch's length, offsets and CRC,
    /// to rebuild the indexes (offsets, times and aborted transactions) and the idempotent
    /// producer state. At the first torn or corrupt
    /// batch the file is truncated and any later segments are deleted (as Kafka's recovery
    /// does: offsets past a hole would no longer connect), with a warning saying which file,
    /// byte range and offsets were dropped. Older segments were fsynced when rolled, so a torn
    /// write can only be in the last one, but a flipped bit can be anywhere: checking every CRC
    /// costs one sequential read of the log at start-up and guarantees that no damaged batch
    /// is served afterwards.
    pub fn open(dir: &Path, config: LogConfig) -> Result<Log, LogError> {
        fs::create_dir_all(dir)?;
        let base_offsets = list_segments(dir)?;
        let clean = match clean_shutdown::read_record(dir)? {
            Some(record) => clean_shutdown::open_segments(dir, &base_offsets, &record)?,
            None => None,
        };
        // Gone before anything can be appended: after a crash from here on, the next start
        // scans.
        clean_shutdown::remove_record(dir)?;
        let (segments, producers) = match clean {
            Some((segments, producers)) => {
                let segments = segments.into_iter().map(|s| (s.base_offset(), s)).collect();
                (segments, producers)
            }
            None => {
                let scanned = Self::scan(dir, &config, &base_offsets)?;
                let bytes: u64 = scanned.0.values().map(Segment::size).sum();
                if bytes > 0 {
                    tracing::info!(
                        dir = %dir.display(),
                        segments = scanned.0.len(),
                        bytes,
                        "recovered the log by reading every batch: it was not shut down cleanly"
                    );
                }
                scanned
            }
        };
        Self::assemble(dir, config, segments, producers)
    }

    /// Scans every segment, truncating at the first damaged batch (see [`Log::open`]).
    fn scan(
        dir: &Path,
        config: &LogConfig,
        base_offsets: &[i64],
    ) -> Result<(BTreeMap<i64, Segment>, ProducerStateTable), LogError> {
        let mut producers = ProducerStateTable::default();
        let mut segments = BTreeMap::new();
        let mut min_offset = 0;
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
            clean_shutdown_written: false,
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
