//! What groups and topics look like right now: state, members, who owns which partition,
//! committed offsets, log-end offsets and lag. Read from memory only: the summaries the
//! coordinator's shards publish (what DescribeGroups and OffsetFetch would answer, at most
//! half a second old), and the partitions' offsets and append clocks; a scrape neither asks
//! a shard nor reads a record.

use std::collections::{BTreeMap, BTreeSet};

use partita_groups::consumer_protocol::assigned_partitions;
use partita_groups::shard::GroupSummary;

use crate::broker::Broker;
use crate::partition::Partition;
use crate::readers::ReaderId;

/// One member of a group and the partitions it owns.
#[derive(Clone, Debug)]
pub(crate) struct MemberView {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    /// Assigned partitions by topic; empty for an idle member, and while the group is not
    /// stable (DescribeGroups shows assignments of stable groups only).
    pub(crate) assignment: Vec<(String, Vec<i32>)>,
}

/// One partition a group consumes (or has committed an offset for).
#[derive(Clone, Debug)]
pub(crate) struct PartitionLag {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    /// The committed offset, if the group committed one.
    pub(crate) committed: Option<i64>,
    pub(crate) log_end_offset: i64,
    /// The first offset of the oldest open transaction, or the log end offset.
    pub(crate) last_stable_offset: i64,
    /// Where the partition's owner fetches, when the group has no committed offset for it.
    pub(crate) fetch_position: Option<i64>,
    /// The records the group has still to read, from the committed offset or else from the
    /// owner's fetch position: `log_end_offset - committed`, or `last_stable_offset -
    /// committed` for a group that reads committed (its consumers cannot read past an open
    /// transaction).
    pub(crate) lag: Option<i64>,
    /// Age of the oldest unconsumed record, if there is one and it was asked for.
    pub(crate) lag_seconds: Option<f64>,
    /// The member that owns the partition, if the assignment is known.
    pub(crate) owner: Option<String>,
}

/// A group with its members and lag.
#[derive(Clone, Debug)]
pub(crate) struct GroupView {
    pub(crate) group_id: String,
    pub(crate) state: String,
    pub(crate) protocol_type: String,
    /// The assignor of the current generation (stable groups only).
    pub(crate) protocol: String,
    pub(crate) members: Vec<MemberView>,
    /// The group's consumers fetch with `isolation.level=read_committed` (see
    /// [`crate::readers`]), so its lag ends at the last stable offset.
    pub(crate) read_committed: bool,
    /// Sorted by topic and partition.
    pub(crate) partitions: Vec<PartitionLag>,
}

impl GroupView {
    /// The isolation level the group's consumers read with, by its Kafka name.
    pub(crate) fn isolation_level(&self) -> &'static str {
        match self.read_committed {
            true => "read_committed",
            false => "read_uncommitted",
        }
    }

    /// Lag summed over every partition with a committed offset or an owner fetching it.
    pub(crate) fn total_lag(&self) -> i64 {
        self.partitions.iter().filter_map(|p| p.lag).sum()
    }

    /// The largest lag in seconds of any partition.
    pub(crate) fn max_lag_seconds(&self) -> Option<f64> {
        self.partitions
            .iter()
            .filter_map(|p| p.lag_seconds)
            .reduce(f64::max)
    }
}

/// Every classic and consumer group, sorted by id.
pub(crate) fn consumer_groups(broker: &Broker, with_age: bool, now_ms: i64) -> Vec<GroupView> {
    broker
        .groups
        .summaries()
        .iter()
        .filter_map(|summary| group_view(broker, summary, with_age, now_ms))
        .collect()
}

/// The type (`classic` or `consumer`) of every consumer group.
pub(crate) fn group_types(broker: &Broker) -> BTreeMap<String, String> {
    broker
        .groups
        .summaries()
        .iter()
        .filter(|g| g.kind != "share")
        .map(|g| (g.group_id.clone(), g.kind.to_string()))
        .collect()
}

