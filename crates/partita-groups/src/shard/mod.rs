//! One group coordinator shard: the groups whose `__consumer_offsets` partition it owns.
//!
//! A sans-io state machine with one door for writes. An [`Operation`] (a request, or a
//! deadline that passed) runs against the shard and comes back as a [`Staged`] write: the
//! records it wants appended, with the responses and events that follow from them. The driver
//! appends the records and hands the outcome to [`GroupShard::complete`]: once they are
//! appended the responses go out; if the append failed, the shard is put back exactly as it
//! was before the operation, and the request is answered with COORDINATOR_NOT_AVAILABLE so
//! that the client retries.
//!
//! What the records hold (committed offsets, a classic group's stored generation, everything
//! about a consumer group but its deadlines) changes only in [`GroupShard::replay`], the code
//! that also rebuilds the shard at start-up: an operation replays each record as it writes it,
//! so that its later steps see it, as Kafka's coordinator does. The rest is soft state that a
//! restart does not keep: requests waiting in a rebalance, deadlines, a classic group between
//! two stored generations.
//!
//! No sockets, no clock, no runtime: tests drive it with a virtual clock.

mod admin;
mod classic;
mod consumer;
mod deadlines;
mod group;
mod offsets;
mod operation;
mod replay;
mod share;
mod summary;
mod txn_offsets;
mod write;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::classic::{ClassicGroup, CommittedOffset, GroupState};
use crate::config::GroupConfig;
use crate::consumer::{ConsumerGroup, SharedTopics};
use crate::events::{GroupEvent, GroupEventKind};
use crate::share::partition::SharePartition;

pub use deadlines::DeadlineKey;
pub use group::Group;
pub use offsets::OffsetFetchGroup;
pub use operation::{
    BatchKind, ClientContext, HeldAnswer, Operation, Record, RecordLog, Request, Response, Token,
    TxnMarker,
};
pub use share::{
    AcknowledgementBatches, ShareAcknowledgements, ShareAcquire, ShareGroupStatus,
    SharePartitionStatus, SharePlan, SharePlanned, ShareRead, ShareSessionUpdate,
};
pub use summary::GroupSummary;
pub use write::{AppendError, Staged};

use deadlines::Deadlines;
use write::Transaction;

/// Committed offsets of one group, by topic and partition.
pub type GroupOffsets = BTreeMap<(String, i32), CommittedOffset>;

/// A committed offset's key: group, topic, partition.
type OffsetKey = (String, String, i32);

/// The offsets one producer committed inside its transaction, not yet ended.
pub type PendingOffsets = BTreeMap<(String, String, i32), CommittedOffset>;

/// The share-partitions of one share group, by topic id and partition.
pub type SharePartitions = BTreeMap<(Uuid, i32), SharePartition>;

/// The state of one coordinator shard.
pub struct GroupShard {
    config: GroupConfig,
    groups: HashMap<String, Group>,
    offsets: HashMap<String, GroupOffsets>,
    /// Offsets committed inside transactions still under way, by producer id; changed only
    /// by replaying their records and the transactions' markers.
    pending_offsets: HashMap<i64, PendingOffsets>,
    /// Offset records replayed so far, to order them ([`CommittedOffset::order`]).
    offset_records: u64,
    /// Share-partitions by share group; changed only by replaying their snapshots.
    share_partitions: HashMap<String, SharePartitions>,
    /// `share.auto.offset.reset=earliest` by group; changed only by replaying a record.
    /// Each group's configs set with IncrementalAlterConfigs, from `__share_group_state`.
    group_configs: HashMap<String, BTreeMap<String, String>>,
    topics: SharedTopics,
    deadlines: Deadlines,
    /// The operation running now: what it wrote, answered and would undo.
    transaction: Transaction,
    /// Events of completed operations, for the driver to take.
    events: Vec<GroupEvent>,
    /// Groups changed since their summaries were last taken.
    changed: BTreeSet<String>,
    id_seed: u64,
    ids_issued: u64,
}

