//! Log compaction: keep only the newest record per key in closed segments.
//!
//! Compaction runs in three steps so that the partition is never held while segments are
//! read and rewritten: [`Log::compaction_plan`] (under the caller's lock) picks the closed
//! segments to clean; [`CompactionPlan::run`] (without it) reads them and writes cleaned
//! copies beside them (unnamed until installed, so a crash leaves nothing behind);
//! [`Log::install_compaction`] (under the lock again) swaps each copy in atomically and
//! durably (`atomic-write-file`: fsync, rename, fsync of the directory), if its segment is
//! still the one that was read.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{BufWriter, Write};

use atomic_write_file::AtomicWriteFile;

use super::Log;
use crate::batch::{self, BatchHeader, BatchWriter, Record};
use crate::error::LogError;
use crate::producer_state::AbortedTxn;
use crate::segment::{Segment, SegmentFile};

/// Extension of a segment file rewritten by compaction by earlier versions; left-overs are
/// deleted at open.
pub(super) const CLEANED_EXTENSION: &str = "log.cleaned";

/// Bytes copied at once when a segment's start is carried into its cleaned copy.
const COPY_CHUNK: usize = 1 << 20;

/// What one compaction run did.
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

/// The closed segments a compaction run cleans, and what it needs to know, to run without
/// the log.
#[derive(Debug)]
pub struct CompactionPlan {
    segments: Vec<SegmentFile>,
    /// The partition's aborted transactions, whose records compaction removes.
    aborted: Vec<AbortedTxn>,
    active_base: i64,
    now_ms: i64,
    delete_retention_ms: i64,
    /// When a segment still too young to clean comes of age.
    due: Option<i64>,
}

/// A cleaned copy of one segment, waiting to be swapped in.
#[derive(Debug)]
struct Cleaned {
    base_offset: i64,
    original_size: u64,
    file: AtomicWriteFile,
}

/// What a compaction run wrote: cleaned copies to install.
#[derive(Debug)]
pub struct CompactionOutput {
    active_base: i64,
    due: Option<i64>,
    cleaned: Vec<Cleaned>,
    stats: CompactionStats,
}

impl Log {
    /// Rewrites the closed segments keeping only the newest record of each key; offsets are
    /// preserved. The three steps of compaction in one call, for a caller that holds the log.
    pub fn compact(&mut self, now_ms: i64) -> Result<CompactionStats, LogError> {
        match self.compaction_plan(now_ms) {
            Some(plan) => {
                let output = plan.run()?;
                self.install_compaction(output)
            }
            None => Ok(CompactionStats::default()),
        }
    }

    /// The closed segments to clean now, or `None` when a run could not change anything.
    ///
    /// Only closed segments whose newest record is at least `min.compaction.lag.ms` old are
    /// cleaned (up to the first one that is younger). A run is needed only when a segment
    /// has closed since the last one, or a segment has come of age or a tombstone expired.
    /// As in Kafka, nothing at or past the last stable offset is cleaned: a record of a
    /// transaction still under way must not replace an older one before it commits.
    pub fn compaction_plan(&self, now_ms: i64) -> Option<CompactionPlan> {
        let active_base = *self.segments.keys().next_back().expect("never empty");
        let nothing_closed = self.compacted_through == Some(active_base);
        if nothing_closed && self.compaction_due_ms.is_none_or(|due| now_ms < due) {
            return None;
        }
        let lag_ms = self.config.min_compaction_lag_ms;
        let mut due = None;
        let mut segments = Vec::new();
        let stable = self.last_stable_offset();
        for segment in self.segments.range(..active_base).map(|(_, s)| s) {
            if segment.next_offset() > stable {
                break;
            }
            if !segment.verified {
                // Opened after a clean shutdown and not yet checked by the scrub: cleaning
                // would rewrite a damaged batch with a valid CRC. Later, once it is.
                due = Some(now_ms);
                break;
            }
            let newest = segment.max_timestamp().map(|(_, timestamp)| timestamp);
            let newest = newest.or_else(|| segment.modified_ms()).unwrap_or(i64::MIN);
            if lag_ms > 0 && newest.saturating_add(lag_ms) > now_ms {
                due = Some(newest.saturating_add(lag_ms));
                break;
            }
            match segment.file_view() {
                Ok(view) => segments.push(view),
                Err(error) => {
                    tracing::warn!(
                        path = %segment.log_path().display(),
                        %error,
                        "cannot open a segment to compact it; trying again later"
                    );
                    due = Some(now_ms);
                    break;
                }
            }
        }
        Some(CompactionPlan {
            segments,
            aborted: self.aborted_transactions(i64::MIN, i64::MAX),
            active_base,
            now_ms,
            delete_retention_ms: self.config.delete_retention_ms,
            due,
        })
    }

