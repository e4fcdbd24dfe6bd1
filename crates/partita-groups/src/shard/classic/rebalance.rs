//! The rebalance of a classic group: the join phase, the leader's assignment in SyncGroup,
//! and their deadlines.

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::{check_member, sync_error, text};
use crate::classic::{GroupState, InitialDelay, Waiting};
use crate::consumer_protocol;
use crate::events::{GroupEventKind, RebalanceCause, RemovalReason};
use crate::shard::{Group, GroupShard, Response, Token};

impl GroupShard {
    /// Starts a rebalance: every member must rejoin within the rebalance timeout.
    pub(in crate::shard) fn prepare_rebalance(
        &mut self,
        now: i64,
        group_id: &str,
        cause: RebalanceCause,
    ) {
        let initial_delay_ms = self.config.initial_rebalance_delay_ms;
        let group = self.classic_mut(group_id);
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
        self.maybe_complete_join(now, group_id);
    }

    /// Completes the join phase early once every member has rejoined (not during the
    /// initial delay, whose point is to wait for more members).
    pub(in crate::shard) fn maybe_complete_join(&mut self, now: i64, group_id: &str) {
        let group = self.classic(group_id);
        if group.state == GroupState::PreparingRebalance
            && group.initial_delay.is_none()
            && group.all_members_joined()
        {
            self.complete_join(now, group_id);
        }
    }

    /// The join deadline passed: extend the initial delay if members keep arriving, else
    /// complete the join phase without those who did not rejoin.
    pub(in crate::shard) fn run_join_deadline(&mut self, now: i64, group_id: &str) {
        let initial_delay_ms = self.config.initial_rebalance_delay_ms;
        let Some(Group::Classic(group)) = self.groups.get_mut(group_id) else {
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
        self.complete_join(now, group_id);
    }

    /// Ends the join phase: members that did not rejoin are removed, a new generation begins,
    /// and every joined member gets its JoinGroup response (the leader with the member list).
    pub(in crate::shard) fn complete_join(&mut self, now: i64, group_id: &str) {
        let group = self.classic_mut(group_id);
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
        let group = self.classic_mut(group_id);
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
            self.store_group(now, group_id);
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
    pub(in crate::shard) fn join_response(
        &self,
        group_id: &str,
        member_id: &str,
        version: i16,
    ) -> Response {
        let group = self.classic(group_id);
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

    pub(in crate::shard) fn sync_group(
        &mut self,
        now: i64,
        token: Token,
        version: i16,
        request: SyncGroupRequest,
    ) {
        let group_id = request.group_id.to_string();
        let member_id = request.member_id.to_string();
        // From v5 the protocol type and name are mandatory (Kafka checks before anything).
        if version >= 5 && (request.protocol_type.is_none() || request.protocol_name.is_none()) {
            return self.respond(token, sync_error(ResponseError::InconsistentGroupProtocol));
        }
        if group_id.is_empty() {
            return self.respond(token, sync_error(ResponseError::InvalidGroupId));
        }
        if let Some(error) = self.error_for_missing_classic_group(&group_id) {
            return self.respond(token, sync_error(error));
        }
        let group = self.classic(&group_id);
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
                let group = self.classic_mut(&group_id);
                group.pending_sync.remove(&member_id);
                if group.pending_sync.is_empty() {
                    group.sync_deadline = None;
                }
                let response = self.sync_response(&group_id, &member_id);
                self.respond(token, response);
            }
            GroupState::CompletingRebalance => {
                self.touch_member(now, &group_id, &member_id);
                let group = self.classic_mut(&group_id);
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
                    self.complete_sync(now, &group_id, assignments);
                }
            }
        }
    }

    /// The leader's assignment arrived: store it, then hand every member its part.
    pub(in crate::shard) fn complete_sync(
        &mut self,
        now: i64,
        group_id: &str,
        assignments: Vec<(String, Bytes)>,
    ) {
        let group = self.classic_mut(group_id);
        for member in group.members.values_mut() {
            member.assignment = assignments
                .iter()
                .find(|(id, _)| *id == member.member_id)
                .map(|(_, a)| a.clone())
                .unwrap_or_default();
        }
        self.store_group(now, group_id);
        let group = self.classic_mut(group_id);
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
        let group = self.classic_mut(group_id);
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

    pub(in crate::shard) fn sync_response(&self, group_id: &str, member_id: &str) -> Response {
        let group = self.classic(group_id);
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
    pub(in crate::shard) fn run_sync_deadline(&mut self, now: i64, group_id: &str) {
        let Some(Group::Classic(group)) = self.groups.get_mut(group_id) else {
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
        self.prepare_rebalance(now, group_id, RebalanceCause::SyncTimeout);
    }
}
