//! Partitions on this machine's disk: a segmented [`Log`] per partition, used from blocking
//! threads only. The log sits behind a mutex that only those threads take; offsets, size and
//! settings are published beside it after every change, so that reading them never waits for
//! a disk.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use partita_log::producer_state::{AbortedTxn, ActiveProducer};
use partita_log::{batch, AppendInfo, CleanupPolicy, Log, LogConfig, LogError};

use super::{Appending, Maintenance, PartitionOffsets, PartitionStorage, Scrubbed};

/// Marks an append clock keeps at most.
const CLOCK_MARKS: usize = 16;

/// Time between two marks at least.
const CLOCK_SPACING_MS: i64 = 1_000;

/// Roughly when the records at each offset were written: a few (offset, timestamp) marks,
/// at most one a second from appends, thinned out as they age. Lag is told in seconds from
/// it without reading a record.
#[derive(Debug, Default)]
struct AppendClock {
    /// Sorted by offset.
    marks: Vec<(i64, i64)>,
}

impl AppendClock {
    /// Notes that the record at `offset` has `timestamp`.
    fn record(&mut self, offset: i64, timestamp: i64) {
        if let Some(&(last_offset, last_timestamp)) = self.marks.last() {
            if offset <= last_offset || timestamp < last_timestamp + CLOCK_SPACING_MS {
                return;
            }
        }
        if self.marks.len() >= CLOCK_MARKS {
            // The older half keeps every other mark: recent history stays precise.
            let half = CLOCK_MARKS / 2;
            let thinned: Vec<(i64, i64)> = self.marks[..half].iter().step_by(2).copied().collect();
            self.marks.splice(..half, thinned);
        }
        self.marks.push((offset, timestamp));
    }

    /// Roughly the timestamp of the record at `offset`: between the marks around it, in
    /// proportion; after the last mark, that mark's (appends come within a second of it).
    fn timestamp_at(&self, offset: i64) -> Option<i64> {
        let after = self.marks.partition_point(|(o, _)| *o < offset);
        let before = after.checked_sub(1).map(|i| self.marks[i]);
        match (before, self.marks.get(after).copied()) {
            (Some((o0, t0)), Some((o1, t1))) if o1 > o0 => {
                let share = (offset - o0) as f64 / (o1 - o0) as f64;
                Some(t0 + ((t1 - t0) as f64 * share) as i64)
            }
            (_, Some((_, t1))) => Some(t1),
            (Some((_, t0)), None) => Some(t0),
            (None, None) => None,
        }
    }
}

/// What is known of a log without taking it.
#[derive(Debug)]
struct Published {
    log_start_offset: AtomicI64,
    log_end_offset: AtomicI64,
    last_stable_offset: AtomicI64,
    size_bytes: AtomicU64,
    config: Mutex<LogConfig>,
    clock: Mutex<AppendClock>,
}

impl Published {
    fn of(log: &Log) -> Published {
        Published {
            log_start_offset: AtomicI64::new(log.log_start_offset()),
            log_end_offset: AtomicI64::new(log.log_end_offset()),
            last_stable_offset: AtomicI64::new(log.last_stable_offset()),
            size_bytes: AtomicU64::new(log.size_bytes()),
            config: Mutex::new(log.config().clone()),
            clock: Mutex::new(AppendClock {
                marks: log.timestamp_marks(CLOCK_MARKS),
            }),
        }
    }

    fn update(&self, log: &Log) {
        self.log_start_offset
            .store(log.log_start_offset(), Ordering::Release);
        self.log_end_offset
            .store(log.log_end_offset(), Ordering::Release);
        self.last_stable_offset
            .store(log.last_stable_offset(), Ordering::Release);
        self.size_bytes.store(log.size_bytes(), Ordering::Release);
    }
}

/// The offsets of a log, read under its lock.
fn offsets_of(log: &Log) -> PartitionOffsets {
    PartitionOffsets {
        log_start_offset: log.log_start_offset(),
        log_end_offset: log.log_end_offset(),
        last_stable_offset: log.last_stable_offset(),
    }
}

