//! Topic-level configuration: Kafka's topic property names, their broker-wide defaults, and
//! how an override turns into the partition logs' [`LogConfig`].

use std::collections::BTreeMap;

use partita_log::{CleanupPolicy, LogConfig, TimestampType};

use crate::config::{parse_cleanup_policy, parse_timestamp_type, BrokerConfig};

/// A topic's overrides of the broker defaults, by Kafka property name.
pub type TopicOverrides = BTreeMap<String, String>;

/// Every topic property of Kafka 3.9, in the order DescribeConfigs lists them. Those in
/// [`PASSIVE`] are accepted, kept and described, but change nothing here.
pub const TOPIC_CONFIG_NAMES: &[&str] = &[
    "cleanup.policy",
    "compression.gzip.level",
    "compression.lz4.level",
    "compression.type",
    "compression.zstd.level",
    "delete.retention.ms",
    "file.delete.delay.ms",
    "flush.messages",
    "flush.ms",
    "follower.replication.throttled.replicas",
    "index.interval.bytes",
    "leader.replication.throttled.replicas",
    "local.retention.bytes",
    "local.retention.ms",
    "max.compaction.lag.ms",
    "max.message.bytes",
    "message.downconversion.enable",
    "message.format.version",
    "message.timestamp.after.max.ms",
    "message.timestamp.before.max.ms",
    "message.timestamp.difference.max.ms",
    "message.timestamp.type",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "min.insync.replicas",
    "preallocate",
    "remote.log.copy.disable",
    "remote.log.delete.on.disable",
    "remote.storage.enable",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.index.bytes",
    "segment.jitter.ms",
    "segment.ms",
    "unclean.leader.election.enable",
];

/// What kind of value a passive property takes.
#[derive(Clone, Copy)]
enum Kind {
    /// An integer no smaller than this.
    AtLeast(i64),
    Boolean,
    /// Any text, or a comma-separated list.
    Text,
}

/// Topic properties accepted for compatibility, with Kafka's default, that have no effect on
/// a single broker (replication, tiered storage, segment preallocation, recompression by the
/// broker, timestamp bounds not enforced yet).
const PASSIVE: &[(&str, &str, Kind)] = &[
    ("compression.gzip.level", "-1", Kind::AtLeast(-1)),
    ("compression.lz4.level", "9", Kind::AtLeast(1)),
    ("compression.zstd.level", "3", Kind::AtLeast(-131_072)),
    ("file.delete.delay.ms", "60000", Kind::AtLeast(0)),
    ("follower.replication.throttled.replicas", "", Kind::Text),
    ("leader.replication.throttled.replicas", "", Kind::Text),
    ("local.retention.bytes", "-2", Kind::AtLeast(-2)),
    ("local.retention.ms", "-2", Kind::AtLeast(-2)),
    (
        "max.compaction.lag.ms",
        "9223372036854775807",
        Kind::AtLeast(1),
    ),
    ("message.downconversion.enable", "true", Kind::Boolean),
    ("message.format.version", "3.0-IV1", Kind::Text),
    (
        "message.timestamp.after.max.ms",
        "9223372036854775807",
        Kind::AtLeast(0),
    ),
    (
        "message.timestamp.before.max.ms",
        "9223372036854775807",
        Kind::AtLeast(0),
    ),
    (
        "message.timestamp.difference.max.ms",
        "9223372036854775807",
        Kind::AtLeast(0),
    ),
    ("preallocate", "false", Kind::Boolean),
    ("remote.log.copy.disable", "false", Kind::Boolean),
    ("remote.log.delete.on.disable", "false", Kind::Boolean),
    ("remote.storage.enable", "false", Kind::Boolean),
    ("segment.index.bytes", "10485760", Kind::AtLeast(4)),
    ("segment.jitter.ms", "0", Kind::AtLeast(0)),
    ("unclean.leader.election.enable", "false", Kind::Boolean),
];

fn passive(name: &str) -> Option<(&'static str, Kind)> {
    PASSIVE
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, default, kind)| (*default, *kind))
}

