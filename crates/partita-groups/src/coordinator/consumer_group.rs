//! ConsumerGroupHeartbeat (KIP-848): joining, leaving, fencing, the target assignment and
//! each member's reconciliation towards it, with Kafka's rules and error codes.

use std::collections::BTreeMap;

use kafka_protocol::messages::consumer_group_heartbeat_response::{
    Assignment as WireAssignment, TopicPartitions,
};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{ClientContext, Coordinator, Journal, Response, Token};
use crate::classic::Group;
use crate::consumer::assignor::{self, MemberSpec};
use crate::consumer::reconcile::reconcile;
use crate::consumer::{
    member_topics, Assignment, ConsumerGroup, ConsumerMember, MemberState, SharedTopics,
};
use crate::events::{GroupEventKind, RebalanceCause, RemovalReason};

/// The heartbeat interval given to members while their group reconciles.
const RECONCILING_HEARTBEAT_INTERVAL_MS: i32 = 200;

/// Epoch of a member joining.
const JOIN: i32 = 0;
/// Epoch of a member leaving for good.
const LEAVE: i32 = -1;
/// Epoch of a static member leaving for now, expecting to come back.
const LEAVE_TEMPORARILY: i32 = -2;

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
struct Heartbeat {
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

impl Coordinator {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn consumer_heartbeat(
        &mut self,
        now: i64,
        journal: &mut dyn Journal,
        token: Token,
        version: i16,
        client: &ClientContext,
        request: ConsumerGroupHeartbeatRequest,
        topics: SharedTopics,
    ) {
        self.topics = topics;
        let mut heartbeat = Heartbeat::from_request(request);
        if let Err((error, message)) = self.validate_heartbeat(version, &heartbeat) {
            return self.respond(token, failure(error, &message));
        }
        if heartbeat.member_epoch == LEAVE || heartbeat.member_epoch == LEAVE_TEMPORARILY {
            let response = self.consumer_leave(now, journal, &heartbeat);
            return self.respond(token, response);
        }
        if heartbeat.member_id.trim().is_empty() {
            heartbeat.member_id = self.new_member_id("").trim_start_matches('-').to_string();
        }
        let response = match self.consumer_join_or_heartbeat(now, journal, client, heartbeat) {
            Ok(response) => Response::ConsumerGroupHeartbeat(response),
            Err((error, message)) => failure(error, &message),
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
    fn consumer_leave(&mut self, now: i64, journal: &mut dyn Journal, h: &Heartbeat) -> Response {
        let Some(group) = self
            .groups
            .get(&h.group_id)
            .and_then(|g| g.consumer.as_ref())
        else {
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
            let group = self.consumer_group_mut(&h.group_id);
            let member = group.members.get_mut(&member_id).expect("member exists");
            member.left_temporarily = true;
            member.member_epoch = LEAVE_TEMPORARILY;
            member.pending_revocation.clear();
            member.rebalance_deadline = None;
            let record = current_assignment_record(&h.group_id, member);
            if let Err(error) = journal.append(vec![record]) {
                tracing::warn!(group = %h.group_id, %error, "static leave could not be stored");
            }
            self.emit(
                now,
                &h.group_id,
                GroupEventKind::MemberLeft {
                    member_id: member_id.clone(),
                },
            );
        } else {
            self.fence_consumer_member(now, journal, &h.group_id, &member_id, None);
        }
        Response::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatResponse::default()
                .with_member_id(Some(text(&member_id)))
                .with_member_epoch(h.member_epoch),
        )
    }

    fn consumer_join_or_heartbeat(
        &mut self,
        now: i64,
        journal: &mut dyn Journal,
        client: &ClientContext,
        h: Heartbeat,
    ) -> Result<ConsumerGroupHeartbeatResponse, (ResponseError, String)> {
        let group_id = h.group_id.clone();
        self.prepare_consumer_group(now, journal, &group_id, h.member_epoch)?;
        let max_size = self.config.consumer_max_size;
        let session_timeout = i64::from(self.config.consumer_session_timeout_ms);
        let interval = self.config.consumer_heartbeat_interval_ms;
        let mut records = Vec::new();
        let mut bump = None;

        // Find or create the member.
        let group = self.consumer_group_mut(&group_id);
        let existing_id = match &h.instance_id {
            Some(instance) => group.static_members.get(instance).cloned(),
            None => group
                .members
                .contains_key(&h.member_id)
                .then(|| h.member_id.clone()),
        };
        let is_new = existing_id.is_none();
        if is_new && group.members.len() >= max_size {
            return Err((
                ResponseError::GroupMaxSizeReached,
                "the group is full".to_string(),
            ));
        }
        let mut member = match existing_id {
            None if h.member_epoch != JOIN => {
                return Err((ResponseError::UnknownMemberId, "unknown member".to_string()))
            }
            None => new_member(&h, client),
            Some(owner) if h.instance_id.is_some() && owner != h.member_id => {
                let current = &group.members[&owner];
                if h.member_epoch != JOIN {
                    return Err((
                        ResponseError::FencedInstanceId,
                        "the instance id belongs to another member".to_string(),
                    ));
                }
                if current.member_epoch != LEAVE_TEMPORARILY {
                    return Err((
                        ResponseError::UnreleasedInstanceId,
                        "the instance id is still in use".to_string(),
                    ));
                }
                // The static member is back under a new member id: it takes over the old
                // one's place, target and partitions, with no rebalance.
                let mut replaced = group.members.remove(&owner).expect("owner exists");
                let target = group.target.remove(&owner).unwrap_or_default();
                group.target.insert(h.member_id.clone(), target);
                records.extend(member_tombstones(&group_id, &owner));
                replaced.member_id = h.member_id.clone();
                replaced.member_epoch = JOIN;
                replaced.previous_member_epoch = JOIN;
                replaced.left_temporarily = false;
                replaced.state = MemberState::Stable;
                replaced.last_sent = None;
                self.emit(
                    now,
                    &group_id,
                    GroupEventKind::StaticMemberRejoined {
                        old_member_id: owner,
                        new_member_id: h.member_id.clone(),
                    },
                );
                replaced
            }
            Some(owner) => {
                let current = group.members[&owner].clone();
                check_member_epoch(&current, &h)?;
                current
            }
        };
        let before = member.clone();

        // Take what the request restates.
        if let Some(instance) = &h.instance_id {
            member.instance_id = Some(instance.clone());
        }
        if h.rack_id.is_some() {
            member.rack_id = h.rack_id.clone();
        }
        if h.rebalance_timeout_ms != -1 {
            member.rebalance_timeout_ms = h.rebalance_timeout_ms;
        }
        if h.server_assignor.is_some() {
            member.server_assignor = h.server_assignor.clone();
        }
        member.client_id = client.client_id.clone();
        member.client_host = client.client_host.clone();
        if let Some(names) = &h.subscribed_topic_names {
            if *names != member.subscribed_topic_names {
                member.subscribed_topic_names = names.clone();
                bump.get_or_insert(RebalanceCause::MetadataChanged);
            }
        }
        if let Some(regex) = &h.subscribed_topic_regex {
            let regex = (!regex.is_empty()).then(|| regex.clone());
            if regex != member.subscribed_topic_regex {
                member.subscribed_topic_regex = regex;
                bump.get_or_insert(RebalanceCause::MetadataChanged);
            }
        }
        if is_new {
            bump = Some(RebalanceCause::MemberJoined);
            self.emit(
                now,
                &group_id,
                GroupEventKind::MemberJoined {
                    member_id: member.member_id.clone(),
                    client_id: member.client_id.clone(),
                    group_instance_id: member.instance_id.clone(),
                },
            );
        }
        if metadata_changed(&before, &member) || is_new || before.member_id != member.member_id {
            records.push(member_metadata_record(&group_id, &member));
        }
        member.session_deadline = now + session_timeout;

        // Install the member, and bump the group epoch if membership, subscriptions or the
        // subscribed topics changed.
        let topics = self.topics.clone();
        let group = self.consumer_group_mut(&group_id);
        if let Some(instance) = &member.instance_id {
            group
                .static_members
                .insert(instance.clone(), member.member_id.clone());
        }
        group
            .members
            .insert(member.member_id.clone(), member.clone());
        let metadata_hash = group.subscribed_metadata_hash(&topics);
        if metadata_hash != group.metadata_hash {
            group.metadata_hash = metadata_hash;
            bump.get_or_insert(RebalanceCause::MetadataChanged);
        }
        if group.group_epoch == 0 {
            bump.get_or_insert(RebalanceCause::MemberJoined);
        }
        if let Some(cause) = bump {
            records.push(self.bump_group_epoch(now, &group_id, cause));
        }

        // Recompute the target assignment if the group moved on.
        records.extend(self.refresh_target_assignment(&group_id));

        // Reconcile this member towards its target.
        let group = self.consumer_group_mut(&group_id);
        let target = group
            .target
            .get(&member.member_id)
            .cloned()
            .unwrap_or_default();
        let others = group.owned_by_others(&member.member_id);
        let mut next = reconcile(
            &member,
            group.assignment_epoch,
            &target,
            h.owned.as_ref(),
            &others,
        );
        if next.state == MemberState::UnrevokedPartitions {
            if member.state != MemberState::UnrevokedPartitions || next.rebalance_deadline.is_none()
            {
                next.rebalance_deadline = Some(now + i64::from(next.rebalance_timeout_ms.max(0)));
            }
        } else {
            next.rebalance_deadline = None;
        }
        if reconciled_changed(&before, &next) || is_new {
            records.push(current_assignment_record(&group_id, &next));
        }
        let send_assignment = h.member_epoch == JOIN
            || h.is_full()
            || next.last_sent.as_ref() != Some(&(next.member_epoch, next.assigned.clone()))
                && next.assigned != before.assigned;
        if send_assignment {
            next.last_sent = Some((next.member_epoch, next.assigned.clone()));
        }
        let group = self.consumer_group_mut(&group_id);
        group.members.insert(next.member_id.clone(), next.clone());

        if !records.is_empty() {
            journal.append(records).map_err(|error| {
                tracing::warn!(group = %group_id, %error, "consumer group records could not be stored");
                (ResponseError::CoordinatorNotAvailable, "the coordinator could not store the group's state".to_string())
            })?;
        }
        self.maybe_complete_consumer_rebalance(now, &group_id);
        // While partitions are moving, members heartbeat faster, so that a revoked partition
        // reaches its new owner in a fraction of the configured interval.
        let interval = if self.consumer_group_mut(&group_id).state_name() == "Stable" {
            interval
        } else {
            interval.min(RECONCILING_HEARTBEAT_INTERVAL_MS)
        };

        let mut response = ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(text(&next.member_id)))
            .with_member_epoch(next.member_epoch)
            .with_heartbeat_interval_ms(interval);
        if send_assignment {
            response = response.with_assignment(Some(wire_assignment(&next.assigned)));
        }
        Ok(response)
    }

