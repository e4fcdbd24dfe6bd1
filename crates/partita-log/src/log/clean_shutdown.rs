//! The clean-shutdown record: what a log closed cleanly leaves beside its segments so that the
//! next start opens it without reading a batch (Kafka's clean-shutdown marker, per partition);
//! and the recovery point, the same record written at every roll for the closed segments, so
//! that the next start after a crash reads only the segments written since (Kafka's recovery
//! point).
//!
//! Written once every segment is synced, when the broker stops; it describes each segment (its
//! size, offsets, largest timestamp and index entry counts) and the producer state, and ends
//! with a CRC-32C of the rest. Opening the log reads it; it stays while the files are as it
//! says, and the first change to the log deletes it (durably) before making the change, so it
//! never outlives the state it describes: a crash before any change finds it still exact, a
//! crash after one finds none and the log is scanned past its recovery point. A log opened
//! from it and left unchanged does not write it again at the next stop. Any mismatch with the
//! files (a size, an index length, a CRC) means a scan, and the record is deleted at open.
//! The damage a scan would find in older batches is caught when they are read instead: a
//! batch that fails its CRC is never served.

use std::io;
use std::path::Path;

use super::Log;
use crate::error::LogError;
use crate::producer_state::{BatchMetadata, ProducerStateTable};
use crate::segment::{Segment, SegmentMeta};

/// The file, in the log's directory.
pub(super) const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
/// The recovery point's file, in the log's directory.
pub(super) const RECOVERY_POINT_FILE: &str = "recovery-point";
const VERSION: u16 = 1;

/// What the record holds.
#[derive(Debug, PartialEq)]
pub(super) struct CleanShutdown {
    pub(super) log_end_offset: i64,
    pub(super) segments: Vec<SegmentMeta>,
    pub(super) producers: Vec<(i64, i16, Vec<BatchMetadata>)>,
    pub(super) ongoing: Vec<(i64, i64)>,
}

impl Log {
    /// Syncs the log and writes its clean-shutdown record: the next start reads no batch.
    /// Anything that changes the log afterwards deletes the record first.
    pub fn write_clean_shutdown(&mut self) -> Result<(), LogError> {
        if self.clean_shutdown_current {
            // Opened from a record and unchanged since: it is still exact, and its segments
            // were synced before it was written. A partition left idle stops without an fsync.
            return Ok(());
        }
        // Every segment with its indexes: an index rewritten at start-up or by compaction may
        // still be in the page cache only, and the next start will trust it.
        for segment in self.segments.values() {
            segment.sync()?;
        }
        self.flush()?;
        let (producers, ongoing) = self.producers.snapshot();
        let record = CleanShutdown {
            log_end_offset: self.log_end_offset,
            segments: self.segments.values().map(Segment::meta).collect(),
            producers,
            ongoing,
        };
        // Set first: a record renamed into place by a write that then reports an error must
        // still be deleted by the next change.
        self.clean_shutdown_pending = true;
        crate::files::replace(&self.dir.join(CLEAN_SHUTDOWN_FILE), &record.encode())?;
        self.clean_shutdown_current = true;
        Ok(())
    }

    /// Records the segments closed by a roll (synced by it) and the producer state at their
    /// end: after a crash, the next start trusts them as it would after a clean shutdown and
    /// reads only the segments from the active one on. Their batches are checked later by the
    /// scrub. A record that cannot be written is reported and left as it was: an older one
    /// still holds (the crash restart reads more).
    pub(super) fn write_recovery_point(&mut self) {
        let active_base = self.active().base_offset();
        let path = self.dir.join(RECOVERY_POINT_FILE);
        // Older segments too: one scanned at start-up after a crash may not be on disk yet
        // (a segment synced already costs nothing).
        let synced = self
            .segments
            .range(..active_base)
            .try_for_each(|(_, segment)| segment.sync());
        if let Err(error) = synced {
            tracing::warn!(
                path = %path.display(),
                %error,
                "cannot sync the closed segments; the recovery point is left as it was"
            );
            return;
        }
        let (producers, ongoing) = self.producers.snapshot();
        let record = CleanShutdown {
            log_end_offset: active_base,
            segments: self
                .segments
                .range(..active_base)
                .map(|(_, segment)| segment.meta())
                .collect(),
            producers,
            ongoing,
        };
        if let Err(error) = crate::files::replace(&path, &record.encode()) {
            tracing::warn!(
                path = %path.display(),
                %error,
                "cannot write the recovery point; a restart after a crash will read more"
            );
        }
    }

