//! The steps of a consumer group's heartbeat, each writing its records: admitting a member,
//! bumping the group epoch, recomputing the target assignment, reconciling a member; and
//! removing members, by their own leave or by a timeout.

use kafka_protocol::ResponseError;

use super::records::{
    current_assignment_record, group_metadata_record, member_metadata_record,
    member_metadata_value, member_tombstones, target_member_record, target_metadata_record,
    TypedRecord,
};
use super::{
    check_member_epoch, new_member, preferred_assignor, reconciled_changed, Heartbeat, Refusal,
    JOIN, LEAVE_TEMPORARILY,
};
use crate::consumer::assignor::{self, MemberSpec};
use crate::consumer::reconcile::reconcile;
use crate::consumer::{Assignment, ConsumerGroup, ConsumerMember, MemberState};
use crate::events::{GroupEventKind, RebalanceCause, RemovalReason};
use crate::records::RecordKey;
use crate::shard::{ClientContext, Group, GroupShard};

/// How a heartbeat's member came in.
pub(super) struct Admitted {
    /// Its member id.
    member_id: String,
    /// A member the group did not know, or a static member back under a new member id.
    is_new: bool,
    /// Its assigned partitions before this heartbeat.
    assigned_before: Assignment,
    /// Its regular expression before this heartbeat.
    regex_before: Option<String>,
    /// Why the group epoch must move, if it must.
    pub(super) cause: Option<RebalanceCause>,
}

/// Where a member stands after its heartbeat.
pub(super) struct Reconciled {
    pub(super) member_id: String,
    pub(super) member_epoch: i32,
    /// The assignment to send it, when it must be sent.
    pub(super) send: Option<Assignment>,
}

impl GroupShard {
    /// Makes sure `group_id` is a consumer group, creating it or converting an empty classic
    /// group on a join (its offsets stay).
    pub(super) fn prepare_consumer_group(
        &mut self,
        now: i64,
        group_id: &str,
        epoch: i32,
    ) -> Result<(), Refusal> {
        let not_found = || {
            Err((
                ResponseError::GroupIdNotFound,
                format!("Group {group_id} is not a consumer group."),
            ))
        };
        match self.groups.get(group_id) {
            Some(Group::Consumer(_)) => return Ok(()),
            None if epoch != JOIN => return not_found(),
            None => {}
            Some(Group::Classic(group))
                if epoch == JOIN
                    && group.members.is_empty()
                    && group.pending_members.is_empty() =>
            {
                let key = RecordKey::GroupMetadata {
                    group: group_id.to_string(),
                };
                self.write(now, key, None);
                tracing::info!(
                    group = group_id,
                    "empty classic group converted to a consumer group"
                );
            }
            Some(_) => return not_found(),
        }
        // Its records follow with the member's.
        let group = ConsumerGroup::new(group_id, now);
        self.groups
            .insert(group_id.to_string(), Group::Consumer(group));
        Ok(())
    }

    /// Finds or admits the heartbeat's member, writing what changed of its metadata.
    pub(super) fn admit_member(
        &mut self,
        now: i64,
        client: &ClientContext,
        h: &Heartbeat,
    ) -> Result<Admitted, Refusal> {
        let max_size = self.config.consumer_max_size;
        let Some(Group::Consumer(group)) = self.groups.get(&h.group_id) else {
            return Err((ResponseError::GroupIdNotFound, "no such group".to_string()));
        };
        let existing_id = match &h.instance_id {
            Some(instance) => group.static_members.get(instance).cloned(),
            None => group
                .members
                .contains_key(&h.member_id)
                .then(|| h.member_id.clone()),
        };
        if existing_id.is_none() && group.members.len() >= max_size {
            let full = "the group is full".to_string();
            return Err((ResponseError::GroupMaxSizeReached, full));
        }
        match existing_id {
            None if h.member_epoch != JOIN => {
                Err((ResponseError::UnknownMemberId, "unknown member".to_string()))
            }
            None => Ok(self.admit_new_member(now, client, h)),
            Some(owner) if h.instance_id.is_some() && owner != h.member_id => {
                let current = &group.members[&owner];
                if h.member_epoch != JOIN {
                    let message = "the instance id belongs to another member".to_string();
                    return Err((ResponseError::FencedInstanceId, message));
                }
                if current.member_epoch != LEAVE_TEMPORARILY {
                    let message = "the instance id is still in use".to_string();
                    return Err((ResponseError::UnreleasedInstanceId, message));
                }
                Ok(self.replace_static_member_of_consumer_group(now, client, h, &owner))
            }
            Some(owner) => {
                let current = group.members[&owner].clone();
                check_member_epoch(&current, h)?;
                Ok(self.update_known_member(now, client, h, current))
            }
        }
    }

