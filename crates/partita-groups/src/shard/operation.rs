//! What goes in and out of a shard: requests, responses, operations and the records they write.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::*;
use uuid::Uuid;

use super::{
    DeadlineKey, OffsetFetchGroup, ShareAcknowledgements, ShareAcquire, ShareGroupStatus,
    SharePlan, SharePlanned, ShareSessionUpdate,
};
use crate::consumer::SharedTopics;
use crate::share::group::ShareRequestError;
use crate::share::partition::AcquiredRange;

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

/// Why a held ConsumerGroupHeartbeat was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeldAnswer {
    /// Something changed for its member (or the member is gone).
    Changed,
    /// Its client sent another request, or another heartbeat.
    Released,
    /// The member's next heartbeat was about to be due.
    Due,
}

impl HeldAnswer {
    /// A stable, lower-case name for metric labels.
    pub fn name(self) -> &'static str {
        match self {
            HeldAnswer::Changed => "changed",
            HeldAnswer::Released => "released",
            HeldAnswer::Due => "due",
        }
    }
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
    /// TxnOffsetCommit at the given version, its transaction already checked with its
    /// coordinator.
    TxnOffsetCommit(TxnOffsetCommitRequest, i16),
    /// A transaction of a producer that committed offsets of this shard's groups ended: its
    /// marker is written to the shard's partition.
    TxnMarker(TxnMarker),
    /// DescribeGroups for one group.
    DescribeGroup(String),
    /// ListGroups, with the states and types filters (empty: all).
    ListGroups(Vec<String>, Vec<String>),
    /// ConsumerGroupHeartbeat at the given version, with the topics as the broker knows them.
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest, i16, SharedTopics),
    /// ConsumerGroupHeartbeat whose answer may wait until something changes for its member
    /// (the client sent nothing after it yet); see [`crate::consumer::ConsumerGroup::held`].
    ConsumerGroupHeartbeatMayWait(ConsumerGroupHeartbeatRequest, i16, SharedTopics),
    /// The member's client sent another request on the connection of its held heartbeat:
    /// the heartbeat is answered now (group id, member id).
    ReleaseConsumerGroupHeartbeat(String, String),
    /// ConsumerGroupDescribe for one group.
    ConsumerGroupDescribe(String, SharedTopics),
    /// DeleteGroups for one group.
    DeleteGroup(String),
    /// A topic was deleted: every group of this shard forgets its committed offsets.
    TopicDeleted(String),
    /// ShareGroupHeartbeat, with the topics as the broker knows them.
    ShareGroupHeartbeat(ShareGroupHeartbeatRequest, SharedTopics),
    /// ShareGroupDescribe for one group.
    ShareGroupDescribe(String, SharedTopics),
    /// The share session part of a ShareFetch or ShareAcknowledge.
    ShareSession(ShareSessionUpdate),
    /// Acknowledgements of a ShareFetch or ShareAcknowledge.
    ShareAcknowledge(ShareAcknowledgements),
    /// Where a ShareFetch should read each of its partitions.
    SharePlan(SharePlan),
    /// Acquires records a ShareFetch has read.
    ShareAcquire(ShareAcquire),
    /// Replaces a group's configs (name to value; none left deletes them).
    SetGroupConfig(String, BTreeMap<String, String>),
    /// A group's configs set with IncrementalAlterConfigs.
    GroupConfig(String),
    /// A share group's members and share-partitions, for describing it.
    ShareGroupStatus(String),
    /// Makes the shard panic in the middle of an operation on the group (tests only).
    #[cfg(feature = "fault-injection")]
    Panic(String),
}