    /// Deletes the recovery point before a closed segment changes (compaction): it describes
    /// the segment as it was. The next roll writes a new one.
    pub(super) fn forget_recovery_point(&self) -> io::Result<()> {
        crate::segment::remove_if_present(&self.dir.join(RECOVERY_POINT_FILE))
    }

    /// Deletes the clean-shutdown record before the log changes, if there is one.
    pub(super) fn forget_clean_shutdown(&mut self) -> Result<(), LogError> {
        self.clean_shutdown_current = false;
        if self.clean_shutdown_pending {
            unlink_record(&self.dir)?;
            std::fs::File::open(&self.dir)?.sync_all()?;
            self.clean_shutdown_pending = false;
        }
        Ok(())
    }
}

/// Deletes the record in `dir`, if there is one (not durably: the directory is not synced);
/// whether there was one.
pub(super) fn unlink_record(dir: &Path) -> io::Result<bool> {
    match std::fs::remove_file(dir.join(CLEAN_SHUTDOWN_FILE)) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}

/// The record in `file` of `dir` ([`CLEAN_SHUTDOWN_FILE`] or [`RECOVERY_POINT_FILE`]), if
/// there is a readable one. A damaged one is reported and ignored.
pub(super) fn read_record(dir: &Path, file: &str) -> io::Result<Option<CleanShutdown>> {
    let bytes = match std::fs::read(dir.join(file)) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let decoded = CleanShutdown::decode(&bytes);
    if decoded.is_none() {
        tracing::warn!(dir = %dir.display(), file, "ignoring a damaged record");
    }
    Ok(decoded)
}

/// The segments and producer state `record` describes, if every file matches it.
pub(super) fn open_segments(
    dir: &Path,
    base_offsets: &[i64],
    record: &CleanShutdown,
) -> io::Result<Option<(Vec<Segment>, ProducerStateTable)>> {
    let listed: Vec<i64> = record.segments.iter().map(|s| s.base_offset).collect();
    if listed != base_offsets {
        return Ok(None);
    }
    let mut segments = Vec::with_capacity(record.segments.len());
    for meta in &record.segments {
        match Segment::open_clean(dir, meta)? {
            Some(segment) => segments.push(segment),
            None => return Ok(None),
        }
    }
    if segments.last().map(Segment::next_offset) != Some(record.log_end_offset) {
        return Ok(None);
    }
    Ok(Some((segments, record.producer_state())))
}

/// What a crashed log's start may trust of a recovery point `record`: its segments still on
/// disk (retention may have deleted the oldest since), opened without reading them, and the
/// producer state at their end. The segments of `base_offsets` from the returned index on
/// come after the recovery point and must be scanned. `None` if the files do not match it.
pub(super) fn open_recovered(
    dir: &Path,
    base_offsets: &[i64],
    record: &CleanShutdown,
) -> io::Result<Option<(Vec<Segment>, ProducerStateTable, usize)>> {
    let kept = base_offsets.partition_point(|&base| base < record.log_end_offset);
    let Some(first) = record.segments.len().checked_sub(kept) else {
        return Ok(None);
    };
    let trusted = &record.segments[first..];
    if !trusted
        .iter()
        .map(|s| s.base_offset)
        .eq(base_offsets[..kept].iter().copied())
    {
        return Ok(None);
    }
    let mut segments = Vec::with_capacity(kept);
    for meta in trusted {
        match Segment::open_clean(dir, meta)? {
            Some(segment) => segments.push(segment),
            None => return Ok(None),
        }
    }
    if segments
        .last()
        .is_some_and(|last| last.next_offset() != record.log_end_offset)
    {
        return Ok(None);
    }
    Ok(Some((segments, record.producer_state(), kept)))
}

