//! The classic group (JoinGroup / SyncGroup / Heartbeat / LeaveGroup): its members, its
//! states and the bookkeeping of a rebalance. The transitions themselves live in
//! [`crate::shard`], which owns the groups.
//!
//! Most of a classic group is soft state: members waiting in a rebalance, deadlines. What
//! survives a restart is its last `GroupMetadata` record ([`ClassicGroup::stored`]), written
//! when a generation's assignment is complete and when the group empties; a group loaded
//! from it starts Stable (or Empty) at that generation, as in Kafka.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;

use crate::records::GroupMetadataValue;
use crate::shard::Token;

/// The states of a classic group, as Kafka names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    /// No members; offsets may still be committed (for example by consumers that assign
    /// partitions themselves).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Everyone has joined; waiting for the leader's assignment in SyncGroup.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// Deleted, or about to be.
    Dead,
}

impl GroupState {
    /// The name DescribeGroups and ListGroups give this state.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A request whose response is held back until the group moves on.
#[derive(Clone, Copy, Debug)]
pub struct Waiting {
    /// Identifies the request to the driver.
    pub token: Token,
    /// The request's API version.
    pub version: i16,
}

/// One member of a classic group.
#[derive(Clone, Debug)]
pub struct Member {
    /// The member id the coordinator gave it.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    /// The client's `client.id`.
    pub client_id: String,
    /// The client's address, as the coordinator saw it.
    pub client_host: String,
    /// How long a rebalance may wait for this member (`max.poll.interval.ms`).
    pub rebalance_timeout_ms: i32,
    /// How long the member may go without a heartbeat.
    pub session_timeout_ms: i32,
    /// The protocols (assignors) it supports, in its order of preference, with metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// Its assignment from the last completed SyncGroup.
    pub assignment: Bytes,
    /// Its JoinGroup waiting for the rebalance to complete.
    pub awaiting_join: Option<Waiting>,
    /// Its SyncGroup waiting for the leader's assignment.
    pub awaiting_sync: Option<Waiting>,
    /// When it is evicted unless it heartbeats (or joins, syncs, commits) before.
    pub session_deadline: i64,
    /// Joined during the current rebalance and has not finished one yet.
    pub is_new: bool,
}

impl Member {
    /// The metadata it sent for `protocol`.
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    /// A member waiting in a rebalance is not expired by its session timeout: the rebalance
    /// timeout governs it. New members get a bounded wait of their own.
    pub fn keeps_alive(&self) -> bool {
        (self.awaiting_join.is_some() && !self.is_new) || self.awaiting_sync.is_some()
    }

    /// Whether it sent exactly these protocols, with the same metadata, last time.
    pub fn same_protocols(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }
}

/// A committed offset, as stored in `__consumer_offsets`.
#[derive(Clone, Debug, Eq)]
pub struct CommittedOffset {
    /// The next offset the group will read.
    pub offset: i64,
    /// The leader epoch of the record before it, or -1.
    pub leader_epoch: i32,
    /// Free-form metadata from the committer.
    pub metadata: String,
    /// When it was committed.
    pub commit_timestamp: i64,
    /// When it expires, for commits that asked for a retention time (OffsetCommit v2-v4).
    pub expire_timestamp: Option<i64>,
    /// Where its record stands among the shard's offset records (a count, not a log
    /// offset): an offset committed inside a transaction replaces the group's when the
    /// transaction commits only if its record came later. Not part of what was committed.
    pub order: u64,
}

impl PartialEq for CommittedOffset {
    fn eq(&self, other: &CommittedOffset) -> bool {
        self.offset == other.offset
            && self.leader_epoch == other.leader_epoch
            && self.metadata == other.metadata
            && self.commit_timestamp == other.commit_timestamp
            && self.expire_timestamp == other.expire_timestamp
    }
}

/// A classic group.
#[derive(Clone, Debug)]
pub struct ClassicGroup {
    /// The group id.
    pub group_id: String,
    /// Its state.
    pub state: GroupState,
    /// Incremented by every completed join phase.
    pub generation_id: i32,
    /// `consumer` for Kafka consumers; set by the first member, checked for the others.
    pub protocol_type: Option<String>,
    /// The protocol (assignor) chosen for the current generation.
    pub protocol: Option<String>,
    /// The member that computes the assignment.
    pub leader: Option<String>,
    /// Members by member id.
    pub members: BTreeMap<String, Member>,
    /// Static members: instance id to member id.
    pub static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with the deadline to come back by.
    pub pending_members: HashMap<String, i64>,
    /// Members of the current generation that have not sent their SyncGroup yet.
    pub pending_sync: BTreeSet<String>,
    /// When the join phase completes at the latest.
    pub join_deadline: Option<i64>,
    /// Remaining extension of the initial rebalance delay, and whether a member joined
    /// during the current delay.
    pub initial_delay: Option<InitialDelay>,
    /// When the leader's SyncGroup is due at the latest.
    pub sync_deadline: Option<i64>,
    /// When the group entered its current state.
    pub state_timestamp: i64,
    /// When the rebalance in progress started, and why.
    pub rebalance: Option<(i64, crate::events::RebalanceCause)>,
    /// The group's last `GroupMetadata` record, as appended; changed only by replaying one.
    pub stored: Option<GroupMetadataValue>,
}

/// The initial rebalance delay of a group that starts empty (KIP-134).
#[derive(Clone, Copy, Debug)]
pub struct InitialDelay {
    /// Time still available to extend the delay, up to the rebalance timeout.
    pub remaining_ms: i64,
    /// Whether a new member joined during the delay now running.
    pub member_joined: bool,
}

impl ClassicGroup {
    /// A new, empty group.
    pub fn new(group_id: &str, now: i64) -> ClassicGroup {
        ClassicGroup {
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            pending_sync: BTreeSet::new(),
            join_deadline: None,
            initial_delay: None,
            sync_deadline: None,
            state_timestamp: now,
            rebalance: None,
            stored: None,
        }
    }

