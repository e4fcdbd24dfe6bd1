//! Consumer groups: list, describe (members, assignments, lag), delete, delete offsets.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, Bytes};
use kafka_protocol::messages::delete_groups_request::DeleteGroupsRequest;
use kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequest, OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription, GroupId};
use kafka_protocol::protocol::{Decodable, Message, StrBytes};
use serde::Serialize;

use crate::client::AdminClient;
use crate::error::{AdminError, Result};
use crate::lag::{self, LagRow, SkewWarning, TopicLag};
use crate::offsets::{self, topic_name, OffsetSpec, TopicPartition};

const DESCRIBE_GROUPS_MAX_VERSION: i16 = 5;
const LIST_GROUPS_MAX_VERSION: i16 = 5;
const DELETE_GROUPS_MAX_VERSION: i16 = 2;
const OFFSET_DELETE_MAX_VERSION: i16 = 0;
pub(crate) const GROUP_ID_NOT_FOUND: i16 = 69;
const NON_EMPTY_GROUP: i16 = 68;

/// A group as ListGroups reports it.
#[derive(Debug, Clone, Serialize)]
pub struct GroupListing {
    /// Group id.
    pub group: String,
    /// Protocol type (`consumer` for Kafka consumers, empty for offsets-only groups).
    pub protocol_type: String,
    /// State, if the broker reports it (ListGroups v4+).
    pub state: Option<String>,
    /// Type (`classic`, `consumer` or `share`), if the broker reports it (ListGroups v5+).
    pub group_type: Option<String>,
}

/// A member of a group and what it owns.
#[derive(Debug, Clone, Serialize)]
pub struct MemberDescription {
    /// Member id given by the coordinator.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    /// The member's client id.
    pub client_id: String,
    /// The member's host, as the coordinator saw it.
    pub host: String,
    /// Topics the member subscribed to (consumer protocol only).
    pub subscription: Vec<String>,
    /// Partitions assigned to the member, by topic (consumer protocol only).
    pub assignment: BTreeMap<String, Vec<i32>>,
}

impl MemberDescription {
    /// Number of partitions assigned.
    pub fn partition_count(&self) -> usize {
        self.assignment.values().map(Vec::len).sum()
    }
}

/// Everything `groups describe` shows about one group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupDescription {
    /// Group id.
    pub group: String,
    /// State (`Stable`, `PreparingRebalance`, `CompletingRebalance`, `Empty`, `Dead`).
    pub state: String,
    /// Protocol type, `consumer` for Kafka consumers.
    pub protocol_type: String,
    /// The assignor chosen for the current generation (e.g. `range`).
    pub protocol: String,
    /// Generation, when members report it (consumer protocol subscription v2+).
    pub generation: Option<i32>,
    /// Coordinator broker id.
    pub coordinator_id: i32,
    /// Coordinator `host:port`.
    pub coordinator: String,
    /// Members, sorted by member id.
    pub members: Vec<MemberDescription>,
    /// The lag table, one row per partition, then one per member without partitions.
    pub rows: Vec<LagRow>,
    /// Total lag per topic.
    pub topic_lag: Vec<TopicLag>,
    /// Partitions whose lag stands far above their siblings'.
    pub skew: Vec<SkewWarning>,
    /// `read_uncommitted` or `read_committed`: how the lag was counted. For read_committed,
    /// each row's log end offset is the partition's last stable offset.
    pub isolation_level: &'static str,
    /// Partitions with records past their last stable offset: an open transaction holds
    /// read_committed consumers there.
    pub open_transactions: Vec<OpenTransaction>,
}

/// How a group's consumers read, which decides where its lag ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// To the log end offset (Kafka's default).
    #[default]
    ReadUncommitted,
    /// To the last stable offset: records of open transactions are not readable yet.
    ReadCommitted,
}

impl Isolation {
    /// The Kafka name, as in `isolation.level`.
    pub fn name(self) -> &'static str {
        match self {
            Isolation::ReadUncommitted => "read_uncommitted",
            Isolation::ReadCommitted => "read_committed",
        }
    }
}

/// A partition whose last stable offset is behind its log end offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenTransaction {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The first offset of the oldest open transaction.
    pub last_stable_offset: i64,
    /// The log end offset (high watermark).
    pub log_end_offset: i64,
}

