//! Group coordinator settings, with Kafka's property names and defaults.

/// Settings of the group coordinator.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group waits
    /// for more members before completing.
    pub initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.max.size`: members (and members being admitted) a group may hold.
    pub max_size: usize,
    /// `offsets.retention.minutes`, in milliseconds: how long the offsets of an empty group
    /// are kept after their last commit.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: i64,
    /// `offset.metadata.max.bytes`: the largest commit metadata string accepted.
    pub offset_metadata_max_bytes: usize,
    /// `offsets.topic.num.partitions`: coordinator shards, one per `__consumer_offsets` partition.
    pub offsets_topic_num_partitions: i32,
    /// `group.consumer.heartbeat.interval.ms`: how often consumer-protocol members heartbeat.
    pub consumer_heartbeat_interval_ms: i32,
    /// `group.consumer.session.timeout.ms`: how long a consumer-protocol member may go
    /// without a heartbeat.
    pub consumer_session_timeout_ms: i32,
    /// `group.consumer.min.session.timeout.ms` and `group.consumer.max.session.timeout.ms`:
    /// the bounds of a group's `consumer.session.timeout.ms`.
    pub consumer_session_timeout_bounds_ms: (i32, i32),
    /// `group.consumer.min.heartbeat.interval.ms` and
    /// `group.consumer.max.heartbeat.interval.ms`: the bounds of a group's
    /// `consumer.heartbeat.interval.ms`.
    pub consumer_heartbeat_interval_bounds_ms: (i32, i32),
    /// `group.consumer.assignors`: the server-side assignors, the first being the default.
    pub consumer_assignors: Vec<String>,
    /// `group.consumer.max.size`: members a consumer-protocol group may hold.
    pub consumer_max_size: usize,
    /// Share groups' settings (`group.share.*`).
    pub share: crate::share::group::ShareConfig,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay_ms: 3_000,
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            max_size: i32::MAX as usize,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
            offsets_topic_num_partitions: 50,
            consumer_heartbeat_interval_ms: 5_000,
            consumer_session_timeout_ms: 45_000,
            consumer_session_timeout_bounds_ms: (45_000, 60_000),
            consumer_heartbeat_interval_bounds_ms: (5_000, 15_000),
            consumer_assignors: vec!["uniform".to_string(), "range".to_string()],
            consumer_max_size: i32::MAX as usize,
            share: crate::share::group::ShareConfig::default(),
        }
    }
}

/// Group configs (IncrementalAlterConfigs on a GROUP resource), as Kafka names them.
pub const SHARE_AUTO_OFFSET_RESET: &str = "share.auto.offset.reset";
/// A consumer group's session timeout, over `group.consumer.session.timeout.ms`.
pub const CONSUMER_SESSION_TIMEOUT_MS: &str = "consumer.session.timeout.ms";
/// A consumer group's heartbeat interval, over `group.consumer.heartbeat.interval.ms`.
pub const CONSUMER_HEARTBEAT_INTERVAL_MS: &str = "consumer.heartbeat.interval.ms";

/// How long a member that joined during a rebalance may take to complete it before it is
/// dropped, when it was admitted to the group by this very rebalance (Kafka's
/// `NewMemberJoinTimeoutMs`).
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: i64 = 300_000;

/// The `__consumer_offsets` partition, and so the coordinator shard, of a group: the Java
/// `String.hashCode` of the group id, made non-negative as Kafka's `Utils.abs` does, modulo
/// the partition count.
pub fn partition_for_group(group_id: &str, partitions: i32) -> i32 {
    let mut hash: i32 = 0;
    for unit in group_id.encode_utf16() {
        hash = hash.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_land_on_kafkas_partitions() {
        // Values computed with Java: Math.abs("...".hashCode()) % 50.
        assert_eq!(partition_for_group("", 50), 0);
        assert_eq!(partition_for_group("a", 50), 97 % 50);
        // "billing".hashCode() == -109829509
        assert_eq!(partition_for_group("billing", 50), 9);
    }
}
