//! Share groups (KIP-932): members and their assignments (ShareGroupDescribe), and the progress
//! of each share-partition (DescribeShareGroupOffsets: the start offset) beside its log end
//! (ListOffsets), which gives the share lag: records not yet acknowledged or archived.
//!
//! How many records are acquired or available right now is not in Kafka's protocol; the
//! broker's dashboard and metrics show it.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::describe_share_group_offsets_request::{
    DescribeShareGroupOffsetsRequest, DescribeShareGroupOffsetsRequestGroup,
};
use kafka_protocol::messages::share_group_describe_request::ShareGroupDescribeRequest;
use kafka_protocol::messages::share_group_describe_response::DescribedGroup;
use kafka_protocol::messages::GroupId;
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use crate::client::AdminClient;
use crate::error::{AdminError, Result};
use crate::groups::{find_described, DescribedGroupResult, GROUP_ID_NOT_FOUND};
use crate::offsets::{self, OffsetSpec, TopicPartition};

const SHARE_GROUP_DESCRIBE_MAX_VERSION: i16 = 1;
const DESCRIBE_SHARE_GROUP_OFFSETS_MAX_VERSION: i16 = 0;

/// A member of a share group.
#[derive(Debug, Clone, Serialize)]
pub struct ShareMember {
    /// Member id (chosen by the client).
    pub member_id: String,
    /// The member's client id.
    pub client_id: String,
    /// The member's host, as the coordinator saw it.
    pub host: String,
    /// Topics the member subscribes to.
    pub subscription: Vec<String>,
    /// Partitions assigned to the member, by topic. Members of a share group read the same
    /// partitions together, so several members may be assigned one partition.
    pub assignment: BTreeMap<String, Vec<i32>>,
}

impl ShareMember {
    /// Number of partitions assigned.
    pub fn partition_count(&self) -> usize {
        self.assignment.values().map(Vec::len).sum()
    }
}

/// One share-partition of a share group and its progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SharePartitionRow {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The share-partition start offset: every record below it is acknowledged or archived.
    /// `None` while the group has not read the partition.
    pub start_offset: Option<i64>,
    /// The partition's log end offset, `None` if unknown.
    pub log_end_offset: Option<i64>,
    /// `log_end_offset - start_offset`: records not yet acknowledged or archived.
    pub share_lag: Option<i64>,
}

impl SharePartitionRow {
    /// A row; the share lag is derived from the two offsets.
    pub fn new(
        topic: &str,
        partition: i32,
        start_offset: Option<i64>,
        log_end_offset: Option<i64>,
    ) -> SharePartitionRow {
        let share_lag = match (start_offset, log_end_offset) {
            (Some(start), Some(end)) => Some((end - start).max(0)),
            _ => None,
        };
        SharePartitionRow {
            topic: topic.to_string(),
            partition,
            start_offset,
            log_end_offset,
            share_lag,
        }
    }
}

/// Everything `groups describe` shows about a share group.
#[derive(Debug, Clone, Serialize)]
pub struct ShareGroupDescription {
    /// Group id.
    pub group: String,
    /// Always `share`.
    #[serde(rename = "type")]
    pub group_type: &'static str,
    /// State (`Empty`, `Stable`).
    pub state: String,
    /// The group epoch.
    pub group_epoch: i32,
    /// The assignor.
    pub assignor: String,
    /// Coordinator broker id.
    pub coordinator_id: i32,
    /// Coordinator `host:port`.
    pub coordinator: String,
    /// Members, sorted by member id.
    pub members: Vec<ShareMember>,
    /// Every share-partition of the group, and every partition its members are assigned,
    /// sorted by topic and partition.
    pub partitions: Vec<SharePartitionRow>,
    /// Share lag summed over the partitions.
    pub total_share_lag: i64,
}

