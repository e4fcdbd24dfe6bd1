//! The partition log: an ordered set of segments with one active segment at the end.

mod clean_shutdown;
mod compaction;
mod recovery;
mod retention;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::batch;
use crate::config::{LogConfig, TimestampType};
use crate::error::LogError;
use crate::index::TxnEntry;
use crate::producer_state::{AbortedTxn, ActiveProducer, ProducerStateTable, SequenceCheck};
use crate::segment::{Segment, SegmentFile};

/// A segment whose batches the scrub is to check (see [`Log::next_to_scrub`]).
pub struct ScrubTarget(SegmentFile);

/// A damaged batch found by the scrub.
#[derive(Debug, Clone)]
pub struct Damage {
    /// The segment file.
    pub path: PathBuf,
    /// Where in it the damaged batch starts.
    pub position: u64,
    /// What is wrong with it.
    pub reason: String,
}

impl ScrubTarget {
    /// The segment's first offset.
    pub fn base_offset(&self) -> i64 {
        self.0.base_offset
    }

    /// Its size in bytes, as it was when chosen.
    pub fn size(&self) -> u64 {
        self.0.size
    }

    /// Checks every batch, `chunk` bytes read at a time, calling `pace` with the bytes of
    /// each chunk checked; `pace` returns false to stop before the end (the result then
    /// says nothing). Blocking.
    pub fn check(
        &self,
        chunk: usize,
        pace: &mut dyn FnMut(u64) -> bool,
    ) -> Result<Option<Damage>, LogError> {
        Ok(self
            .0
            .verify(chunk, pace)?
            .map(|(position, reason)| Damage {
                path: self.0.path.clone(),
                position,
                reason,
            }))
    }
}

pub use compaction::{Cleaner, CompactionOutput, CompactionPlan, CompactionStats};

/// The outcome of a successful [`Log::append`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset assigned to the first record of the batch.
    pub base_offset: i64,
    /// Offset of the last record of the batch.
    pub last_offset: i64,
    /// The append time written into the batch, or -1 unless the log uses LogAppendTime.
    pub log_append_time: i64,
    /// The batch was a retry of one already appended by the same idempotent producer: nothing
    /// was written and the offsets are those of the original append.
    pub duplicate: bool,
}

/// The storage of one topic-partition, in its own directory.
///
/// Batches are stored exactly as produced (only the base offset, and for LogAppendTime the
/// timestamp and CRC, are rewritten), in segment files named by their first offset.
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    /// Segments by base offset; never empty, the last one is the active segment.
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    log_end_offset: i64,
    producers: ProducerStateTable,
    unflushed_messages: u64,
    last_flush_ms: Option<i64>,
    /// Base offset of the active segment when compaction last ran to the end: while it is
    /// still the active one, no segment has closed since and compaction has nothing to do.
    compacted_through: Option<i64>,
    /// When the next compaction has work even if no segment closes: a closed segment comes
    /// of age (`min.compaction.lag.ms`) or a tombstone expires (`delete.retention.ms`).
    compaction_due_ms: Option<i64>,
    /// A clean-shutdown record may be on disk (one the log was opened from, one just written,
    /// or one deleted at open without a directory sync): the next change deletes it durably
    /// first.
    clean_shutdown_pending: bool,
    /// The clean-shutdown record on disk describes the log as it is (it was opened from it,
    /// or has just written it, and nothing changed since): a clean stop has nothing to write.
    clean_shutdown_current: bool,
}

/// The `.txnindex` entry of a transaction just aborted: with the last stable offset as it
/// stands once it ended.
fn aborted_entry(producers: &ProducerStateTable, txn: AbortedTxn) -> TxnEntry {
    TxnEntry {
        txn,
        last_stable_offset: producers
            .first_unstable_offset()
            .unwrap_or(txn.last_offset + 1),
    }
}

/// The header of a produced batch, if it may be appended under `config`: no larger than
/// `max.message.bytes`, and its own length and last offset delta consistent with its bytes.
pub fn check_appendable(batch: &[u8], config: &LogConfig) -> Result<batch::BatchHeader, LogError> {
    if batch.len() > config.max_message_bytes as usize {
        return Err(LogError::MessageTooLarge);
    }
    let header = batch::parse_header(batch)?;
    if header.total_size() != batch.len() || header.last_offset_delta < 0 {
        return Err(LogError::Corrupt(format!(
            "batch of {} bytes has batchLength {} and lastOffsetDelta {}",
            batch.len(),
            header.batch_length,
            header.last_offset_delta
        )));
    }
    Ok(header)
}