impl GroupShard {
    /// A shard with no groups. `id_seed` makes the member ids it hands out unique across
    /// restarts; tests pass a constant to get the same ids every run.
    pub fn new(config: GroupConfig, id_seed: u64) -> GroupShard {
        let mut deadlines = Deadlines::default();
        deadlines.set(
            DeadlineKey::OffsetsExpiry,
            Some(config.offsets_retention_check_interval_ms),
        );
        GroupShard {
            config,
            groups: HashMap::new(),
            offsets: HashMap::new(),
            pending_offsets: HashMap::new(),
            offset_records: 0,
            share_partitions: HashMap::new(),
            group_configs: HashMap::new(),
            topics: SharedTopics::default(),
            deadlines,
            transaction: Transaction::default(),
            events: Vec::new(),
            changed: BTreeSet::new(),
            id_seed,
            ids_issued: 0,
        }
    }

    /// Runs one operation. Nothing it answers is final until [`GroupShard::complete`] is
    /// called with the outcome of appending [`Staged::records`]; no other operation may run
    /// in between.
    pub fn execute(&mut self, now: i64, operation: Operation) -> Staged {
        match operation {
            Operation::Request {
                token,
                client,
                request,
            } => {
                if let Some(group_id) = request.group_id() {
                    // Whatever the request changes in its group is undone if its records
                    // cannot be appended.
                    self.remember_group(group_id);
                }
                let kind = write::RequestKind::of(&request);
                self.transaction.trigger = Some((token, kind));
                self.handle(now, token, &client, request);
            }
            Operation::Deadline(key) => self.run_deadline(now, &key),
        }
        self.settle_held_heartbeats(now);
        self.stage()
    }

    fn handle(&mut self, now: i64, token: Token, client: &ClientContext, request: Request) {
        match request {
            Request::JoinGroup(request, version) => {
                self.join_group(now, token, version, client, request)
            }
            Request::SyncGroup(request, version) => self.sync_group(now, token, version, request),
            Request::Heartbeat(request) => self.heartbeat(now, token, request),
            Request::LeaveGroup(request, version) => self.leave_group(now, token, version, request),
            Request::OffsetCommit(request, version) => {
                self.offset_commit(now, token, version, request)
            }
            Request::OffsetFetch(request) => self.offset_fetch(token, request),
            Request::OffsetDelete(request) => self.offset_delete(now, token, request),
            Request::TxnOffsetCommit(request, version) => {
                self.txn_offset_commit(now, token, version, request)
            }
            Request::TxnMarker(marker) => self.txn_marker(now, token, marker),
            Request::DescribeGroup(group_id) => self.describe_group(token, &group_id),
            Request::ListGroups(states, types) => self.list_groups(token, &states, &types),
            Request::ConsumerGroupHeartbeat(request, version, topics) => {
                self.topics = topics;
                self.consumer_heartbeat(now, token, version, client, request, false)
            }
            Request::ConsumerGroupHeartbeatMayWait(request, version, topics) => {
                self.topics = topics;
                self.consumer_heartbeat(now, token, version, client, request, true)
            }
            Request::ReleaseConsumerGroupHeartbeat(group_id, member_id) => {
                self.release_held_heartbeat(now, &group_id, &member_id);
                self.respond(token, Response::Done(0));
            }
            Request::ConsumerGroupDescribe(group_id, topics) => {
                self.topics = topics;
                self.consumer_group_describe(token, &group_id)
            }
            Request::DeleteGroup(group_id) => self.delete_group(now, token, &group_id),
            Request::TopicDeleted(topic) => self.topic_deleted(now, token, &topic),
            #[cfg(feature = "fault-injection")]
            Request::Panic(group_id) => panic!("failure injected in group {group_id}"),
            share => self.handle_share(now, token, client, share),
        }
    }

