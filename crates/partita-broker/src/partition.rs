//! One topic-partition: its log, and the fetches waiting for it to grow.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use partita_log::{AppendInfo, Log, LogConfig, LogError};
use tokio::sync::Notify;

/// A partition of a topic, shared by every connection that produces to or fetches from it.
///
/// The log sits behind its own mutex, held only for the length of one append or read, so
/// partitions never wait on each other.
pub struct Partition {
    /// Partition index within its topic.
    pub index: i32,
    log: Mutex<Log>,
    waiters: Mutex<Vec<Arc<Notify>>>,
}

/// Offsets and size of a partition at one instant.
#[derive(Clone, Copy, Debug)]
pub struct PartitionOffsets {
    /// First offset still in the log.
    pub log_start_offset: i64,
    /// Offset the next record will get (the high watermark on a single broker).
    pub log_end_offset: i64,
}

impl Partition {
    /// Wraps an opened log.
    pub fn new(index: i32, log: Log) -> Partition {
        Partition {
            index,
            log: Mutex::new(log),
            waiters: Mutex::new(Vec::new()),
        }
    }

    /// Locks the log. A panic while the lock was held cannot leave the log half-written in
    /// memory in a way that matters more than losing the partition, so poisoning is ignored.
    pub fn log(&self) -> MutexGuard<'_, Log> {
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends one validated batch and wakes every fetch waiting on this partition.
    pub fn append(&self, batch: &mut [u8], now_ms: i64) -> Result<AppendInfo, LogError> {
        let info = self.log().append(batch, now_ms)?;
        if !info.duplicate {
            self.wake_waiters();
        }
        Ok(info)
    }

    /// Reads whole batches from `offset`, at most `max_bytes` but at least one batch.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> Result<(Bytes, PartitionOffsets), LogError> {
        let log = self.log();
        let offsets = offsets_of(&log);
        let bytes = log.read(offset, max_bytes)?;
        Ok((bytes, offsets))
    }

    /// Current start and end offsets.
    pub fn offsets(&self) -> PartitionOffsets {
        offsets_of(&self.log())
    }

    /// Applies a new configuration to the log.
    pub fn set_config(&self, config: LogConfig) {
        self.log().set_config(config);
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

fn offsets_of(log: &Log) -> PartitionOffsets {
    PartitionOffsets {
        log_start_offset: log.log_start_offset(),
        log_end_offset: log.log_end_offset(),
    }
}
