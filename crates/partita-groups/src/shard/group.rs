//! A group of any protocol, as a shard holds it.

use crate::classic::ClassicGroup;
use crate::consumer::ConsumerGroup;
use crate::share::group::ShareGroup;

/// A group of either protocol.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // most groups of a busy shard are classic ones
pub enum Group {
    /// A classic group, or a group that only has committed offsets.
    Classic(ClassicGroup),
    /// A consumer group of the next-generation protocol (KIP-848).
    Consumer(ConsumerGroup),
    /// A share group (KIP-932).
    Share(ShareGroup),
}

impl Group {
    /// The group id.
    pub fn group_id(&self) -> &str {
        match self {
            Group::Classic(group) => &group.group_id,
            Group::Consumer(group) => &group.group_id,
            Group::Share(group) => &group.group_id,
        }
    }

    /// Whether it has no member and none being admitted.
    pub fn is_empty(&self) -> bool {
        match self {
            Group::Classic(group) => group.is_empty(),
            Group::Consumer(group) => group.members.is_empty(),
            Group::Share(group) => group.members.is_empty(),
        }
    }

    /// `consumer` for Kafka consumers; `None` for a group that only has offsets.
    pub fn protocol_type(&self) -> Option<&str> {
        match self {
            Group::Classic(group) => group.protocol_type.as_deref(),
            Group::Consumer(_) => Some("consumer"),
            Group::Share(_) => Some("share"),
        }
    }

    /// The state's name, as ListGroups gives it.
    pub fn state_name(&self) -> &'static str {
        match self {
            Group::Classic(group) => group.state.name(),
            Group::Consumer(group) => group.state_name(),
            Group::Share(group) => group.state_name(),
        }
    }

    /// `classic` or `consumer`, as ListGroups gives it.
    pub fn kind(&self) -> &'static str {
        match self {
            Group::Classic(_) => "classic",
            Group::Consumer(_) => "consumer",
            Group::Share(_) => "share",
        }
    }

    /// When it last changed state (for a consumer group: between empty and not).
    pub fn state_timestamp(&self) -> i64 {
        match self {
            Group::Classic(group) => group.state_timestamp,
            Group::Consumer(group) => group.state_timestamp,
            Group::Share(_) => 0,
        }
    }

    /// The next instant one of its deadlines passes.
    pub fn next_deadline(&self) -> Option<i64> {
        match self {
            Group::Classic(group) => group.next_deadline(),
            Group::Consumer(group) => group.next_deadline(),
            Group::Share(group) => group.members.values().map(|m| m.session_deadline).min(),
        }
    }

    /// The classic group, if it is one.
    pub fn as_classic(&self) -> Option<&ClassicGroup> {
        match self {
            Group::Classic(group) => Some(group),
            _ => None,
        }
    }

    /// The consumer group, if it is one.
    pub fn as_consumer(&self) -> Option<&ConsumerGroup> {
        match self {
            Group::Consumer(group) => Some(group),
            _ => None,
        }
    }

    /// The share group, if it is one.
    pub fn as_share(&self) -> Option<&ShareGroup> {
        match self {
            Group::Share(group) => Some(group),
            _ => None,
        }
    }
}
