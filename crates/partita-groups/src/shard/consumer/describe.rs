//! ConsumerGroupDescribe, and consumer groups as the classic DescribeGroups and ListGroups
//! show them (so tools that only know the classic APIs still see them).

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as DescribedAssignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::describe_groups_response::{self, DescribedGroupMember};
use kafka_protocol::messages::{ConsumerProtocolAssignment, GroupId, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::ResponseError;

use crate::consumer::{Assignment, ConsumerGroup, TopicsImage};
use crate::shard::{Group, GroupShard, Response, Token};

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn described_assignment(assignment: &Assignment, topics: &TopicsImage) -> DescribedAssignment {
    DescribedAssignment::default().with_topic_partitions(
        assignment
            .iter()
            .map(|(id, partitions)| {
                TopicPartitions::default()
                    .with_topic_id(*id)
                    .with_topic_name(TopicName(text(topics.name_of(*id).unwrap_or(""))))
                    .with_partitions(partitions.iter().copied().collect())
            })
            .collect(),
    )
}

/// The consumer protocol's assignment bytes (version 0) for a member's partitions.
fn classic_assignment_bytes(assignment: &Assignment, topics: &TopicsImage) -> bytes::Bytes {
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    let value = ConsumerProtocolAssignment::default().with_assigned_partitions(
        assignment
            .iter()
            .filter_map(|(id, partitions)| {
                topics.name_of(*id).map(|name| {
                    TopicPartition::default()
                        .with_topic(TopicName(text(name)))
                        .with_partitions(partitions.iter().copied().collect())
                })
            })
            .collect(),
    );
    let mut buffer = bytes::BytesMut::new();
    buffer.extend_from_slice(&0i16.to_be_bytes());
    if value.encode(&mut buffer, 0).is_err() {
        return bytes::Bytes::new();
    }
    buffer.freeze()
}

impl GroupShard {
    pub(in crate::shard) fn consumer_group_describe(&mut self, token: Token, group_id: &str) {
        let topics = self.topics.clone();
        let described = DescribedGroup::default().with_group_id(GroupId(text(group_id)));
        let Some(Group::Consumer(group)) = self.groups.get(group_id) else {
            let missing = described
                .with_error_code(ResponseError::GroupIdNotFound.code())
                .with_error_message(Some(text(&format!(
                    "Group {group_id} is not a consumer group."
                ))))
                .with_group_state(text("Dead"));
            return self.respond(token, Response::ConsumerGroupDescribe(missing));
        };
        let members = group
            .members
            .values()
            .map(|m| {
                Member::default()
                    .with_member_id(text(&m.member_id))
                    .with_instance_id(m.instance_id.as_deref().map(text))
                    .with_rack_id(m.rack_id.as_deref().map(text))
                    .with_member_epoch(m.member_epoch)
                    .with_client_id(text(&m.client_id))
                    .with_client_host(text(&m.client_host))
                    .with_subscribed_topic_names(
                        m.subscribed_topic_names
                            .iter()
                            .map(|n| TopicName(text(n)))
                            .collect(),
                    )
                    .with_subscribed_topic_regex(m.subscribed_topic_regex.as_deref().map(text))
                    .with_assignment(described_assignment(&m.assigned, &topics))
                    .with_target_assignment(described_assignment(
                        group.target.get(&m.member_id).unwrap_or(&Assignment::new()),
                        &topics,
                    ))
                    .with_member_type(1)
            })
            .collect();
        let described = described
            .with_group_state(text(group.state_name()))
            .with_group_epoch(group.group_epoch)
            .with_assignment_epoch(group.assignment_epoch)
            .with_assignor_name(text(if group.assignor.is_empty() {
                self.config
                    .consumer_assignors
                    .first()
                    .map_or("uniform", String::as_str)
            } else {
                &group.assignor
            }))
            .with_members(members);
        self.respond(token, Response::ConsumerGroupDescribe(described));
    }
}

/// A consumer group as DescribeGroups shows it: members with their assigned partitions in the
/// consumer protocol's encoding, so classic admin tools can read it.
pub(in crate::shard) fn describe_as_classic(
    group: &ConsumerGroup,
    topics: &TopicsImage,
) -> describe_groups_response::DescribedGroup {
    let members = group
        .members
        .values()
        .map(|m| {
            DescribedGroupMember::default()
                .with_member_id(text(&m.member_id))
                .with_group_instance_id(m.instance_id.as_deref().map(text))
                .with_client_id(text(&m.client_id))
                .with_client_host(text(&m.client_host))
                .with_member_assignment(classic_assignment_bytes(&m.assigned, topics))
        })
        .collect();
    describe_groups_response::DescribedGroup::default()
        .with_group_id(GroupId(text(&group.group_id)))
        .with_group_state(text(group.state_name()))
        .with_protocol_type(text("consumer"))
        .with_protocol_data(text(&group.assignor))
        .with_members(members)
}
