//! ConsumerGroupHeartbeat (KIP-848): joining, leaving, fencing, the target assignment and
//! each member's reconciliation towards it, with Kafka's rules and error codes.
//!
//! Every change to a group is a record written through the shard's door and replayed at
//! once; what records do not hold (session and rebalance deadlines, the assignment last sent
//! to a member) is set once the records are written.

mod describe;
mod held;
mod membership;
mod records;

use std::collections::BTreeMap;

use kafka_protocol::messages::consumer_group_heartbeat_response::{
    Assignment as WireAssignment, TopicPartitions,
};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

pub(super) use describe::describe_as_classic;
pub(super) use records::group_tombstones;
#[cfg(test)]
pub(super) use records::member_metadata_value;

use super::{ClientContext, Group, GroupShard, Response, Token};
use crate::consumer::{Assignment, ConsumerGroup, ConsumerMember, HeldHeartbeat, MemberState};
use crate::events::GroupEventKind;
use records::current_assignment_record;

/// The heartbeat interval given to members while their group reconciles.
const RECONCILING_HEARTBEAT_INTERVAL_MS: i32 = 200;

/// Epoch of a member joining.
const JOIN: i32 = 0;
/// Epoch of a member leaving for good.
const LEAVE: i32 = -1;
/// Epoch of a static member leaving for now, expecting to come back.
const LEAVE_TEMPORARILY: i32 = -2;

/// A heartbeat's error: the Kafka error and its message.
type Refusal = (ResponseError, String);

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn failure(error: ResponseError, message: &str) -> Response {
    Response::ConsumerGroupHeartbeat(
        ConsumerGroupHeartbeatResponse::default()
            .with_error_code(error.code())
            .with_error_message(Some(text(message))),
    )
}

/// The fields of a heartbeat, taken out of the request.
pub(super) struct Heartbeat {
    group_id: String,
    member_id: String,
    member_epoch: i32,
    instance_id: Option<String>,
    rack_id: Option<String>,
    rebalance_timeout_ms: i32,
    subscribed_topic_names: Option<Vec<String>>,
    subscribed_topic_regex: Option<String>,
    server_assignor: Option<String>,
    owned: Option<Assignment>,
}

impl Heartbeat {
    fn from_request(request: ConsumerGroupHeartbeatRequest) -> Heartbeat {
        Heartbeat {
            group_id: request.group_id.to_string(),
            member_id: request.member_id.to_string(),
            member_epoch: request.member_epoch,
            instance_id: request.instance_id.map(|s| s.to_string()),
            rack_id: request.rack_id.map(|s| s.to_string()),
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            subscribed_topic_names: request
                .subscribed_topic_names
                .map(|names| names.iter().map(|n| n.to_string()).collect()),
            subscribed_topic_regex: request.subscribed_topic_regex.map(|s| s.to_string()),
            server_assignor: request.server_assignor.map(|s| s.to_string()),
            owned: request.topic_partitions.map(|owned| {
                owned
                    .into_iter()
                    .map(|tp| (tp.topic_id, tp.partitions.into_iter().collect()))
                    .collect()
            }),
        }
    }

    /// A request that restates everything (join, rejoin): it gets the full assignment back.
    fn is_full(&self) -> bool {
        self.rebalance_timeout_ms != -1
            && (self.subscribed_topic_names.is_some() || self.subscribed_topic_regex.is_some())
            && self.owned.is_some()
    }
}

impl GroupShard {
    pub(super) fn consumer_heartbeat(
        &mut self,
        now: i64,
        token: Token,
        version: i16,
        client: &ClientContext,
        request: ConsumerGroupHeartbeatRequest,
        may_wait: bool,
    ) {
        let kept = may_wait.then(|| request.clone());
        let mut heartbeat = Heartbeat::from_request(request);
        if let Err((error, message)) = self.validate_heartbeat(version, &heartbeat) {
            return self.respond(token, failure(error, &message));
        }
        // A client sends one heartbeat at a time: one still held is answered first.
        self.release_held_heartbeat(now, &heartbeat.group_id, &heartbeat.member_id);
        if heartbeat.member_epoch == LEAVE || heartbeat.member_epoch == LEAVE_TEMPORARILY {
            let response = self.consumer_leave(now, &heartbeat);
            return self.respond(token, response);
        }
        if heartbeat.member_id.trim().is_empty() {
            heartbeat.member_id = self.new_member_id("").trim_start_matches('-').to_string();
        }
        let (group_id, member_id) = (heartbeat.group_id.clone(), heartbeat.member_id.clone());
        let response = match (
            self.consumer_join_or_heartbeat(now, client, heartbeat),
            kept,
        ) {
            (Ok((_, Some(until))), Some(request)) => {
                let held = HeldHeartbeat {
                    token,
                    request,
                    version,
                    client: client.clone(),
                    until,
                };
                return self.hold_heartbeat(&group_id, &member_id, held);
            }
            (Ok((response, _)), _) => Response::ConsumerGroupHeartbeat(response),
            (Err((error, message)), _) => failure(error, &message),
        };
        self.respond(token, response);
    }