/// DescribeConfigs v3+ type of a topic property.
pub fn config_type(name: &str) -> i8 {
    use crate::config::config_type::{BOOLEAN, DOUBLE, INT, LIST, LONG, STRING};
    match name {
        "cleanup.policy"
        | "follower.replication.throttled.replicas"
        | "leader.replication.throttled.replicas" => LIST,
        "compression.type" | "message.timestamp.type" | "message.format.version" => STRING,
        "min.cleanable.dirty.ratio" => DOUBLE,
        "min.insync.replicas"
        | "index.interval.bytes"
        | "max.message.bytes"
        | "segment.bytes"
        | "segment.index.bytes"
        | "compression.gzip.level"
        | "compression.lz4.level"
        | "compression.zstd.level" => INT,
        _ if matches!(passive(name), Some((_, Kind::Boolean))) => BOOLEAN,
        _ => LONG,
    }
}

/// The broker-level property a topic property defaults to, as DescribeConfigs reports it.
pub fn broker_property_for(name: &str) -> Option<&'static str> {
    Some(match name {
        "cleanup.policy" => "log.cleanup.policy",
        "delete.retention.ms" => "log.cleaner.delete.retention.ms",
        "min.compaction.lag.ms" => "log.cleaner.min.compaction.lag.ms",
        "flush.messages" => "log.flush.interval.messages",
        "flush.ms" => "log.flush.interval.ms",
        "index.interval.bytes" => "log.index.interval.bytes",
        "max.message.bytes" => "message.max.bytes",
        "message.timestamp.type" => "log.message.timestamp.type",
        "retention.bytes" => "log.retention.bytes",
        "retention.ms" => "log.retention.ms",
        "segment.bytes" => "log.segment.bytes",
        "segment.ms" => "log.roll.ms",
        _ => return None,
    })
}

/// DescribeConfigs sources of a value.
pub const SOURCE_TOPIC_OVERRIDE: i8 = 1;
/// Set in the broker's configuration at start-up.
pub const SOURCE_STATIC_BROKER: i8 = 4;
/// Nobody set it.
pub const SOURCE_DEFAULT: i8 = 5;

/// Where a topic's value for `name` comes from when it has no override: the broker's
/// configuration, if the matching broker property (or another name for it) was set there.
pub fn default_source(broker: &BrokerConfig, name: &str) -> i8 {
    let Some(property) = broker_property_for(name) else {
        return SOURCE_DEFAULT;
    };
    let aliases: &[&str] = match property {
        "log.retention.ms" => &[
            "log.retention.ms",
            "log.retention.minutes",
            "log.retention.hours",
        ],
        "log.roll.ms" => &["log.roll.ms", "log.roll.hours"],
        other => &[other][..],
    };
    if aliases.iter().any(|a| broker.explicit.contains(*a)) {
        SOURCE_STATIC_BROKER
    } else {
        SOURCE_DEFAULT
    }
}

/// The value a topic gets for `name` when it has no override.
pub fn default_value(broker: &BrokerConfig, name: &str) -> Option<String> {
    let log = &broker.log;
    Some(match name {
        "cleanup.policy" => cleanup_policy_name(log.cleanup_policy).to_string(),
        "compression.type" => "producer".to_string(),
        "delete.retention.ms" => log.delete_retention_ms.to_string(),
        "flush.messages" => log.flush_messages.min(i64::MAX as u64).to_string(),
        "flush.ms" => log.flush_ms.min(i64::MAX as u64).to_string(),
        "index.interval.bytes" => log.index_interval_bytes.to_string(),
        "max.message.bytes" => log.max_message_bytes.to_string(),
        "message.timestamp.type" => timestamp_type_name(log.timestamp_type).to_string(),
        "min.cleanable.dirty.ratio" => "0.5".to_string(),
        "min.compaction.lag.ms" => log.min_compaction_lag_ms.to_string(),
        "min.insync.replicas" => "1".to_string(),
        "retention.bytes" => log.retention_bytes.to_string(),
        "retention.ms" => log.retention_ms.to_string(),
        "segment.bytes" => log.segment_bytes.to_string(),
        "segment.ms" => log.segment_ms.to_string(),
        _ => return passive(name).map(|(default, _)| default.to_string()),
    })
}

