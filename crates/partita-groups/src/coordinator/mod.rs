//! One coordinator shard: the groups whose `__consumer_offsets` partition it owns.
//!
//! A sans-io state machine. Input: a request or the passing of time, always with `now`.
//! Output: responses (some held back until the group moves on), records appended through a
//! [`Journal`] before anything they acknowledge is answered, and the next instant at which
//! time matters ([`Coordinator::next_deadline`]). No sockets, no clock, no runtime: tests drive
//! it with a virtual clock.

mod admin;
mod consumer_describe;
mod consumer_group;
mod membership;
mod offsets;
mod persistence;

use std::collections::HashMap;

use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use crate::classic::{Group, GroupState};
use crate::config::GroupConfig;
use crate::consumer::SharedTopics;
use crate::events::{GroupEvent, GroupEventKind};
use crate::records::{RecordError, RecordKey, RecordValue};

pub use offsets::OffsetFetchGroup;

/// Identifies a request to the driver, so that a response given later finds its way back.
pub type Token = u64;

/// Who sent a request.
#[derive(Clone, Debug, Default)]
pub struct ClientContext {
    /// The client's `client.id`.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
}

/// A request for this shard, decoded and normalised across API versions where that helps.
#[derive(Clone, Debug)]
pub enum Request {
    /// JoinGroup at the given version.
    JoinGroup(JoinGroupRequest, i16),
    /// SyncGroup at the given version.
    SyncGroup(SyncGroupRequest, i16),
    /// Heartbeat.
    Heartbeat(HeartbeatRequest),
    /// LeaveGroup at the given version.
    LeaveGroup(LeaveGroupRequest, i16),
    /// OffsetCommit at the given version.
    OffsetCommit(OffsetCommitRequest, i16),
    /// The offsets of one group; `None` topics means all of them.
    OffsetFetch(OffsetFetchGroup),
    /// OffsetDelete.
    OffsetDelete(OffsetDeleteRequest),
    /// DescribeGroups for one group.
    DescribeGroup(String),
    /// ListGroups, with the states and types filters (empty: all).
    ListGroups(Vec<String>, Vec<String>),
    /// ConsumerGroupHeartbeat at the given version, with the topics as the broker knows them.
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest, i16, SharedTopics),
    /// ConsumerGroupDescribe for one group.
    ConsumerGroupDescribe(String, SharedTopics),
    /// DeleteGroups for one group.
    DeleteGroup(String),
    /// A topic was deleted: every group of this shard forgets its committed offsets.
    TopicDeleted(String),
}

/// A response from this shard.
#[derive(Clone, Debug)]
pub enum Response {
    /// For JoinGroup.
    JoinGroup(JoinGroupResponse),
    /// For SyncGroup.
    SyncGroup(SyncGroupResponse),
    /// For Heartbeat.
    Heartbeat(HeartbeatResponse),
    /// For LeaveGroup.
    LeaveGroup(LeaveGroupResponse),
    /// For OffsetCommit.
    OffsetCommit(OffsetCommitResponse),
    /// For one group of an OffsetFetch.
    OffsetFetch(offset_fetch_response::OffsetFetchResponseGroup),
    /// For OffsetDelete.
    OffsetDelete(OffsetDeleteResponse),
    /// For one group of a DescribeGroups.
    DescribeGroup(describe_groups_response::DescribedGroup),
    /// This shard's part of a ListGroups.
    ListGroups(Vec<list_groups_response::ListedGroup>),
    /// For one group of a DeleteGroups: the error code.
    DeleteGroup(i16),
    /// For TopicDeleted: how many committed offsets were removed.
    TopicDeleted(usize),
    /// For ConsumerGroupHeartbeat.
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse),
    /// For one group of a ConsumerGroupDescribe.
    ConsumerGroupDescribe(consumer_group_describe_response::DescribedGroup),
}

/// A record of `__consumer_offsets`: key, and value or `None` for a tombstone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The encoded key.
    pub key: Vec<u8>,
    /// The encoded value, or `None` for a tombstone.
    pub value: Option<Vec<u8>>,
}

/// Where the shard's records go: its `__consumer_offsets` partition, or a `Vec` in tests.
pub trait Journal {
    /// Appends records durably (as the log's flush policy makes durable) and in order.
    fn append(&mut self, records: Vec<Record>) -> Result<(), String>;
}

impl Journal for Vec<Record> {
    fn append(&mut self, records: Vec<Record>) -> Result<(), String> {
        self.extend(records);
        Ok(())
    }
}