    /// Kafka's checks that need no group state.
    fn validate_heartbeat(
        &self,
        version: i16,
        h: &Heartbeat,
    ) -> Result<(), (ResponseError, String)> {
        let invalid = |message: &str| Err((ResponseError::InvalidRequest, message.to_string()));
        let member_id_empty = h.member_id.trim().is_empty();
        if member_id_empty && (version >= 1 || h.member_epoch > 0 || h.member_epoch == LEAVE) {
            return invalid("MemberId can't be empty.");
        }
        if h.group_id.trim().is_empty() {
            return invalid("GroupId can't be empty.");
        }
        if h.instance_id
            .as_deref()
            .is_some_and(|i| i.trim().is_empty())
        {
            return invalid("InstanceId can't be empty.");
        }
        if h.rack_id.as_deref().is_some_and(|r| r.trim().is_empty()) {
            return invalid("RackId can't be empty.");
        }
        if h.member_epoch == JOIN {
            if h.rebalance_timeout_ms == -1 {
                return invalid("RebalanceTimeoutMs must be provided in first request.");
            }
            if h.owned.as_ref().is_none_or(|owned| !owned.is_empty()) {
                return invalid("TopicPartitions must be empty when (re-)joining.");
            }
            if h.subscribed_topic_names.is_none() && h.subscribed_topic_regex.is_none() {
                return invalid(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                );
            }
        }
        if h.member_epoch == LEAVE_TEMPORARILY && h.instance_id.is_none() {
            return invalid("InstanceId can't be null when leaving with epoch -2.");
        }
        if h.member_epoch < LEAVE_TEMPORARILY {
            return invalid("MemberEpoch is invalid.");
        }
        if let Some(assignor) = &h.server_assignor {
            if !self.config.consumer_assignors.iter().any(|a| a == assignor) {
                return Err((
                    ResponseError::UnsupportedAssignor,
                    format!("ServerAssignor {assignor} is not supported."),
                ));
            }
        }
        if let Some(regex) = &h.subscribed_topic_regex {
            if regex::Regex::new(regex).is_err() {
                return Err((
                    ResponseError::InvalidRegularExpression,
                    format!("SubscribedTopicRegex {regex} is not a valid regular expression."),
                ));
            }
        }
        Ok(())
    }

    /// Epoch -1 (leave for good) or -2 (a static member leaving for now).
    fn consumer_leave(&mut self, now: i64, h: &Heartbeat) -> Response {
        let Some(Group::Consumer(group)) = self.groups.get(&h.group_id) else {
            return failure(
                ResponseError::GroupIdNotFound,
                "the group is not a consumer group",
            );
        };
        let member_id = match &h.instance_id {
            None => {
                if !group.members.contains_key(&h.member_id) {
                    return failure(ResponseError::UnknownMemberId, "unknown member");
                }
                h.member_id.clone()
            }
            Some(instance) => match group.static_members.get(instance) {
                None => return failure(ResponseError::UnknownMemberId, "unknown instance"),
                Some(owner) if *owner != h.member_id => {
                    return failure(
                        ResponseError::FencedInstanceId,
                        "the instance id belongs to another member",
                    )
                }
                Some(owner) => owner.clone(),
            },
        };
        if h.member_epoch == LEAVE_TEMPORARILY {
            let mut member = group.members[&member_id].clone();
            member.member_epoch = LEAVE_TEMPORARILY;
            member.pending_revocation.clear();
            let (key, value) = current_assignment_record(&h.group_id, &member);
            self.write(now, key, value);
            let group = self.consumer_group_mut(&h.group_id);
            if let Some(member) = group.members.get_mut(&member_id) {
                member.rebalance_deadline = None;
            }
            let left = GroupEventKind::MemberLeft {
                member_id: member_id.clone(),
            };
            self.emit(now, &h.group_id, left);
        } else {
            self.fence_consumer_member(now, &h.group_id, &member_id, None);
        }
        Response::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatResponse::default()
                .with_member_id(Some(text(&member_id)))
                .with_member_epoch(h.member_epoch),
        )
    }

    /// A join, a rejoin or a heartbeat: the member is admitted or updated, the group epoch
    /// bumped if membership or subscriptions changed, the target assignment recomputed if
    /// the group moved on, and the member moved a step towards its target. With the answer,
    /// until when it may be held, if it brings the member nothing new (see `held`).
    fn consumer_join_or_heartbeat(
        &mut self,
        now: i64,
        client: &ClientContext,
        h: Heartbeat,
    ) -> Result<(ConsumerGroupHeartbeatResponse, Option<i64>), Refusal> {
        let group_id = h.group_id.clone();
        self.prepare_consumer_group(now, &group_id, h.member_epoch)?;
        let admitted = self.admit_member(now, client, &h)?;
        self.note_new_regex(&group_id, &admitted);
        self.bump_group_epoch_if_needed(now, &group_id, admitted.cause);
        self.refresh_target_assignment(now, &group_id);
        let member = self.reconcile_member(now, &h, &admitted);
        self.maybe_complete_consumer_rebalance(now, &group_id);
        // What this member is sent is settled: a resolution now reaches it at its next
        // heartbeat, which comes soon since the group is then assigning.
        self.refresh_regexes(now, &group_id);
        // While partitions are moving, members heartbeat faster, so that a revoked partition
        // reaches its new owner in a fraction of the configured interval.
        let interval = self.group_config_i32(
            &group_id,
            crate::config::CONSUMER_HEARTBEAT_INTERVAL_MS,
            self.config.consumer_heartbeat_interval_ms,
        );
        let interval = if self.consumer_group_mut(&group_id).state_name() == "Stable" {
            interval
        } else {
            interval.min(RECONCILING_HEARTBEAT_INTERVAL_MS)
        };
        let told_before = match self
            .consumer_group_mut(&group_id)
            .members
            .get_mut(&member.member_id)
        {
            Some(stored) => std::mem::replace(&mut stored.heartbeat_interval_ms, interval),
            None => 0,
        };
        let answer = (member.member_epoch, member.send.is_some());
        let hold_until = self.may_hold_until(now, &h, answer, (told_before, interval));
        let mut response = ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(text(&member.member_id)))
            .with_member_epoch(member.member_epoch)
            .with_heartbeat_interval_ms(interval);
        if let Some(assignment) = member.send {
            response = response.with_assignment(Some(wire_assignment(&assignment)));
        }
        Ok((response, hold_until))
    }
}

