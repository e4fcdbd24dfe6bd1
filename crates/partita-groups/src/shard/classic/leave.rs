//! Members going: Heartbeat (the sign of life), LeaveGroup, and eviction when a session
//! times out.

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::{check_member, heartbeat_error, join_error, sync_error, text};
use crate::classic::GroupState;
use crate::events::{GroupEventKind, RebalanceCause, RemovalReason};
use crate::shard::{Group, GroupShard, Response, Token};

impl GroupShard {
    pub(in crate::shard) fn heartbeat(
        &mut self,
        now: i64,
        token: Token,
        request: HeartbeatRequest,
    ) {
        let group_id = request.group_id.to_string();
        let member_id = request.member_id.to_string();
        if group_id.is_empty() {
            return self.respond(token, heartbeat_error(ResponseError::InvalidGroupId));
        }
        if let Some(error) = self.error_for_missing_classic_group(&group_id) {
            return self.respond(token, heartbeat_error(error));
        }
        let group = self.classic(&group_id);
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

    pub(in crate::shard) fn leave_group(
        &mut self,
        now: i64,
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
            self.error_for_missing_classic_group(&group_id)
        };
        // A group that does not exist has none of the members: each is told so in v3+, as
        // Kafka answers a batch; v0-2 fold the one member's error into the top level.
        let group_exists = top_error != Some(ResponseError::UnknownMemberId);
        if let Some(error) = top_error.filter(|_| version < 3 || group_exists) {
            return self.respond(
                token,
                Response::LeaveGroup(LeaveGroupResponse::default().with_error_code(error.code())),
            );
        }
        let mut results = Vec::new();
        let mut removed_any = false;
        for (member_id, instance) in leaving {
            let error = if group_exists {
                self.remove_leaving_member(now, &group_id, &member_id, instance.as_deref())
            } else {
                Some(ResponseError::UnknownMemberId)
            };
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
            self.after_members_removed(now, &group_id, RebalanceCause::MemberLeft);
        }
    }

    /// Removes one member named by a LeaveGroup, or says why not.
    pub(in crate::shard) fn remove_leaving_member(
        &mut self,
        now: i64,
        group_id: &str,
        member_id: &str,
        instance: Option<&str>,
    ) -> Option<ResponseError> {
        let group = self.classic_mut(group_id);
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
    pub(in crate::shard) fn after_members_removed(
        &mut self,
        now: i64,
        group_id: &str,
        cause: RebalanceCause,
    ) {
        match self
            .groups
            .get(group_id)
            .and_then(Group::as_classic)
            .map(|g| g.state)
        {
            Some(GroupState::Stable | GroupState::CompletingRebalance) => {
                self.prepare_rebalance(now, group_id, cause)
            }
            Some(GroupState::PreparingRebalance) => self.maybe_complete_join(now, group_id),
            _ => {}
        }
    }

    /// Removes a member; its waiting requests are answered with UNKNOWN_MEMBER_ID.
    pub(in crate::shard) fn remove_member(&mut self, group_id: &str, member_id: &str) {
        let group = self.classic_mut(group_id);
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
    pub(in crate::shard) fn expire_members(&mut self, now: i64, group_id: &str) {
        let Some(Group::Classic(group)) = self.groups.get_mut(group_id) else {
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
            self.after_members_removed(now, group_id, RebalanceCause::SessionTimeout);
        }
    }
}