    /// Makes sure `group_id` is a consumer group, creating it or converting an empty classic
    /// group on a join.
    fn prepare_consumer_group(
        &mut self,
        now: i64,
        journal: &mut dyn Journal,
        group_id: &str,
        epoch: i32,
    ) -> Result<(), (ResponseError, String)> {
        let not_found = || {
            Err((
                ResponseError::GroupIdNotFound,
                format!("Group {group_id} is not a consumer group."),
            ))
        };
        match self.groups.get_mut(group_id) {
            None if epoch != JOIN => not_found(),
            None => {
                let mut group = Group::new(group_id, now);
                group.protocol_type = Some("consumer".to_string());
                group.consumer = Some(ConsumerGroup::default());
                self.groups.insert(group_id.to_string(), group);
                Ok(())
            }
            Some(group) if group.consumer.is_some() => Ok(()),
            Some(group)
                if epoch == JOIN
                    && group.members.is_empty()
                    && group.pending_members.is_empty() =>
            {
                // An empty classic group (or one that only holds offsets) becomes a consumer
                // group; its offsets stay.
                group.protocol_type = Some("consumer".to_string());
                group.protocol = None;
                group.leader = None;
                group.consumer = Some(ConsumerGroup::default());
                let tombstone = super::Record {
                    key: crate::records::RecordKey::GroupMetadata {
                        group: group_id.to_string(),
                    }
                    .encode(),
                    value: None,
                };
                if let Err(error) = journal.append(vec![tombstone]) {
                    tracing::warn!(group = group_id, %error, "could not remove the classic group's record");
                }
                tracing::info!(
                    group = group_id,
                    "empty classic group converted to a consumer group"
                );
                Ok(())
            }
            Some(_) => not_found(),
        }
    }

