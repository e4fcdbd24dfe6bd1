//! A share group's membership and share sessions (KIP-932), and share-group settings.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::partition::SharePartitionConfig;
use crate::consumer::TopicsImage;

/// A share-partition: group, topic id, partition.
pub type SharePartitionKey = (String, Uuid, i32);

/// Settings of share groups, with Kafka's property names.
#[derive(Clone, Debug)]
pub struct ShareConfig {
    /// `group.share.heartbeat.interval.ms`.
    pub heartbeat_interval_ms: i32,
    /// `group.share.session.timeout.ms`.
    pub session_timeout_ms: i64,
    /// Record locks, delivery limit and window size.
    pub partition: SharePartitionConfig,
}

impl Default for ShareConfig {
    fn default() -> Self {
        ShareConfig {
            heartbeat_interval_ms: 5_000,
            session_timeout_ms: 45_000,
            partition: SharePartitionConfig::default(),
        }
    }
}

/// A member of a share group.
#[derive(Clone, Debug)]
pub struct ShareMember {
    /// Its member id (chosen by the client).
    pub member_id: String,
    /// Its `client.id`.
    pub client_id: String,
    /// Its address.
    pub client_host: String,
    /// Topics it subscribes to.
    pub subscribed: Vec<String>,
    /// Evicted unless it heartbeats before.
    pub session_deadline: i64,
    /// The assignment last sent to it.
    pub last_sent: Option<(i32, BTreeSet<(Uuid, i32)>)>,
}

/// A share group: its members and their share sessions. Its share-partitions and its
/// configuration are kept by the shard beside it, as records replay them.
#[derive(Clone, Debug, Default)]
pub struct ShareGroup {
    /// The group id.
    pub group_id: String,
    /// Bumped by every change of membership or subscriptions.
    pub epoch: i32,
    /// Members by id.
    pub members: BTreeMap<String, ShareMember>,
    /// Share sessions by member id; a session may outlive its member's leave, so that a
    /// final ShareAcknowledge can close it.
    pub sessions: BTreeMap<String, ShareSession>,
}

impl ShareGroup {
    /// A share group with no members.
    pub fn new(group_id: &str) -> ShareGroup {
        ShareGroup {
            group_id: group_id.to_string(),
            ..ShareGroup::default()
        }
    }

    /// `Empty` or `Stable`: every member is assigned every partition, so a share group never
    /// rebalances.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else {
            "Stable"
        }
    }

    /// The partitions `member` is assigned: every partition of the topics it subscribes to.
    pub fn assignment(member: &ShareMember, topics: &TopicsImage) -> BTreeSet<(Uuid, i32)> {
        member
            .subscribed
            .iter()
            .filter_map(|name| topics.by_name.get(name))
            .flat_map(|t| (0..t.partitions).map(move |p| (t.id, p)))
            .collect()
    }
}

/// A member's share session: the partitions its fetches cover, and the session epoch.
#[derive(Clone, Debug, Default)]
pub struct ShareSession {
    /// The epoch the next request must carry.
    pub next_epoch: i32,
    /// Partitions in the session.
    pub partitions: BTreeSet<(Uuid, i32)>,
}

/// Why a share fetch or acknowledgement is refused as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareRequestError {
    /// The member is not in the group.
    UnknownMemberId,
    /// No session for this member, and the request is not opening one.
    SessionNotFound,
    /// The request's session epoch is not the expected one.
    InvalidSessionEpoch,
}

impl ShareRequestError {
    /// The Kafka error.
    pub fn response_error(self) -> ResponseError {
        match self {
            ShareRequestError::UnknownMemberId => ResponseError::UnknownMemberId,
            ShareRequestError::SessionNotFound => ResponseError::ShareSessionNotFound,
            ShareRequestError::InvalidSessionEpoch => ResponseError::InvalidShareSessionEpoch,
        }
    }
}
