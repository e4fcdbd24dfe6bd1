//! Share groups (KIP-932) in the shard: ShareGroupHeartbeat and ShareGroupDescribe, their
//! settings, session timeouts, and what a share-partition's records mean when replayed.
//!
//! Every member is assigned every partition of the topics it subscribes to, so a share group
//! never rebalances; who reads what is decided record by record when fetches acquire them
//! ([`fetch`]). Membership and sessions are soft state; share-partitions and the group's
//! `share.auto.offset.reset` change only by replaying their `__share_group_state` records.

mod fetch;

use std::collections::BTreeMap;

use kafka_protocol::messages::share_group_describe_response::{
    Assignment as DescribedAssignment, DescribedGroup, Member, TopicPartitions as DescribedTopic,
};
use kafka_protocol::messages::share_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{
    GroupId, ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

pub use fetch::{
    AcknowledgementBatches, ShareAcknowledgements, ShareAcquire, SharePlan, SharePlanned,
    ShareRead, ShareSessionUpdate,
};

use super::{ClientContext, Group, GroupShard, Request, Response, Token};
use crate::consumer::TopicsImage;
use crate::share::group::{ShareGroup, ShareMember};
use crate::share::partition::SharePartition;
use crate::share::records::{ShareStateError, ShareStateKey, ShareStateValue};

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn heartbeat_failure(error: ResponseError, message: &str) -> ShareGroupHeartbeatResponse {
    ShareGroupHeartbeatResponse::default()
        .with_error_code(error.code())
        .with_error_message(Some(text(message)))
}

/// A share group as it is now: members, and the state of each share-partition.
#[derive(Clone, Debug)]
pub struct ShareGroupStatus {
    /// Its members and sessions.
    pub group: ShareGroup,
    /// Each share-partition it has read.
    pub partitions: Vec<((Uuid, i32), SharePartitionStatus)>,
}

/// One share-partition's window, in numbers.
#[derive(Clone, Copy, Debug)]
pub struct SharePartitionStatus {
    /// Everything below is done.
    pub start_offset: i64,
    /// Offsets from here on were never delivered.
    pub window_end_offset: i64,
    /// Records acquired or waiting to be delivered again.
    pub in_flight: u64,
    /// Records held by a member now.
    pub acquired: u64,
    /// Records of the window available again.
    pub available_in_window: u64,
}

impl SharePartitionStatus {
    fn of(partition: &SharePartition) -> SharePartitionStatus {
        SharePartitionStatus {
            start_offset: partition.start_offset(),
            window_end_offset: partition.window_end_offset(),
            in_flight: partition.in_flight() as u64,
            acquired: partition.acquired() as u64,
            available_in_window: partition.available_in_window() as u64,
        }
    }

    /// Records a member could acquire now if the log ends at `log_end_offset`.
    pub fn available(&self, log_end_offset: i64) -> u64 {
        let never_delivered =
            (log_end_offset - self.window_end_offset.max(self.start_offset)).max(0);
        self.available_in_window + never_delivered as u64
    }
}

impl GroupShard {
    pub(super) fn handle_share(
        &mut self,
        now: i64,
        token: Token,
        client: &ClientContext,
        request: Request,
    ) {
        let response = match request {
            Request::ShareGroupHeartbeat(request, topics) => {
                self.topics = topics;
                Response::ShareGroupHeartbeat(self.share_heartbeat(now, client, &request))
            }
            Request::ShareGroupDescribe(group_id, topics) => {
                self.topics = topics;
                Response::ShareGroupDescribe(self.share_describe(&group_id))
            }
            Request::ShareSession(update) => Response::ShareSession(self.share_session(&update)),
            Request::ShareAcknowledge(acks) => {
                Response::ShareAcknowledged(self.share_acknowledge(now, &acks))
            }
            Request::SharePlan(plan) => Response::SharePlanned(self.share_plan(now, &plan)),
            Request::ShareAcquire(acquire) => {
                Response::ShareAcquired(self.share_acquire(now, &acquire))
            }
            Request::SetGroupConfig(group_id, configs) => {
                let key = ShareStateKey::GroupConfig { group: group_id };
                let value = (!configs.is_empty()).then_some(ShareStateValue::GroupConfig(configs));
                self.write_share(now, key, value);
                Response::Done(0)
            }
            Request::GroupConfig(group_id) => Response::GroupConfig(
                self.group_configs
                    .get(&group_id)
                    .cloned()
                    .unwrap_or_default(),
            ),
            Request::ShareGroupStatus(group_id) => {
                Response::ShareGroupStatus(self.share_status(&group_id).map(Box::new))
            }
            other => unreachable!("not a share group request: {other:?}"),
        };
        self.respond(token, response);
    }

    /// ShareGroupHeartbeat: join (epoch 0), leave (-1), or stay. Every member is assigned
    /// every partition of the topics it subscribes to, so none sits idle.
    fn share_heartbeat(
        &mut self,
        now: i64,
        client: &ClientContext,
        request: &ShareGroupHeartbeatRequest,
    ) -> ShareGroupHeartbeatResponse {
        let group_id = request.group_id.to_string();
        let member_id = request.member_id.to_string();
        if group_id.trim().is_empty() {
            return heartbeat_failure(ResponseError::InvalidRequest, "GroupId can't be empty.");
        }
        if member_id.trim().is_empty() {
            return heartbeat_failure(ResponseError::InvalidRequest, "MemberId can't be empty.");
        }
        let epoch = request.member_epoch;
        match self.groups.get(&group_id) {
            Some(Group::Share(_)) => {}
            None if epoch == 0 => {
                let group = Group::Share(ShareGroup::new(&group_id));
                self.groups.insert(group_id.clone(), group);
            }
            None => return heartbeat_failure(ResponseError::UnknownMemberId, "unknown member"),
            Some(_) => {
                let message = format!("Group {group_id} is not a share group.");
                return heartbeat_failure(ResponseError::GroupIdNotFound, &message);
            }
        }
        if epoch == -1 {
            return self.share_leave(now, &group_id, &member_id);
        }
        if let Err((error, message)) = self.share_join_or_stay(now, client, &group_id, request) {
            return heartbeat_failure(error, message);
        }
        self.share_assignment_response(&group_id, &member_id, epoch == 0)
    }

    fn share_leave(
        &mut self,
        now: i64,
        group_id: &str,
        member_id: &str,
    ) -> ShareGroupHeartbeatResponse {
        let group = self.share_group_mut(group_id);
        if !group.members.contains_key(member_id) {
            return heartbeat_failure(ResponseError::UnknownMemberId, "unknown member");
        }
        // The session outlives the leave, so that a final ShareAcknowledge can close it.
        self.remove_share_member(now, group_id, member_id, true);
        tracing::info!(event = "share_member_left", group = %group_id, member = %member_id, "share member left");
        ShareGroupHeartbeatResponse::default()
            .with_member_id(Some(text(member_id)))
            .with_member_epoch(-1)
    }

    fn share_join_or_stay(
        &mut self,
        now: i64,
        client: &ClientContext,
        group_id: &str,
        request: &ShareGroupHeartbeatRequest,
    ) -> Result<(), (ResponseError, &'static str)> {
        let session_timeout = self.config.share.session_timeout_ms;
        let member_id = request.member_id.to_string();
        let epoch = request.member_epoch;
        let group = self.share_group_mut(group_id);
        let known = group.members.contains_key(&member_id);
        if !known && epoch != 0 {
            return Err((ResponseError::UnknownMemberId, "unknown member"));
        }
        if known && epoch != 0 && epoch > group.epoch {
            return Err((
                ResponseError::FencedMemberEpoch,
                "the member epoch is stale",
            ));
        }
        let names: Option<Vec<String>> = request
            .subscribed_topic_names
            .as_ref()
            .map(|names| names.iter().map(|n| n.to_string()).collect());
        if !known {
            let Some(subscribed) = names.clone() else {
                let message = "SubscribedTopicNames must be set in first request.";
                return Err((ResponseError::InvalidRequest, message));
            };
            let member = ShareMember {
                member_id: member_id.clone(),
                client_id: client.client_id.clone(),
                client_host: client.client_host.clone(),
                subscribed,
                session_deadline: 0,
                last_sent: None,
            };
            group.members.insert(member_id.clone(), member);
            group.epoch += 1;
            tracing::info!(event = "share_member_joined", group = %group_id, member = %member_id, "share member joined");
        }
        let member = group.members.get_mut(&member_id).expect("member exists");
        let mut resubscribed = false;
        if let Some(names) = names {
            if names != member.subscribed {
                member.subscribed = names;
                resubscribed = true;
            }
        }
        member.session_deadline = now + session_timeout;
        if resubscribed {
            group.epoch += 1;
        }
        Ok(())
    }

    /// The heartbeat's answer: the group epoch, and the member's assignment when it is new to
    /// the member.
    fn share_assignment_response(
        &mut self,
        group_id: &str,
        member_id: &str,
        joining: bool,
    ) -> ShareGroupHeartbeatResponse {
        let interval = self.config.share.heartbeat_interval_ms;
        let topics = self.topics.clone();
        let group = self.share_group_mut(group_id);
        let group_epoch = group.epoch;
        let member = group.members.get_mut(member_id).expect("member exists");
        let assignment = ShareGroup::assignment(member, &topics);
        let send = joining
            || member
                .last_sent
                .as_ref()
                .is_none_or(|(_, sent)| *sent != assignment);
        let mut response = ShareGroupHeartbeatResponse::default()
            .with_member_id(Some(text(member_id)))
            .with_member_epoch(group_epoch)
            .with_heartbeat_interval_ms(interval);
        if send {
            let mut by_topic: BTreeMap<Uuid, Vec<i32>> = BTreeMap::new();
            for (topic, partition) in &assignment {
                by_topic.entry(*topic).or_default().push(*partition);
            }
            let topic_partitions = by_topic
                .into_iter()
                .map(|(topic_id, partitions)| {
                    TopicPartitions::default()
                        .with_topic_id(topic_id)
                        .with_partitions(partitions)
                })
                .collect();
            let wire = Assignment::default().with_topic_partitions(topic_partitions);
            response = response.with_assignment(Some(wire));
            member.last_sent = Some((group_epoch, assignment));
        }
        response
    }

    /// ShareGroupDescribe of one group.
    fn share_describe(&self, group_id: &str) -> DescribedGroup {
        let described = DescribedGroup::default().with_group_id(GroupId(text(group_id)));
        let Some(Group::Share(group)) = self.groups.get(group_id) else {
            return described
                .with_error_code(ResponseError::GroupIdNotFound.code())
                .with_group_state(text("Dead"));
        };
        let topics = &self.topics;
        let members = group
            .members
            .values()
            .map(|m| {
                Member::default()
                    .with_member_id(text(&m.member_id))
                    .with_member_epoch(group.epoch)
                    .with_client_id(text(&m.client_id))
                    .with_client_host(text(&m.client_host))
                    .with_subscribed_topic_names(
                        m.subscribed.iter().map(|n| TopicName(text(n))).collect(),
                    )
                    .with_assignment(described_assignment(&m.subscribed, topics))
            })
            .collect();
        described
            .with_group_state(text(group.state_name()))
            .with_group_epoch(group.epoch)
            .with_assignment_epoch(group.epoch)
            .with_assignor_name(text("simple"))
            .with_members(members)
    }

    pub(super) fn share_status(&self, group_id: &str) -> Option<ShareGroupStatus> {
        let group = self.groups.get(group_id)?.as_share()?.clone();
        let partitions = self
            .share_partitions
            .get(group_id)
            .into_iter()
            .flat_map(|partitions| partitions.iter())
            .map(|(key, partition)| (*key, SharePartitionStatus::of(partition)))
            .collect();
        Some(ShareGroupStatus { group, partitions })
    }

    /// Members whose session timed out are removed (their records go back), and records
    /// whose acquisition lock expired become available again.
    pub(super) fn expire_share_group(&mut self, now: i64, group_id: &str) {
        let expired: Vec<String> = self
            .share_group_mut(group_id)
            .members
            .values()
            .filter(|m| m.session_deadline <= now)
            .map(|m| m.member_id.clone())
            .collect();
        for member_id in expired {
            tracing::info!(event = "share_member_removed", group = %group_id, member = %member_id, reason = "session_timeout", "share member removed: session timed out");
            self.remove_share_member(now, group_id, &member_id, false);
        }
        let keys: Vec<(Uuid, i32)> = self
            .share_partitions
            .get(group_id)
            .map(|partitions| partitions.keys().copied().collect())
            .unwrap_or_default();
        for key in keys {
            let mut partition = self.share_partitions[group_id][&key].clone();
            if partition.expire_locks(now) {
                self.write_snapshot(now, group_id, key, &partition);
            }
        }
    }

    /// Removes a member; the records it holds go back to the others.
    fn remove_share_member(
        &mut self,
        now: i64,
        group_id: &str,
        member_id: &str,
        keep_session: bool,
    ) {
        let group = self.share_group_mut(group_id);
        if group.members.remove(member_id).is_some() {
            group.epoch += 1;
        }
        if !keep_session {
            group.sessions.remove(member_id);
        }
        let held: Vec<((Uuid, i32), SharePartition)> = self
            .share_partitions
            .get(group_id)
            .into_iter()
            .flat_map(|partitions| partitions.iter())
            .map(|(key, partition)| (*key, partition.clone()))
            .collect();
        for (key, mut partition) in held {
            if partition.release_member(member_id) {
                self.write_snapshot(now, group_id, key, &partition);
            }
        }
    }

    /// Writes a share-partition's new state.
    fn write_snapshot(
        &mut self,
        now: i64,
        group_id: &str,
        (topic_id, partition): (Uuid, i32),
        state: &SharePartition,
    ) {
        let key = ShareStateKey::Snapshot {
            group: group_id.to_string(),
            topic_id,
            partition,
        };
        self.write_share(now, key, Some(ShareStateValue::Snapshot(state.snapshot())));
    }

    /// Deletes a share group's share-partitions and the group with them (DeleteGroups).
    pub(super) fn delete_share_group_state(&mut self, now: i64, group_id: &str) {
        let keys: Vec<(Uuid, i32)> = self
            .share_partitions
            .get(group_id)
            .map(|partitions| partitions.keys().copied().collect())
            .unwrap_or_default();
        for (topic_id, partition) in keys {
            let key = ShareStateKey::Snapshot {
                group: group_id.to_string(),
                topic_id,
                partition,
            };
            self.write_share(now, key, None);
        }
        self.groups.remove(group_id);
    }

    /// The share group `group_id`, which the caller knows exists.
    fn share_group_mut(&mut self, group_id: &str) -> &mut ShareGroup {
        match self.groups.get_mut(group_id) {
            Some(Group::Share(group)) => group,
            _ => panic!("share group {group_id} exists"),
        }
    }

    /// Applies one record read back from `__share_group_state` at start-up.
    pub fn replay_share(
        &mut self,
        now: i64,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), ShareStateError> {
        let key = ShareStateKey::decode(key)?;
        let value = match value {
            Some(bytes) => Some(ShareStateValue::decode(&key, bytes)?),
            None => None,
        };
        self.apply_share(now, key, value);
        Ok(())
    }

    /// What a `__share_group_state` record means: a share-partition's whole state (a snapshot
    /// also makes its group known as a share group), or a group's `share.auto.offset.reset`.
    pub(super) fn apply_share(
        &mut self,
        _now: i64,
        key: ShareStateKey,
        value: Option<ShareStateValue>,
    ) {
        match (key, value) {
            (
                ShareStateKey::Snapshot {
                    group,
                    topic_id,
                    partition,
                },
                Some(ShareStateValue::Snapshot(snapshot)),
            ) => {
                let config = self.config.share.partition;
                let state = SharePartition::from_snapshot(config, &snapshot);
                self.groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::Share(ShareGroup::new(&group)));
                self.share_partitions
                    .entry(group)
                    .or_default()
                    .insert((topic_id, partition), state);
            }
            (
                ShareStateKey::Snapshot {
                    group,
                    topic_id,
                    partition,
                },
                _,
            ) => {
                if let Some(partitions) = self.share_partitions.get_mut(&group) {
                    partitions.remove(&(topic_id, partition));
                    if partitions.is_empty() {
                        self.share_partitions.remove(&group);
                    }
                }
            }
            (ShareStateKey::GroupConfig { group }, Some(ShareStateValue::GroupConfig(configs))) => {
                self.group_configs.insert(group, configs);
            }
            (ShareStateKey::GroupConfig { group }, _) => {
                self.group_configs.remove(&group);
            }
        }
    }

    /// At start-up the members that held records are gone: the records go back, as a
    /// restarted Kafka broker offers them again.
    pub(super) fn release_share_records_at_start(&mut self) {
        for partitions in self.share_partitions.values_mut() {
            for partition in partitions.values_mut() {
                partition.release_all();
            }
        }
    }
}

/// A member's assignment as ShareGroupDescribe shows it: every partition of its topics.
fn described_assignment(subscribed: &[String], topics: &TopicsImage) -> DescribedAssignment {
    let partitions = subscribed
        .iter()
        .filter_map(|name| topics.by_name.get(name).map(|t| (name, t)))
        .map(|(name, t)| {
            DescribedTopic::default()
                .with_topic_id(t.id)
                .with_topic_name(TopicName(text(name)))
                .with_partitions((0..t.partitions).collect())
        })
        .collect();
    DescribedAssignment::default().with_topic_partitions(partitions)
}