    fn admit_new_member(&mut self, now: i64, client: &ClientContext, h: &Heartbeat) -> Admitted {
        let mut member = new_member(h, client);
        restate(&mut member, h, client);
        let (key, value) = member_metadata_record(&h.group_id, &member);
        self.write(now, key, value);
        let joined = GroupEventKind::MemberJoined {
            member_id: member.member_id.clone(),
            client_id: member.client_id.clone(),
            group_instance_id: member.instance_id.clone(),
        };
        self.emit(now, &h.group_id, joined);
        Admitted {
            member_id: member.member_id,
            is_new: true,
            assigned_before: Assignment::new(),
            regex_before: None,
            cause: Some(RebalanceCause::MemberJoined),
        }
    }

    fn update_known_member(
        &mut self,
        now: i64,
        client: &ClientContext,
        h: &Heartbeat,
        mut member: ConsumerMember,
    ) -> Admitted {
        let before = member_metadata_value(&member);
        let subscriptions_before = (
            member.subscribed_topic_names.clone(),
            member.subscribed_topic_regex.clone(),
        );
        restate(&mut member, h, client);
        if member_metadata_value(&member) != before {
            let (key, value) = member_metadata_record(&h.group_id, &member);
            self.write(now, key, value);
        }
        let subscriptions_changed = subscriptions_before
            != (
                member.subscribed_topic_names.clone(),
                member.subscribed_topic_regex.clone(),
            );
        Admitted {
            member_id: member.member_id,
            is_new: false,
            assigned_before: member.assigned,
            regex_before: subscriptions_before.1,
            cause: subscriptions_changed.then_some(RebalanceCause::MetadataChanged),
        }
    }

    /// A static member back under a new member id takes over the old one's place, target and
    /// partitions, with no rebalance: the old member's records go, the new one's are written.
    fn replace_static_member_of_consumer_group(
        &mut self,
        now: i64,
        client: &ClientContext,
        h: &Heartbeat,
        old_member_id: &str,
    ) -> Admitted {
        let group = self.consumer_group_mut(&h.group_id);
        let mut member = group.members[old_member_id].clone();
        let regex_before = member.subscribed_topic_regex.clone();
        let target = group.target.get(old_member_id).cloned().unwrap_or_default();
        member.member_id = h.member_id.clone();
        member.member_epoch = JOIN;
        member.previous_member_epoch = JOIN;
        member.state = MemberState::Stable;
        restate(&mut member, h, client);
        let mut records: Vec<TypedRecord> = member_tombstones(&h.group_id, old_member_id);
        records.push(member_metadata_record(&h.group_id, &member));
        records.push(target_member_record(
            &h.group_id,
            &member.member_id,
            &target,
        ));
        records.push(current_assignment_record(&h.group_id, &member));
        for (key, value) in records {
            self.write(now, key, value);
        }
        let rejoined = GroupEventKind::StaticMemberRejoined {
            old_member_id: old_member_id.to_string(),
            new_member_id: member.member_id.clone(),
        };
        self.emit(now, &h.group_id, rejoined);
        Admitted {
            member_id: member.member_id,
            is_new: true,
            assigned_before: Assignment::new(),
            regex_before,
            cause: None,
        }
    }