impl Log {
    /// Appends one validated batch (see [`batch::validate`]) and returns its offsets.
    ///
    /// Assigns the base offset, applies LogAppendTime when configured, and rolls to a new
    /// segment first when the active one is full or old enough. `batch` is modified in place.
    pub fn append(&mut self, batch: &mut [u8], now_ms: i64) -> Result<AppendInfo, LogError> {
        let header = check_appendable(batch, &self.config)?;
        self.forget_clean_shutdown()?;
        let marker = match header.is_control() {
            true => {
                let (kind, _) = batch::marker_of(&header, batch).ok_or_else(|| {
                    LogError::Corrupt("a control batch that is no transaction marker".into())
                })?;
                self.producers.check_marker(&header)?;
                Some(kind)
            }
            false => None,
        };
        if let SequenceCheck::Duplicate(original) = self.producers.check(&header)? {
            return Ok(AppendInfo {
                base_offset: original.base_offset,
                last_offset: original.last_offset,
                log_append_time: -1,
                duplicate: true,
            });
        }
        batch::set_base_offset(batch, self.log_end_offset);
        let mut log_append_time = -1;
        if self.config.timestamp_type == TimestampType::LogAppendTime {
            batch::set_log_append_time(batch, now_ms);
            log_append_time = now_ms;
        }
        let header = batch::parse_header(batch)?;
        if self.roll_due(batch.len(), header.last_offset(), now_ms) {
            self.roll()?;
        }
        let index_interval_bytes = self.config.index_interval_bytes;
        let active = self.active_mut();
        active.rolling_base_ms.get_or_insert(now_ms);
        active.append(batch, &header, index_interval_bytes)?;
        self.log_end_offset = header.last_offset() + 1;
        match marker {
            Some(kind) => {
                let commit = kind == batch::ControlType::Commit;
                if let Some(txn) = self.producers.record_marker(&header, commit) {
                    let entry = aborted_entry(&self.producers, txn);
                    self.active_mut().append_aborted(entry);
                }
            }
            None => self.producers.record(&header),
        }
        self.unflushed_messages = self
            .unflushed_messages
            .saturating_add(header.record_count.max(1) as u64);
        self.flush_if_due(now_ms)?;
        Ok(AppendInfo {
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
            log_append_time,
            duplicate: false,
        })
    }