    pub(super) fn consumer_group_mut(&mut self, group_id: &str) -> &mut ConsumerGroup {
        self.groups
            .get_mut(group_id)
            .and_then(|g| g.consumer.as_mut())
            .expect("consumer group exists")
    }

    /// Bumps the group epoch; returns the group metadata record to write.
    fn bump_group_epoch(
        &mut self,
        now: i64,
        group_id: &str,
        cause: RebalanceCause,
    ) -> super::Record {
        let group = self.consumer_group_mut(group_id);
        group.group_epoch += 1;
        let epoch = group.group_epoch;
        let started = group.rebalance.is_none() && !group.members.is_empty();
        if started {
            group.rebalance = Some((now, cause));
        }
        if started {
            self.emit(
                now,
                group_id,
                GroupEventKind::RebalanceStarted {
                    generation: epoch - 1,
                    cause,
                },
            );
        }
        let hash = self.consumer_group_mut(group_id).metadata_hash;
        group_metadata_record(group_id, epoch, hash)
    }

    /// Computes a new target assignment when the group epoch is ahead of it; returns the
    /// records to write.
    fn refresh_target_assignment(&mut self, group_id: &str) -> Vec<super::Record> {
        let topics = self.topics.clone();
        let default_assignor = self
            .config
            .consumer_assignors
            .first()
            .cloned()
            .unwrap_or_else(|| "uniform".to_string());
        let group = self.consumer_group_mut(group_id);
        if group.group_epoch <= group.assignment_epoch {
            return Vec::new();
        }
        let assignor = preferred_assignor(group).unwrap_or(default_assignor);
        let specs: Vec<MemberSpec<'_>> = group
            .members
            .values()
            .map(|m| MemberSpec {
                member_id: &m.member_id,
                topics: member_topics(m, &topics),
                current: group.target.get(&m.member_id),
            })
            .collect();
        let target = assignor::assign(&assignor, &specs, &topics.by_name);
        let mut records = Vec::new();
        for (member_id, assignment) in &target {
            if group.target.get(member_id) != Some(assignment) {
                records.push(target_member_record(group_id, member_id, assignment));
            }
        }
        group.target = target;
        group.assignment_epoch = group.group_epoch;
        group.assignor = assignor;
        records.push(target_metadata_record(group_id, group.assignment_epoch));
        records
    }

