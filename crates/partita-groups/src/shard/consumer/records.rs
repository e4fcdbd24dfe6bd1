//! Consumer groups in `__consumer_offsets`: the KIP-848 records written as groups change, and
//! what each of them means when replayed.

use crate::consumer::{Assignment, ConsumerGroup, ConsumerMember, MemberState};
use crate::records::{
    ConsumerGroupCurrentMemberAssignmentValue, ConsumerGroupMemberMetadataValue,
    ConsumerGroupMetadataValue, ConsumerGroupTargetAssignmentMemberValue,
    ConsumerGroupTargetAssignmentMetadataValue, RecordKey, RecordValue, TopicPartitions,
};
use crate::shard::{Group, GroupShard};

/// A record before encoding: key, and value or `None` for a tombstone.
pub(in crate::shard) type TypedRecord = (RecordKey, Option<RecordValue>);

fn wire(assignment: &Assignment) -> Vec<TopicPartitions> {
    assignment
        .iter()
        .map(|(topic, partitions)| TopicPartitions {
            topic_id: *topic.as_bytes(),
            partitions: partitions.iter().copied().collect(),
        })
        .collect()
}

fn unwire(partitions: &[TopicPartitions]) -> Assignment {
    partitions
        .iter()
        .map(|tp| {
            (
                uuid::Uuid::from_bytes(tp.topic_id),
                tp.partitions.iter().copied().collect(),
            )
        })
        .collect()
}

/// The group epoch, and the hash of the subscribed topics it was bumped for.
pub(in crate::shard) fn group_metadata_record(
    group: &str,
    epoch: i32,
    metadata_hash: i64,
) -> TypedRecord {
    (
        RecordKey::ConsumerGroupMetadata {
            group: group.to_string(),
        },
        Some(RecordValue::ConsumerGroupMetadata(
            ConsumerGroupMetadataValue {
                epoch,
                metadata_hash,
            },
        )),
    )
}

/// What a member subscribes to and who it is.
pub(in crate::shard) fn member_metadata_value(
    member: &ConsumerMember,
) -> ConsumerGroupMemberMetadataValue {
    ConsumerGroupMemberMetadataValue {
        instance_id: member.instance_id.clone(),
        rack_id: member.rack_id.clone(),
        client_id: member.client_id.clone(),
        client_host: member.client_host.clone(),
        subscribed_topic_names: member.subscribed_topic_names.clone(),
        subscribed_topic_regex: member.subscribed_topic_regex.clone(),
        rebalance_timeout_ms: member.rebalance_timeout_ms,
        server_assignor: member.server_assignor.clone(),
        classic_member_metadata: None,
    }
}

/// The record of [`member_metadata_value`].
pub(in crate::shard) fn member_metadata_record(
    group: &str,
    member: &ConsumerMember,
) -> TypedRecord {
    (
        RecordKey::ConsumerGroupMemberMetadata {
            group: group.to_string(),
            member_id: member.member_id.clone(),
        },
        Some(RecordValue::ConsumerGroupMemberMetadata(
            member_metadata_value(member),
        )),
    )
}

/// One member's target assignment.
pub(in crate::shard) fn target_member_record(
    group: &str,
    member_id: &str,
    assignment: &Assignment,
) -> TypedRecord {
    (
        RecordKey::ConsumerGroupTargetAssignmentMember {
            group: group.to_string(),
            member_id: member_id.to_string(),
        },
        Some(RecordValue::ConsumerGroupTargetAssignmentMember(
            ConsumerGroupTargetAssignmentMemberValue {
                topic_partitions: wire(assignment),
            },
        )),
    )
}

/// The epoch of the target assignment.
pub(in crate::shard) fn target_metadata_record(group: &str, epoch: i32) -> TypedRecord {
    (
        RecordKey::ConsumerGroupTargetAssignmentMetadata {
            group: group.to_string(),
        },
        Some(RecordValue::ConsumerGroupTargetAssignmentMetadata(
            ConsumerGroupTargetAssignmentMetadataValue {
                assignment_epoch: epoch,
            },
        )),
    )
}

/// Where a member is in its reconciliation.
pub(in crate::shard) fn current_assignment_record(
    group: &str,
    member: &ConsumerMember,
) -> TypedRecord {
    (
        RecordKey::ConsumerGroupCurrentMemberAssignment {
            group: group.to_string(),
            member_id: member.member_id.clone(),
        },
        Some(RecordValue::ConsumerGroupCurrentMemberAssignment(
            ConsumerGroupCurrentMemberAssignmentValue {
                member_epoch: member.member_epoch,
                previous_member_epoch: member.previous_member_epoch,
                state: member.state.code(),
                assigned_partitions: wire(&member.assigned),
                partitions_pending_revocation: wire(&member.pending_revocation),
            },
        )),
    )
}

/// Tombstones of a removed member: current assignment, target, metadata, in Kafka's order.
pub(in crate::shard) fn member_tombstones(group: &str, member_id: &str) -> Vec<TypedRecord> {
    let group = group.to_string();
    let member_id = member_id.to_string();
    vec![
        (
            RecordKey::ConsumerGroupCurrentMemberAssignment {
                group: group.clone(),
                member_id: member_id.clone(),
            },
            None,
        ),
        (
            RecordKey::ConsumerGroupTargetAssignmentMember {
                group: group.clone(),
                member_id: member_id.clone(),
            },
            None,
        ),
        (
            RecordKey::ConsumerGroupMemberMetadata { group, member_id },
            None,
        ),
    ]
}