/// Lists the groups of every broker of the cluster.
pub async fn list_groups(client: &mut AdminClient) -> Result<Vec<GroupListing>> {
    let mut groups: BTreeMap<String, GroupListing> = BTreeMap::new();
    for node_id in client.broker_ids() {
        let connection = client.broker(node_id).await?;
        let address = connection.address().to_string();
        let (response, version) = connection
            .call(LIST_GROUPS_MAX_VERSION, |_| ListGroupsRequest::default())
            .await?;
        AdminError::check(response.error_code, None, || {
            format!("listing the groups of broker {address}")
        })?;
        for listed in response.groups {
            let group = listed.group_id.0.to_string();
            let state = (version >= 4).then(|| listed.group_state.to_string());
            let group_type = (version >= 5)
                .then(|| listed.group_type.to_string())
                .filter(|t| !t.is_empty());
            groups.insert(
                group.clone(),
                GroupListing {
                    group,
                    protocol_type: listed.protocol_type.to_string(),
                    state,
                    group_type,
                },
            );
        }
    }
    Ok(groups.into_values().collect())
}

/// Describes `group`: its state, members, assignments and lag, counted to the log end or, for
/// a group that reads committed, to the last stable offset.
pub async fn describe_group(
    client: &mut AdminClient,
    group: &str,
    isolation: Isolation,
) -> Result<GroupDescription> {
    let coordinator_id = client.group_coordinator(group).await?;
    let described = describe_raw(client, coordinator_id, group).await?;
    let committed = offsets::committed_offsets(client, group).await?;
    // Kafka says `Dead` for a group it does not know, other brokers (Tansu) `Empty`. A group
    // with neither members nor offsets that ListGroups lists exists, and is described as
    // kafka-consumer-groups.sh does: no active members.
    let unknown = described.group_state.as_str() == "Dead"
        || (described.members.is_empty()
            && committed.is_empty()
            && !list_groups(client).await?.iter().any(|g| g.group == group));
    if unknown {
        return Err(AdminError::GroupNotFound(group.to_string()));
    }
    let is_consumer = described.protocol_type.as_str() == "consumer";
    let mut members: Vec<MemberDescription> = described
        .members
        .iter()
        .map(|m| member_description(m, is_consumer))
        .collect();
    members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    let generation = if is_consumer {
        described
            .members
            .iter()
            .filter_map(|m| subscription_generation(&m.member_metadata))
            .max()
    } else {
        None
    };

    let (rows, open_transactions) = lag_rows(client, &members, &committed, isolation).await?;
    Ok(GroupDescription {
        group: group.to_string(),
        state: described.group_state.to_string(),
        protocol_type: described.protocol_type.to_string(),
        protocol: described.protocol_data.to_string(),
        generation,
        coordinator_id,
        coordinator: client
            .broker_address(coordinator_id)
            .unwrap_or_default()
            .to_string(),
        topic_lag: lag::topic_totals(&rows),
        skew: lag::skew_warnings(&rows),
        members,
        rows,
        isolation_level: isolation.name(),
        open_transactions,
    })
}

/// The state of `group` and its member count, without offsets.
pub async fn group_state(client: &mut AdminClient, group: &str) -> Result<(String, usize)> {
    let coordinator_id = client.group_coordinator(group).await?;
    let described = describe_raw(client, coordinator_id, group).await?;
    Ok((described.group_state.to_string(), described.members.len()))
}

async fn describe_raw(
    client: &mut AdminClient,
    coordinator_id: i32,
    group: &str,
) -> Result<DescribedGroup> {
    let connection = client.broker(coordinator_id).await?;
    let (response, _) = connection
        .call(DESCRIBE_GROUPS_MAX_VERSION, |_| {
            DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))])
        })
        .await?;
    find_described(response.groups, group, "group")
}

/// One group in the answer to DescribeGroups or ShareGroupDescribe, which report a group's
/// id and error the same way.
pub(crate) trait DescribedGroupResult {
    /// The group id.
    fn group_id(&self) -> &str;
    /// The group's error code, 0 if none.
    fn error_code(&self) -> i16;
    /// The broker's error message, if it sent one.
    fn error_message(&self) -> Option<&str>;
    /// Whether the answer means there is no such group.
    fn is_unknown(&self) -> bool {
        self.error_code() == GROUP_ID_NOT_FOUND
    }
}

impl DescribedGroupResult for DescribedGroup {
    fn group_id(&self) -> &str {
        self.group_id.0.as_str()
    }
    fn error_code(&self) -> i16 {
        self.error_code
    }
    fn error_message(&self) -> Option<&str> {
        self.error_message.as_deref()
    }
}

/// `group` out of a describe answer: [`AdminError::GroupNotFound`] if it is missing or
/// unknown, [`AdminError::Kafka`] ("describing {kind} {group:?}") if it has another error.
pub(crate) fn find_described<G: DescribedGroupResult>(
    groups: Vec<G>,
    group: &str,
    kind: &str,
) -> Result<G> {
    let described = groups
        .into_iter()
        .find(|g| g.group_id() == group)
        .ok_or_else(|| AdminError::GroupNotFound(group.to_string()))?;
    if described.is_unknown() {
        return Err(AdminError::GroupNotFound(group.to_string()));
    }
    AdminError::check(described.error_code(), described.error_message(), || {
        format!("describing {kind} {group:?}")
    })?;
    Ok(described)
}