impl Request {
    /// The group the request is about, if it is about one.
    pub(super) fn group_id(&self) -> Option<&str> {
        match self {
            Request::JoinGroup(r, _) => Some(r.group_id.as_str()),
            Request::SyncGroup(r, _) => Some(r.group_id.as_str()),
            Request::Heartbeat(r) => Some(r.group_id.as_str()),
            Request::LeaveGroup(r, _) => Some(r.group_id.as_str()),
            Request::OffsetCommit(r, _) => Some(r.group_id.as_str()),
            Request::OffsetFetch(r) => Some(&r.group_id),
            Request::OffsetDelete(r) => Some(r.group_id.as_str()),
            Request::TxnOffsetCommit(r, _) => Some(r.group_id.as_str()),
            Request::DescribeGroup(group_id) | Request::DeleteGroup(group_id) => Some(group_id),
            Request::ConsumerGroupHeartbeat(r, _, _)
            | Request::ConsumerGroupHeartbeatMayWait(r, _, _) => Some(r.group_id.as_str()),
            Request::ReleaseConsumerGroupHeartbeat(group_id, _) => Some(group_id),
            Request::ConsumerGroupDescribe(group_id, _) => Some(group_id),
            Request::ShareGroupHeartbeat(r, _) => Some(r.group_id.as_str()),
            Request::ShareGroupDescribe(group_id, _)
            | Request::SetGroupConfig(group_id, _)
            | Request::GroupConfig(group_id)
            | Request::ShareGroupStatus(group_id) => Some(group_id),
            #[cfg(feature = "fault-injection")]
            Request::Panic(group_id) => Some(group_id),
            Request::ShareSession(r) => Some(&r.group_id),
            Request::ShareAcknowledge(r) => Some(&r.group_id),
            Request::SharePlan(r) => Some(&r.group_id),
            Request::ShareAcquire(r) => Some(&r.group_id),
            Request::ListGroups(..) | Request::TopicDeleted(_) | Request::TxnMarker(_) => None,
        }
    }
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
    /// For TxnOffsetCommit.
    TxnOffsetCommit(TxnOffsetCommitResponse),
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
    /// For a ConsumerGroupHeartbeat that was held, and why it was answered.
    HeldConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse, HeldAnswer),
    /// For one group of a ConsumerGroupDescribe.
    ConsumerGroupDescribe(consumer_group_describe_response::DescribedGroup),
    /// For ShareGroupHeartbeat.
    ShareGroupHeartbeat(ShareGroupHeartbeatResponse),
    /// For one group of a ShareGroupDescribe.
    ShareGroupDescribe(share_group_describe_response::DescribedGroup),
    /// For a share session update: the session's partitions, or why not.
    ShareSession(Result<BTreeSet<(Uuid, i32)>, ShareRequestError>),
    /// For acknowledgements: an error code per partition.
    ShareAcknowledged(Vec<((Uuid, i32), i16)>),
    /// For [`Request::SharePlan`].
    SharePlanned(SharePlanned),
    /// For [`Request::ShareAcquire`]: the records acquired, per partition.
    ShareAcquired(Vec<((Uuid, i32), Vec<AcquiredRange>)>),
    /// For a request that only changes something: its error code.
    Done(i16),
    /// For [`Request::GroupConfig`]: the group's configs that were set.
    GroupConfig(BTreeMap<String, String>),
    /// For [`Request::ShareGroupStatus`]: `None` if there is no such share group.
    ShareGroupStatus(Option<Box<ShareGroupStatus>>),
}

/// Something for the shard to do.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // short-lived: built, executed, dropped
pub enum Operation {
    /// A client's request; its response goes to `token`.
    Request {
        /// Where the response goes.
        token: Token,
        /// Who sent it.
        client: ClientContext,
        /// The request.
        request: Request,
    },
    /// A deadline passed (see [`GroupShard::next_due`]).
    Deadline(DeadlineKey),
}

/// The end of a producer's transaction in the shard's `__consumer_offsets` partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnMarker {
    /// The producer whose transaction ended.
    pub producer_id: i64,
    /// Its epoch, as the transaction coordinator ended it.
    pub producer_epoch: i16,
    /// Committed (its offsets become the group's) or aborted (they are dropped).
    pub commit: bool,
    /// The epoch of the transaction coordinator that ended it.
    pub coordinator_epoch: i32,
}

/// How an operation's `__consumer_offsets` records are to be appended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BatchKind {
    /// As a plain batch.
    #[default]
    Plain,
    /// In a transactional batch of this producer: offsets committed inside its transaction.
    Transactional {
        /// The producer.
        producer_id: i64,
        /// Its epoch.
        producer_epoch: i16,
    },
    /// As a transaction marker (the operation writes no record of its own).
    Marker(TxnMarker),
}

/// The internal topic a shard's record belongs in: its partition of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordLog {
    /// `__consumer_offsets`: offsets and group records, in Kafka's format.
    ConsumerOffsets,
    /// `__share_group_state`: share-partition state and share group settings.
    ShareGroupState,
}

/// A record of the shard: where it goes, key, and value or `None` for a tombstone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The internal topic it belongs in.
    pub log: RecordLog,
    /// The encoded key.
    pub key: Vec<u8>,
    /// The encoded value, or `None` for a tombstone.
    pub value: Option<Vec<u8>>,
}
