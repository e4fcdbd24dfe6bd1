//! `/metrics`: the broker's counters, every partition's offsets and size, and every group's
//! state, members, lag and rebalances, gathered at scrape time. Names: `docs/metrics.md`.

use super::snapshot::{self, GroupView, ShareGroupView, TopicView};
use super::Observer;
use crate::broker::{now_ms, Broker};
use crate::metrics::Exposition;

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

/// The whole exposition.
pub(crate) async fn render(observer: &Observer) -> String {
    let broker = &observer.broker;
    observer.tracker.update(&broker.group_events);
    let now = now_ms();
    let mut groups = Vec::new();
    for group_id in snapshot::list_groups(broker).await {
        if let Some(view) = snapshot::describe_group(broker, &group_id, true, now).await {
            groups.push(view);
        }
    }
    let mut out = Exposition::default();
    broker.metrics.write(&mut out);
    write_memory(&mut out, broker);
    write_partitions(&mut out, &snapshot::topics(broker));
    write_groups(&mut out, &groups);
    write_group_lag(&mut out, &groups);
    write_share_groups(&mut out, &snapshot::share_groups(broker).await);
    observer.tracker.write(&mut out);
    out.finish()
}

/// The bounded memory budgets: their size and how much is claimed now.
fn write_memory(out: &mut Exposition, broker: &Broker) {
    let pools = [
        ("fetch", &broker.fetch_memory),
        ("request", &broker.request_memory),
    ];
    out.family(
        "partita_memory_budget_bytes",
        "gauge",
        "Size of a memory budget: fetch (fetch.memory.max.bytes) or request \
         (queued.max.request.bytes). Absent when the budget is unbounded.",
    );
    for (pool, budget) in pools {
        if let Some(capacity) = budget.capacity() {
            out.sample(
                "partita_memory_budget_bytes",
                &[("pool", pool)],
                capacity as u64,
            );
        }
    }
    out.family(
        "partita_memory_in_use_bytes",
        "gauge",
        "Bytes claimed from a memory budget now, by responses or requests not yet answered.",
    );
    for (pool, budget) in pools {
        if let (Some(capacity), Some(available)) = (budget.capacity(), budget.available()) {
            let in_use = capacity.saturating_sub(available) as u64;
            out.sample("partita_memory_in_use_bytes", &[("pool", pool)], in_use);
        }
    }
}

fn write_partitions(out: &mut Exposition, topics: &[TopicView]) {
    out.family(
        "partita_topic_partitions",
        "gauge",
        "Partitions of the topic.",
    );
    for topic in topics {
        out.sample(
            "partita_topic_partitions",
            &[("topic", &topic.name)],
            topic.partitions.len() as u64,
        );
    }
    type Field = fn(&snapshot::PartitionView) -> i64;
    let families: [(&str, &str, Field); 3] = [
        (
            "partita_partition_log_start_offset",
            "First offset still in the partition's log.",
            |p| p.log_start_offset,
        ),
        (
            "partita_partition_log_end_offset",
            "Offset the partition's next record will get (the high watermark).",
            |p| p.log_end_offset,
        ),
        (
            "partita_partition_size_bytes",
            "Bytes of the partition's log segments.",
            |p| p.size_bytes as i64,
        ),
    ];
    for (name, help, value) in families {
        out.family(name, "gauge", help);
        for topic in topics {
            for partition in &topic.partitions {
                let index = partition.partition.to_string();
                out.sample(
                    name,
                    &[("topic", &topic.name), ("partition", &index)],
                    value(partition),
                );
            }
        }
    }
}