/// Builds the lag table: every partition of every topic the group subscribes to, is assigned
/// or has committed offsets for, then the members that own nothing. Also returns the
/// partitions where an open transaction holds read_committed consumers back.
async fn lag_rows(
    client: &mut AdminClient,
    members: &[MemberDescription],
    committed: &BTreeMap<TopicPartition, i64>,
    isolation: Isolation,
) -> Result<(Vec<LagRow>, Vec<OpenTransaction>)> {
    let mut topic_names: BTreeSet<String> = committed.keys().map(|(t, _)| t.clone()).collect();
    for member in members {
        topic_names.extend(member.subscription.iter().cloned());
        topic_names.extend(member.assignment.keys().cloned());
    }
    let topic_names: Vec<String> = topic_names.into_iter().collect();
    let topics = if topic_names.is_empty() {
        Vec::new()
    } else {
        client.metadata(Some(&topic_names)).await?.topics
    };
    let mut partitions: BTreeSet<TopicPartition> = committed.keys().cloned().collect();
    for topic in &topics {
        for p in &topic.partitions {
            partitions.insert((topic.name.clone(), p.partition));
        }
    }
    // Committed offsets of deleted topics or partitions have no log end offset to ask for.
    let known: Vec<TopicPartition> = partitions
        .iter()
        .filter(|(t, p)| {
            topics
                .iter()
                .any(|ti| &ti.name == t && ti.partitions.iter().any(|pi| pi.partition == *p))
        })
        .cloned()
        .collect();
    let log_end = offsets::list_offsets(client, &topics, &known, OffsetSpec::Latest).await?;
    let stable = offsets::list_offsets(client, &topics, &known, OffsetSpec::LastStable).await?;
    let open_transactions: Vec<OpenTransaction> = stable
        .iter()
        .filter_map(|(tp, &last_stable_offset)| {
            let log_end_offset = *log_end.get(tp)?;
            (last_stable_offset < log_end_offset).then(|| OpenTransaction {
                topic: tp.0.clone(),
                partition: tp.1,
                last_stable_offset,
                log_end_offset,
            })
        })
        .collect();
    let readable_end = match isolation {
        Isolation::ReadUncommitted => &log_end,
        Isolation::ReadCommitted => &stable,
    };

    let mut owners: BTreeMap<TopicPartition, &MemberDescription> = BTreeMap::new();
    for member in members {
        for (topic, assigned) in &member.assignment {
            for partition in assigned {
                owners.insert((topic.clone(), *partition), member);
            }
        }
    }
    let mut rows = Vec::new();
    for tp in &partitions {
        let mut row = LagRow::partition(
            &tp.0,
            tp.1,
            committed.get(tp).copied(),
            readable_end.get(tp).copied(),
        );
        if let Some(owner) = owners.get(tp) {
            row.consumer_id = Some(owner.member_id.clone());
            row.host = Some(owner.host.clone());
            row.client_id = Some(owner.client_id.clone());
        }
        rows.push(row);
    }
    for member in members.iter().filter(|m| m.partition_count() == 0) {
        rows.push(LagRow {
            topic: None,
            partition: None,
            current_offset: None,
            log_end_offset: None,
            lag: None,
            consumer_id: Some(member.member_id.clone()),
            host: Some(member.host.clone()),
            client_id: Some(member.client_id.clone()),
        });
    }
    Ok((rows, open_transactions))
}

fn member_description(member: &DescribedGroupMember, is_consumer: bool) -> MemberDescription {
    let (subscription, assignment) = if is_consumer {
        (
            decode_subscription(&member.member_metadata)
                .map(|s| s.topics.iter().map(|t| t.to_string()).collect())
                .unwrap_or_default(),
            decode_assignment(&member.member_assignment),
        )
    } else {
        (Vec::new(), BTreeMap::new())
    };
    MemberDescription {
        member_id: member.member_id.to_string(),
        group_instance_id: member.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: member.client_id.to_string(),
        host: member.client_host.to_string(),
        subscription,
        assignment,
    }
}

/// Decodes a consumer-protocol message: a 2-byte version, then the body in that version.
/// Newer versions only add fields, so a version past what we know decodes as the newest known.
fn decode_versioned<T: Decodable + Message>(bytes: &Bytes) -> Option<T> {
    let mut buf = bytes.clone();
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16().clamp(T::VERSIONS.min, T::VERSIONS.max);
    T::decode(&mut buf, version).ok()
}

fn decode_subscription(bytes: &Bytes) -> Option<ConsumerProtocolSubscription> {
    decode_versioned(bytes)
}

