//! Log compaction: keep only the newest record per key in closed segments.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs;

use super::Log;
use crate::batch::{self, BatchHeader, BatchWriter, Record};
use crate::error::LogError;
use crate::segment::{segment_path, Segment};

/// Extension of a segment file being rewritten by compaction; left-overs are deleted at open.
pub(super) const CLEANED_EXTENSION: &str = "log.cleaned";

/// What one [`Log::compact`] run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionStats {
    /// Closed segments that were rewritten.
    pub segments_cleaned: usize,
    /// Size of the closed segments before compaction.
    pub bytes_before: u64,
    /// Size of the closed segments after compaction.
    pub bytes_after: u64,
    /// Records dropped because a newer record has the same key.
    pub records_removed: u64,
}

impl Log {
    /// Rewrites the closed segments keeping only the newest record of each key; offsets are
    /// preserved. The active segment and control batches are left alone. Compressed batches
    /// are read decompressed, and rewritten uncompressed when that makes them no larger.
    ///
    /// Only closed segments whose newest record is at least `min.compaction.lag.ms` old are
    /// cleaned (up to the first one that is younger). A tombstone (a key with no value) that
    /// is the newest record of its key is kept for `delete.retention.ms` after its timestamp,
    /// so that consumers see the deletion, then removed.
    ///
    /// A run reads the closed segments again only when a segment has closed since the last
    /// run, or when a segment has come of age or a tombstone has expired: otherwise the
    /// outcome could not differ from the last run's.
    pub fn compact(&mut self, now_ms: i64) -> Result<CompactionStats, LogError> {
        let mut stats = CompactionStats::default();
        let active_base = *self.segments.keys().next_back().expect("never empty");
        let nothing_closed = self.compacted_through == Some(active_base);
        if nothing_closed && self.compaction_due_ms.is_none_or(|due| now_ms < due) {
            return Ok(stats);
        }
        let mut due: Option<i64> = None;
        let lag_ms = self.config.min_compaction_lag_ms;
        let mut cleanable = Vec::new();
        for (base_offset, segment) in self.segments.range(..active_base) {
            let newest = segment.max_timestamp().map(|(_, timestamp)| timestamp);
            let newest = newest.or_else(|| segment.modified_ms()).unwrap_or(i64::MIN);
            if lag_ms > 0 && newest.saturating_add(lag_ms) > now_ms {
                due = Some(newest.saturating_add(lag_ms));
                break;
            }
            cleanable.push(*base_offset);
        }
        let mut newest_offset_by_key = HashMap::new();
        for base_offset in &cleanable {
            for_each_batch(&self.segments[base_offset], |header, bytes| {
                if let Some(plain) = readable(header, bytes) {
                    for record in batch::decode_records(&plain).unwrap_or_default() {
                        if let Some(key) = record.key {
                            newest_offset_by_key.insert(key.to_vec(), record.offset);
                        }
                    }
                }
                Ok(())
            })?;
        }
        let retention_ms = self.config.delete_retention_ms;
        let mut keep = |record: &Record<'_>| {
            let Some(newest) = record.key.and_then(|key| newest_offset_by_key.get(key)) else {
                return true;
            };
            if *newest > record.offset {
                return false;
            }
            if record.value.is_some() {
                return true;
            }
            let expires = record.timestamp.saturating_add(retention_ms);
            if expires <= now_ms {
                return false;
            }
            due = Some(due.map_or(expires, |due| due.min(expires)));
            true
        };
        for base_offset in cleanable {
            let segment = &self.segments[&base_offset];
            stats.bytes_before += segment.size();
            let mut cleaned = Vec::with_capacity(segment.size() as usize);
            let mut removed = 0;
            for_each_batch(segment, |header, bytes| {
                let (batch, dropped) = clean_batch(header, bytes, &mut keep);
                cleaned.extend_from_slice(batch.as_deref().unwrap_or(bytes));
                removed += dropped;
                Ok(())
            })?;
            stats.bytes_after += cleaned.len() as u64;
            if removed == 0 {
                continue;
            }
            stats.records_removed += removed;
            stats.segments_cleaned += 1;
            self.replace_segment(base_offset, &cleaned)?;
        }
        self.compacted_through = Some(active_base);
        self.compaction_due_ms = due;
        Ok(stats)
    }

    /// Swaps a segment's file for `contents` (same base offset) and rebuilds its indexes.
    fn replace_segment(&mut self, base_offset: i64, contents: &[u8]) -> Result<(), LogError> {
        let temporary = segment_path(&self.dir, base_offset, CLEANED_EXTENSION);
        fs::write(&temporary, contents)?;
        fs::File::open(&temporary)?.sync_all()?;
        fs::rename(&temporary, segment_path(&self.dir, base_offset, "log"))?;
        let (segment, truncation) = Segment::open_existing(
            &self.dir,
            base_offset,
            base_offset,
            false,
            self.config.index_interval_bytes,
            &mut |_| {},
        )?;
        if let Some(truncation) = truncation {
            return Err(LogError::Corrupt(format!(
                "compacted segment {base_offset} is damaged: {}",
                truncation.reason
            )));
        }
        self.segments.insert(base_offset, segment);
        Ok(())
    }
}