    /// A group as its `GroupMetadata` record describes it, at start-up: Stable at the stored
    /// generation (Empty without members); members get a full session timeout from `now`.
    pub fn from_record(group_id: &str, value: GroupMetadataValue, now: i64) -> ClassicGroup {
        let mut group = ClassicGroup::new(group_id, now);
        group.generation_id = value.generation;
        group.protocol_type =
            (!value.protocol_type.is_empty()).then(|| value.protocol_type.clone());
        group.protocol = value.protocol.clone();
        group.leader = value.leader.clone();
        let protocol = value.protocol.clone().unwrap_or_default();
        for m in &value.members {
            if let Some(instance) = &m.group_instance_id {
                group
                    .static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            group.members.insert(
                m.member_id.clone(),
                Member {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout,
                    session_timeout_ms: m.session_timeout,
                    protocols: vec![(protocol.clone(), Bytes::from(m.subscription.clone()))],
                    assignment: Bytes::from(m.assignment.clone()),
                    awaiting_join: None,
                    awaiting_sync: None,
                    session_deadline: now + i64::from(m.session_timeout),
                    is_new: false,
                },
            );
        }
        let state = if group.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        group.transition(state, now);
        if value.current_state_timestamp > 0 {
            group.state_timestamp = value.current_state_timestamp;
        }
        group.stored = Some(value);
        group
    }

    /// The `GroupMetadata` record of the group as it is now: generation, protocol, leader,
    /// members and their assignments.
    pub fn metadata_record(&self) -> GroupMetadataValue {
        let protocol = self.protocol.clone().unwrap_or_default();
        GroupMetadataValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation_id,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            current_state_timestamp: self.state_timestamp,
            members: self
                .members
                .values()
                .map(|m| crate::records::MemberMetadata {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout: m.rebalance_timeout_ms,
                    session_timeout: m.session_timeout_ms,
                    subscription: m.metadata_for(&protocol).to_vec(),
                    assignment: m.assignment.to_vec(),
                })
                .collect(),
        }
    }

    /// The next instant one of this group's deadlines passes: a session, a member id handed
    /// out and not used, the join or sync phase.
    pub fn next_deadline(&self) -> Option<i64> {
        // Only deadlines that the timer acts on: one it would ignore would wake it forever.
        let members = self
            .members
            .values()
            .filter(|m| !m.keeps_alive())
            .map(|m| m.session_deadline);
        let pending = self.pending_members.values().copied();
        let join = self
            .join_deadline
            .filter(|_| self.state == GroupState::PreparingRebalance);
        let sync = self.sync_deadline.filter(|_| {
            matches!(
                self.state,
                GroupState::CompletingRebalance | GroupState::Stable
            ) && !self.pending_sync.is_empty()
        });
        members.chain(pending).chain(join).chain(sync).min()
    }

    /// Moves to `state`, remembering when.
    pub fn transition(&mut self, state: GroupState, now: i64) {
        self.state = state;
        self.state_timestamp = now;
    }

    /// Whether the group has no member and no member being admitted.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending_members.is_empty()
    }

    /// Members plus ids handed out and not yet used.
    pub fn size(&self) -> usize {
        self.members.len() + self.pending_members.len()
    }

    /// Whether every member has rejoined and nobody is still being admitted.
    pub fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    /// The longest rebalance timeout of any member: how long a join phase may last.
    pub fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// The protocol every member supports that gets the most votes, each member voting for
    /// the first of its protocols that all support; ties go to the earliest listed.
    pub fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(name, _)| name)
            .filter(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == *name))
            })
            .collect();
        let mut votes: Vec<(usize, &String)> = candidates.iter().map(|c| (0, *c)).collect();
        for member in self.members.values() {
            if let Some((name, _)) = member
                .protocols
                .iter()
                .find(|(n, _)| candidates.contains(&n))
            {
                if let Some(vote) = votes.iter_mut().find(|(_, c)| *c == name) {
                    vote.0 += 1;
                }
            }
        }
        // max_by_key keeps the last maximum; iterate reversed so ties go to the first.
        votes
            .iter()
            .rev()
            .max_by_key(|(count, _)| *count)
            .map(|(_, name)| (*name).clone())
    }

    /// Whether a joining member's protocol type and protocols fit the group.
    pub fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocols.is_empty() || protocol_type.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
    }

    /// The topics the members subscribe to, when they speak the consumer protocol.
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol.as_deref()?;
        let mut topics = BTreeSet::new();
        for member in self.members.values() {
            topics.extend(crate::consumer_protocol::subscribed_topics(
                &member.metadata_for(protocol),
            )?);
        }
        Some(topics)
    }
}
