//! Partitions on this machine's disk: a segmented [`Log`] per partition, used from blocking
//! threads only. The log sits behind a mutex that only those threads take; offsets, size and
//! settings are published beside it after every change, so that reading them never waits for
//! a disk.

use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use partita_log::{AppendInfo, CleanupPolicy, Log, LogConfig, LogError};

use super::{Maintenance, PartitionOffsets, PartitionStorage};

/// What is known of a log without taking it.
#[derive(Debug)]
struct Published {
    log_start_offset: AtomicI64,
    log_end_offset: AtomicI64,
    size_bytes: AtomicU64,
    config: Mutex<LogConfig>,
}

impl Published {
    fn of(log: &Log) -> Published {
        Published {
            log_start_offset: AtomicI64::new(log.log_start_offset()),
            log_end_offset: AtomicI64::new(log.log_end_offset()),
            size_bytes: AtomicU64::new(log.size_bytes()),
            config: Mutex::new(log.config().clone()),
        }
    }

    fn update(&self, log: &Log) {
        self.log_start_offset
            .store(log.log_start_offset(), Ordering::Release);
        self.log_end_offset
            .store(log.log_end_offset(), Ordering::Release);
        self.size_bytes.store(log.size_bytes(), Ordering::Release);
    }
}

/// One partition's segmented log on the local disk.
pub struct LocalPartition {
    log: Arc<Mutex<Log>>,
    published: Arc<Published>,
}

/// Locks a log. A panic while it was held cannot leave it half-written in a way that matters
/// more than losing the partition, so poisoning is ignored.
fn lock(log: &Mutex<Log>) -> MutexGuard<'_, Log> {
    log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LocalPartition {
    /// Opens (or creates) the log in `dir`, recovering it. Blocking: call it from a blocking
    /// thread, or before the broker serves.
    pub fn open(dir: &Path, config: LogConfig) -> Result<LocalPartition, LogError> {
        let log = Log::open(dir, config)?;
        Ok(LocalPartition {
            published: Arc::new(Published::of(&log)),
            log: Arc::new(Mutex::new(log)),
        })
    }

    /// Runs `work` on the log on a blocking thread, then publishes what changed.
    async fn with_log<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Log) -> Result<T, LogError> + Send + 'static,
    ) -> Result<T, LogError> {
        let log = Arc::clone(&self.log);
        let published = Arc::clone(&self.published);
        let done = tokio::task::spawn_blocking(move || {
            let mut log = lock(&log);
            let outcome = work(&mut log);
            published.update(&log);
            outcome
        })
        .await;
        done.unwrap_or_else(|error| Err(LogError::Io(std::io::Error::other(error))))
    }
}

#[async_trait]
impl PartitionStorage for LocalPartition {
    async fn append(&self, mut batch: Vec<u8>, now_ms: i64) -> Result<AppendInfo, LogError> {
        self.with_log(move |log| log.append(&mut batch, now_ms))
            .await
    }

    async fn read(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> Result<(Bytes, PartitionOffsets), LogError> {
        let now = self.offsets();
        if offset == now.log_end_offset && offset >= now.log_start_offset {
            // A consumer that has caught up: nothing to read, and no disk to wait for.
            return Ok((Bytes::new(), now));
        }
        self.with_log(move |log| {
            let offsets = PartitionOffsets {
                log_start_offset: log.log_start_offset(),
                log_end_offset: log.log_end_offset(),
            };
            Ok((log.read(offset, max_bytes)?, offsets))
        })
        .await
    }

    fn offsets(&self) -> PartitionOffsets {
        PartitionOffsets {
            log_start_offset: self.published.log_start_offset.load(Ordering::Acquire),
            log_end_offset: self.published.log_end_offset.load(Ordering::Acquire),
        }
    }

    fn size_bytes(&self) -> u64 {
        self.published.size_bytes.load(Ordering::Acquire)
    }

    fn config(&self) -> LogConfig {
        let config = self.published.config.lock();
        config.unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn set_config(&self, config: LogConfig) {
        *self
            .published
            .config
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = config.clone();
        let _ = self
            .with_log(move |log| {
                log.set_config(config);
                Ok(())
            })
            .await;
    }

    async fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>, LogError> {
        self.with_log(move |log| log.offset_for_timestamp(timestamp))
            .await
    }

    async fn max_timestamp(&self) -> Result<Option<(i64, i64)>, LogError> {
        self.with_log(|log| log.max_timestamp()).await
    }

    async fn delete_records(&self, offset: i64) -> Result<i64, LogError> {
        self.with_log(move |log| {
            log.delete_records_before(offset)?;
            Ok(log.log_start_offset())
        })
        .await
    }

    /// Compaction reads and rewrites closed segments without the log: appends and reads of
    /// the partition go on meanwhile, and the cleaned segments are swapped in at the end.
    async fn maintain(&self, now_ms: i64) -> Result<Maintenance, LogError> {
        let log = Arc::clone(&self.log);
        let published = Arc::clone(&self.published);
        let done = tokio::task::spawn_blocking(move || {
            let plan = {
                let mut log = lock(&log);
                log.roll_if_due(now_ms)?;
                let compacted = log.config().cleanup_policy != CleanupPolicy::Delete;
                compacted.then(|| log.compaction_plan(now_ms))
            };
            let compaction = match plan {
                Some(Some(plan)) => {
                    let output = plan.run()?;
                    Some(lock(&log).install_compaction(output)?)
                }
                Some(None) => Some(Default::default()),
                None => None,
            };
            let mut log = lock(&log);
            let segments_deleted = log.enforce_retention(now_ms)?;
            published.update(&log);
            Ok(Maintenance {
                compaction,
                segments_deleted,
            })
        })
        .await;
        done.unwrap_or_else(|error| Err(LogError::Io(std::io::Error::other(error))))
    }

    async fn flush(&self) -> Result<(), LogError> {
        self.with_log(|log| log.flush()).await
    }
}