/// Calls `visit` with each batch of `segment` in order.
fn for_each_batch(
    segment: &Segment,
    mut visit: impl FnMut(&BatchHeader, &[u8]) -> Result<(), LogError>,
) -> Result<(), LogError> {
    let mut position = 0;
    while let Some(header) = segment.header_at(position)? {
        let bytes = segment.read_at(position, header.total_size())?;
        visit(&header, &bytes)?;
        position += header.total_size() as u64;
    }
    Ok(())
}

/// A batch as compaction reads it: decompressed if it was compressed; `None` for a control
/// batch, or one that does not decode, which compaction keeps whole.
fn readable<'a>(header: &BatchHeader, bytes: &'a [u8]) -> Option<Cow<'a, [u8]>> {
    if header.is_control() {
        return None;
    }
    batch::compression::uncompressed(bytes).ok()
}

/// The batch rewritten without the records `keep` refuses, or `None` to keep it as is, and how
/// many records were dropped.
///
/// A batch left without records is dropped, except an idempotent producer's, which stays as
/// an empty batch so that its sequence numbers survive a restart (as Kafka does). A compressed
/// batch is rewritten uncompressed, and kept as it was if that would make it larger.
fn clean_batch(
    header: &BatchHeader,
    bytes: &[u8],
    keep: &mut impl FnMut(&Record<'_>) -> bool,
) -> (Option<Vec<u8>>, u64) {
    let Some(plain) = readable(header, bytes) else {
        return (None, 0);
    };
    let records = batch::decode_records(&plain).unwrap_or_default();
    let kept: Vec<&Record<'_>> = records.iter().filter(|record| keep(record)).collect();
    let dropped = (records.len() - kept.len()) as u64;
    if dropped == 0 {
        return (None, 0);
    }
    if kept.is_empty() && header.producer_id < 0 {
        return (Some(Vec::new()), dropped);
    }
    let mut writer = BatchWriter::new(
        header.base_timestamp,
        header.producer_id,
        header.producer_epoch,
        header.base_sequence,
    );
    for record in kept {
        let offset_delta = (record.offset - header.base_offset) as i32;
        writer.add_record(
            offset_delta,
            record.timestamp,
            record.key,
            record.value,
            &record.headers,
        );
    }
    writer.raise_max_timestamp(header.max_timestamp);
    let attributes = header.attributes & !batch::COMPRESSION_MASK;
    let mut rewritten = writer.finish(attributes, header.last_offset_delta);
    if rewritten.len() > bytes.len() {
        return (None, 0);
    }
    batch::set_base_offset(&mut rewritten, header.base_offset);
    // The partition leader epoch is not covered by the CRC.
    rewritten[12..16].copy_from_slice(&header.partition_leader_epoch.to_be_bytes());
    (Some(rewritten.to_vec()), dropped)
}
