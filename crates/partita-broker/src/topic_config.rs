//! Topic-level configuration: Kafka's topic property names, their broker-wide defaults, and
//! how an override turns into the partition logs' [`LogConfig`].

use std::collections::BTreeMap;

use partita_log::{CleanupPolicy, LogConfig, TimestampType};

use crate::config::{parse_cleanup_policy, parse_timestamp_type, BrokerConfig};

/// A topic's overrides of the broker defaults, by Kafka property name.
pub type TopicOverrides = BTreeMap<String, String>;

/// Topic properties this broker understands, in the order DescribeConfigs lists them.
pub const TOPIC_CONFIG_NAMES: &[&str] = &[
    "cleanup.policy",
    "compression.type",
    "delete.retention.ms",
    "flush.messages",
    "flush.ms",
    "index.interval.bytes",
    "max.message.bytes",
    "message.timestamp.type",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "min.insync.replicas",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.ms",
];

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
        _ => return None,
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
        _ => Err(format!("unknown topic config {name}")),
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
