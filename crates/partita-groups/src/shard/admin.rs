//! DescribeGroups, ListGroups and DeleteGroups for the groups of this shard.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::GroupId;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::offsets::offset_record;
use super::{Group, GroupShard, Response, Token};
use crate::classic::GroupState;
use crate::events::GroupEventKind;
use crate::records::RecordKey;

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

impl GroupShard {
    /// Kafka's summary: members with their metadata and assignment only once the group is
    /// stable; a group this shard does not know is reported as Dead.
    pub(super) fn describe_group(&mut self, token: Token, group_id: &str) {
        let described = self.described(group_id);
        self.respond(token, Response::DescribeGroup(described));
    }

    /// A group as DescribeGroups shows it.
    pub(super) fn described(&self, group_id: &str) -> DescribedGroup {
        let described = DescribedGroup::default().with_group_id(GroupId(text(group_id)));
        let group = match self.groups.get(group_id) {
            Some(Group::Consumer(consumer)) => {
                return super::consumer::describe_as_classic(consumer, &self.topics);
            }
            Some(Group::Classic(group)) => group,
            // A share group is described by ShareGroupDescribe; here it is not a group.
            None | Some(Group::Share(_)) => {
                return described
                    .with_group_state(text(GroupState::Dead.name()))
                    .with_protocol_type(text(""))
                    .with_protocol_data(text(""));
            }
        };
        let stable = group.state == GroupState::Stable;
        let protocol = group.protocol.clone().unwrap_or_default();
        let members = group
            .members
            .values()
            .map(|m| {
                let member = DescribedGroupMember::default()
                    .with_member_id(text(&m.member_id))
                    .with_group_instance_id(m.group_instance_id.as_deref().map(text))
                    .with_client_id(text(&m.client_id))
                    .with_client_host(text(&m.client_host));
                if stable {
                    member
                        .with_member_metadata(m.metadata_for(&protocol))
                        .with_member_assignment(m.assignment.clone())
                } else {
                    member
                }
            })
            .collect();
        described
            .with_group_state(text(group.state.name()))
            .with_protocol_type(text(group.protocol_type.as_deref().unwrap_or("")))
            .with_protocol_data(text(if stable { &protocol } else { "" }))
            .with_members(members)
    }

    pub(super) fn list_groups(&mut self, token: Token, states: &[String], types: &[String]) {
        let mut listed: Vec<ListedGroup> = self
            .groups
            .values()
            .filter(|g| g.state_name() != GroupState::Dead.name())
            .map(|g| {
                ListedGroup::default()
                    .with_group_id(GroupId(text(g.group_id())))
                    .with_protocol_type(text(g.protocol_type().unwrap_or("")))
                    .with_group_state(text(g.state_name()))
                    .with_group_type(text(g.kind()))
            })
            .filter(|g| {
                let state = g.group_state.as_str();
                states.is_empty() || states.iter().any(|s| s.eq_ignore_ascii_case(state))
            })
            .filter(|g| {
                let kind = g.group_type.as_str();
                types.is_empty() || types.iter().any(|t| t.eq_ignore_ascii_case(kind))
            })
            .collect();
        listed.sort_by(|a, b| a.group_id.as_str().cmp(b.group_id.as_str()));
        self.respond(token, Response::ListGroups(listed));
    }

    /// Deletes an empty group: tombstones for its offsets and its own records.
    pub(super) fn delete_group(&mut self, now: i64, token: Token, group_id: &str) {
        let error = match self.groups.get(group_id) {
            None => Some(ResponseError::GroupIdNotFound),
            Some(group) if group.state_name() == GroupState::Dead.name() => {
                Some(ResponseError::GroupIdNotFound)
            }
            // A classic group counts by its state, as in Kafka: one still Empty is deleted
            // even if a member id was handed out (MEMBER_ID_REQUIRED) and not used yet.
            Some(Group::Classic(group)) if group.state != GroupState::Empty => {
                Some(ResponseError::NonEmptyGroup)
            }
            Some(Group::Consumer(_) | Group::Share(_)) if !self.groups[group_id].is_empty() => {
                Some(ResponseError::NonEmptyGroup)
            }
            Some(_) => None,
        };
        if error.is_none() {
            let committed: Vec<(String, i32)> = self
                .offsets
                .get(group_id)
                .map(|offsets| offsets.keys().cloned().collect())
                .unwrap_or_default();
            for (topic, partition) in committed {
                let (key, value) = offset_record(group_id, &topic, partition, None);
                self.write(now, key, value);
            }
            self.write_group_tombstones(now, group_id);
            self.emit(now, group_id, GroupEventKind::GroupDeleted);
        }
        self.respond(token, Response::DeleteGroup(error.map_or(0, |e| e.code())));
    }

    /// Writes the tombstones of a group's own records (not its offsets): the group is gone
    /// once they are replayed.
    pub(super) fn write_group_tombstones(&mut self, now: i64, group_id: &str) {
        let records = match self.groups.get(group_id) {
            Some(Group::Consumer(consumer)) => super::consumer::group_tombstones(consumer),
            Some(Group::Classic(_)) => vec![(
                RecordKey::GroupMetadata {
                    group: group_id.to_string(),
                },
                None,
            )],
            Some(Group::Share(_)) => return self.delete_share_group_state(now, group_id),
            None => Vec::new(),
        };
        for (key, value) in records {
            self.write(now, key, value);
        }
    }
}
