//! `/metrics`: the broker's counters, every partition's offsets and size, and every group's
//! state, members, lag and rebalances, in the OpenMetrics text format (prometheus-client).
//! Names: `docs/metrics.md`.
//!
//! The broker's own counters are long-lived; the rest is read at scrape time from memory
//! (what the shards published, the partitions' offsets) into gauges made for the scrape.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::snapshot::{self, GroupView, ShareGroupView, TopicView};
use super::Observer;
use crate::broker::{now_ms, Broker};

/// The states a group can be in, as `partita_group_state` labels them: the classic
/// protocol's, then the consumer protocol's (KIP-848).
const GROUP_STATES: &[&str] = &[
    "Empty",
    "PreparingRebalance",
    "CompletingRebalance",
    "Stable",
    "Dead",
    "Assigning",
    "Reconciling",
];

/// A gauge of a float value.
type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupStateLabels {
    group: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupPartitionLabels {
    group: String,
    topic: String,
    partition: i32,
}

/// The whole exposition.
pub(crate) fn render(observer: &Observer) -> String {
    let broker = &observer.broker;
    observer.tracker.update(&broker.group_events);
    let groups = snapshot::consumer_groups(broker, true, now_ms());
    let mut registry = Registry::default();
    broker.metrics.register(&mut registry);
    register_memory(&mut registry, broker);
    register_open_files(&mut registry);
    register_partitions(&mut registry, &snapshot::topics(broker));
    register_groups(&mut registry, &groups);
    register_group_lag(&mut registry, &groups);
    register_share_groups(&mut registry, &snapshot::share_groups(broker));
    observer.tracker.register(&mut registry);
    crate::metrics::encode(&registry)
}

/// The bounded memory budgets: their size and how much is claimed now.
fn register_memory(registry: &mut Registry, broker: &Broker) {
    let budget = Family::<PoolLabels, Gauge>::default();
    let in_use = Family::<PoolLabels, Gauge>::default();
    let pools = [
        ("fetch", &broker.fetch_memory),
        ("request", &broker.request_memory),
    ];
    for (pool, memory) in pools {
        if let (Some(capacity), Some(available)) = (memory.capacity(), memory.available()) {
            let labels = PoolLabels { pool };
            budget.get_or_create(&labels).set(capacity as i64);
            let claimed = capacity.saturating_sub(available) as i64;
            in_use.get_or_create(&labels).set(claimed);
        }
    }
    registry.register(
        "partita_memory_budget_bytes",
        "Size of a memory budget: fetch (fetch.memory.max.bytes) or request \
         (queued.max.request.bytes). Absent when the budget is unbounded",
        budget,
    );
    registry.register(
        "partita_memory_in_use_bytes",
        "Bytes claimed from a memory budget now, by responses or requests not yet answered",
        in_use,
    );
}

/// The cache of open segment and index files: its size, what it holds, how often it opens.
fn register_open_files(registry: &mut Registry) {
    use partita_log::open_files;
    let gauges = [
        (
            "partita_log_open_files",
            "Segment and index files kept open now",
            open_files::open_count(),
        ),
        (
            "partita_log_open_files_max",
            "Segment and index files kept open at most (log.open.files.max)",
            open_files::capacity(),
        ),
    ];
    for (name, help, value) in gauges {
        let gauge = Gauge::<i64>::default();
        gauge.set(value as i64);
        registry.register(name, help, gauge);
    }
    let opens = prometheus_client::metrics::counter::Counter::<u64>::default();
    opens.inc_by(open_files::opens_total());
    registry.register(
        "partita_log_file_opens",
        "Segment and index files opened since the broker started: growing fast under steady \
         load, the files in use do not fit log.open.files.max",
        opens,
    );
}

fn register_partitions(registry: &mut Registry, topics: &[TopicView]) {
    let partitions = Family::<TopicLabels, Gauge>::default();
    for topic in topics {
        let labels = TopicLabels {
            topic: topic.name.clone(),
        };
        partitions
            .get_or_create(&labels)
            .set(topic.partitions.len() as i64);
    }
    registry.register(
        "partita_topic_partitions",
        "Partitions of the topic",
        partitions,
    );
    type Field = fn(&snapshot::PartitionView) -> i64;
    let families: [(&str, &str, Field); 3] = [
        (
            "partita_partition_log_start_offset",
            "First offset still in the partition's log",
            |p| p.log_start_offset,
        ),
        (
            "partita_partition_log_end_offset",
            "Offset the partition's next record will get (the high watermark)",
            |p| p.log_end_offset,
        ),
        (
            "partita_partition_size_bytes",
            "Bytes of the partition's log segments",
            |p| p.size_bytes as i64,
        ),
    ];
    for (name, help, value) in families {
        let family = Family::<PartitionLabels, Gauge>::default();
        for topic in topics {
            for partition in &topic.partitions {
                let labels = PartitionLabels {
                    topic: topic.name.clone(),
                    partition: partition.partition,
                };
                family.get_or_create(&labels).set(value(partition));
            }
        }
        registry.register(name, help, family);
    }
}

fn register_groups(registry: &mut Registry, groups: &[GroupView]) {
    let states = Family::<GroupStateLabels, Gauge>::default();
    let members = Family::<GroupLabels, Gauge>::default();
    let total_lag = Family::<GroupLabels, Gauge>::default();
    let max_lag_seconds = Family::<GroupLabels, FloatGauge>::default();
    let read_committed = Family::<GroupLabels, Gauge>::default();
    for group in groups {
        let known = GROUP_STATES.contains(&group.state.as_str());
        let other = (!known).then_some(group.state.as_str());
        for state in GROUP_STATES.iter().copied().chain(other) {
            let labels = GroupStateLabels {
                group: group.group_id.clone(),
                state: state.to_string(),
            };
            states
                .get_or_create(&labels)
                .set(i64::from(group.state == state));
        }
        let labels = GroupLabels {
            group: group.group_id.clone(),
        };
        members
            .get_or_create(&labels)
            .set(group.members.len() as i64);
        total_lag.get_or_create(&labels).set(group.total_lag());
        read_committed
            .get_or_create(&labels)
            .set(i64::from(group.read_committed));
        if let Some(seconds) = group.max_lag_seconds() {
            max_lag_seconds.get_or_create(&labels).set(seconds);
        }
    }
    registry.register(
        "partita_group_state",
        "1 for the state the group is in, 0 for the others",
        states,
    );
    registry.register("partita_group_members", "Members of the group", members);
    registry.register(
        "partita_group_read_committed",
        "1 if the group's consumers fetch with isolation.level=read_committed (its lag then \
         ends at the last stable offset), 0 if they read uncommitted",
        read_committed,
    );
    registry.register(
        "partita_group_total_lag_records",
        "Lag of the group summed over its partitions with a committed offset or an owner \
         fetching them",
        total_lag,
    );
    registry.register(
        "partita_group_max_lag_seconds",
        "Largest age of an unconsumed record over the group's partitions",
        max_lag_seconds,
    );
}

fn register_group_lag(registry: &mut Registry, groups: &[GroupView]) {
    type Field = fn(&snapshot::PartitionLag) -> Option<i64>;
    let families: [(&str, &str, Field); 4] = [
        (
            "partita_group_committed_offset",
            "Offset the group committed for the partition (the next record it will read)",
            |p| p.committed,
        ),
        (
            "partita_group_log_end_offset",
            "Log-end offset of a partition the group has committed an offset for",
            |p| p.committed.map(|_| p.log_end_offset),
        ),
        (
            "partita_group_last_stable_offset",
            "Last stable offset of a partition the group has committed an offset for: the \
             first offset of its oldest open transaction, or its log-end offset",
            |p| p.committed.map(|_| p.last_stable_offset),
        ),
        (
            "partita_group_lag_records",
            "Records the group has still to read: log-end offset minus committed offset, or \
             last stable offset minus committed offset for a group that reads committed",
            |p| p.lag,
        ),
    ];
    let labels = |group: &GroupView, partition: &snapshot::PartitionLag| GroupPartitionLabels {
        group: group.group_id.clone(),
        topic: partition.topic.clone(),
        partition: partition.partition,
    };
    for (name, help, value) in families {
        let family = Family::<GroupPartitionLabels, Gauge>::default();
        for group in groups {
            for partition in &group.partitions {
                if let Some(value) = value(partition) {
                    family.get_or_create(&labels(group, partition)).set(value);
                }
            }
        }
        registry.register(name, help, family);
    }
    let seconds = Family::<GroupPartitionLabels, FloatGauge>::default();
    for group in groups {
        for partition in &group.partitions {
            if let Some(value) = partition.lag_seconds {
                seconds.get_or_create(&labels(group, partition)).set(value);
            }
        }
    }
    registry.register(
        "partita_group_lag_seconds",
        "Age of the oldest unconsumed record (0 when there is none), from the partition's \
         append clock: to within about a second for recent records",
        seconds,
    );
}

fn register_share_groups(registry: &mut Registry, groups: &[ShareGroupView]) {
    let members = Family::<GroupLabels, Gauge>::default();
    for group in groups {
        let labels = GroupLabels {
            group: group.group_id.clone(),
        };
        members
            .get_or_create(&labels)
            .set(group.members.len() as i64);
    }
    registry.register(
        "partita_share_group_members",
        "Members of the share group",
        members,
    );
    type Field = fn(&snapshot::SharePartitionView) -> i64;
    let families: [(&str, &str, Field); 5] = [
        (
            "partita_share_partition_start_offset",
            "Share-partition start offset: every record below it is acknowledged or archived",
            |p| p.start_offset.unwrap_or(0),
        ),
        (
            "partita_share_partition_lag_records",
            "Share lag: log-end offset minus start offset, records not yet acknowledged or archived",
            |p| p.share_lag.unwrap_or(0),
        ),
        (
            "partita_share_partition_in_flight_records",
            "Records of the in-flight window that are acquired or available again",
            |p| p.in_flight as i64,
        ),
        (
            "partita_share_partition_acquired_records",
            "Records acquired by a member now (locked until acknowledged or the lock expires)",
            |p| p.acquired as i64,
        ),
        (
            "partita_share_partition_available_records",
            "Records a member could acquire now: released, expired or never delivered",
            |p| p.available as i64,
        ),
    ];
    for (name, help, value) in families {
        let family = Family::<GroupPartitionLabels, Gauge>::default();
        for group in groups {
            // Partitions the group has not read yet have no share-partition state.
            for partition in group.partitions.iter().filter(|p| p.start_offset.is_some()) {
                let labels = GroupPartitionLabels {
                    group: group.group_id.clone(),
                    topic: partition.topic.clone(),
                    partition: partition.partition,
                };
                family.get_or_create(&labels).set(value(partition));
            }
        }
        registry.register(name, help, family);
    }
}