    /// A deadline of one group passed: session timeouts, join and sync deadlines; or the
    /// periodic offset expiry.
    fn run_deadline(&mut self, now: i64, key: &DeadlineKey) {
        match key {
            DeadlineKey::Group(group_id) => {
                self.remember_group(group_id);
                match self.groups.get(group_id) {
                    Some(Group::Classic(_)) => {
                        self.expire_members(now, group_id);
                        self.run_join_deadline(now, group_id);
                        self.run_sync_deadline(now, group_id);
                    }
                    Some(Group::Consumer(_)) => self.expire_consumer_members(now, group_id),
                    Some(Group::Share(_)) => self.expire_share_group(now, group_id),
                    None => {}
                }
            }
            DeadlineKey::OffsetsExpiry => {
                self.expire_offsets(now);
                let next = now + self.config.offsets_retention_check_interval_ms;
                self.transaction.next_offsets_expiry = Some(next);
            }
        }
    }

    /// The operation whose deadline has passed at `now`, if any; run it with
    /// [`GroupShard::execute`].
    pub fn next_due(&self, now: i64) -> Option<Operation> {
        self.deadlines.due(now).map(Operation::Deadline)
    }

    /// The next instant at which [`GroupShard::next_due`] has something to give.
    pub fn next_deadline(&self) -> Option<i64> {
        self.deadlines.next()
    }

    /// The groups of this shard, for describing and for metrics.
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    /// One group's committed offsets.
    pub fn offsets(&self, group_id: &str) -> Option<&GroupOffsets> {
        self.offsets.get(group_id)
    }

    /// One share group's share-partitions.
    pub fn share_partitions(&self, group_id: &str) -> Option<&SharePartitions> {
        self.share_partitions.get(group_id)
    }

    /// The group events of completed operations since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<GroupEvent> {
        std::mem::take(&mut self.events)
    }

    /// Records a group event; it is logged and kept once the operation completes.
    fn emit(&mut self, now: i64, group_id: &str, kind: GroupEventKind) {
        self.transaction.events.push(GroupEvent {
            at_ms: now,
            group_id: group_id.to_string(),
            kind,
        });
    }

    /// Queues a response.
    fn respond(&mut self, token: Token, response: Response) {
        self.transaction.responses.push((token, response));
    }

    /// The classic group `group_id`, which the caller knows exists.
    fn classic(&self, group_id: &str) -> &ClassicGroup {
        match self.groups.get(group_id) {
            Some(Group::Classic(group)) => group,
            _ => panic!("classic group {group_id} exists"),
        }
    }

    /// The classic group `group_id`, which the caller knows exists.
    fn classic_mut(&mut self, group_id: &str) -> &mut ClassicGroup {
        match self.groups.get_mut(group_id) {
            Some(Group::Classic(group)) => group,
            _ => panic!("classic group {group_id} exists"),
        }
    }

    /// The consumer group `group_id`, which the caller knows exists.
    /// A config set on `group_id` with IncrementalAlterConfigs, if set.
    fn group_config(&self, group_id: &str, name: &str) -> Option<&str> {
        self.group_configs
            .get(group_id)?
            .get(name)
            .map(String::as_str)
    }

    /// A numeric group config, or `default` when it is not set (or not a number, which
    /// IncrementalAlterConfigs refuses).
    fn group_config_i32(&self, group_id: &str, name: &str, default: i32) -> i32 {
        self.group_config(group_id, name)
            .and_then(|value| value.parse().ok())
            .unwrap_or(default)
    }

    fn consumer_group_mut(&mut self, group_id: &str) -> &mut ConsumerGroup {
        match self.groups.get_mut(group_id) {
            Some(Group::Consumer(group)) => group,
            _ => panic!("consumer group {group_id} exists"),
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

    /// The error for a request naming a classic group that does not exist (or is not a
    /// classic group).
    fn error_for_missing_classic_group(&self, group_id: &str) -> Option<ResponseError> {
        match self.groups.get(group_id) {
            None | Some(Group::Consumer(_) | Group::Share(_)) => {
                Some(ResponseError::UnknownMemberId)
            }
            Some(Group::Classic(group)) if group.state == GroupState::Dead => {
                Some(ResponseError::CoordinatorNotAvailable)
            }
            Some(Group::Classic(_)) => None,
        }
    }
}

/// One structured log line per group event.
fn log_event(event: &GroupEvent) {
    let group = event.group_id.as_str();
    match &event.kind {
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
mod harness;
#[cfg(test)]
mod properties;
#[cfg(test)]
mod share_tests;
#[cfg(test)]
mod tests;