/// The state of one coordinator shard.
pub struct Coordinator {
    config: GroupConfig,
    groups: HashMap<String, Group>,
    responses: Vec<(Token, Response)>,
    events: Vec<GroupEvent>,
    topics: SharedTopics,
    next_offsets_expiry: i64,
    id_seed: u64,
    ids_issued: u64,
}

impl Coordinator {
    /// A shard with no groups. `id_seed` makes the member ids it hands out unique across
    /// restarts; tests pass a constant to get the same ids every run.
    pub fn new(config: GroupConfig, id_seed: u64) -> Coordinator {
        Coordinator {
            next_offsets_expiry: config.offsets_retention_check_interval_ms,
            config,
            groups: HashMap::new(),
            responses: Vec::new(),
            events: Vec::new(),
            topics: SharedTopics::default(),
            id_seed,
            ids_issued: 0,
        }
    }

    /// Handles one request. Returns every response that is now due: this request's, unless
    /// it waits, and those of earlier requests it released.
    pub fn handle(
        &mut self,
        now: i64,
        journal: &mut dyn Journal,
        token: Token,
        client: &ClientContext,
        request: Request,
    ) -> Vec<(Token, Response)> {
        match request {
            Request::JoinGroup(request, version) => {
                self.join_group(now, journal, token, version, client, request)
            }
            Request::SyncGroup(request, version) => {
                self.sync_group(now, journal, token, version, request)
            }
            Request::Heartbeat(request) => self.heartbeat(now, token, request),
            Request::LeaveGroup(request, version) => {
                self.leave_group(now, journal, token, version, request)
            }
            Request::OffsetCommit(request, version) => {
                self.offset_commit(now, journal, token, version, request)
            }
            Request::OffsetFetch(request) => self.offset_fetch(token, request),
            Request::OffsetDelete(request) => self.offset_delete(journal, token, request),
            Request::DescribeGroup(group_id) => self.describe_group(token, &group_id),
            Request::ListGroups(states, types) => self.list_groups(token, &states, &types),
            Request::ConsumerGroupHeartbeat(request, version, topics) => {
                self.consumer_heartbeat(now, journal, token, version, client, request, topics)
            }
            Request::ConsumerGroupDescribe(group_id, topics) => {
                self.topics = topics;
                self.consumer_group_describe(token, &group_id)
            }
            Request::DeleteGroup(group_id) => self.delete_group(now, journal, token, &group_id),
            Request::TopicDeleted(topic) => self.topic_deleted(journal, token, &topic),
        }
        self.advance(now, journal);
        std::mem::take(&mut self.responses)
    }

    /// Lets time pass: session timeouts, join and sync deadlines, offset expiry.
    pub fn tick(&mut self, now: i64, journal: &mut dyn Journal) -> Vec<(Token, Response)> {
        self.advance(now, journal);
        std::mem::take(&mut self.responses)
    }