    /// Emits the end of a reconciliation once every member holds its target.
    fn maybe_complete_consumer_rebalance(&mut self, now: i64, group_id: &str) {
        let topics = self.topics.clone();
        let group = self.consumer_group_mut(group_id);
        if group.rebalance.is_none() || group.state_name() != "Stable" {
            return;
        }
        let (started_at_ms, cause) = group.rebalance.take().expect("checked");
        let generation = group.assignment_epoch;
        let assignment = group
            .members
            .values()
            .map(|m| (m.member_id.clone(), named_partitions(&m.assigned, &topics)))
            .collect();
        self.emit(
            now,
            group_id,
            GroupEventKind::RebalanceCompleted {
                generation,
                started_at_ms,
                cause,
                assignment,
            },
        );
    }

    /// Removes a member for good: its partitions are free once the others reconcile.
    pub(super) fn fence_consumer_member(
        &mut self,
        now: i64,
        journal: &mut dyn Journal,
        group_id: &str,
        member_id: &str,
        reason: Option<RemovalReason>,
    ) {
        let group = self.consumer_group_mut(group_id);
        let Some(member) = group.members.remove(member_id) else {
            return;
        };
        group.target.remove(member_id);
        if let Some(instance) = &member.instance_id {
            if group.static_members.get(instance).map(String::as_str) == Some(member_id) {
                group.static_members.remove(instance);
            }
        }
        let mut records = member_tombstones(group_id, member_id);
        let cause = match reason {
            None => {
                self.emit(
                    now,
                    group_id,
                    GroupEventKind::MemberLeft {
                        member_id: member_id.to_string(),
                    },
                );
                RebalanceCause::MemberLeft
            }
            Some(reason) => {
                self.emit(
                    now,
                    group_id,
                    GroupEventKind::MemberRemoved {
                        member_id: member_id.to_string(),
                        reason,
                    },
                );
                match reason {
                    RemovalReason::SessionTimeout => RebalanceCause::SessionTimeout,
                    _ => RebalanceCause::MissedPoll,
                }
            }
        };
        records.push(self.bump_group_epoch(now, group_id, cause));
        let group = self.consumer_group_mut(group_id);
        if group.members.is_empty() {
            group.rebalance = None;
            let generation = group.group_epoch;
            self.emit(now, group_id, GroupEventKind::GroupEmptied { generation });
        }
        if let Err(error) = journal.append(records) {
            tracing::warn!(group = group_id, %error, "member removal could not be stored");
        }
    }

