//! Consumer groups in `__consumer_offsets`: the KIP-848 records written as groups change,
//! and the replay that rebuilds them at start-up.

use super::{Coordinator, Record};
use crate::classic::Group;
use crate::consumer::{Assignment, ConsumerGroup, ConsumerMember, MemberState};
use crate::records::{
    ConsumerGroupCurrentMemberAssignmentValue, ConsumerGroupMemberMetadataValue,
    ConsumerGroupMetadataValue, ConsumerGroupTargetAssignmentMemberValue,
    ConsumerGroupTargetAssignmentMetadataValue, RecordKey, RecordValue, TopicPartitions,
};

fn record(key: RecordKey, value: Option<RecordValue>) -> Record {
    Record {
        key: key.encode(),
        value: value.map(|v| v.encode()),
    }
}

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

/// The group epoch.
pub(super) fn group_metadata_record(group: &str, epoch: i32, metadata_hash: i64) -> Record {
    record(
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
pub(super) fn member_metadata_record(group: &str, member: &ConsumerMember) -> Record {
    record(
        RecordKey::ConsumerGroupMemberMetadata {
            group: group.to_string(),
            member_id: member.member_id.clone(),
        },
        Some(RecordValue::ConsumerGroupMemberMetadata(
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
            },
        )),
    )
}

/// One member's target assignment.
pub(super) fn target_member_record(
    group: &str,
    member_id: &str,
    assignment: &Assignment,
) -> Record {
    record(
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
pub(super) fn target_metadata_record(group: &str, epoch: i32) -> Record {
    record(
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
pub(super) fn current_assignment_record(group: &str, member: &ConsumerMember) -> Record {
    record(
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
pub(super) fn member_tombstones(group: &str, member_id: &str) -> Vec<Record> {
    let group = group.to_string();
    let member_id = member_id.to_string();
    vec![
        record(
            RecordKey::ConsumerGroupCurrentMemberAssignment {
                group: group.clone(),
                member_id: member_id.clone(),
            },
            None,
        ),
        record(
            RecordKey::ConsumerGroupTargetAssignmentMember {
                group: group.clone(),
                member_id: member_id.clone(),
            },
            None,
        ),
        record(
            RecordKey::ConsumerGroupMemberMetadata { group, member_id },
            None,
        ),
    ]
}

/// Tombstones that delete a consumer group's own records (not its offsets).
pub(super) fn group_tombstones(group_id: &str, group: &ConsumerGroup) -> Vec<Record> {
    let mut records = Vec::new();
    for member_id in group.members.keys() {
        records.extend(member_tombstones(group_id, member_id));
    }
    let group = group_id.to_string();
    records.push(record(
        RecordKey::ConsumerGroupTargetAssignmentMetadata {
            group: group.clone(),
        },
        None,
    ));
    records.push(record(
        RecordKey::ConsumerGroupPartitionMetadata {
            group: group.clone(),
        },
        None,
    ));
    records.push(record(RecordKey::ConsumerGroupMetadata { group }, None));
    records
}

impl Coordinator {
    /// Applies one KIP-848 record read back at start-up. Members get a full session timeout
    /// from `now` to heartbeat again.
    pub(super) fn replay_consumer(&mut self, now: i64, key: RecordKey, value: Option<RecordValue>) {
        let Some(group_id) = key.group().map(str::to_string) else {
            return;
        };
        let session = i64::from(self.config.consumer_session_timeout_ms);
        let group = self.groups.entry(group_id.clone()).or_insert_with(|| {
            let mut group = Group::new(&group_id, now);
            group.protocol_type = Some("consumer".to_string());
            group
        });
        if value.is_none() && matches!(key, RecordKey::ConsumerGroupMetadata { .. }) {
            group.consumer = None;
            if group.offsets.is_empty() {
                self.groups.remove(&group_id);
            }
            return;
        }
        let consumer = group.consumer.get_or_insert_with(ConsumerGroup::default);
        match (key, value) {
            (
                RecordKey::ConsumerGroupMetadata { .. },
                Some(RecordValue::ConsumerGroupMetadata(v)),
            ) => {
                consumer.group_epoch = v.epoch;
                consumer.metadata_hash = v.metadata_hash;
            }
            (
                RecordKey::ConsumerGroupTargetAssignmentMetadata { .. },
                Some(RecordValue::ConsumerGroupTargetAssignmentMetadata(v)),
            ) => {
                consumer.assignment_epoch = v.assignment_epoch;
            }
            (RecordKey::ConsumerGroupTargetAssignmentMember { member_id, .. }, value) => {
                match value {
                    Some(RecordValue::ConsumerGroupTargetAssignmentMember(v)) => {
                        consumer
                            .target
                            .insert(member_id, unwire(&v.topic_partitions));
                    }
                    _ => {
                        consumer.target.remove(&member_id);
                    }
                }
            }
            (RecordKey::ConsumerGroupMemberMetadata { member_id, .. }, value) => match value {
                Some(RecordValue::ConsumerGroupMemberMetadata(v)) => {
                    if let Some(instance) = &v.instance_id {
                        consumer
                            .static_members
                            .insert(instance.clone(), member_id.clone());
                    }
                    let member = consumer
                        .members
                        .entry(member_id.clone())
                        .or_insert_with(|| ConsumerMember {
                            member_id: member_id.clone(),
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
                            session_deadline: now + session,
                            rebalance_deadline: None,
                            last_sent: None,
                            left_temporarily: false,
                        });
                    member.instance_id = v.instance_id;
                    member.rack_id = v.rack_id;
                    member.client_id = v.client_id;
                    member.client_host = v.client_host;
                    member.subscribed_topic_names = v.subscribed_topic_names;
                    member.subscribed_topic_regex = v.subscribed_topic_regex;
                    member.rebalance_timeout_ms = v.rebalance_timeout_ms;
                    member.server_assignor = v.server_assignor;
                }
                _ => {
                    if let Some(member) = consumer.members.remove(&member_id) {
                        if let Some(instance) = member.instance_id {
                            consumer.static_members.remove(&instance);
                        }
                    }
                }
            },
            (
                RecordKey::ConsumerGroupCurrentMemberAssignment { member_id, .. },
                Some(RecordValue::ConsumerGroupCurrentMemberAssignment(v)),
            ) => {
                if let Some(member) = consumer.members.get_mut(&member_id) {
                    member.member_epoch = v.member_epoch;
                    member.previous_member_epoch = v.previous_member_epoch;
                    member.state = MemberState::from_code(v.state);
                    member.assigned = unwire(&v.assigned_partitions);
                    member.pending_revocation = unwire(&v.partitions_pending_revocation);
                    member.left_temporarily = v.member_epoch == -2;
                    if member.state == MemberState::UnrevokedPartitions {
                        member.rebalance_deadline =
                            Some(now + i64::from(member.rebalance_timeout_ms));
                    }
                }
            }
            _ => {}
        }
    }
}