/// Checks one override; the error text is what the client is told.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let integer = |min: i64| match value.parse::<i64>() {
        Ok(n) if n >= min => Ok(()),
        Ok(_) => Err(format!("{name} must be at least {min}")),
        Err(_) => Err(format!("{name} must be an integer, got {value:?}")),
    };
    match name {
        "cleanup.policy" => parse_cleanup_policy(value).map(|_| ()),
        "message.timestamp.type" => parse_timestamp_type(value).map(|_| ()),
        "compression.type" => match value {
            "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd" => Ok(()),
            _ => Err(format!("unknown compression.type {value:?}")),
        },
        "retention.ms" | "retention.bytes" => integer(-1),
        "flush.messages" | "flush.ms" | "segment.ms" | "max.message.bytes" => integer(1),
        "segment.bytes" => integer(14),
        "index.interval.bytes" | "delete.retention.ms" | "min.compaction.lag.ms" => integer(0),
        "min.insync.replicas" => integer(1),
        "min.cleanable.dirty.ratio" => match value.parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(()),
            _ => Err("min.cleanable.dirty.ratio must be between 0 and 1".to_string()),
        },
        _ => match passive(name) {
            Some((_, Kind::AtLeast(min))) => integer(min),
            Some((_, Kind::Boolean)) => match value {
                "true" | "false" => Ok(()),
                _ => Err(format!("{name} must be true or false, got {value:?}")),
            },
            Some((_, Kind::Text)) => Ok(()),
            None => Err(format!("unknown topic config {name}")),
        },
    }
}

/// The log configuration of a topic's partitions: broker defaults with the overrides applied.
pub fn log_config(broker: &BrokerConfig, overrides: &TopicOverrides) -> LogConfig {
    let mut config = broker.log.clone();
    for (name, value) in overrides {
        let number = value.parse::<i64>().ok();
        match (name.as_str(), number) {
            ("cleanup.policy", _) => {
                if let Ok(policy) = parse_cleanup_policy(value) {
                    config.cleanup_policy = policy;
                }
            }
            ("message.timestamp.type", _) => {
                if let Ok(kind) = parse_timestamp_type(value) {
                    config.timestamp_type = kind;
                }
            }
            ("retention.ms", Some(n)) => config.retention_ms = n,
            ("retention.bytes", Some(n)) => config.retention_bytes = n,
            ("segment.bytes", Some(n)) if n > 0 => config.segment_bytes = n as u64,
            ("segment.ms", Some(n)) => config.segment_ms = n,
            ("flush.messages", Some(n)) if n > 0 => config.flush_messages = n as u64,
            ("flush.ms", Some(n)) if n > 0 => config.flush_ms = n as u64,
            ("index.interval.bytes", Some(n)) if n >= 0 => config.index_interval_bytes = n as u32,
            ("max.message.bytes", Some(n)) if n > 0 => config.max_message_bytes = n as u32,
            ("delete.retention.ms", Some(n)) if n >= 0 => config.delete_retention_ms = n,
            ("min.compaction.lag.ms", Some(n)) if n >= 0 => config.min_compaction_lag_ms = n,
            _ => {}
        }
    }
    config
}

fn cleanup_policy_name(policy: CleanupPolicy) -> &'static str {
    match policy {
        CleanupPolicy::Delete => "delete",
        CleanupPolicy::Compact => "compact",
        CleanupPolicy::CompactDelete => "compact,delete",
    }
}

fn timestamp_type_name(kind: TimestampType) -> &'static str {
    match kind {
        TimestampType::CreateTime => "CreateTime",
        TimestampType::LogAppendTime => "LogAppendTime",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_reach_the_log_config() {
        let broker = BrokerConfig::default();
        let mut overrides = TopicOverrides::new();
        overrides.insert("retention.ms".into(), "1000".into());
        overrides.insert("cleanup.policy".into(), "compact".into());
        overrides.insert("delete.retention.ms".into(), "5000".into());
        overrides.insert("min.compaction.lag.ms".into(), "60000".into());
        let config = log_config(&broker, &overrides);
        assert_eq!(config.retention_ms, 1000);
        assert_eq!(config.cleanup_policy, CleanupPolicy::Compact);
        assert_eq!(config.delete_retention_ms, 5000);
        assert_eq!(config.min_compaction_lag_ms, 60000);
    }

    #[test]
    fn every_listed_config_has_a_default_and_accepts_it() {
        let broker = BrokerConfig::default();
        for name in TOPIC_CONFIG_NAMES {
            let value = default_value(&broker, name).expect(name);
            validate(name, &value).unwrap_or_else(|e| panic!("{name}={value}: {e}"));
        }
    }
}