    /// Swaps in the cleaned copies of a run whose segments are still as they were read (a
    /// segment deleted by retention meanwhile is left alone), and rebuilds their indexes.
    pub fn install_compaction(
        &mut self,
        output: CompactionOutput,
    ) -> Result<CompactionStats, LogError> {
        let mut stats = output.stats;
        let mut result = Ok(());
        for cleaned in output.cleaned {
            let unchanged = self
                .segments
                .get(&cleaned.base_offset)
                .is_some_and(|s| s.size() == cleaned.original_size);
            if !unchanged || result.is_err() {
                let _ = cleaned.file.discard();
                stats.segments_cleaned = stats.segments_cleaned.saturating_sub(1);
                continue;
            }
            result = self.swap_in(cleaned.base_offset, cleaned.file);
        }
        result?;
        self.compacted_through = Some(output.active_base);
        self.compaction_due_ms = output.due;
        Ok(stats)
    }

    /// Puts a cleaned copy in place of its segment and opens it again.
    fn swap_in(&mut self, base_offset: i64, cleaned: AtomicWriteFile) -> Result<(), LogError> {
        self.forget_clean_shutdown()?;
        self.forget_recovery_point()?;
        cleaned.commit()?;
        let (segment, truncation) = Segment::open_existing(
            &self.dir,
            base_offset,
            base_offset,
            false,
            self.config.index_interval_bytes,
            &mut |_, _| {},
        )?;
        if let Some(truncation) = truncation {
            return Err(LogError::Corrupt(format!(
                "compacted segment {base_offset} is damaged: {}",
                truncation.reason
            )));
        }
        let mut segment = segment;
        // The indexes were just rebuilt: synced, as a later recovery point will trust them.
        segment.sync()?;
        if let Some(previous) = self.segments.get_mut(&base_offset) {
            segment.inherit_aborted(previous);
            // Cleaned from batches whose CRCs were checked (only such segments are planned).
            segment.verified = previous.verified;
        }
        self.segments.insert(base_offset, segment);
        Ok(())
    }
}

impl CompactionPlan {
    /// Reads the planned segments and writes a cleaned copy (fsynced) of each that loses
    /// records. Touches no state of the log: run it without holding the log.
    ///
    /// A tombstone (a key with no value) that is the newest record of its key is kept for
    /// `delete.retention.ms` after its timestamp, so that consumers see the deletion.
    pub fn run(self) -> Result<CompactionOutput, LogError> {
        let mut cleaner = Cleaner::new(self.now_ms, self.delete_retention_ms);
        cleaner.aborted = self.aborted;
        for segment in &self.segments {
            for_each_batch(segment, |_, _, bytes| {
                cleaner.learn(bytes);
                Ok(())
            })?;
        }
        let mut stats = CompactionStats::default();
        let mut cleaned = Vec::new();
        for segment in &self.segments {
            stats.bytes_before += segment.size;
            let (removed, size, file) = clean_segment(segment, &mut cleaner)?;
            stats.bytes_after += size;
            let Some(file) = file else {
                continue;
            };
            stats.records_removed += removed;
            stats.segments_cleaned += 1;
            cleaned.push(Cleaned {
                base_offset: segment.base_offset,
                original_size: segment.size,
                file,
            });
        }
        let due = match (self.due, cleaner.due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(CompactionOutput {
            active_base: self.active_base,
            due,
            cleaned,
            stats,
        })
    }
}

/// Writes the cleaned copy of one segment, but only once a record is dropped (the bytes
/// before are copied then). Returns the records dropped, the cleaned size and the copy, not
/// yet in place.
fn clean_segment(
    segment: &SegmentFile,
    cleaner: &mut Cleaner,
) -> Result<(u64, u64, Option<AtomicWriteFile>), LogError> {
    let mut writer: Option<BufWriter<AtomicWriteFile>> = None;
    let mut removed = 0;
    let mut size = 0;
    for_each_batch(segment, |position, _, bytes| {
        let (batch, dropped) = cleaner.clean(bytes);
        if dropped > 0 && writer.is_none() {
            let mut file = BufWriter::new(AtomicWriteFile::open(&segment.path)?);
            copy_prefix(segment, position, &mut file)?;
            writer = Some(file);
        }
        let out = batch.as_deref().unwrap_or(bytes);
        if let Some(file) = writer.as_mut() {
            file.write_all(out)?;
        }
        removed += dropped;
        size += out.len() as u64;
        Ok(())
    })?;
    let file = match writer {
        Some(file) => Some(file.into_inner().map_err(|e| e.into_error())?),
        None => None,
    };
    Ok((removed, size, file))
}

/// Copies a segment's first `len` bytes.
fn copy_prefix(segment: &SegmentFile, len: u64, out: &mut impl Write) -> Result<(), LogError> {
    let mut position = 0;
    while position < len {
        let chunk = (len - position).min(COPY_CHUNK as u64) as usize;
        out.write_all(&segment.read_at(position, chunk)?)?;
        position += chunk as u64;
    }
    Ok(())
}

/// Calls `visit` with each batch of `segment` in order, with its position.
fn for_each_batch(
    segment: &SegmentFile,
    mut visit: impl FnMut(u64, &BatchHeader, &[u8]) -> Result<(), LogError>,
) -> Result<(), LogError> {
    let mut position = 0;
    while let Some(header) = segment.header_at(position)? {
        let bytes = segment.read_at(position, header.total_size())?;
        visit(position, &header, &bytes)?;
        position += header.total_size() as u64;
    }
    Ok(())
}

/// Which records compaction keeps: the newest of each key, and a tombstone (a key with no
/// value) that is the newest of its key only for `delete.retention.ms` after its timestamp,
/// so that consumers see the deletion. Learns the newest offsets from every batch first
/// ([`Cleaner::learn`]), then cleans batches ([`Cleaner::clean`]); used by the local log and by
/// cluster mode alike.
#[derive(Debug, Default)]
pub struct Cleaner {
    newest_offset_by_key: HashMap<Vec<u8>, i64>,
    /// Aborted transactions: their records are removed, and replace no older record of
    /// their keys.
    pub aborted: Vec<AbortedTxn>,
    now_ms: i64,
    delete_retention_ms: i64,
    /// When the next kept tombstone expires, if any.
    pub due: Option<i64>,
}

impl Cleaner {
    /// A cleaner for compaction at `now_ms`.
    pub fn new(now_ms: i64, delete_retention_ms: i64) -> Cleaner {
        Cleaner {
            now_ms,
            delete_retention_ms,
            ..Cleaner::default()
        }
    }