/// A dynamic or static member joining for the first time.
pub(super) fn new_member(h: &Heartbeat, client: &ClientContext) -> ConsumerMember {
    ConsumerMember {
        member_id: h.member_id.clone(),
        instance_id: h.instance_id.clone(),
        rack_id: h.rack_id.clone(),
        client_id: client.client_id.clone(),
        client_host: client.client_host.clone(),
        rebalance_timeout_ms: h.rebalance_timeout_ms,
        subscribed_topic_names: Vec::new(),
        subscribed_topic_regex: None,
        server_assignor: h.server_assignor.clone(),
        member_epoch: JOIN,
        previous_member_epoch: -1,
        state: MemberState::Stable,
        assigned: Assignment::new(),
        pending_revocation: Assignment::new(),
        session_deadline: 0,
        rebalance_deadline: None,
        last_sent: None,
        left_temporarily: false,
        heartbeat_interval_ms: 0,
    }
}

/// Kafka's epoch check: a newer epoch than the member's is fenced; an older one only passes
/// if it is the previous epoch and the member owns no more than it is assigned (the response
/// that moved it on may have been lost). A rejoin with epoch 0 is always accepted.
pub(super) fn check_member_epoch(
    member: &ConsumerMember,
    h: &Heartbeat,
) -> Result<(), (ResponseError, String)> {
    let fenced = || {
        Err((
            ResponseError::FencedMemberEpoch,
            "the member epoch is stale".to_string(),
        ))
    };
    if h.member_epoch == JOIN {
        return Ok(());
    }
    if h.member_epoch > member.member_epoch {
        return fenced();
    }
    if h.member_epoch < member.member_epoch {
        let owns_subset = h.owned.as_ref().is_some_and(|owned| {
            owned.iter().all(|(topic, partitions)| {
                partitions.is_empty()
                    || member
                        .assigned
                        .get(topic)
                        .is_some_and(|assigned| partitions.is_subset(assigned))
            })
        });
        if h.member_epoch != member.previous_member_epoch || !owns_subset {
            return fenced();
        }
    }
    Ok(())
}

pub(super) fn reconciled_changed(before: &ConsumerMember, after: &ConsumerMember) -> bool {
    before.member_epoch != after.member_epoch
        || before.state != after.state
        || before.assigned != after.assigned
        || before.pending_revocation != after.pending_revocation
}

/// The assignor most members ask for, if any asks.
pub(super) fn preferred_assignor(group: &ConsumerGroup) -> Option<String> {
    let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
    for member in group.members.values() {
        if let Some(assignor) = &member.server_assignor {
            *votes.entry(assignor).or_default() += 1;
        }
    }
    votes
        .into_iter()
        .max_by_key(|(name, count)| (*count, std::cmp::Reverse(*name)))
        .map(|(name, _)| name.to_string())
}

fn wire_assignment(assignment: &Assignment) -> WireAssignment {
    WireAssignment::default().with_topic_partitions(
        assignment
            .iter()
            .map(|(topic, partitions)| {
                TopicPartitions::default()
                    .with_topic_id(*topic)
                    .with_partitions(partitions.iter().copied().collect())
            })
            .collect(),
    )
}

/// An assignment with topic names, for events and describes.
pub(in crate::shard) fn named_partitions(
    assignment: &Assignment,
    topics: &crate::consumer::TopicsImage,
) -> Vec<(String, Vec<i32>)> {
    assignment
        .iter()
        .map(|(id, partitions)| {
            let name = topics
                .name_of(*id)
                .map_or_else(|| id.to_string(), str::to_string);
            (name, partitions.iter().copied().collect())
        })
        .collect()
}