/// One group now, or `None` if it does not exist. `with_age` also tells the lag of every
/// lagging partition in seconds.
pub(crate) fn describe_group(
    broker: &Broker,
    group_id: &str,
    with_age: bool,
    now_ms: i64,
) -> Option<GroupView> {
    let summary = broker.groups.summary(group_id)?;
    group_view(broker, &summary, with_age, now_ms)
}

fn group_view(
    broker: &Broker,
    summary: &GroupSummary,
    with_age: bool,
    now_ms: i64,
) -> Option<GroupView> {
    let described = summary.described.as_ref()?;
    if described.group_state.as_str() == "Dead" || described.error_code != 0 {
        return None;
    }
    let consumer = described.protocol_type.as_str() == "consumer";
    let members: Vec<MemberView> = described
        .members
        .iter()
        .map(|m| MemberView {
            member_id: m.member_id.to_string(),
            group_instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
            client_id: m.client_id.to_string(),
            client_host: m.client_host.to_string(),
            assignment: if consumer {
                assigned_partitions(&m.member_assignment).unwrap_or_default()
            } else {
                Vec::new()
            },
        })
        .collect();
    let read_committed = reads_committed(broker, summary, &members, now_ms);
    let partitions = partition_lags(
        broker,
        &members,
        &summary.offsets,
        read_committed,
        with_age,
        now_ms,
    );
    Some(GroupView {
        group_id: summary.group_id.clone(),
        state: described.group_state.to_string(),
        protocol_type: described.protocol_type.to_string(),
        protocol: described.protocol_data.to_string(),
        members,
        read_committed,
        partitions,
    })
}

/// Whether the group's members fetch the topics it consumes with read_committed.
fn reads_committed(
    broker: &Broker,
    summary: &GroupSummary,
    members: &[MemberView],
    now_ms: i64,
) -> bool {
    let topics: BTreeSet<&str> = summary
        .offsets
        .keys()
        .map(|(topic, _)| topic.as_str())
        .chain(
            members
                .iter()
                .flat_map(|m| m.assignment.iter().map(|(topic, _)| topic.as_str())),
        )
        .collect();
    let readers: Vec<ReaderId<'_>> = members
        .iter()
        .map(|m| ReaderId {
            client_id: &m.client_id,
            client_host: &m.client_host,
        })
        .collect();
    let topics: Vec<&str> = topics.into_iter().collect();
    broker
        .readers
        .reads_committed(&summary.group_id, &readers, &topics, now_ms)
}

/// Lag of every partition of every topic the group consumes or committed offsets for.
fn partition_lags(
    broker: &Broker,
    members: &[MemberView],
    committed: &BTreeMap<(String, i32), i64>,
    read_committed: bool,
    with_age: bool,
    now_ms: i64,
) -> Vec<PartitionLag> {
    let mut owners: BTreeMap<(&str, i32), &MemberView> = BTreeMap::new();
    for member in members {
        for (topic, partitions) in &member.assignment {
            for partition in partitions {
                owners.insert((topic.as_str(), *partition), member);
            }
        }
    }
    let topics: BTreeSet<&str> = committed
        .keys()
        .map(|(t, _)| t.as_str())
        .chain(owners.keys().map(|(t, _)| *t))
        .collect();
    let mut lags = Vec::new();
    for name in topics {
        let Some(topic) = broker.topics.get(name) else {
            continue;
        };
        for partition in &topic.partitions {
            let key = (name.to_string(), partition.index);
            let committed = committed.get(&key).copied();
            let owner = owners.get(&(name, partition.index)).copied();
            // Without a committed offset, the group has read up to where its owner fetches.
            let fetch_position = match (committed, owner) {
                (None, Some(member)) => {
                    let reader = ReaderId {
                        client_id: &member.client_id,
                        client_host: &member.client_host,
                    };
                    broker
                        .readers
                        .position(reader, name, partition.index, now_ms)
                }
                _ => None,
            };
            let offsets = partition.offsets();
            let readable_end = match read_committed {
                true => offsets.last_stable_offset,
                false => offsets.log_end_offset,
            };
            let read_from = committed.or(fetch_position);
            let lag = read_from.map(|c| (readable_end - c).max(0));
            let lag_seconds = match (with_age, read_from, lag) {
                (true, Some(offset), Some(lag)) if lag > 0 => {
                    oldest_unconsumed_timestamp(partition, offset)
                        .map(|ts| ((now_ms - ts).max(0)) as f64 / 1000.0)
                }
                (true, Some(_), Some(_)) => Some(0.0),
                _ => None,
            };
            lags.push(PartitionLag {
                topic: name.to_string(),
                partition: partition.index,
                committed,
                log_end_offset: offsets.log_end_offset,
                last_stable_offset: offsets.last_stable_offset,
                fetch_position,
                lag,
                lag_seconds,
                owner: owner.map(|m| m.member_id.clone()),
            });
        }
    }
    lags
}

