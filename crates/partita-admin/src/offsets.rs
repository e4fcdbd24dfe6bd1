//! Log offsets (ListOffsets, sent to each partition's leader) and a group's committed offsets
//! (OffsetFetch and OffsetCommit, sent to the group's coordinator).

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequest, OffsetFetchRequestGroup};
use kafka_protocol::messages::{BrokerId, GroupId, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::client::{AdminClient, TopicInfo};
use crate::error::{AdminError, Result};

const LIST_OFFSETS_MAX_VERSION: i16 = 7;
const OFFSET_FETCH_MAX_VERSION: i16 = 8;
const OFFSET_COMMIT_MAX_VERSION: i16 = 8;

/// A topic name and a partition index.
pub type TopicPartition = (String, i32);

/// Which offset ListOffsets should look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (high watermark).
    Latest,
    /// The last stable offset: where a read_committed consumer stops, the first offset of the
    /// oldest open transaction (ListOffsets latest with isolation level read_committed).
    LastStable,
    /// The first offset whose timestamp is at or after this many ms since the epoch.
    Timestamp(i64),
}

impl OffsetSpec {
    fn wire_timestamp(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest | OffsetSpec::LastStable => -1,
            OffsetSpec::Timestamp(ms) => ms,
        }
    }
}

/// Looks up `spec` for each of `partitions`, asking each partition's leader.
///
/// A partition with no such offset (a timestamp past the last record) is absent from the map.
pub async fn list_offsets(
    client: &mut AdminClient,
    topics: &[TopicInfo],
    partitions: &[TopicPartition],
    spec: OffsetSpec,
) -> Result<BTreeMap<TopicPartition, i64>> {
    let mut by_leader: BTreeMap<i32, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
    for (topic, partition) in partitions {
        let leader = topics
            .iter()
            .find(|t| &t.name == topic)
            .and_then(|t| t.partitions.iter().find(|p| p.partition == *partition))
            .map(|p| p.leader)
            .ok_or_else(|| AdminError::InvalidInput(format!("no partition {topic}-{partition}")))?;
        by_leader
            .entry(leader)
            .or_default()
            .entry(topic.clone())
            .or_default()
            .push(*partition);
    }
    let mut offsets = BTreeMap::new();
    for (leader, topics) in by_leader {
        let connection = client.broker(leader).await?;
        let (response, _) = connection
            .call(LIST_OFFSETS_MAX_VERSION, |_| {
                let mut request = ListOffsetsRequest::default();
                request.replica_id = BrokerId(-1);
                request.isolation_level = i8::from(spec == OffsetSpec::LastStable);
                request.topics = topics
                    .iter()
                    .map(|(name, partitions)| {
                        ListOffsetsTopic::default()
                            .with_name(topic_name(name))
                            .with_partitions(
                                partitions
                                    .iter()
                                    .map(|p| {
                                        ListOffsetsPartition::default()
                                            .with_partition_index(*p)
                                            .with_timestamp(spec.wire_timestamp())
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                request
            })
            .await?;
        for topic in response.topics {
            let name = topic.name.0.to_string();
            for partition in topic.partitions {
                let index = partition.partition_index;
                AdminError::check(partition.error_code, None, || {
                    format!("listing offsets of {name}-{index}")
                })?;
                if partition.offset >= 0 {
                    offsets.insert((name.clone(), index), partition.offset);
                }
            }
        }
    }
    Ok(offsets)
}

/// The committed offsets of `group`, for every topic it has committed to.
///
/// Returns an empty map for a group with no commits (or no group at all: Kafka does not
/// distinguish them in OffsetFetch).
pub async fn committed_offsets(
    client: &mut AdminClient,
    group: &str,
) -> Result<BTreeMap<TopicPartition, i64>> {
    let connection = client.coordinator_connection(group).await?;
    let (response, version) = connection
        .call(OFFSET_FETCH_MAX_VERSION, |version| {
            let mut request = OffsetFetchRequest::default();
            if version >= 8 {
                request.groups = vec![OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
                    .with_topics(None)];
            } else {
                request.group_id = GroupId(StrBytes::from_string(group.to_string()));
                request.topics = None;
            }
            request
        })
        .await?;
    let context = || format!("fetching the committed offsets of group {group:?}");
    let mut offsets = BTreeMap::new();
    let mut add = |topic: &str, partition: i32, offset: i64, code: i16| -> Result<()> {
        AdminError::check(code, None, || {
            format!("{} ({topic}-{partition})", context())
        })?;
        if offset >= 0 {
            offsets.insert((topic.to_string(), partition), offset);
        }
        Ok(())
    };
    if version >= 8 {
        for entry in &response.groups {
            AdminError::check(entry.error_code, None, context)?;
            for topic in &entry.topics {
                for p in &topic.partitions {
                    add(
                        &topic.name,
                        p.partition_index,
                        p.committed_offset,
                        p.error_code,
                    )?;
                }
            }
        }
    } else {
        AdminError::check(response.error_code, None, context)?;
        for topic in &response.topics {
            for p in &topic.partitions {
                add(
                    &topic.name,
                    p.partition_index,
                    p.committed_offset,
                    p.error_code,
                )?;
            }
        }
    }
    Ok(offsets)
}

/// Commits `offsets` for `group` as an admin would: generation -1 and no member id, which the
/// coordinator accepts only while the group has no active members.
pub async fn commit_offsets(
    client: &mut AdminClient,
    group: &str,
    offsets: &BTreeMap<TopicPartition, i64>,
) -> Result<()> {
    let mut by_topic: HashMap<&str, Vec<(i32, i64)>> = HashMap::new();
    for ((topic, partition), offset) in offsets {
        by_topic
            .entry(topic)
            .or_default()
            .push((*partition, *offset));
    }
    let connection = client.coordinator_connection(group).await?;
    let (response, _) = connection
        .call(OFFSET_COMMIT_MAX_VERSION, |_| {
            let mut request = OffsetCommitRequest::default();
            request.group_id = GroupId(StrBytes::from_string(group.to_string()));
            request.generation_id_or_member_epoch = -1;
            request.topics = by_topic
                .iter()
                .map(|(topic, partitions)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(topic_name(topic))
                        .with_partitions(
                            partitions
                                .iter()
                                .map(|(partition, offset)| {
                                    OffsetCommitRequestPartition::default()
                                        .with_partition_index(*partition)
                                        .with_committed_offset(*offset)
                                })
                                .collect(),
                        )
                })
                .collect();
            request
        })
        .await?;
    for topic in &response.topics {
        for p in &topic.partitions {
            AdminError::check(p.error_code, None, || {
                format!(
                    "committing the offset of {}-{} for group {group:?}",
                    topic.name.0, p.partition_index
                )
            })?;
        }
    }
    Ok(())
}

/// A `TopicName` from a `&str`.
pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}