/// Describes share group `group`: members, assignments, and per share-partition the start
/// offset, log end offset and share lag. [`AdminError::GroupNotFound`] if there is no such
/// share group, or if the cluster serves no share groups.
pub async fn describe_share_group(
    client: &mut AdminClient,
    group: &str,
) -> Result<ShareGroupDescription> {
    let coordinator_id = client.group_coordinator(group).await?;
    let described = describe_raw(client, coordinator_id, group).await?;
    let starts = start_offsets(client, coordinator_id, group).await?;

    let mut members: Vec<ShareMember> = described
        .members
        .iter()
        .map(|m| {
            let mut assignment: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for tp in &m.assignment.topic_partitions {
                let partitions = assignment.entry(tp.topic_name.0.to_string()).or_default();
                partitions.extend(&tp.partitions);
                partitions.sort_unstable();
            }
            ShareMember {
                member_id: m.member_id.to_string(),
                client_id: m.client_id.to_string(),
                host: m.client_host.to_string(),
                subscription: m
                    .subscribed_topic_names
                    .iter()
                    .map(|t| t.0.to_string())
                    .collect(),
                assignment,
            }
        })
        .collect();
    members.sort_by(|a, b| a.member_id.cmp(&b.member_id));

    let mut partitions: BTreeSet<TopicPartition> = starts.keys().cloned().collect();
    for member in &members {
        for (topic, assigned) in &member.assignment {
            partitions.extend(assigned.iter().map(|p| (topic.clone(), *p)));
        }
    }
    let topic_names: Vec<String> = partitions
        .iter()
        .map(|(t, _)| t.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let topics = if topic_names.is_empty() {
        Vec::new()
    } else {
        client.metadata(Some(&topic_names)).await?.topics
    };
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
    let rows: Vec<SharePartitionRow> = partitions
        .iter()
        .map(|tp| {
            SharePartitionRow::new(
                &tp.0,
                tp.1,
                starts.get(tp).copied(),
                log_end.get(tp).copied(),
            )
        })
        .collect();
    Ok(ShareGroupDescription {
        group: group.to_string(),
        group_type: "share",
        state: described.group_state.to_string(),
        group_epoch: described.group_epoch,
        assignor: described.assignor_name.to_string(),
        coordinator_id,
        coordinator: client
            .broker_address(coordinator_id)
            .unwrap_or_default()
            .to_string(),
        total_share_lag: rows.iter().filter_map(|r| r.share_lag).sum(),
        members,
        partitions: rows,
    })
}

fn not_found_if_unsupported(error: AdminError, group: &str) -> AdminError {
    match error {
        AdminError::Unsupported { .. } => AdminError::GroupNotFound(group.to_string()),
        other => other,
    }
}

async fn describe_raw(
    client: &mut AdminClient,
    coordinator_id: i32,
    group: &str,
) -> Result<DescribedGroup> {
    let connection = client.broker(coordinator_id).await?;
    let (response, _) = connection
        .call(SHARE_GROUP_DESCRIBE_MAX_VERSION, |_| {
            ShareGroupDescribeRequest::default()
                .with_group_ids(vec![GroupId(StrBytes::from_string(group.to_string()))])
        })
        .await
        .map_err(|e| not_found_if_unsupported(e, group))?;
    find_described(response.groups, group, "share group")
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
    fn is_unknown(&self) -> bool {
        self.error_code == GROUP_ID_NOT_FOUND || self.group_state.as_str() == "Dead"
    }
}

/// The start offset of every share-partition of `group` that has one.
async fn start_offsets(
    client: &mut AdminClient,
    coordinator_id: i32,
    group: &str,
) -> Result<BTreeMap<TopicPartition, i64>> {
    let connection = client.broker(coordinator_id).await?;
    let (response, _) = connection
        .call(DESCRIBE_SHARE_GROUP_OFFSETS_MAX_VERSION, |_| {
            DescribeShareGroupOffsetsRequest::default().with_groups(vec![
                // No topics: every share-partition of the group.
                DescribeShareGroupOffsetsRequestGroup::default()
                    .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
                    .with_topics(None),
            ])
        })
        .await
        .map_err(|e| not_found_if_unsupported(e, group))?;
    let mut starts = BTreeMap::new();
    for result in response.groups {
        if result.error_code == GROUP_ID_NOT_FOUND {
            return Err(AdminError::GroupNotFound(group.to_string()));
        }
        AdminError::check(result.error_code, result.error_message.as_deref(), || {
            format!("describing the offsets of share group {group:?}")
        })?;
        for topic in result.topics {
            let name = topic.topic_name.0.to_string();
            for p in topic.partitions {
                AdminError::check(p.error_code, p.error_message.as_deref(), || {
                    format!(
                        "describing the offset of share group {group:?} for {name}-{}",
                        p.partition_index
                    )
                })?;
                if p.start_offset >= 0 {
                    starts.insert((name.clone(), p.partition_index), p.start_offset);
                }
            }
        }
    }
    Ok(starts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_share_group_is_not_found() {
        let dead = DescribedGroup::default()
            .with_group_id(GroupId(StrBytes::from_static_str("jobs")))
            .with_group_state(StrBytes::from_static_str("Dead"));
        let found = find_described(vec![dead], "jobs", "share group");
        assert!(matches!(found, Err(AdminError::GroupNotFound(g)) if g == "jobs"));
        let busy = DescribedGroup::default()
            .with_group_id(GroupId(StrBytes::from_static_str("jobs")))
            .with_error_code(16);
        let error = find_described(vec![busy], "jobs", "share group").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("describing share group \"jobs\": "),
            "{error}"
        );
    }

    #[test]
    fn share_lag_is_log_end_minus_start_offset() {
        let row = SharePartitionRow::new("jobs", 0, Some(3), Some(10));
        assert_eq!(row.share_lag, Some(7));
        assert_eq!(
            SharePartitionRow::new("jobs", 1, None, Some(10)).share_lag,
            None,
            "a partition the group has not read has no start offset"
        );
        assert_eq!(
            SharePartitionRow::new("jobs", 2, Some(12), Some(10)).share_lag,
            Some(0)
        );
    }
}