/// Tombstones that delete a consumer group's own records (not its offsets).
pub(in crate::shard) fn group_tombstones(group: &ConsumerGroup) -> Vec<TypedRecord> {
    let group_id = &group.group_id;
    let mut records = Vec::new();
    for member_id in group.members.keys() {
        records.extend(member_tombstones(group_id, member_id));
    }
    let group = group_id.to_string();
    records.push((
        RecordKey::ConsumerGroupTargetAssignmentMetadata {
            group: group.clone(),
        },
        None,
    ));
    records.push((
        RecordKey::ConsumerGroupPartitionMetadata {
            group: group.clone(),
        },
        None,
    ));
    records.push((RecordKey::ConsumerGroupMetadata { group }, None));
    records
}

/// A member known only by its id, before its metadata record has said more.
fn blank_member(member_id: &str, session_deadline: i64) -> ConsumerMember {
    ConsumerMember {
        member_id: member_id.to_string(),
        instance_id: None,
        rack_id: None,
        client_id: String::new(),
        client_host: String::new(),
        rebalance_timeout_ms: 0,
        subscribed_topic_names: Vec::new(),
        subscribed_topic_regex: None,
        server_assignor: None,
        member_epoch: 0,
        previous_member_epoch: -1,
        state: MemberState::Stable,
        assigned: Assignment::new(),
        pending_revocation: Assignment::new(),
        session_deadline,
        rebalance_deadline: None,
        last_sent: None,
        left_temporarily: false,
        heartbeat_interval_ms: 0,
    }
}

impl GroupShard {
    /// Applies one KIP-848 record. A record creates its group (replacing an empty classic
    /// group, as a conversion does); a tombstone never does. A member a record creates gets a
    /// full session timeout from `now` to heartbeat.
    pub(in crate::shard) fn apply_consumer(
        &mut self,
        now: i64,
        key: RecordKey,
        value: Option<RecordValue>,
    ) {
        let Some(group_id) = key.group().map(str::to_string) else {
            return;
        };
        let exists = matches!(self.groups.get(&group_id), Some(Group::Consumer(_)));
        if value.is_none() && matches!(key, RecordKey::ConsumerGroupMetadata { .. }) {
            if exists {
                self.forget_group(now, &group_id);
            }
            return;
        }
        if !exists {
            if value.is_none() {
                return;
            }
            let group = ConsumerGroup::new(&group_id, now);
            self.groups.insert(group_id.clone(), Group::Consumer(group));
        }
        let session = i64::from(self.group_config_i32(
            &group_id,
            crate::config::CONSUMER_SESSION_TIMEOUT_MS,
            self.config.consumer_session_timeout_ms,
        ));
        let group = self.consumer_group_mut(&group_id);
        apply_to_group(group, key, value, now, session);
    }
}

/// Applies a record to an existing consumer group.
fn apply_to_group(
    group: &mut ConsumerGroup,
    key: RecordKey,
    value: Option<RecordValue>,
    now: i64,
    session: i64,
) {
    match (key, value) {
        (RecordKey::ConsumerGroupMetadata { .. }, Some(RecordValue::ConsumerGroupMetadata(v))) => {
            group.group_epoch = v.epoch;
            group.metadata_hash = v.metadata_hash;
        }
        (
            RecordKey::ConsumerGroupTargetAssignmentMetadata { .. },
            Some(RecordValue::ConsumerGroupTargetAssignmentMetadata(v)),
        ) => group.assignment_epoch = v.assignment_epoch,
        (RecordKey::ConsumerGroupTargetAssignmentMember { member_id, .. }, value) => match value {
            Some(RecordValue::ConsumerGroupTargetAssignmentMember(v)) => {
                group.target.insert(member_id, unwire(&v.topic_partitions));
            }
            _ => {
                group.target.remove(&member_id);
            }
        },
        (RecordKey::ConsumerGroupMemberMetadata { member_id, .. }, value) => match value {
            Some(RecordValue::ConsumerGroupMemberMetadata(v)) => {
                apply_member_metadata(group, &member_id, v, now + session)
            }
            _ => {
                if let Some(member) = group.members.remove(&member_id) {
                    if let Some(instance) = member.instance_id {
                        if group.static_members.get(&instance) == Some(&member_id) {
                            group.static_members.remove(&instance);
                        }
                    }
                }
            }
        },
        (
            RecordKey::ConsumerGroupCurrentMemberAssignment { member_id, .. },
            Some(RecordValue::ConsumerGroupCurrentMemberAssignment(v)),
        ) => {
            if let Some(member) = group.members.get_mut(&member_id) {
                member.member_epoch = v.member_epoch;
                member.previous_member_epoch = v.previous_member_epoch;
                member.state = MemberState::from_code(v.state);
                member.assigned = unwire(&v.assigned_partitions);
                member.pending_revocation = unwire(&v.partitions_pending_revocation);
                member.left_temporarily = v.member_epoch == -2;
                member.rebalance_deadline = (member.state == MemberState::UnrevokedPartitions)
                    .then(|| now + i64::from(member.rebalance_timeout_ms));
            }
        }
        _ => {}
    }
}

fn apply_member_metadata(
    group: &mut ConsumerGroup,
    member_id: &str,
    v: ConsumerGroupMemberMetadataValue,
    session_deadline: i64,
) {
    if let Some(instance) = &v.instance_id {
        group
            .static_members
            .insert(instance.clone(), member_id.to_string());
    }
    let member = group
        .members
        .entry(member_id.to_string())
        .or_insert_with(|| blank_member(member_id, session_deadline));
    member.instance_id = v.instance_id;
    member.rack_id = v.rack_id;
    member.client_id = v.client_id;
    member.client_host = v.client_host;
    member.subscribed_topic_names = v.subscribed_topic_names;
    member.subscribed_topic_regex = v.subscribed_topic_regex;
    member.rebalance_timeout_ms = v.rebalance_timeout_ms;
    member.server_assignor = v.server_assignor;
}