fn subscription_generation(bytes: &Bytes) -> Option<i32> {
    decode_subscription(bytes)
        .map(|s| s.generation_id)
        .filter(|g| *g >= 0)
}

/// The partitions in a consumer-protocol assignment, by topic; empty if there is none.
pub fn decode_assignment(bytes: &Bytes) -> BTreeMap<String, Vec<i32>> {
    let mut assignment: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    if let Some(decoded) = decode_versioned::<ConsumerProtocolAssignment>(bytes) {
        for tp in decoded.assigned_partitions {
            let partitions = assignment.entry(tp.topic.0.to_string()).or_default();
            partitions.extend(tp.partitions);
            partitions.sort_unstable();
        }
    }
    assignment
}

/// Deletes `group` (its offsets included); the group must have no active members.
pub async fn delete_group(client: &mut AdminClient, group: &str) -> Result<()> {
    let connection = client.coordinator_connection(group).await?;
    let (response, _) = connection
        .call(DELETE_GROUPS_MAX_VERSION, |_| {
            DeleteGroupsRequest::default()
                .with_groups_names(vec![GroupId(StrBytes::from_string(group.to_string()))])
        })
        .await?;
    for result in response.results {
        if result.error_code == GROUP_ID_NOT_FOUND {
            return Err(AdminError::GroupNotFound(group.to_string()));
        }
        if result.error_code == NON_EMPTY_GROUP {
            let (state, members) = group_state(client, group).await?;
            return Err(AdminError::GroupActive {
                group: group.to_string(),
                state,
                members,
            });
        }
        AdminError::check(result.error_code, None, || {
            format!("deleting group {group:?}")
        })?;
    }
    Ok(())
}

/// Deletes the committed offsets of `group` for `partitions` of `topic` (all of them if
/// `None`); returns the partitions whose offsets were deleted.
pub async fn delete_offsets(
    client: &mut AdminClient,
    group: &str,
    topic: &str,
    partitions: Option<&[i32]>,
) -> Result<Vec<i32>> {
    let partitions: Vec<i32> = match partitions {
        Some(list) => list.to_vec(),
        None => {
            let committed = offsets::committed_offsets(client, group).await?;
            let mut list: Vec<i32> = committed
                .keys()
                .filter(|(t, _)| t == topic)
                .map(|(_, p)| *p)
                .collect();
            if list.is_empty() {
                let metadata = client.metadata(Some(&[topic.to_string()])).await?;
                let info = metadata
                    .topic(topic)
                    .ok_or_else(|| AdminError::TopicNotFound(topic.to_string()))?;
                list = info.partitions.iter().map(|p| p.partition).collect();
            }
            list
        }
    };
    let connection = client.coordinator_connection(group).await?;
    let (response, _) = connection
        .call(OFFSET_DELETE_MAX_VERSION, |_| {
            OffsetDeleteRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
                .with_topics(vec![OffsetDeleteRequestTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|p| {
                                OffsetDeleteRequestPartition::default().with_partition_index(*p)
                            })
                            .collect(),
                    )])
        })
        .await?;
    if response.error_code == GROUP_ID_NOT_FOUND {
        return Err(AdminError::GroupNotFound(group.to_string()));
    }
    AdminError::check(response.error_code, None, || {
        format!("deleting the offsets of group {group:?} for topic {topic}")
    })?;
    let mut deleted = Vec::new();
    for t in &response.topics {
        for p in &t.partitions {
            AdminError::check(p.error_code, None, || {
                format!(
                    "deleting the offset of group {group:?} for {}-{}",
                    t.name.0, p.partition_index
                )
            })?;
            deleted.push(p.partition_index);
        }
    }
    deleted.sort_unstable();
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described(group: &str, error_code: i16) -> DescribedGroup {
        DescribedGroup::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_error_code(error_code)
            .with_error_message(Some(StrBytes::from_static_str("busy")))
    }

    #[test]
    fn a_missing_or_unknown_group_is_not_found() {
        let missing = find_described(vec![described("other", 0)], "orders", "group");
        assert!(matches!(missing, Err(AdminError::GroupNotFound(g)) if g == "orders"));
        let unknown = find_described(
            vec![described("orders", GROUP_ID_NOT_FOUND)],
            "orders",
            "group",
        );
        assert!(matches!(unknown, Err(AdminError::GroupNotFound(g)) if g == "orders"));
    }

    #[test]
    fn another_error_names_what_was_being_described() {
        // 16: NOT_COORDINATOR.
        let error = find_described(vec![described("orders", 16)], "orders", "group")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("describing group \"orders\": "),
            "{error}"
        );
        assert!(error.ends_with(" (busy)"), "{error}");
        let found = find_described(vec![described("orders", 0)], "orders", "group");
        assert_eq!(found.map(|g| g.error_code).ok(), Some(0));
    }
}