/// Roughly the timestamp of the first record at or after `offset`, from the partition's
/// append clock (no record is read).
pub(crate) fn oldest_unconsumed_timestamp(partition: &Partition, offset: i64) -> Option<i64> {
    let offsets = partition.offsets();
    let offset = offset.max(offsets.log_start_offset);
    if offset >= offsets.log_end_offset {
        return None;
    }
    partition.timestamp_at(offset)
}

/// One share-partition of a share group (or a partition its members are assigned that it
/// has not read yet: no start offset, nothing in flight).
#[derive(Clone, Debug)]
pub(crate) struct SharePartitionView {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    /// The share-partition start offset: every record below is acknowledged or archived.
    pub(crate) start_offset: Option<i64>,
    pub(crate) log_end_offset: i64,
    /// `log_end_offset - start_offset`: records not yet acknowledged or archived.
    pub(crate) share_lag: Option<i64>,
    /// Records of the in-flight window that are Acquired or Available.
    pub(crate) in_flight: u64,
    /// Records acquired by a member now.
    pub(crate) acquired: u64,
    /// Records a member could acquire now: Available again, or never delivered.
    pub(crate) available: u64,
}

/// A share group with its members and share-partitions.
#[derive(Clone, Debug)]
pub(crate) struct ShareGroupView {
    pub(crate) group_id: String,
    pub(crate) state: String,
    pub(crate) epoch: i32,
    /// Every member is assigned every partition of the topics it subscribes to.
    pub(crate) members: Vec<MemberView>,
    /// Sorted by topic and partition.
    pub(crate) partitions: Vec<SharePartitionView>,
}

impl ShareGroupView {
    /// Share lag summed over the share-partitions.
    pub(crate) fn total_lag(&self) -> i64 {
        self.partitions.iter().filter_map(|p| p.share_lag).sum()
    }

    /// Records acquired, over the share-partitions.
    pub(crate) fn acquired(&self) -> u64 {
        self.partitions.iter().map(|p| p.acquired).sum()
    }

    /// Records available, over the share-partitions.
    pub(crate) fn available(&self) -> u64 {
        self.partitions.iter().map(|p| p.available).sum()
    }

    /// Records in flight, over the share-partitions.
    pub(crate) fn in_flight(&self) -> u64 {
        self.partitions.iter().map(|p| p.in_flight).sum()
    }
}

/// One share group now, or `None` if there is no such share group.
pub(crate) fn describe_share_group(broker: &Broker, group_id: &str) -> Option<ShareGroupView> {
    let summary = broker.groups.summary(group_id)?;
    share_view(broker, &summary)
}

/// Every share group now.
pub(crate) fn share_groups(broker: &Broker) -> Vec<ShareGroupView> {
    broker
        .groups
        .summaries()
        .iter()
        .filter_map(|summary| share_view(broker, summary))
        .collect()
}

