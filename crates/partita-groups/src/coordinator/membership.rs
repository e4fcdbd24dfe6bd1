//! Classic group membership: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, and the rebalance
//! they drive, with Kafka's rules and error codes.

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{ClientContext, Coordinator, Journal, Record, Response, Token};
use crate::classic::{Group, GroupState, InitialDelay, Member, Waiting};
use crate::config::NEW_MEMBER_JOIN_TIMEOUT_MS;
use crate::consumer_protocol;
use crate::events::{GroupEventKind, RebalanceCause, RemovalReason};
use crate::records::{GroupMetadataValue, MemberMetadata, RecordKey, RecordValue};

/// JoinGroup v4+ makes a new dynamic member come back with the id it is given (KIP-394).
const MEMBER_ID_REQUIRED_VERSION: i16 = 4;

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn join_error(error: ResponseError, member_id: &str) -> Response {
    Response::JoinGroup(
        JoinGroupResponse::default()
            .with_error_code(error.code())
            .with_generation_id(-1)
            .with_protocol_name(Some(text("")))
            .with_leader(text(""))
            .with_member_id(text(member_id)),
    )
}

fn sync_error(error: ResponseError) -> Response {
    Response::SyncGroup(SyncGroupResponse::default().with_error_code(error.code()))
}

fn heartbeat_error(error: ResponseError) -> Response {
    Response::Heartbeat(HeartbeatResponse::default().with_error_code(error.code()))
}

/// What a joining member asks for, taken out of the request.
struct JoinRequest {
    member_id: String,
    group_instance_id: Option<String>,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    waiting: Waiting,
}