    /// Session and rebalance timeouts of consumer-protocol members.
    pub(super) fn expire_consumer_members(
        &mut self,
        now: i64,
        journal: &mut dyn Journal,
        group_id: &str,
    ) {
        let Some(group) = self.groups.get(group_id).and_then(|g| g.consumer.as_ref()) else {
            return;
        };
        let expired: Vec<(String, RemovalReason)> = group
            .members
            .values()
            .filter_map(|m| {
                if m.session_deadline <= now {
                    Some((m.member_id.clone(), RemovalReason::SessionTimeout))
                } else if m.rebalance_deadline.is_some_and(|d| d <= now) {
                    Some((m.member_id.clone(), RemovalReason::MissedPoll))
                } else {
                    None
                }
            })
            .collect();
        for (member_id, reason) in expired {
            self.fence_consumer_member(now, journal, group_id, &member_id, Some(reason));
        }
    }
}

/// A dynamic or static member joining for the first time.
fn new_member(h: &Heartbeat, client: &ClientContext) -> ConsumerMember {
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
    }
}

/// Kafka's epoch check: a newer epoch than the member's is fenced; an older one only passes
/// if it is the previous epoch and the member owns no more than it is assigned (the response
/// that moved it on may have been lost). A rejoin with epoch 0 is always accepted.
fn check_member_epoch(
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

fn metadata_changed(before: &ConsumerMember, after: &ConsumerMember) -> bool {
    before.instance_id != after.instance_id
        || before.rack_id != after.rack_id
        || before.client_id != after.client_id
        || before.client_host != after.client_host
        || before.rebalance_timeout_ms != after.rebalance_timeout_ms
        || before.subscribed_topic_names != after.subscribed_topic_names
        || before.subscribed_topic_regex != after.subscribed_topic_regex
        || before.server_assignor != after.server_assignor
}

fn reconciled_changed(before: &ConsumerMember, after: &ConsumerMember) -> bool {
    before.member_epoch != after.member_epoch
        || before.state != after.state
        || before.assigned != after.assigned
        || before.pending_revocation != after.pending_revocation
}

/// The assignor most members ask for, if any asks.
fn preferred_assignor(group: &ConsumerGroup) -> Option<String> {
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
pub(super) fn named_partitions(
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

use super::persistence::{
    current_assignment_record, group_metadata_record, member_metadata_record, member_tombstones,
    target_member_record, target_metadata_record,
};