fn share_view(broker: &Broker, summary: &GroupSummary) -> Option<ShareGroupView> {
    let status = summary.share.as_ref()?;
    let group_id = summary.group_id.as_str();
    let image = broker.topics.image();
    let group = &status.group;
    let members: Vec<MemberView> = group
        .members
        .values()
        .map(|m| MemberView {
            member_id: m.member_id.clone(),
            group_instance_id: None,
            client_id: m.client_id.clone(),
            client_host: m.client_host.clone(),
            assignment: m
                .subscribed
                .iter()
                .filter_map(|name| {
                    image
                        .by_name
                        .get(name)
                        .map(|t| (name.clone(), (0..t.partitions).collect()))
                })
                .collect(),
        })
        .collect();
    let states: BTreeMap<(uuid::Uuid, i32), partita_groups::shard::SharePartitionStatus> =
        status.partitions.iter().copied().collect();
    // Log ends of the share-partitions and of every partition a member is assigned.
    let mut log_ends: BTreeMap<(String, i32), (uuid::Uuid, i64)> = BTreeMap::new();
    let mut note = |topic: &crate::topics::Topic, index: i32| {
        if let Some(partition) = topic.partition(index) {
            log_ends.insert(
                (topic.name.clone(), index),
                (topic.id, partition.offsets().log_end_offset),
            );
        }
    };
    for &(topic_id, index) in states.keys() {
        if let Some(topic) = broker.topics.get_by_id(topic_id) {
            note(&topic, index);
        }
    }
    for member in &members {
        for (name, partitions) in &member.assignment {
            if let Some(topic) = broker.topics.get(name) {
                for &index in partitions {
                    note(&topic, index);
                }
            }
        }
    }
    let partitions = log_ends
        .into_iter()
        .map(|((topic, partition), (topic_id, log_end_offset))| {
            match states.get(&(topic_id, partition)) {
                Some(p) => SharePartitionView {
                    topic,
                    partition,
                    start_offset: Some(p.start_offset),
                    log_end_offset,
                    share_lag: Some((log_end_offset - p.start_offset).max(0)),
                    in_flight: p.in_flight,
                    acquired: p.acquired,
                    available: p.available(log_end_offset),
                },
                None => SharePartitionView {
                    topic,
                    partition,
                    start_offset: None,
                    log_end_offset,
                    share_lag: None,
                    in_flight: 0,
                    acquired: 0,
                    available: 0,
                },
            }
        })
        .collect();
    Some(ShareGroupView {
        group_id: group_id.to_string(),
        state: group.state_name().to_string(),
        epoch: group.epoch,
        members,
        partitions,
    })
}

/// One partition of a topic.
#[derive(Clone, Debug)]
pub(crate) struct PartitionView {
    pub(crate) partition: i32,
    pub(crate) log_start_offset: i64,
    pub(crate) log_end_offset: i64,
    pub(crate) size_bytes: u64,
}

/// A topic and its partitions.
#[derive(Clone, Debug)]
pub(crate) struct TopicView {
    pub(crate) name: String,
    pub(crate) internal: bool,
    pub(crate) partitions: Vec<PartitionView>,
}

impl TopicView {
    pub(crate) fn size_bytes(&self) -> u64 {
        self.partitions.iter().map(|p| p.size_bytes).sum()
    }

    /// Records in the topic ever: the sum of the log-end offsets.
    pub(crate) fn log_end_offset(&self) -> i64 {
        self.partitions.iter().map(|p| p.log_end_offset).sum()
    }
}

/// Every topic, sorted by name.
pub(crate) fn topics(broker: &Broker) -> Vec<TopicView> {
    broker
        .topics
        .all()
        .iter()
        .map(|topic| TopicView {
            name: topic.name.clone(),
            internal: topic.is_internal(),
            partitions: topic
                .partitions
                .iter()
                .map(|p| {
                    let offsets = p.offsets();
                    PartitionView {
                        partition: p.index,
                        log_start_offset: offsets.log_start_offset,
                        log_end_offset: offsets.log_end_offset,
                        size_bytes: p.size_bytes(),
                    }
                })
                .collect(),
        })
        .collect()
}
