//! Classic group membership (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) and the rebalance
//! it drives, with Kafka's rules and error codes. This file: joining.

mod leave;
mod rebalance;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::classic::{ClassicGroup, GroupState, Member, Waiting};
use crate::config::NEW_MEMBER_JOIN_TIMEOUT_MS;
use crate::events::{GroupEventKind, RebalanceCause};
use crate::records::{RecordKey, RecordValue};
use crate::shard::{ClientContext, Group, GroupShard, Response, Token};

/// JoinGroup v4+ makes a new dynamic member come back with the id it is given (KIP-394).
const MEMBER_ID_REQUIRED_VERSION: i16 = 4;

pub(super) fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub(super) fn join_error(error: ResponseError, member_id: &str) -> Response {
    Response::JoinGroup(
        JoinGroupResponse::default()
            .with_error_code(error.code())
            .with_generation_id(-1)
            .with_protocol_name(Some(text("")))
            .with_leader(text(""))
            .with_member_id(text(member_id)),
    )
}

pub(super) fn sync_error(error: ResponseError) -> Response {
    Response::SyncGroup(SyncGroupResponse::default().with_error_code(error.code()))
}

pub(super) fn heartbeat_error(error: ResponseError) -> Response {
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

impl GroupShard {
    pub(in crate::shard) fn join_group(
        &mut self,
        now: i64,
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
        if let Err(error) = self.leave_consumer_protocol(now, &group_id) {
            return self.respond(token, join_error(error, &join.member_id));
        }
        if let Some(Group::Share(_)) = self.groups.get(&group_id) {
            let error = ResponseError::InconsistentGroupProtocol;
            return self.respond(token, join_error(error, &join.member_id));
        }
        if !self.groups.contains_key(&group_id) {
            if !join.member_id.is_empty() {
                return self.respond(
                    token,
                    join_error(ResponseError::UnknownMemberId, &join.member_id),
                );
            }
            let group = Group::Classic(ClassicGroup::new(&group_id, now));
            self.groups.insert(group_id.clone(), group);
        }
        let group = self.classic(&group_id);
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
            self.join_new_member(now, &group_id, client, join)
        } else {
            self.join_known_member(now, &group_id, client, join)
        }
    }

    fn join_new_member(
        &mut self,
        now: i64,
        group_id: &str,
        client: &ClientContext,
        join: JoinRequest,
    ) {
        let token = join.waiting.token;
        let group = self.classic(group_id);
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
                    group_id,
                    client,
                    &old_member_id,
                    new_member_id,
                    join,
                )
            }
            (Some(instance), None) => {
                let new_member_id = self.new_member_id(instance);
                self.add_member_and_rebalance(now, group_id, client, new_member_id, join)
            }
            (None, _) => {
                let new_member_id = self.new_member_id(&client.client_id);
                if join.waiting.version >= MEMBER_ID_REQUIRED_VERSION {
                    let deadline = now + i64::from(join.session_timeout_ms);
                    let group = self.classic_mut(group_id);
                    group
                        .pending_members
                        .insert(new_member_id.clone(), deadline);
                    self.respond(
                        token,
                        join_error(ResponseError::MemberIdRequired, &new_member_id),
                    );
                } else {
                    self.add_member_and_rebalance(now, group_id, client, new_member_id, join)
                }
            }
        }
    }

    fn join_known_member(
        &mut self,
        now: i64,
        group_id: &str,
        client: &ClientContext,
        join: JoinRequest,
    ) {
        let token = join.waiting.token;
        let group = self.classic(group_id);
        let member_id = join.member_id.clone();
        if group.pending_members.contains_key(&member_id) {
            return self.add_member_and_rebalance(now, group_id, client, member_id, join);
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
                self.maybe_complete_join(now, group_id);
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
                self.prepare_rebalance(now, group_id, RebalanceCause::MetadataChanged);
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
        group_id: &str,
        client: &ClientContext,
        member_id: String,
        join: JoinRequest,
    ) {
        let group = self.classic_mut(group_id);
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
            GroupState::PreparingRebalance => self.maybe_complete_join(now, group_id),
            _ => self.prepare_rebalance(now, group_id, RebalanceCause::MemberJoined),
        }
    }

    /// A static member came back with a new member id: it takes over the old member's place
    /// and assignment, and the old id is fenced (KIP-345).
    #[allow(clippy::too_many_arguments)]
    fn replace_static_member(
        &mut self,
        now: i64,
        group_id: &str,
        client: &ClientContext,
        old_member_id: &str,
        new_member_id: String,
        join: JoinRequest,
    ) {
        let group = self.classic_mut(group_id);
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
                // Same subscription: no rebalance. The new id is stored before it is handed
                // out, or a coordinator restart would not know it.
                self.store_group(now, group_id);
                let response = self.join_response(group_id, &new_member_id, waiting.version);
                self.respond(waiting.token, response);
            }
            GroupState::PreparingRebalance => {
                let group = self.classic_mut(group_id);
                if let Some(member) = group.members.get_mut(&new_member_id) {
                    member.awaiting_join = Some(waiting);
                }
                self.maybe_complete_join(now, group_id);
            }
            _ => {
                let group = self.classic_mut(group_id);
                if let Some(member) = group.members.get_mut(&new_member_id) {
                    member.awaiting_join = Some(waiting);
                }
                self.prepare_rebalance(now, group_id, RebalanceCause::StaticMemberRestarted);
            }
        }
    }

    /// A classic join to a consumer-protocol group: refused while it has members (Kafka's
    /// INCONSISTENT_GROUP_PROTOCOL); an empty one is deleted, to become a classic group again.
    pub(in crate::shard) fn leave_consumer_protocol(
        &mut self,
        now: i64,
        group_id: &str,
    ) -> Result<(), ResponseError> {
        let Some(Group::Consumer(group)) = self.groups.get(group_id) else {
            return Ok(());
        };
        if !group.members.is_empty() {
            return Err(ResponseError::InconsistentGroupProtocol);
        }
        for (key, value) in super::consumer::group_tombstones(group) {
            self.write(now, key, value);
        }
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
        let group = self.classic_mut(group_id);
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
    pub(in crate::shard) fn touch_member(&mut self, now: i64, group_id: &str, member_id: &str) {
        if let Some(member) = self.groups.get_mut(group_id).and_then(|g| match g {
            Group::Classic(group) => group.members.get_mut(member_id),
            Group::Consumer(_) | Group::Share(_) => None,
        }) {
            member.session_deadline = member
                .session_deadline
                .max(now + i64::from(member.session_timeout_ms));
        }
    }

    /// Writes the group's metadata record: generation, protocol, leader, members and their
    /// assignments.
    pub(in crate::shard) fn store_group(&mut self, now: i64, group_id: &str) {
        let value = self.classic(group_id).metadata_record();
        let key = RecordKey::GroupMetadata {
            group: group_id.to_string(),
        };
        self.write(now, key, Some(RecordValue::GroupMetadata(value)));
    }
}

/// Kafka's member checks for SyncGroup, Heartbeat, JoinGroup and OffsetCommit: a static
/// member's id must be the current one for its instance id, and the member must exist.
pub(in crate::shard) fn check_member(
    group: &ClassicGroup,
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
