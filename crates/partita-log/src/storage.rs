//! Where a partition's records are kept, behind one narrow interface: append, read, offsets
//! and timestamps, delete-records, retention and compaction.
//!
//! The broker's local segmented log implements [`PartitionStorage`] for the single-node
//! broker, and cluster mode implements it a second time over object storage and PostgreSQL.
//! Every method that may touch a disk or the network is async and does its I/O off the
//! async workers, so a slow fsync or a slow object store for one partition never delays a
//! request about another; what only reads memory (offsets, size, settings) is not.

use std::future::Future;
use std::pin::Pin;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::producer_state::{AbortedTxn, ActiveProducer};
use crate::{AppendInfo, CompactionStats, LogConfig, LogError};

/// Offsets of a partition at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// First offset still in the log.
    pub log_start_offset: i64,
    /// Offset the next record will get (the high watermark on a single broker).
    pub log_end_offset: i64,
    /// The last stable offset: the first record of the oldest transaction still under way,
    /// or the log end. A `read_committed` consumer reads below it.
    pub last_stable_offset: i64,
}

/// What checking one segment found.
#[derive(Debug, Clone)]
pub struct Scrubbed {
    /// Bytes read and checked.
    pub bytes: u64,
    /// The first damaged batch, if any: it is never served (reads check every CRC).
    pub damage: Option<crate::Damage>,
}

/// What one round of maintenance did to a partition.
#[derive(Clone, Copy, Debug, Default)]
pub struct Maintenance {
    /// What compaction did, when the partition is compacted.
    pub compaction: Option<CompactionStats>,
    /// Segments deleted by retention.
    pub segments_deleted: usize,
}

/// A batch on its way into a partition: completes with its offsets once it is appended.
pub type Appending = Pin<Box<dyn Future<Output = Result<AppendInfo, LogError>> + Send>>;

/// The storage of one partition.
#[async_trait]
pub trait PartitionStorage: Send + Sync {
    /// Puts one validated batch in line behind every batch put in line before it, and
    /// returns what completes with its offsets once it is appended (the batch's base offset,
    /// and its timestamp under LogAppendTime, are set by the storage). Storage that appends
    /// quickly may append before it returns; storage that gathers batches (cluster mode)
    /// returns as soon as the order is fixed, so that a connection can put its next request's
    /// batches in line meanwhile.
    async fn enqueue(&self, batch: Vec<u8>, now_ms: i64) -> Result<Appending, LogError>;

    /// Appends one validated batch and returns its offsets.
    async fn append(&self, batch: Vec<u8>, now_ms: i64) -> Result<AppendInfo, LogError> {
        self.enqueue(batch, now_ms).await?.await
    }

    /// Whole batches from `offset`, up to `max_bytes` but at least one batch when there is
    /// one, with the offsets at the time of the read.
    async fn read(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> Result<(Bytes, PartitionOffsets), LogError>;

    /// For a `read_committed` fetch: whole batches from `offset` below the last stable
    /// offset, up to `max_bytes` but at least one batch when there is one, the offsets, and
    /// the aborted transactions those batches may hold records of. Storage without
    /// transactions reads as [`PartitionStorage::read`] does.
    async fn read_committed(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> Result<(Bytes, PartitionOffsets, Vec<AbortedTxn>), LogError> {
        let (bytes, offsets) = self.read(offset, max_bytes).await?;
        Ok((bytes, offsets, Vec::new()))
    }

    /// The producers that wrote to the partition and their transactions under way
    /// (DescribeProducers); none for storage without transactions.
    async fn producers(&self) -> Result<Vec<ActiveProducer>, LogError> {
        Ok(Vec::new())
    }

    /// The log start and end offsets now, as this broker last knew them (from memory: in
    /// cluster mode, a partition this broker has just come to lead may not be loaded yet).
    fn offsets(&self) -> PartitionOffsets;

    /// The log start and end offsets now, loading what must be loaded first: for answers
    /// clients act on (ListOffsets, OffsetForLeaderEpoch).
    async fn current_offsets(&self) -> Result<PartitionOffsets, LogError> {
        Ok(self.offsets())
    }

    /// Bytes stored.
    fn size_bytes(&self) -> u64;

    /// Roughly the timestamp of the record at `offset`, known without reading it (for lag in
    /// seconds); `None` when nothing tells.
    fn timestamp_at(&self, offset: i64) -> Option<i64>;

    /// The settings in force.
    fn config(&self) -> LogConfig;

    /// Replaces the settings; they apply from the next operation on.
    async fn set_config(&self, config: LogConfig);

    /// The first record at or after the log start whose timestamp is `>= timestamp`, as
    /// `(offset, timestamp)`.
    async fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>, LogError>;

    /// The largest timestamp and the offset of the first record that has it.
    async fn max_timestamp(&self) -> Result<Option<(i64, i64)>, LogError>;

    /// Moves the log start offset up to `offset` (DeleteRecords); returns the new log start.
    async fn delete_records(&self, offset: i64) -> Result<i64, LogError>;

    /// Time-based rolls, compaction (of a compacted partition) and retention.
    async fn maintain(&self, now_ms: i64) -> Result<Maintenance, LogError>;

    /// Makes everything appended durable.
    async fn flush(&self) -> Result<(), LogError>;

    /// Checks the next segment not read since start-up (see [`crate::Log::next_to_scrub`]),
    /// at most `bytes_per_second`, until `stop` is set: `None` when every segment has been
    /// checked (and for storage that needs no scrub), else the bytes checked and any damage
    /// found.
    async fn scrub_next(
        &self,
        _bytes_per_second: u64,
        _stop: Arc<AtomicBool>,
    ) -> Result<Option<Scrubbed>, LogError> {
        Ok(None)
    }

    /// Makes everything durable as the broker stops, recording a clean shutdown where the
    /// storage keeps one (the local log: its next start then reads no batch).
    async fn close(&self) -> Result<(), LogError> {
        self.flush().await
    }

    /// The leader epoch at which this broker serves the partition now, `None` when it does
    /// not: a single-node broker always does, at epoch 0; in cluster mode only the
    /// partition's leader does, and the others answer NOT_LEADER_OR_FOLLOWER.
    fn leader_epoch(&self) -> Option<i32> {
        Some(0)
    }
}