    /// Whole batches starting with the one that contains `offset`, up to `max_bytes` but always
    /// at least one batch when there is one.
    ///
    /// Returns empty bytes at the log end offset, and [`LogError::OffsetOutOfRange`] below the
    /// log start or past the log end.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes, LogError> {
        if offset < self.log_start_offset || offset > self.log_end_offset {
            return Err(LogError::OffsetOutOfRange);
        }
        if offset == self.log_end_offset {
            // A consumer that has caught up: nothing to read, and no scan to find that out.
            return Ok(Bytes::new());
        }
        let first_base = match self.segments.range(..=offset).next_back() {
            Some((base, _)) => *base,
            None => return Ok(Bytes::new()),
        };
        let mut out = Vec::new();
        for segment in self.segments.range(first_base..).map(|(_, s)| s) {
            let Some((start, header)) = segment.find_batch(offset)? else {
                continue;
            };
            // One read of what may fit, cut back to whole batches in memory; the first batch
            // of the response is read whole even when it alone exceeds `max_bytes`.
            let room = max_bytes.saturating_sub(out.len());
            let wanted = if out.is_empty() {
                room.max(header.total_size())
            } else {
                room
            };
            let available = segment.size().saturating_sub(start);
            let chunk = segment.read_at(start, (wanted as u64).min(available) as usize)?;
            let whole = whole_batches_len(&chunk);
            let (intact, damage) = intact_batches_len(&chunk[..whole]);
            out.extend_from_slice(&chunk[..intact]);
            if let Some(reason) = damage {
                // Damaged after start-up (recovery checked every CRC): serve what precedes it,
                // never the damaged batch itself.
                tracing::error!(
                    file = %segment.log_path().display(),
                    position = start + intact as u64,
                    %reason,
                    "refusing to serve a damaged batch"
                );
                if out.is_empty() {
                    return Err(LogError::Corrupt(format!(
                        "the batch at offset {offset} is damaged on disk: {reason}"
                    )));
                }
                break;
            }
            if whole < chunk.len() || (wanted as u64) < available || out.len() >= max_bytes {
                break;
            }
        }
        Ok(Bytes::from(out))
    }

    /// The last stable offset: the first record of the oldest transaction still under way,
    /// or the log end. A `read_committed` consumer reads below it.
    pub fn last_stable_offset(&self) -> i64 {
        self.producers
            .first_unstable_offset()
            .map_or(self.log_end_offset, |first| first.min(self.log_end_offset))
    }

    /// What a `read_committed` fetch from `offset` gets: whole batches below the last stable
    /// offset (up to `max_bytes`, at least one when there is one), and the aborted
    /// transactions they may hold records of.
    pub fn read_committed(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> Result<(Bytes, Vec<AbortedTxn>), LogError> {
        let stable = self.last_stable_offset();
        if offset >= stable && offset <= self.log_end_offset && offset >= self.log_start_offset {
            return Ok((Bytes::new(), Vec::new()));
        }
        let bytes = self.read(offset, max_bytes)?;
        // The last stable offset is where a transactional batch begins: keep the batches
        // before it.
        let mut end = 0;
        let mut next_offset = offset;
        for range in batch::split_batches(&bytes)? {
            let header = batch::parse_header(&bytes[range.clone()])?;
            if header.base_offset >= stable {
                break;
            }
            end = range.end;
            next_offset = header.last_offset() + 1;
        }
        let bytes = bytes.slice(..end);
        Ok((bytes, self.aborted_transactions(offset, next_offset)))
    }

    /// The producers that wrote here and their transactions under way (DescribeProducers).
    pub fn producers(&self) -> Vec<ActiveProducer> {
        self.producers.active()
    }

    /// The aborted transactions a read of offsets `from..to` may meet, for a `read_committed`
    /// fetch: those not ended before `from` and begun before `to`, in the order of their
    /// markers. As Kafka does, the segments' indexes are read from the one holding `from` on,
    /// until an entry shows that every transaction begun before `to` had ended by then.
    pub fn aborted_transactions(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        let first = self
            .segments
            .range(..=from)
            .next_back()
            .map_or(i64::MIN, |(base, _)| *base);
        let mut found = Vec::new();
        for segment in self.segments.range(first..).map(|(_, s)| s) {
            for entry in segment.aborted() {
                if entry.txn.last_offset >= from && entry.txn.first_offset < to {
                    found.push(entry.txn);
                }
                if entry.last_stable_offset >= to {
                    return found;
                }
            }
        }
        found
    }

    /// First offset still readable.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// Offset the next appended record gets (the high watermark on a single broker).
    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset
    }

    /// The first record at or after the log start whose timestamp is `>= ts`, as
    /// `(offset, timestamp)`; `None` if every record is older.
    ///
    /// Exact: a compressed batch is decompressed to find the record (if it cannot be, the
    /// answer is the batch's first offset and its max timestamp).
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, LogError> {
        for segment in self.segments.values() {
            let newer = matches!(segment.max_timestamp(), Some((_, max)) if max >= ts);
            if !newer || segment.next_offset() <= self.log_start_offset {
                continue;
            }
            let Some((position, header)) =
                segment.find_batch_by_timestamp(ts, self.log_start_offset)?
            else {
                continue;
            };
            let bytes = segment.read_at(position, header.total_size())?;
            return Ok(Some(batch::find_by_timestamp(
                &bytes,
                ts,
                self.log_start_offset,
            )?));
        }
        Ok(None)
    }

    /// The largest timestamp in the log and the offset of the first record that has it, for
    /// ListOffsets with MAX_TIMESTAMP (as Kafka answers since 3.8); `None` for an empty log.
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>, LogError> {
        let mut best: Option<(&Segment, i64, i64)> = None;
        for segment in self.segments.values() {
            if let Some((offset, ts)) = segment.max_timestamp() {
                if best.is_none_or(|(_, _, best_ts)| ts > best_ts) {
                    best = Some((segment, offset, ts));
                }
            }
        }
        let Some((segment, batch_last_offset, ts)) = best else {
            return Ok(None);
        };
        // The segment knows the batch; the record is found in it.
        let Some((position, header)) = segment.find_batch(batch_last_offset)? else {
            return Ok(Some((batch_last_offset, ts)));
        };
        let bytes = segment.read_at(position, header.total_size())?;
        Ok(Some((batch::offset_of_timestamp(&bytes, ts)?, ts)))
    }

    /// Up to `max` (offset, timestamp) marks spread over the log, from the time indexes in
    /// memory: each timestamp is the largest of the records up to its offset. Enough to tell
    /// roughly how old the record at an offset is, without reading it.
    pub fn timestamp_marks(&self, max: usize) -> Vec<(i64, i64)> {
        let marks: Vec<(i64, i64)> = self
            .segments
            .values()
            .flat_map(|segment| segment.time_marks())
            .filter(|(offset, _)| *offset >= self.log_start_offset)
            .collect();
        if marks.len() <= max || max == 0 {
            return marks;
        }
        let step = marks.len() as f64 / max as f64;
        (0..max)
            .map(|i| marks[(i as f64 * step) as usize])
            .collect()
    }

    /// Total bytes of all segment files.
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(Segment::size).sum()
    }

    /// The configuration in force.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the configuration; it applies from the next operation on.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// Fsyncs the active segment and its indexes (older segments are synced when rolled).
    pub fn flush(&mut self) -> Result<(), LogError> {
        self.active().sync()?;
        self.unflushed_messages = 0;
        Ok(())
    }

    /// Rolls to a new segment if the active one is older than `segment_ms`.
    pub fn roll_if_due(&mut self, now_ms: i64) -> Result<(), LogError> {
        if self.roll_due(0, self.log_end_offset, now_ms) {
            self.forget_clean_shutdown()?;
            self.roll()?;
        }
        Ok(())
    }

    /// Syncs and closes the log, leaving a clean-shutdown record so that the next open
    /// reads no batch.
    pub fn close(mut self) -> Result<(), LogError> {
        self.write_clean_shutdown()
    }

    /// Closes the log and removes its directory with everything in it.
    pub fn delete(self) -> Result<(), LogError> {
        let dir = self.dir.clone();
        drop(self);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    /// The first segment whose batches have not been checked since the broker started (it
    /// opened without reading them: after a clean shutdown, or before the recovery point), as
    /// it is now, for the scrub to read without the log.
    pub fn next_to_scrub(&self) -> Result<Option<ScrubTarget>, LogError> {
        match self.segments.values().find(|segment| !segment.verified) {
            Some(segment) => Ok(Some(ScrubTarget(segment.file_view()?))),
            None => Ok(None),
        }
    }

    /// Marks the segment `target` was taken of checked by the scrub (not one that compaction
    /// has put in its place meanwhile).
    pub fn scrubbed(&mut self, target: &ScrubTarget) {
        if let Some(segment) = self.segments.get_mut(&target.base_offset()) {
            if segment.is_viewed_by(&target.0) {
                segment.verified = true;
            }
        }
    }

    /// The directory holding this log's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log has an active segment")
    }

    /// Whether a batch of `size` bytes ending at `last_offset` needs a new segment first.
    fn roll_due(&self, size: usize, last_offset: i64, now_ms: i64) -> bool {
        let active = self.active();
        if active.is_empty() {
            return false;
        }
        let too_old = active
            .rolling_base_ms
            .is_some_and(|base| now_ms.saturating_sub(base) >= self.config.segment_ms);
        too_old || !active.fits(size, last_offset, self.config.segment_bytes)
    }

    /// Syncs the active segment and starts a new one at the log end offset.
    fn roll(&mut self) -> Result<(), LogError> {
        self.active().sync()?;
        let segment = Segment::create(&self.dir, self.log_end_offset)?;
        tracing::debug!(path = %segment.log_path().display(), "rolled new segment");
        self.segments.insert(self.log_end_offset, segment);
        self.write_recovery_point();
        Ok(())
    }

    fn flush_if_due(&mut self, now_ms: i64) -> Result<(), LogError> {
        let last_flush_ms = *self.last_flush_ms.get_or_insert(now_ms);
        let elapsed = u64::try_from(now_ms.saturating_sub(last_flush_ms)).unwrap_or(0);
        if self.unflushed_messages >= self.config.flush_messages || elapsed >= self.config.flush_ms
        {
            self.flush()?;
            self.last_flush_ms = Some(now_ms);
        }
        Ok(())
    }
}

/// The length of the batches at the start of `bytes` (whole batches, as cut by
/// [`whole_batches_len`]) that pass [`batch::validate`], and why the next one does not.
pub(crate) fn intact_batches_len(bytes: &[u8]) -> (usize, Option<String>) {
    let mut end = 0;
    while end < bytes.len() {
        let rest = &bytes[end..];
        let size = batch::parse_header(rest).map_or(rest.len(), |h| h.total_size().min(rest.len()));
        if let Err(error) = batch::validate(&rest[..size]) {
            return (end, Some(error.to_string()));
        }
        end += size;
    }
    (end, None)
}

/// The length of the whole batches at the start of `bytes`, judged by their length fields.
pub(crate) fn whole_batches_len(bytes: &[u8]) -> usize {
    let mut end = 0;
    while let Some(length) = bytes.get(end + 8..end + 12) {
        let length = i32::from_be_bytes([length[0], length[1], length[2], length[3]]);
        let size = usize::try_from(length).unwrap_or(0) + 12;
        if length <= 0 || end + size > bytes.len() {
            break;
        }
        end += size;
    }
    end
}

#[cfg(test)]
mod compaction_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod recovery_tests;
#[cfg(test)]
mod tests;