/// Bytes the scrub reads at once.
const SCRUB_CHUNK: usize = 1024 * 1024;

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
    /// The local log appends at once (on a blocking thread): what it returns is done.
    async fn enqueue(&self, batch: Vec<u8>, now_ms: i64) -> Result<Appending, LogError> {
        let info = self.append(batch, now_ms).await?;
        Ok(Box::pin(std::future::ready(Ok(info))))
    }

    async fn append(&self, mut batch: Vec<u8>, now_ms: i64) -> Result<AppendInfo, LogError> {
        let max_timestamp = batch::parse_header(&batch).map_or(-1, |h| h.max_timestamp);
        let info = self
            .with_log(move |log| log.append(&mut batch, now_ms))
            .await?;
        if !info.duplicate {
            let timestamp = if info.log_append_time >= 0 {
                info.log_append_time
            } else {
                max_timestamp
            };
            let mut clock = self.published.clock.lock();
            let clock = clock.as_deref_mut().unwrap_or_else(|p| p.get_mut());
            clock.record(info.base_offset, timestamp);
        }
        Ok(info)
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
        self.with_log(move |log| Ok((log.read(offset, max_bytes)?, offsets_of(log))))
            .await
    }

    async fn read_committed(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> Result<(Bytes, PartitionOffsets, Vec<AbortedTxn>), LogError> {
        let now = self.offsets();
        if offset == now.last_stable_offset && offset >= now.log_start_offset {
            return Ok((Bytes::new(), now, Vec::new()));
        }
        self.with_log(move |log| {
            let (bytes, aborted) = log.read_committed(offset, max_bytes)?;
            Ok((bytes, offsets_of(log), aborted))
        })
        .await
    }

    async fn producers(&self) -> Result<Vec<ActiveProducer>, LogError> {
        self.with_log(|log| Ok(log.producers())).await
    }

    fn offsets(&self) -> PartitionOffsets {
        PartitionOffsets {
            log_start_offset: self.published.log_start_offset.load(Ordering::Acquire),
            log_end_offset: self.published.log_end_offset.load(Ordering::Acquire),
            last_stable_offset: self.published.last_stable_offset.load(Ordering::Acquire),
        }
    }

    fn size_bytes(&self) -> u64 {
        self.published.size_bytes.load(Ordering::Acquire)
    }

    fn timestamp_at(&self, offset: i64) -> Option<i64> {
        let clock = self.published.clock.lock();
        clock
            .unwrap_or_else(|p| p.into_inner())
            .timestamp_at(offset)
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

    async fn close(&self) -> Result<(), LogError> {
        self.with_log(|log| log.write_clean_shutdown()).await
    }

    async fn scrub_next(
        &self,
        bytes_per_second: u64,
        stop: Arc<AtomicBool>,
    ) -> Result<Option<Scrubbed>, LogError> {
        let Some(target) = self.with_log(|log| log.next_to_scrub()).await? else {
            return Ok(None);
        };
        let checked = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let mut bytes = 0u64;
            // Sleep off any lead over `bytes_per_second`, a little at a time so that a stop
            // is seen soon.
            let mut pace = |chunk: u64| {
                bytes += chunk;
                let due = Duration::from_secs_f64(bytes as f64 / bytes_per_second as f64);
                while let Some(ahead) = due.checked_sub(started.elapsed()) {
                    if stop.load(Ordering::Relaxed) {
                        return false;
                    }
                    std::thread::sleep(ahead.min(Duration::from_millis(50)));
                }
                !stop.load(Ordering::Relaxed)
            };
            let damage = target.check(SCRUB_CHUNK, &mut pace)?;
            let stopped = stop.load(Ordering::Relaxed);
            Ok::<_, LogError>((!stopped).then(|| {
                let scrubbed = Scrubbed {
                    bytes: target.size(),
                    damage,
                };
                (target, scrubbed)
            }))
        })
        .await
        .unwrap_or_else(|error| Err(LogError::Io(std::io::Error::other(error))))?;
        let Some((target, checked)) = checked else {
            return Ok(None);
        };
        self.with_log(move |log| {
            log.scrubbed(&target);
            Ok(())
        })
        .await?;
        Ok(Some(checked))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_append_clock_tells_roughly_how_old_a_record_is() {
        let mut clock = AppendClock::default();
        assert_eq!(clock.timestamp_at(5), None);
        for second in 0..100 {
            clock.record(second * 10, 1_000_000 + second * 1_000);
        }
        assert!(clock.marks.len() <= CLOCK_MARKS);
        // Recent records are told to the second; old ones more coarsely.
        assert_eq!(clock.timestamp_at(990), Some(1_099_000));
        assert_eq!(clock.timestamp_at(985), Some(1_098_500));
        let old = clock.timestamp_at(100).unwrap();
        assert!((1_000_000..=1_050_000).contains(&old), "{old}");
        // Past the last mark: as new as it.
        assert_eq!(clock.timestamp_at(2_000), Some(1_099_000));
        // Marks come at most once a second.
        clock.record(1_000, 1_099_500);
        assert_eq!(clock.marks.last(), Some(&(990, 1_099_000)));
    }
}
