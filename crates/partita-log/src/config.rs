//! Per-log configuration, with Kafka's defaults.

/// What happens to old data: Kafka's `cleanup.policy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CleanupPolicy {
    /// Delete whole segments past the retention time or size (`delete`).
    #[default]
    Delete,
    /// Keep the newest record per key (`compact`).
    Compact,
    /// Both compact and apply retention (`compact,delete`).
    CompactDelete,
}

/// Which timestamp records carry: Kafka's `message.timestamp.type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimestampType {
    /// The producer's timestamp is kept.
    #[default]
    CreateTime,
    /// The broker overwrites the batch timestamp with the append time.
    LogAppendTime,
}

/// Settings of one partition log, named after Kafka's broker and topic properties.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// Roll to a new segment before the active one exceeds this size (`log.segment.bytes`).
    pub segment_bytes: u64,
    /// Roll to a new segment this long after its first batch (`log.roll.ms`).
    pub segment_ms: i64,
    /// Delete segments whose newest record is older than this; -1 = unlimited (`retention.ms`).
    pub retention_ms: i64,
    /// Delete oldest segments while the log is larger than this; -1 = unlimited
    /// (`retention.bytes`).
    pub retention_bytes: i64,
    /// Fsync after this many records; `u64::MAX` = leave it to the OS (`flush.messages`).
    pub flush_messages: u64,
    /// Fsync when this many milliseconds passed since the last fsync; `u64::MAX` = never
    /// (`flush.ms`).
    pub flush_ms: u64,
    /// Bytes of batches between two sparse offset index entries (`index.interval.bytes`).
    pub index_interval_bytes: u32,
    /// Largest batch accepted, in bytes (`message.max.bytes`).
    pub max_message_bytes: u32,
    /// Delete, compact or both (`cleanup.policy`).
    pub cleanup_policy: CleanupPolicy,
    /// CreateTime or LogAppendTime (`message.timestamp.type`).
    pub timestamp_type: TimestampType,
    /// How long a compacted log keeps a tombstone after its timestamp (`delete.retention.ms`).
    pub delete_retention_ms: i64,
    /// How old a record must be before compaction may remove it (`min.compaction.lag.ms`).
    pub min_compaction_lag_ms: i64,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        const DAY_MS: i64 = 24 * 60 * 60 * 1000;
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * DAY_MS,
            retention_ms: 7 * DAY_MS,
            retention_bytes: -1,
            flush_messages: u64::MAX,
            flush_ms: u64::MAX,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            cleanup_policy: CleanupPolicy::Delete,
            timestamp_type: TimestampType::CreateTime,
            delete_retention_ms: DAY_MS,
            min_compaction_lag_ms: 0,
        }
    }
}