    /// The next instant at which [`Coordinator::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<i64> {
        // Only deadlines that `tick` acts on: a deadline it would ignore would wake the driver
        // again and again.
        let groups = self.groups.values().flat_map(|group| {
            let members = group
                .members
                .values()
                .filter(|m| !m.keeps_alive())
                .map(|m| m.session_deadline);
            let pending = group.pending_members.values().copied();
            let join = group
                .join_deadline
                .filter(|_| group.state == GroupState::PreparingRebalance);
            let sync = group.sync_deadline.filter(|_| {
                matches!(
                    group.state,
                    GroupState::CompletingRebalance | GroupState::Stable
                ) && !group.pending_sync.is_empty()
            });
            let consumer = group.consumer.iter().flat_map(|c| {
                c.members
                    .values()
                    .flat_map(|m| [Some(m.session_deadline), m.rebalance_deadline])
                    .flatten()
            });
            members
                .chain(pending)
                .chain(join)
                .chain(sync)
                .chain(consumer)
        });
        groups.chain([self.next_offsets_expiry]).min()
    }

    /// Applies one record read back from `__consumer_offsets` at start-up.
    pub fn replay(
        &mut self,
        now: i64,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), RecordError> {
        let key = RecordKey::decode(key)?;
        let value = match value {
            Some(bytes) => RecordValue::decode(&key, bytes)?,
            None => None,
        };
        match (key, value) {
            (
                RecordKey::OffsetCommit {
                    group,
                    topic,
                    partition,
                },
                Some(RecordValue::OffsetCommit(value)),
            ) => self.replay_offset(now, group, topic, partition, Some(value)),
            (
                RecordKey::OffsetCommit {
                    group,
                    topic,
                    partition,
                },
                None,
            ) => self.replay_offset(now, group, topic, partition, None),
            (RecordKey::GroupMetadata { group }, Some(RecordValue::GroupMetadata(value))) => {
                self.replay_group(now, group, Some(value))
            }
            (RecordKey::GroupMetadata { group }, None) => self.replay_group(now, group, None),
            (RecordKey::Unknown { .. }, _) => {}
            (key, value) => self.replay_consumer(now, key, value),
        }
        Ok(())
    }

    /// The groups of this shard, for describing and for metrics.
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    /// The group events since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<GroupEvent> {
        std::mem::take(&mut self.events)
    }

    /// Records a group event and writes it as a structured log line.
    fn emit(&mut self, now: i64, group_id: &str, kind: GroupEventKind) {
        log_event(group_id, &kind);
        self.events.push(GroupEvent {
            at_ms: now,
            group_id: group_id.to_string(),
            kind,
        });
    }

    /// Queues a response.
    fn respond(&mut self, token: Token, response: Response) {
        self.responses.push((token, response));
    }

    /// Runs every deadline that has passed.
    fn advance(&mut self, now: i64, journal: &mut dyn Journal) {
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        for group_id in ids {
            self.expire_members(now, journal, &group_id);
            self.run_join_deadline(now, journal, &group_id);
            self.run_sync_deadline(now, journal, &group_id);
            self.expire_consumer_members(now, journal, &group_id);
        }
        if now >= self.next_offsets_expiry {
            self.expire_offsets(now, journal);
            self.next_offsets_expiry = now + self.config.offsets_retention_check_interval_ms;
        }
    }

    /// A new member id: `prefix-` and a UUID-shaped string unique to this shard's run.
    fn new_member_id(&mut self, prefix: &str) -> String {
        self.ids_issued += 1;
        let a = mix(self.id_seed ^ self.ids_issued);
        let b = mix(a ^ self.ids_issued.rotate_left(17));
        format!(
            "{prefix}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }

    fn error_code_for_missing_group(&self, group_id: &str) -> Option<ResponseError> {
        match self.groups.get(group_id) {
            None => Some(ResponseError::UnknownMemberId),
            Some(group) if group.state == GroupState::Dead => {
                Some(ResponseError::CoordinatorNotAvailable)
            }
            Some(_) => None,
        }
    }
}

/// One structured log line per group event.
fn log_event(group: &str, kind: &GroupEventKind) {
    match kind {
        GroupEventKind::MemberJoined {
            member_id,
            client_id,
            group_instance_id,
        } => tracing::info!(
            event = "member_joined",
            group,
            member = %member_id,
            client = %client_id,
            instance = group_instance_id.as_deref().unwrap_or(""),
            "member joined"
        ),
        GroupEventKind::MemberLeft { member_id } => {
            tracing::info!(event = "member_left", group, member = %member_id, "member left")
        }
        GroupEventKind::MemberRemoved { member_id, reason } => tracing::info!(
            event = "member_removed",
            group,
            member = %member_id,
            reason = reason.name(),
            "member removed: {}",
            match reason {
                crate::events::RemovalReason::SessionTimeout => "session timed out",
                crate::events::RemovalReason::MissedPoll =>
                    "did not rejoin within the rebalance timeout",
                crate::events::RemovalReason::SyncTimeout =>
                    "no SyncGroup within the rebalance timeout",
            }
        ),
        GroupEventKind::StaticMemberRejoined {
            old_member_id,
            new_member_id,
        } => tracing::info!(
            event = "static_member_rejoined",
            group,
            old = %old_member_id,
            new = %new_member_id,
            "static member rejoined"
        ),
        GroupEventKind::RebalanceStarted { generation, cause } => tracing::info!(
            event = "rebalance_started",
            group,
            generation,
            cause = cause.name(),
            "rebalance started"
        ),
        GroupEventKind::RebalanceCompleted {
            generation,
            started_at_ms,
            cause,
            assignment,
        } => tracing::info!(
            event = "rebalance_completed",
            group,
            generation,
            cause = cause.name(),
            started_at_ms,
            members = assignment.len(),
            "rebalance complete"
        ),
        GroupEventKind::GroupEmptied { generation } => {
            tracing::info!(event = "group_emptied", group, generation, "group is empty")
        }
        GroupEventKind::GroupDeleted => {
            tracing::info!(event = "group_deleted", group, "group deleted")
        }
    }
}

/// SplitMix64: a well-spread 64-bit hash, enough to make member ids look random.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod consumer_tests;
#[cfg(test)]
mod tests;