    /// Whether a batch holds records of an aborted transaction.
    fn is_aborted(&self, header: &BatchHeader) -> bool {
        header.is_transactional()
            && !header.is_control()
            && self.aborted.iter().any(|txn| {
                txn.producer_id == header.producer_id
                    && txn.first_offset <= header.base_offset
                    && header.base_offset < txn.last_offset
            })
    }

    /// Notes the offsets of the keys of one batch; batches are given in offset order.
    pub fn learn(&mut self, bytes: &[u8]) {
        let Ok(header) = batch::parse_header(bytes) else {
            return;
        };
        if self.is_aborted(&header) {
            return;
        }
        if let Some(plain) = readable(&header, bytes) {
            for record in batch::decode_records(&plain).unwrap_or_default() {
                if let Some(key) = record.key {
                    self.newest_offset_by_key
                        .insert(key.to_vec(), record.offset);
                }
            }
        }
    }

    fn keep(&mut self, record: &Record<'_>) -> bool {
        let Some(newest) = record
            .key
            .and_then(|key| self.newest_offset_by_key.get(key))
        else {
            return true;
        };
        if *newest > record.offset {
            return false;
        }
        if record.value.is_some() {
            return true;
        }
        let expires = record.timestamp.saturating_add(self.delete_retention_ms);
        if expires <= self.now_ms {
            return false;
        }
        self.due = Some(self.due.map_or(expires, |due| due.min(expires)));
        true
    }

    /// The batch rewritten without the records compaction drops, or `None` to keep it as
    /// is, and how many records were dropped.
    ///
    /// A batch of an aborted transaction loses all its records. A batch left without records
    /// is dropped (an empty `Vec`), except an idempotent
    /// producer's, which stays as an empty batch so that its sequence numbers survive (as
    /// Kafka does). A compressed batch is rewritten uncompressed, and kept as it was if that
    /// would make it larger.
    pub fn clean(&mut self, bytes: &[u8]) -> (Option<Vec<u8>>, u64) {
        let Ok(header) = batch::parse_header(bytes) else {
            return (None, 0);
        };
        let Some(plain) = readable(&header, bytes) else {
            return (None, 0);
        };
        let records = batch::decode_records(&plain).unwrap_or_default();
        let aborted = self.is_aborted(&header);
        let kept: Vec<&Record<'_>> = records
            .iter()
            .filter(|record| !aborted && self.keep(record))
            .collect();
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
}

/// A batch as compaction reads it: decompressed if it was compressed; `None` for a control
/// batch, or one that does not decode, which compaction keeps whole.
fn readable<'a>(header: &BatchHeader, bytes: &'a [u8]) -> Option<Cow<'a, [u8]>> {
    if header.is_control() {
        return None;
    }
    batch::compression::uncompressed(bytes).ok()
}