impl Coordinator {
    pub(super) fn join_group(
        &mut self,
        now: i64,
        journal: &mut dyn Journal,
        token: Token,
        version: i16,
        client: &ClientContext,
        request: JoinGroupRequest,
    ) {
        let group_id = request.group_id.to_string();
        let join = JoinRequest {
            member_id: request.member_id.to_string(),
            group_instance_id: request.group_instance_id.map(|s| s.to_string()),
            protocol_type: request.protocol_type.to_string(),
            protocols: request
                .protocols
                .into_iter()
                .map(|p| (p.name.to_string(), p.metadata))
                .collect(),
            session_timeout_ms: request.session_timeout_ms,
            // v0 has no rebalance timeout: it is the session timeout.
            rebalance_timeout_ms: if version == 0 {
                request.session_timeout_ms
            } else {
                request.rebalance_timeout_ms
            },
            waiting: Waiting { token, version },
        };
        if group_id.is_empty() {
            return self.respond(
                token,
                join_error(ResponseError::InvalidGroupId, &join.member_id),
            );
        }
        if join.session_timeout_ms < self.config.min_session_timeout_ms
            || join.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return self.respond(
                token,
                join_error(ResponseError::InvalidSessionTimeout, &join.member_id),
            );
        }
        if !self.groups.contains_key(&group_id) {
            if !join.member_id.is_empty() {
                return self.respond(
                    token,
                    join_error(ResponseError::UnknownMemberId, &join.member_id),
                );
            }
            self.groups
                .insert(group_id.clone(), Group::new(&group_id, now));
        }
        if let Err(error) = self.leave_consumer_protocol(journal, &group_id) {
            return self.respond(token, join_error(error, &join.member_id));
        }
        let group = &self.groups[&group_id];
        if group.state == GroupState::Dead {
            return self.respond(
                token,
                join_error(ResponseError::CoordinatorNotAvailable, &join.member_id),
            );
        }
        if !group.supports(&join.protocol_type, &join.protocols) {
            return self.respond(
                token,
                join_error(ResponseError::InconsistentGroupProtocol, &join.member_id),
            );
        }
        if join.member_id.is_empty() {
            self.join_new_member(now, journal, &group_id, client, join)
        } else {
            self.join_known_member(now, journal, &group_id, client, join)
        }
    }

    fn join_new_member(
        &mut self,
        now: i64,
        journal: &mut dyn Journal,
        group_id: &str,
        client: &ClientContext,
        join: JoinRequest,
    ) {
        let token = join.waiting.token;
        let group = &self.groups[group_id];
        let known_instance = join
            .group_instance_id
            .as_ref()
            .and_then(|instance| group.static_members.get(instance).cloned());
        if known_instance.is_none() && group.size() >= self.config.max_size {
            return self.respond(token, join_error(ResponseError::GroupMaxSizeReached, ""));
        }
        match (&join.group_instance_id, known_instance) {
            (Some(instance), Some(old_member_id)) => {
                let new_member_id = self.new_member_id(instance);
                self.replace_static_member(
                    now,
                    journal,
                    group_id,
                    client,
                    &old_member_id,
                    new_member_id,
                    join,
                )
            }
            (Some(instance), None) => {
                let new_member_id = self.new_member_id(instance);
                self.add_member_and_rebalance(now, journal, group_id, client, new_member_id, join)
            }
            (None, _) => {
                let new_member_id = self.new_member_id(&client.client_id);
                if join.waiting.version >= MEMBER_ID_REQUIRED_VERSION {
                    let deadline = now + i64::from(join.session_timeout_ms);
                    let group = self.groups.get_mut(group_id).expect("group exists");
                    group
                        .pending_members
                        .insert(new_member_id.clone(), deadline);
                    self.respond(
                        token,
                        join_error(ResponseError::MemberIdRequired, &new_member_id),
                    );
                } else {
                    self.add_member_and_rebalance(
                        now,
                        journal,
                        group_id,
                        client,
                        new_member_id,
                        join,
                    )
                }
            }
        }
    }

    fn join_known_member(
        &mut self,
        now: i64,
        journal: &mut dyn Journal,
        group_id: &str,
        client: &ClientContext,
        join: JoinRequest,
    ) {
        let token = join.waiting.token;
        let group = &self.groups[group_id];
        let member_id = join.member_id.clone();
        if group.pending_members.contains_key(&member_id) {
            return self.add_member_and_rebalance(now, journal, group_id, client, member_id, join);
        }
        if let Some(error) = check_member(group, &member_id, join.group_instance_id.as_deref()) {
            return self.respond(token, join_error(error, &member_id));
        }
        let state = group.state;
        let member = &group.members[&member_id];
        let unchanged = member.same_protocols(&join.protocols);
        let is_leader = group.leader.as_deref() == Some(member_id.as_str());
        match state {
            GroupState::PreparingRebalance => {
                self.update_member(now, group_id, &member_id, client, join);
                self.maybe_complete_join(now, journal, group_id);
            }
            GroupState::CompletingRebalance if unchanged => {
                self.touch_member(now, group_id, &member_id);
                let response = self.join_response(group_id, &member_id, join.waiting.version);
                self.respond(token, response);
            }
            GroupState::Stable if unchanged && !is_leader => {
                self.touch_member(now, group_id, &member_id);
                let response = self.join_response(group_id, &member_id, join.waiting.version);
                self.respond(token, response);
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member(now, group_id, &member_id, client, join);
                self.prepare_rebalance(now, journal, group_id, RebalanceCause::MetadataChanged);
            }
            GroupState::Empty | GroupState::Dead => {
                self.respond(
                    token,
                    join_error(ResponseError::UnknownMemberId, &member_id),
                );
            }
        }
    }

    /// Admits a member and starts (or joins) a rebalance.
    fn add_member_and_rebalance(
        &mut self,
        now: i64,
        journal: &mut dyn Journal,
        group_id: &str,
        client: &ClientContext,
        member_id: String,
        join: JoinRequest,
    ) {
        let group = self.groups.get_mut(group_id).expect("group exists");
        group.pending_members.remove(&member_id);
        if group.members.is_empty() {
            group.protocol_type = Some(join.protocol_type.clone());
        }
        if let Some(instance) = &join.group_instance_id {
            group
                .static_members
                .insert(instance.clone(), member_id.clone());
        }
        if let Some(delay) = group.initial_delay.as_mut() {
            delay.member_joined = true;
        }
        if group.leader.is_none() {
            group.leader = Some(member_id.clone());
        }
        group.members.insert(
            member_id.clone(),
            Member {
                member_id: member_id.clone(),
                group_instance_id: join.group_instance_id,
                client_id: client.client_id.clone(),
                client_host: client.client_host.clone(),
                rebalance_timeout_ms: join.rebalance_timeout_ms,
                session_timeout_ms: join.session_timeout_ms,
                protocols: join.protocols,
                assignment: Bytes::new(),
                awaiting_join: Some(join.waiting),
                awaiting_sync: None,
                session_deadline: now + NEW_MEMBER_JOIN_TIMEOUT_MS,
                is_new: true,
            },
        );
        let state = group.state;
        let client_id = client.client_id.clone();
        let group_instance_id = group.members[&member_id].group_instance_id.clone();
        self.emit(
            now,
            group_id,
            GroupEventKind::MemberJoined {
                member_id,
                client_id,
                group_instance_id,
            },
        );
        match state {
            GroupState::PreparingRebalance => self.maybe_complete_join(now, journal, group_id),
            _ => self.prepare_rebalance(now, journal, group_id, RebalanceCause::MemberJoined),
        }
    }

    /// A static member came back with a new member id: it takes over the old member's place
    /// and assignment, and the old id is fenced (KIP-345).
    #[allow(clippy::too_many_arguments)]
    fn replace_static_member(
        &mut self,
        now: i64,
        journal: &mut dyn Journal,
        group_id: &str,
        client: &ClientContext,
        old_member_id: &str,
        new_member_id: String,
        join: JoinRequest,
    ) {
        let group = self.groups.get_mut(group_id).expect("group exists");
        let Some(mut member) = group.members.remove(old_member_id) else {
            return;
        };
        let mut fenced = Vec::new();
        fenced.extend(member.awaiting_join.take().map(|w| (w.token, true)));
        fenced.extend(member.awaiting_sync.take().map(|w| (w.token, false)));
        let unchanged = member.same_protocols(&join.protocols);
        member.member_id = new_member_id.clone();
        member.client_id = client.client_id.clone();
        member.client_host = client.client_host.clone();
        member.session_timeout_ms = join.session_timeout_ms;
        member.rebalance_timeout_ms = join.rebalance_timeout_ms;
        member.protocols = join.protocols;
        member.session_deadline = now + i64::from(join.session_timeout_ms);
        if group.leader.as_deref() == Some(old_member_id) {
            group.leader = Some(new_member_id.clone());
        }
        if group.pending_sync.remove(old_member_id) {
            group.pending_sync.insert(new_member_id.clone());
        }
        if let Some(instance) = &join.group_instance_id {
            group
                .static_members
                .insert(instance.clone(), new_member_id.clone());
        }
        group.members.insert(new_member_id.clone(), member);
        let state = group.state;
        self.emit(
            now,
            group_id,
            GroupEventKind::StaticMemberRejoined {
                old_member_id: old_member_id.to_string(),
                new_member_id: new_member_id.clone(),
            },
        );
        for (token, is_join) in fenced {
            let error = ResponseError::FencedInstanceId;
            let response = if is_join {
                join_error(error, old_member_id)
            } else {
                sync_error(error)
            };
            self.respond(token, response);
        }
        let waiting = join.waiting;
        match state {
            GroupState::Stable if unchanged => {
                // Same subscription: no rebalance. The new id must be on disk before it is
                // handed out, or a coordinator restart would not know it.
                if let Err(error) = self.store_group(journal, group_id) {
                    tracing::warn!(group = group_id, %error, "could not store static member replacement");
                    return self.respond(
                        waiting.token,
                        join_error(ResponseError::UnknownServerError, ""),
                    );
                }
                let response = self.join_response(group_id, &new_member_id, waiting.version);
                self.respond(waiting.token, response);
            }
            GroupState::PreparingRebalance => {
                let group = self.groups.get_mut(group_id).expect("group exists");
                if let Some(member) = group.members.get_mut(&new_member_id) {
                    member.awaiting_join = Some(waiting);
                }
                self.maybe_complete_join(now, journal, group_id);
            }
            _ => {
                let group = self.groups.get_mut(group_id).expect("group exists");
                if let Some(member) = group.members.get_mut(&new_member_id) {
                    member.awaiting_join = Some(waiting);
                }
                self.prepare_rebalance(
                    now,
                    journal,
                    group_id,
                    RebalanceCause::StaticMemberRestarted,
                );
            }
        }
    }

    /// A classic join to a consumer-protocol group: refused while it has members (Kafka's
    /// INCONSISTENT_GROUP_PROTOCOL); an empty one becomes a classic group again.
    fn leave_consumer_protocol(
        &mut self,
        journal: &mut dyn Journal,
        group_id: &str,
    ) -> Result<(), ResponseError> {
        let group = self.groups.get_mut(group_id).expect("group exists");
        let Some(consumer) = &group.consumer else {
            return Ok(());
        };
        if !consumer.members.is_empty() {
            return Err(ResponseError::InconsistentGroupProtocol);
        }
        let records = super::persistence::group_tombstones(group_id, consumer);
        journal
            .append(records)
            .map_err(|_| ResponseError::CoordinatorNotAvailable)?;
        group.consumer = None;
        tracing::info!(
            group = group_id,
            "empty consumer group converted to a classic group"
        );
        Ok(())
    }

    /// Takes a known member's new join: its protocols, timeouts, and the waiting response.
    fn update_member(
        &mut self,
        now: i64,
        group_id: &str,
        member_id: &str,
        client: &ClientContext,
        join: JoinRequest,
    ) {
        let group = self.groups.get_mut(group_id).expect("group exists");
        let member = group.members.get_mut(member_id).expect("member exists");
        let replaced = member.awaiting_join.replace(join.waiting);
        member.protocols = join.protocols;
        member.session_timeout_ms = join.session_timeout_ms;
        member.rebalance_timeout_ms = join.rebalance_timeout_ms;
        member.client_id = client.client_id.clone();
        member.client_host = client.client_host.clone();
        member.session_deadline = member
            .session_deadline
            .max(now + i64::from(join.session_timeout_ms));
        if let Some(old) = replaced {
            self.respond(
                old.token,
                join_error(ResponseError::RebalanceInProgress, member_id),
            );
        }
    }

    /// Counts any request from a member as a sign of life.
    pub(super) fn touch_member(&mut self, now: i64, group_id: &str, member_id: &str) {
        if let Some(member) = self
            .groups
            .get_mut(group_id)
            .and_then(|g| g.members.get_mut(member_id))
        {
            member.session_deadline = member
                .session_deadline
                .max(now + i64::from(member.session_timeout_ms));
        }
    }

    /// Starts a rebalance: every member must rejoin within the rebalance timeout.
    pub(super) fn prepare_rebalance(
        &mut self,
        now: i64,
        journal: &mut dyn Journal,
        group_id: &str,
        cause: RebalanceCause,
    ) {
        let initial_delay_ms = self.config.initial_rebalance_delay_ms;
        let group = self.groups.get_mut(group_id).expect("group exists");
        let mut interrupted_syncs = Vec::new();
        if group.state == GroupState::CompletingRebalance {
            for member in group.members.values_mut() {
                interrupted_syncs.extend(member.awaiting_sync.take().map(|w| w.token));
            }
        }
        group.pending_sync.clear();
        group.sync_deadline = None;
        let rebalance_timeout = group.rebalance_timeout_ms();
        if group.state == GroupState::Empty && initial_delay_ms > 0 {
            group.initial_delay = Some(InitialDelay {
                remaining_ms: (rebalance_timeout - initial_delay_ms).max(0),
                member_joined: false,
            });
            group.join_deadline = Some(now + initial_delay_ms);
        } else {
            group.initial_delay = None;
            group.join_deadline = Some(now + rebalance_timeout);
        }
        group.transition(GroupState::PreparingRebalance, now);
        if group.rebalance.is_none() {
            group.rebalance = Some((now, cause));
            let generation = group.generation_id;
            self.emit(
                now,
                group_id,
                GroupEventKind::RebalanceStarted { generation, cause },
            );
        }
        for token in interrupted_syncs {
            self.respond(token, sync_error(ResponseError::RebalanceInProgress));
        }
        self.maybe_complete_join(now, journal, group_id);
    }

    /// Completes the join phase early once every member has rejoined (not during the
    /// initial delay, whose point is to wait for more members).
    pub(super) fn maybe_complete_join(
        &mut self,
        now: i64,
        journal: &mut dyn Journal,
        group_id: &str,
    ) {
        let group = &self.groups[group_id];
        if group.state == GroupState::PreparingRebalance
            && group.initial_delay.is_none()
            && group.all_members_joined()
        {
            self.complete_join(now, journal, group_id);
        }
    }

    /// The join deadline passed: extend the initial delay if members keep arriving, else
    /// complete the join phase without those who did not rejoin.
    pub(super) fn run_join_deadline(
        &mut self,
        now: i64,
        journal: &mut dyn Journal,
        group_id: &str,
    ) {
        let initial_delay_ms = self.config.initial_rebalance_delay_ms;
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        let Some(deadline) = group.join_deadline else {
            return;
        };
        if now < deadline || group.state != GroupState::PreparingRebalance {
            return;
        }
        if let Some(delay) = group.initial_delay.as_mut() {
            if delay.member_joined && delay.remaining_ms > 0 {
                let extension = initial_delay_ms.min(delay.remaining_ms);
                delay.remaining_ms -= extension;
                delay.member_joined = false;
                group.join_deadline = Some(now + extension);
                return;
            }
        }
        self.complete_join(now, journal, group_id);
    }

    /// Ends the join phase: members that did not rejoin are removed, a new generation begins,
    /// and every joined member gets its JoinGroup response (the leader with the member list).
    fn complete_join(&mut self, now: i64, journal: &mut dyn Journal, group_id: &str) {
        let group = self.groups.get_mut(group_id).expect("group exists");
        let missing: Vec<String> = group
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for member_id in missing {
            self.remove_member(group_id, &member_id);
            let reason = RemovalReason::MissedPoll;
            self.emit(
                now,
                group_id,
                GroupEventKind::MemberRemoved { member_id, reason },
            );
        }
        let group = self.groups.get_mut(group_id).expect("group exists");
        group.initial_delay = None;
        group.join_deadline = None;
        group.generation_id += 1;
        if group.members.is_empty() {
            group.protocol = None;
            group.leader = None;
            group.transition(GroupState::Empty, now);
            group.rebalance = None;
            let generation = group.generation_id;
            self.emit(now, group_id, GroupEventKind::GroupEmptied { generation });
            if let Err(error) = self.store_group(journal, group_id) {
                tracing::warn!(group = group_id, %error, "could not store empty group");
            }
            return;
        }
        group.protocol = group.select_protocol();
        if !group
            .leader
            .as_ref()
            .is_some_and(|l| group.members.contains_key(l))
        {
            group.leader = group.members.keys().next().cloned();
        }
        group.transition(GroupState::CompletingRebalance, now);
        group.sync_deadline = Some(now + group.rebalance_timeout_ms());
        group.pending_sync = group.members.keys().cloned().collect();
        let mut waiting = Vec::new();
        for member in group.members.values_mut() {
            if let Some(w) = member.awaiting_join.take() {
                waiting.push((member.member_id.clone(), w));
            }
            member.is_new = false;
            member.session_deadline = now + i64::from(member.session_timeout_ms);
        }
        tracing::info!(
            group = group_id,
            generation = group.generation_id,
            protocol = group.protocol.as_deref().unwrap_or(""),
            members = group.members.len(),
            "join phase complete"
        );
        for (member_id, w) in waiting {
            let response = self.join_response(group_id, &member_id, w.version);
            self.respond(w.token, response);
        }
    }

    /// The JoinGroup response of the current generation for one member.
    fn join_response(&self, group_id: &str, member_id: &str, version: i16) -> Response {
        let group = &self.groups[group_id];
        let protocol = group.protocol.clone().unwrap_or_default();
        let is_leader = group.leader.as_deref() == Some(member_id);
        let members = if is_leader {
            group
                .members
                .values()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(text(&m.member_id))
                        .with_group_instance_id(m.group_instance_id.as_deref().map(text))
                        .with_metadata(m.metadata_for(&protocol))
                })
                .collect()
        } else {
            Vec::new()
        };
        // A static leader that rejoins a stable group need not assign again (KIP-814).
        let skip_assignment = is_leader && group.state == GroupState::Stable && version >= 9;
        Response::JoinGroup(
            JoinGroupResponse::default()
                .with_generation_id(group.generation_id)
                .with_protocol_type(group.protocol_type.as_deref().map(text))
                .with_protocol_name(Some(text(&protocol)))
                .with_leader(text(group.leader.as_deref().unwrap_or("")))
                .with_skip_assignment(skip_assignment)
                .with_member_id(text(member_id))
                .with_members(members),
        )
    }

    pub(super) fn sync_group(
        &mut self,
        now: i64,
        journal: &mut dyn Journal,
        token: Token,
        version: i16,
        request: SyncGroupRequest,
    ) {
        let group_id = request.group_id.to_string();
        let member_id = request.member_id.to_string();
        if group_id.is_empty() {
            return self.respond(token, sync_error(ResponseError::InvalidGroupId));
        }
        if let Some(error) = self.error_code_for_missing_group(&group_id) {
            return self.respond(token, sync_error(error));
        }
        let group = &self.groups[&group_id];
        let instance = request.group_instance_id.as_ref().map(|s| s.as_str());
        if let Some(error) = check_member(group, &member_id, instance) {
            return self.respond(token, sync_error(error));
        }
        if request.generation_id != group.generation_id {
            return self.respond(token, sync_error(ResponseError::IllegalGeneration));
        }
        let type_mismatch = request
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t.as_str()) != group.protocol_type.as_deref());
        let name_mismatch = request
            .protocol_name
            .as_ref()
            .is_some_and(|n| Some(n.as_str()) != group.protocol.as_deref());
        if type_mismatch || name_mismatch {
            return self.respond(token, sync_error(ResponseError::InconsistentGroupProtocol));
        }
        match group.state {
            GroupState::Empty | GroupState::Dead => {
                self.respond(token, sync_error(ResponseError::UnknownMemberId))
            }
            GroupState::PreparingRebalance => {
                self.respond(token, sync_error(ResponseError::RebalanceInProgress))
            }
            GroupState::Stable => {
                self.touch_member(now, &group_id, &member_id);
                let group = self.groups.get_mut(&group_id).expect("group exists");
                group.pending_sync.remove(&member_id);
                if group.pending_sync.is_empty() {
                    group.sync_deadline = None;
                }
                let response = self.sync_response(&group_id, &member_id);
                self.respond(token, response);
            }
            GroupState::CompletingRebalance => {
                self.touch_member(now, &group_id, &member_id);
                let group = self.groups.get_mut(&group_id).expect("group exists");
                group.pending_sync.remove(&member_id);
                if group.pending_sync.is_empty() {
                    group.sync_deadline = None;
                }
                if let Some(member) = group.members.get_mut(&member_id) {
                    member.awaiting_sync = Some(Waiting { token, version });
                }
                if group.leader.as_deref() == Some(member_id.as_str()) {
                    let assignments = request
                        .assignments
                        .into_iter()
                        .map(|a| (a.member_id.to_string(), a.assignment))
                        .collect();
                    self.complete_sync(now, journal, &group_id, assignments);
                }
            }
        }
    }

    /// The leader's assignment arrived: store it, then hand every member its part.
    fn complete_sync(
        &mut self,
        now: i64,
        journal: &mut dyn Journal,
        group_id: &str,
        assignments: Vec<(String, Bytes)>,
    ) {
        let group = self.groups.get_mut(group_id).expect("group exists");
        for member in group.members.values_mut() {
            member.assignment = assignments
                .iter()
                .find(|(id, _)| *id == member.member_id)
                .map(|(_, a)| a.clone())
                .unwrap_or_default();
        }
        if let Err(error) = self.store_group(journal, group_id) {
            tracing::warn!(group = group_id, %error, "could not store the assignment; rebalancing again");
            let group = self.groups.get_mut(group_id).expect("group exists");
            let waiting: Vec<Token> = group
                .members
                .values_mut()
                .filter_map(|m| m.awaiting_sync.take().map(|w| w.token))
                .collect();
            for member in group.members.values_mut() {
                member.assignment = Bytes::new();
            }
            for token in waiting {
                self.respond(token, sync_error(ResponseError::CoordinatorNotAvailable));
            }
            self.prepare_rebalance(now, journal, group_id, RebalanceCause::StorageFailure);
            return;
        }
        let group = self.groups.get_mut(group_id).expect("group exists");
        group.transition(GroupState::Stable, now);
        let (started_at_ms, cause) = group
            .rebalance
            .take()
            .unwrap_or((now, RebalanceCause::MemberJoined));
        let generation = group.generation_id;
        let assignment = group
            .members
            .values()
            .map(|m| {
                let partitions = consumer_protocol::assigned_partitions(&m.assignment);
                (m.member_id.clone(), partitions.unwrap_or_default())
            })
            .collect();
        let completed = GroupEventKind::RebalanceCompleted {
            generation,
            started_at_ms,
            cause,
            assignment,
        };
        self.emit(now, group_id, completed);
        let group = self.groups.get_mut(group_id).expect("group exists");
        let waiting: Vec<(String, Token)> = group
            .members
            .values_mut()
            .filter_map(|m| {
                m.awaiting_sync
                    .take()
                    .map(|w| (m.member_id.clone(), w.token))
            })
            .collect();
        for (member_id, token) in waiting {
            let response = self.sync_response(group_id, &member_id);
            self.respond(token, response);
        }
    }

    fn sync_response(&self, group_id: &str, member_id: &str) -> Response {
        let group = &self.groups[group_id];
        let assignment = group
            .members
            .get(member_id)
            .map(|m| m.assignment.clone())
            .unwrap_or_default();
        Response::SyncGroup(
            SyncGroupResponse::default()
                .with_protocol_type(group.protocol_type.as_deref().map(text))
                .with_protocol_name(group.protocol.as_deref().map(text))
                .with_assignment(assignment),
        )
    }

    /// Members of the new generation that never sent SyncGroup are removed when the
    /// rebalance timeout passes, and the group rebalances without them.
    pub(super) fn run_sync_deadline(
        &mut self,
        now: i64,
        journal: &mut dyn Journal,
        group_id: &str,
    ) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        let due = group.sync_deadline.is_some_and(|d| now >= d);
        if !due {
            return;
        }
        group.sync_deadline = None;
        if !matches!(
            group.state,
            GroupState::CompletingRebalance | GroupState::Stable
        ) {
            return;
        }
        let missing: Vec<String> = group.pending_sync.iter().cloned().collect();
        if missing.is_empty() {
            return;
        }
        for member_id in missing {
            self.remove_member(group_id, &member_id);
            let reason = RemovalReason::SyncTimeout;
            self.emit(
                now,
                group_id,
                GroupEventKind::MemberRemoved { member_id, reason },
            );
        }
        self.prepare_rebalance(now, journal, group_id, RebalanceCause::SyncTimeout);
    }

    pub(super) fn heartbeat(&mut self, now: i64, token: Token, request: HeartbeatRequest) {
        let group_id = request.group_id.to_string();
        let member_id = request.member_id.to_string();
        if group_id.is_empty() {
            return self.respond(token, heartbeat_error(ResponseError::InvalidGroupId));
        }
        if let Some(error) = self.error_code_for_missing_group(&group_id) {
            return self.respond(token, heartbeat_error(error));
        }
        let group = &self.groups[&group_id];
        if group.state == GroupState::Empty {
            return self.respond(token, heartbeat_error(ResponseError::UnknownMemberId));
        }
        let instance = request.group_instance_id.as_ref().map(|s| s.as_str());
        if let Some(error) = check_member(group, &member_id, instance) {
            return self.respond(token, heartbeat_error(error));
        }
        if request.generation_id != group.generation_id {
            return self.respond(token, heartbeat_error(ResponseError::IllegalGeneration));
        }
        let rebalancing = group.state == GroupState::PreparingRebalance;
        self.touch_member(now, &group_id, &member_id);
        let response = if rebalancing {
            heartbeat_error(ResponseError::RebalanceInProgress)
        } else {
            Response::Heartbeat(HeartbeatResponse::default())
        };
        self.respond(token, response);
    }

    pub(super) fn leave_group(
        &mut self,
        now: i64,
        journal: &mut dyn Journal,
        token: Token,
        version: i16,
        request: LeaveGroupRequest,
    ) {
        let group_id = request.group_id.to_string();
        // v0-2 name one member; v3+ a batch, possibly by instance id.
        let leaving: Vec<(String, Option<String>)> = if version < 3 {
            vec![(request.member_id.to_string(), None)]
        } else {
            request
                .members
                .iter()
                .map(|m| {
                    (
                        m.member_id.to_string(),
                        m.group_instance_id.as_ref().map(|s| s.to_string()),
                    )
                })
                .collect()
        };
        let top_error = if group_id.is_empty() {
            Some(ResponseError::InvalidGroupId)
        } else {
            self.error_code_for_missing_group(&group_id)
        };
        if let Some(error) = top_error {
            return self.respond(
                token,
                Response::LeaveGroup(LeaveGroupResponse::default().with_error_code(error.code())),
            );
        }
        let mut results = Vec::new();
        let mut removed_any = false;
        for (member_id, instance) in leaving {
            let error = self.remove_leaving_member(now, &group_id, &member_id, instance.as_deref());
            removed_any |= error.is_none();
            results.push(
                MemberResponse::default()
                    .with_member_id(text(&member_id))
                    .with_group_instance_id(instance.as_deref().map(text))
                    .with_error_code(error.map_or(0, |e| e.code())),
            );
        }
        let response = if version < 3 {
            LeaveGroupResponse::default().with_error_code(results[0].error_code)
        } else {
            LeaveGroupResponse::default().with_members(results)
        };
        self.respond(token, Response::LeaveGroup(response));
        if removed_any {
            self.after_members_removed(now, journal, &group_id, RebalanceCause::MemberLeft);
        }
    }

    /// Removes one member named by a LeaveGroup, or says why not.
    fn remove_leaving_member(
        &mut self,
        now: i64,
        group_id: &str,
        member_id: &str,
        instance: Option<&str>,
    ) -> Option<ResponseError> {
        let group = self.groups.get_mut(group_id).expect("group exists");
        let target = match instance {
            Some(instance) => match group.static_members.get(instance) {
                None => return Some(ResponseError::UnknownMemberId),
                Some(current) if !member_id.is_empty() && current != member_id => {
                    return Some(ResponseError::FencedInstanceId)
                }
                Some(current) => current.clone(),
            },
            None => {
                if group.pending_members.remove(member_id).is_some() {
                    return None;
                }
                if !group.members.contains_key(member_id) {
                    return Some(ResponseError::UnknownMemberId);
                }
                member_id.to_string()
            }
        };
        self.remove_member(group_id, &target);
        self.emit(
            now,
            group_id,
            GroupEventKind::MemberLeft { member_id: target },
        );
        None
    }

    /// After members are gone: rebalance a settled group, or finish a join phase that was
    /// only waiting for them.
    pub(super) fn after_members_removed(
        &mut self,
        now: i64,
        journal: &mut dyn Journal,
        group_id: &str,
        cause: RebalanceCause,
    ) {
        match self.groups.get(group_id).map(|g| g.state) {
            Some(GroupState::Stable | GroupState::CompletingRebalance) => {
                self.prepare_rebalance(now, journal, group_id, cause)
            }
            Some(GroupState::PreparingRebalance) => {
                self.maybe_complete_join(now, journal, group_id)
            }
            _ => {}
        }
    }

    /// Removes a member; its waiting requests are answered with UNKNOWN_MEMBER_ID.
    pub(super) fn remove_member(&mut self, group_id: &str, member_id: &str) {
        let group = self.groups.get_mut(group_id).expect("group exists");
        let Some(mut member) = group.members.remove(member_id) else {
            return;
        };
        if let Some(instance) = &member.group_instance_id {
            if group.static_members.get(instance).map(String::as_str) == Some(member_id) {
                group.static_members.remove(instance);
            }
        }
        group.pending_sync.remove(member_id);
        if group.leader.as_deref() == Some(member_id) {
            group.leader = None;
        }
        if let Some(w) = member.awaiting_join.take() {
            self.respond(
                w.token,
                join_error(ResponseError::UnknownMemberId, member_id),
            );
        }
        if let Some(w) = member.awaiting_sync.take() {
            self.respond(w.token, sync_error(ResponseError::UnknownMemberId));
        }
    }

    /// Evicts members whose session timed out, and forgets member ids handed out with
    /// MEMBER_ID_REQUIRED that never came back.
    pub(super) fn expire_members(&mut self, now: i64, journal: &mut dyn Journal, group_id: &str) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        let before = group.pending_members.len();
        group.pending_members.retain(|_, deadline| *deadline > now);
        let pending_expired = group.pending_members.len() != before;
        let expired: Vec<String> = group
            .members
            .values()
            .filter(|m| m.session_deadline <= now && !m.keeps_alive())
            .map(|m| m.member_id.clone())
            .collect();
        let any_expired = !expired.is_empty();
        for member_id in expired {
            self.remove_member(group_id, &member_id);
            let reason = RemovalReason::SessionTimeout;
            self.emit(
                now,
                group_id,
                GroupEventKind::MemberRemoved { member_id, reason },
            );
        }
        if any_expired || pending_expired {
            self.after_members_removed(now, journal, group_id, RebalanceCause::SessionTimeout);
        }
    }

    /// Writes the group's metadata record: generation, protocol, leader, members and their
    /// assignments.
    pub(super) fn store_group(
        &self,
        journal: &mut dyn Journal,
        group_id: &str,
    ) -> Result<(), String> {
        let group = &self.groups[group_id];
        let protocol = group.protocol.clone().unwrap_or_default();
        let value = GroupMetadataValue {
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            generation: group.generation_id,
            protocol: group.protocol.clone(),
            leader: group.leader.clone(),
            current_state_timestamp: group.state_timestamp,
            members: group
                .members
                .values()
                .map(|m| MemberMetadata {
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
        };
        journal.append(vec![Record {
            key: RecordKey::GroupMetadata {
                group: group_id.to_string(),
            }
            .encode(),
            value: Some(RecordValue::GroupMetadata(value).encode()),
        }])
    }

    /// Rebuilds a group from its metadata record at start-up; members get a full session
    /// timeout from `now` to show up.
    pub(super) fn replay_group(
        &mut self,
        now: i64,
        group_id: String,
        value: Option<GroupMetadataValue>,
    ) {
        let Some(value) = value else {
            if let Some(group) = self.groups.get_mut(&group_id) {
                group.members.clear();
                group.static_members.clear();
                if group.offsets.is_empty() {
                    self.groups.remove(&group_id);
                } else {
                    group.transition(GroupState::Empty, now);
                }
            }
            return;
        };
        let group = self
            .groups
            .entry(group_id.clone())
            .or_insert_with(|| Group::new(&group_id, now));
        group.generation_id = value.generation;
        group.protocol_type = (!value.protocol_type.is_empty()).then_some(value.protocol_type);
        group.protocol = value.protocol;
        group.leader = value.leader;
        group.members.clear();
        group.static_members.clear();
        for m in value.members {
            if let Some(instance) = &m.group_instance_id {
                group
                    .static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            let protocol = group.protocol.clone().unwrap_or_default();
            group.members.insert(
                m.member_id.clone(),
                Member {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    rebalance_timeout_ms: m.rebalance_timeout,
                    session_timeout_ms: m.session_timeout,
                    protocols: vec![(protocol, Bytes::from(m.subscription))],
                    assignment: Bytes::from(m.assignment),
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
    }
}

/// Kafka's member checks for SyncGroup, Heartbeat, JoinGroup and OffsetCommit: a static
/// member's id must be the current one for its instance id, and the member must exist.
pub(super) fn check_member(
    group: &Group,
    member_id: &str,
    instance: Option<&str>,
) -> Option<ResponseError> {
    if let Some(current) = instance.and_then(|i| group.static_members.get(i)) {
        if current != member_id {
            return Some(ResponseError::FencedInstanceId);
        }
    }
    let Some(member) = group.members.get(member_id) else {
        return Some(ResponseError::UnknownMemberId);
    };
    if instance.is_some() && member.group_instance_id.as_deref() != instance {
        return Some(ResponseError::FencedInstanceId);
    }
    None
}