    /// Bumps the group epoch when membership or subscriptions changed (`cause`), when the
    /// subscribed topics changed, or for a group's very first member.
    pub(super) fn bump_group_epoch_if_needed(
        &mut self,
        now: i64,
        group_id: &str,
        mut cause: Option<RebalanceCause>,
    ) {
        let topics = self.topics.clone();
        let group = self.consumer_group_mut(group_id);
        group.restore_regexes(&topics);
        if group.subscribed_metadata_hash(&topics) != group.metadata_hash {
            cause.get_or_insert(RebalanceCause::MetadataChanged);
        }
        if group.group_epoch == 0 {
            cause.get_or_insert(RebalanceCause::MemberJoined);
        }
        if let Some(cause) = cause {
            self.bump_group_epoch(now, group_id, cause);
        }
    }

    /// Writes the next group epoch, with the hash of the topics it was computed for.
    fn bump_group_epoch(&mut self, now: i64, group_id: &str, cause: RebalanceCause) {
        let topics = self.topics.clone();
        let group = self.consumer_group_mut(group_id);
        group.restore_regexes(&topics);
        let epoch = group.group_epoch + 1;
        let hash = group.subscribed_metadata_hash(&topics);
        let started = group.rebalance.is_none() && !group.members.is_empty();
        let (key, value) = group_metadata_record(group_id, epoch, hash);
        self.write(now, key, value);
        if started {
            self.consumer_group_mut(group_id).rebalance = Some((now, cause));
            let generation = epoch - 1;
            let event = GroupEventKind::RebalanceStarted { generation, cause };
            self.emit(now, group_id, event);
        }
    }

    /// Takes note of a pattern the heartbeat's member brought to the group: it is resolved
    /// after the heartbeat is answered.
    pub(super) fn note_new_regex(&mut self, group_id: &str, admitted: &Admitted) {
        let group = self.consumer_group_mut(group_id);
        group.note_new_regex(&admitted.member_id, admitted.regex_before.as_deref());
    }

    /// Resolves the group's regular expressions again when they are due (a pattern is
    /// pending, or the topics changed and the last resolution is old enough), bumping the
    /// group epoch if what they match changed.
    pub(super) fn refresh_regexes(&mut self, now: i64, group_id: &str) {
        let topics = self.topics.clone();
        if self
            .consumer_group_mut(group_id)
            .refresh_regexes(&topics, now)
        {
            self.bump_group_epoch_if_needed(now, group_id, None);
        }
    }