impl CleanShutdown {
    fn producer_state(&self) -> ProducerStateTable {
        let mut producers = ProducerStateTable::default();
        for (producer_id, epoch, batches) in &self.producers {
            producers.restore(*producer_id, *epoch, batches.clone());
        }
        for &(producer_id, first_offset) in &self.ongoing {
            producers.restore_ongoing(producer_id, first_offset);
        }
        producers
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&self.log_end_offset.to_be_bytes());
        out.extend_from_slice(&(self.segments.len() as u32).to_be_bytes());
        for s in &self.segments {
            for value in [
                s.base_offset,
                s.size as i64,
                s.next_offset,
                s.max_timestamp,
                s.offset_of_max_timestamp,
                s.bytes_since_index_entry as i64,
                s.last_indexed_timestamp,
                s.rolling_base_ms,
            ] {
                out.extend_from_slice(&value.to_be_bytes());
            }
            for count in [s.offset_entries, s.time_entries, s.txn_entries] {
                out.extend_from_slice(&count.to_be_bytes());
            }
        }
        out.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        for (producer_id, epoch, batches) in &self.producers {
            out.extend_from_slice(&producer_id.to_be_bytes());
            out.extend_from_slice(&epoch.to_be_bytes());
            out.extend_from_slice(&(batches.len() as u32).to_be_bytes());
            for b in batches {
                out.extend_from_slice(&b.first_sequence.to_be_bytes());
                out.extend_from_slice(&b.last_sequence.to_be_bytes());
                out.extend_from_slice(&b.base_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
            }
        }
        out.extend_from_slice(&(self.ongoing.len() as u32).to_be_bytes());
        for (producer_id, first_offset) in &self.ongoing {
            out.extend_from_slice(&producer_id.to_be_bytes());
            out.extend_from_slice(&first_offset.to_be_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<CleanShutdown> {
        let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
        if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().ok()?) {
            return None;
        }
        let mut r = Reader(body);
        if r.u16()? != VERSION {
            return None;
        }
        let log_end_offset = r.i64()?;
        let mut segments = Vec::new();
        for _ in 0..r.u32()? {
            segments.push(SegmentMeta {
                base_offset: r.i64()?,
                size: u64::try_from(r.i64()?).ok()?,
                next_offset: r.i64()?,
                max_timestamp: r.i64()?,
                offset_of_max_timestamp: r.i64()?,
                bytes_since_index_entry: u64::try_from(r.i64()?).ok()?,
                last_indexed_timestamp: r.i64()?,
                rolling_base_ms: r.i64()?,
                offset_entries: r.u32()?,
                time_entries: r.u32()?,
                txn_entries: r.u32()?,
            });
        }
        let mut producers = Vec::new();
        for _ in 0..r.u32()? {
            let producer_id = r.i64()?;
            let epoch = r.i16()?;
            let mut batches = Vec::new();
            for _ in 0..r.u32()? {
                batches.push(BatchMetadata {
                    first_sequence: r.i32()?,
                    last_sequence: r.i32()?,
                    base_offset: r.i64()?,
                    last_offset: r.i64()?,
                });
            }
            producers.push((producer_id, epoch, batches));
        }
        let mut ongoing = Vec::new();
        for _ in 0..r.u32()? {
            ongoing.push((r.i64()?, r.i64()?));
        }
        r.0.is_empty().then_some(CleanShutdown {
            log_end_offset,
            segments,
            producers,
            ongoing,
        })
    }
}

/// Big-endian fields read off the front of a slice.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_be_bytes)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take().map(i16::from_be_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
}
