//! One topic-partition: its storage, and the fetches waiting for it to grow.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use partita_log::{AppendInfo, LogConfig, LogError};
use tokio::sync::Notify;

pub use crate::storage::PartitionOffsets;
use crate::storage::{Appending, Maintenance, PartitionStorage, Scrubbed};
use partita_log::producer_state::{AbortedTxn, ActiveProducer};

/// A partition of a topic, shared by every connection that produces to or fetches from it.
pub struct Partition {
    /// Partition index within its topic.
    pub index: i32,
    storage: Arc<dyn PartitionStorage>,
    waiters: Mutex<Vec<Arc<Notify>>>,
}

impl Partition {
    /// A partition kept in `storage`.
    pub fn new(index: i32, storage: Arc<dyn PartitionStorage>) -> Partition {
        Partition {
            index,
            storage,
            waiters: Mutex::new(Vec::new()),
        }
    }

    /// Appends one validated batch and wakes every fetch waiting on this partition.
    pub async fn append(&self, batch: Vec<u8>, now_ms: i64) -> Result<AppendInfo, LogError> {
        let info = self.storage.append(batch, now_ms).await?;
        if !info.duplicate {
            self.wake_waiters();
        }
        Ok(info)
    }

    /// Puts one validated batch in line (see [`PartitionStorage::enqueue`]); what it returns
    /// completes once the batch is appended, and then wakes the fetches waiting here.
    pub async fn enqueue(
        self: &Arc<Self>,
        batch: Vec<u8>,
        now_ms: i64,
    ) -> Result<Appending, LogError> {
        let appending = self.storage.enqueue(batch, now_ms).await?;
        let partition = Arc::clone(self);
        Ok(Box::pin(async move {
            let info = appending.await?;
            if !info.duplicate {
                partition.wake_waiters();
            }
            Ok(info)
        }))
    }

    /// Reads whole batches from `offset`, at most `max_bytes` but at least one batch.
    pub async fn read(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> Result<(Bytes, PartitionOffsets), LogError> {
        self.storage.read(offset, max_bytes).await
    }

    /// What a `read_committed` fetch from `offset` gets: whole batches below the last stable
    /// offset, and the aborted transactions they may hold records of.
    pub async fn read_committed(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> Result<(Bytes, PartitionOffsets, Vec<AbortedTxn>), LogError> {
        self.storage.read_committed(offset, max_bytes).await
    }

    /// The producers that wrote here and their transactions under way (DescribeProducers).
    pub async fn producers(&self) -> Result<Vec<ActiveProducer>, LogError> {
        self.storage.producers().await
    }

    /// Whether this broker serves the partition (always, on a single node; in cluster mode,
    /// when it leads it).
    pub fn is_leader(&self) -> bool {
        self.storage.leader_epoch().is_some()
    }

    /// The leader epoch this broker serves the partition at, if it does.
    pub fn leader_epoch(&self) -> Option<i32> {
        self.storage.leader_epoch()
    }

    /// Current start and end offsets (from memory).
    pub fn offsets(&self) -> PartitionOffsets {
        self.storage.offsets()
    }

    /// Current start and end offsets, loading the partition first if it must be (cluster
    /// mode): for answers clients act on.
    pub async fn current_offsets(&self) -> Result<PartitionOffsets, LogError> {
        self.storage.current_offsets().await
    }

    /// Bytes stored (from memory).
    pub fn size_bytes(&self) -> u64 {
        self.storage.size_bytes()
    }

    /// Roughly the timestamp of the record at `offset` (from memory).
    pub fn timestamp_at(&self, offset: i64) -> Option<i64> {
        self.storage.timestamp_at(offset)
    }

    /// The settings in force (from memory).
    pub fn config(&self) -> LogConfig {
        self.storage.config()
    }

    /// Applies new settings.
    pub async fn set_config(&self, config: LogConfig) {
        self.storage.set_config(config).await
    }

    /// The first record at or after the log start with a timestamp `>= timestamp`.
    pub async fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>, LogError> {
        self.storage.offset_for_timestamp(timestamp).await
    }

    /// The largest timestamp and the offset of its first record.
    pub async fn max_timestamp(&self) -> Result<Option<(i64, i64)>, LogError> {
        self.storage.max_timestamp().await
    }

    /// Moves the log start offset up to `offset`; returns the new log start.
    pub async fn delete_records(&self, offset: i64) -> Result<i64, LogError> {
        self.storage.delete_records(offset).await
    }

    /// Rolls, compaction and retention.
    pub async fn maintain(&self, now_ms: i64) -> Result<Maintenance, LogError> {
        self.storage.maintain(now_ms).await
    }

    /// Makes everything appended durable.
    pub async fn flush(&self) -> Result<(), LogError> {
        self.storage.flush().await
    }

    /// Checks the next segment not read since start-up (see
    /// [`PartitionStorage::scrub_next`]).
    pub async fn scrub_next(
        &self,
        bytes_per_second: u64,
        stop: Arc<AtomicBool>,
    ) -> Result<Option<Scrubbed>, LogError> {
        self.storage.scrub_next(bytes_per_second, stop).await
    }

    /// Makes everything durable as the broker stops (see [`PartitionStorage::close`]).
    pub async fn close(&self) -> Result<(), LogError> {
        self.storage.close().await
    }

    /// Asks to be notified on the next append. The permit is kept if the append comes
    /// before the waiter starts waiting, so no wake-up is lost.
    pub fn register_waiter(&self, waiter: &Arc<Notify>) {
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        waiters.retain(|w| Arc::strong_count(w) > 1);
        waiters.push(Arc::clone(waiter));
    }

    fn wake_waiters(&self) {
        let waiters = std::mem::take(&mut *self.waiters.lock().unwrap_or_else(|p| p.into_inner()));
        for waiter in waiters {
            waiter.notify_one();
        }
    }
}