fn write_groups(out: &mut Exposition, groups: &[GroupView]) {
    out.family(
        "partita_group_state",
        "gauge",
        "1 for the state the group is in, 0 for the others.",
    );
    for group in groups {
        let known = GROUP_STATES.contains(&group.state.as_str());
        let other = (!known).then_some(group.state.as_str());
        for state in GROUP_STATES.iter().copied().chain(other) {
            let value = i64::from(group.state == state);
            out.sample(
                "partita_group_state",
                &[("group", &group.group_id), ("state", state)],
                value,
            );
        }
    }
    out.family("partita_group_members", "gauge", "Members of the group.");
    for group in groups {
        out.sample(
            "partita_group_members",
            &[("group", &group.group_id)],
            group.members.len() as u64,
        );
    }
    out.family(
        "partita_group_total_lag_records",
        "gauge",
        "Lag of the group summed over its partitions with a committed offset.",
    );
    for group in groups {
        out.sample(
            "partita_group_total_lag_records",
            &[("group", &group.group_id)],
            group.total_lag(),
        );
    }
    out.family(
        "partita_group_max_lag_seconds",
        "gauge",
        "Largest age of an unconsumed record over the group's partitions.",
    );
    for group in groups {
        if let Some(seconds) = group.max_lag_seconds() {
            out.sample(
                "partita_group_max_lag_seconds",
                &[("group", &group.group_id)],
                seconds,
            );
        }
    }
}

fn write_group_lag(out: &mut Exposition, groups: &[GroupView]) {
    type Field = fn(&snapshot::PartitionLag) -> Option<f64>;
    let families: [(&str, &str, Field); 4] = [
        (
            "partita_group_committed_offset",
            "Offset the group committed for the partition (the next record it will read).",
            |p| p.committed.map(|o| o as f64),
        ),
        (
            "partita_group_log_end_offset",
            "Log-end offset of a partition the group has committed an offset for.",
            |p| p.committed.map(|_| p.log_end_offset as f64),
        ),
        (
            "partita_group_lag_records",
            "Log-end offset minus committed offset.",
            |p| p.lag.map(|l| l as f64),
        ),
        (
            "partita_group_lag_seconds",
            "Age of the oldest unconsumed record (0 when there is none).",
            |p| p.lag_seconds,
        ),
    ];
    for (name, help, value) in families {
        out.family(name, "gauge", help);
        for group in groups {
            for partition in &group.partitions {
                let Some(value) = value(partition) else {
                    continue;
                };
                let index = partition.partition.to_string();
                let labels = [
                    ("group", group.group_id.as_str()),
                    ("topic", partition.topic.as_str()),
                    ("partition", index.as_str()),
                ];
                if name == "partita_group_lag_seconds" {
                    out.sample(name, &labels, value);
                } else {
                    out.sample(name, &labels, value as i64);
                }
            }
        }
    }
}

fn write_share_groups(out: &mut Exposition, groups: &[ShareGroupView]) {
    out.family(
        "partita_share_group_members",
        "gauge",
        "Members of the share group.",
    );
    for group in groups {
        out.sample(
            "partita_share_group_members",
            &[("group", &group.group_id)],
            group.members.len() as u64,
        );
    }
    type Field = fn(&snapshot::SharePartitionView) -> i64;
    let families: [(&str, &str, Field); 5] = [
        (
            "partita_share_partition_start_offset",
            "Share-partition start offset: every record below it is acknowledged or archived.",
            |p| p.start_offset.unwrap_or(0),
        ),
        (
            "partita_share_partition_lag_records",
            "Share lag: log-end offset minus start offset, records not yet acknowledged or archived.",
            |p| p.share_lag.unwrap_or(0),
        ),
        (
            "partita_share_partition_in_flight_records",
            "Records of the in-flight window that are acquired or available again.",
            |p| p.in_flight as i64,
        ),
        (
            "partita_share_partition_acquired_records",
            "Records acquired by a member now (locked until acknowledged or the lock expires).",
            |p| p.acquired as i64,
        ),
        (
            "partita_share_partition_available_records",
            "Records a member could acquire now: released, expired or never delivered.",
            |p| p.available as i64,
        ),
    ];
    for (name, help, value) in families {
        out.family(name, "gauge", help);
        for group in groups {
            // Partitions the group has not read yet have no share-partition state.
            for partition in group.partitions.iter().filter(|p| p.start_offset.is_some()) {
                let index = partition.partition.to_string();
                let labels = [
                    ("group", group.group_id.as_str()),
                    ("topic", partition.topic.as_str()),
                    ("partition", index.as_str()),
                ];
                out.sample(name, &labels, value(partition));
            }
        }
    }
}