    /// Computes a new target assignment when the group epoch is ahead of it.
    pub(super) fn refresh_target_assignment(&mut self, now: i64, group_id: &str) {
        let topics = self.topics.clone();
        let default_assignor = self
            .config
            .consumer_assignors
            .first()
            .cloned()
            .unwrap_or_else(|| "uniform".to_string());
        let group = self.consumer_group_mut(group_id);
        if group.group_epoch <= group.assignment_epoch {
            return;
        }
        let assignor = preferred_assignor(group).unwrap_or(default_assignor);
        let specs: Vec<MemberSpec<'_>> = group
            .members
            .values()
            .map(|m| MemberSpec {
                member_id: &m.member_id,
                topics: group.member_topics(m, &topics),
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
        records.push(target_metadata_record(group_id, group.group_epoch));
        group.assignor = assignor;
        for (key, value) in records {
            self.write(now, key, value);
        }
    }

    /// Moves the member a step towards its target, writing where it now stands; then its
    /// deadlines and what to send it.
    pub(super) fn reconcile_member(
        &mut self,
        now: i64,
        h: &Heartbeat,
        admitted: &Admitted,
    ) -> Reconciled {
        let session_timeout = i64::from(self.group_config_i32(
            &h.group_id,
            crate::config::CONSUMER_SESSION_TIMEOUT_MS,
            self.config.consumer_session_timeout_ms,
        ));
        let group = self.consumer_group_mut(&h.group_id);
        let member = group.members[&admitted.member_id].clone();
        let target = group.target.get(&member.member_id).cloned();
        let others = group.owned_by_others(&member.member_id);
        let next = reconcile(
            &member,
            group.assignment_epoch,
            &target.unwrap_or_default(),
            h.owned.as_ref(),
            &others,
        );
        if reconciled_changed(&member, &next) || admitted.is_new {
            let (key, value) = current_assignment_record(&h.group_id, &next);
            self.write(now, key, value);
        }
        let group = self.consumer_group_mut(&h.group_id);
        let stored = group
            .members
            .get_mut(&admitted.member_id)
            .expect("member written");
        stored.session_deadline = now + session_timeout;
        stored.rebalance_deadline = match next.state {
            MemberState::UnrevokedPartitions => member
                .rebalance_deadline
                .filter(|_| member.state == MemberState::UnrevokedPartitions)
                .or(Some(now + i64::from(next.rebalance_timeout_ms.max(0)))),
            _ => None,
        };
        let current = (next.member_epoch, next.assigned.clone());
        let send = h.member_epoch == JOIN
            || h.is_full()
            || member.last_sent.as_ref() != Some(&current)
                && next.assigned != admitted.assigned_before;
        if send {
            stored.last_sent = Some(current);
        }
        Reconciled {
            member_id: next.member_id,
            member_epoch: next.member_epoch,
            send: send.then_some(next.assigned),
        }
    }

    /// Emits the end of a reconciliation once every member holds its target.
    pub(super) fn maybe_complete_consumer_rebalance(&mut self, now: i64, group_id: &str) {
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
            .map(|m| {
                let named = super::named_partitions(&m.assigned, &topics);
                (m.member_id.clone(), named)
            })
            .collect();
        let completed = GroupEventKind::RebalanceCompleted {
            generation,
            started_at_ms,
            cause,
            assignment,
        };
        self.emit(now, group_id, completed);
    }

    /// Removes a member for good: its partitions are free once the others reconcile.
    pub(in crate::shard) fn fence_consumer_member(
        &mut self,
        now: i64,
        group_id: &str,
        member_id: &str,
        reason: Option<RemovalReason>,
    ) {
        let Some(Group::Consumer(group)) = self.groups.get(group_id) else {
            return;
        };
        if !group.members.contains_key(member_id) {
            return;
        }
        for (key, value) in member_tombstones(group_id, member_id) {
            self.write(now, key, value);
        }
        let member_id = member_id.to_string();
        let (event, cause) = match reason {
            None => (
                GroupEventKind::MemberLeft { member_id },
                RebalanceCause::MemberLeft,
            ),
            Some(reason) => (
                GroupEventKind::MemberRemoved { member_id, reason },
                match reason {
                    RemovalReason::SessionTimeout => RebalanceCause::SessionTimeout,
                    _ => RebalanceCause::MissedPoll,
                },
            ),
        };
        self.emit(now, group_id, event);
        self.bump_group_epoch(now, group_id, cause);
        let group = self.consumer_group_mut(group_id);
        if group.members.is_empty() {
            group.rebalance = None;
            group.state_timestamp = now;
            let generation = group.group_epoch;
            self.emit(now, group_id, GroupEventKind::GroupEmptied { generation });
        }
    }

    /// Session and rebalance timeouts of consumer-protocol members.
    pub(in crate::shard) fn expire_consumer_members(&mut self, now: i64, group_id: &str) {
        let Some(Group::Consumer(group)) = self.groups.get(group_id) else {
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
            self.fence_consumer_member(now, group_id, &member_id, Some(reason));
        }
    }
}

/// Takes what a heartbeat restates of its member.
fn restate(member: &mut ConsumerMember, h: &Heartbeat, client: &ClientContext) {
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
        member.subscribed_topic_names = names.clone();
    }
    if let Some(regex) = &h.subscribed_topic_regex {
        member.subscribed_topic_regex = (!regex.is_empty()).then(|| regex.clone());
    }
}
