//! Heartbeats answered when there is something to say.
//!
//! A KIP-848 member learns that it must give up a partition only from a heartbeat response.
//! Answered at once, a stable member's heartbeat leaves it deaf to the group until its next
//! one, up to `group.consumer.heartbeat.interval.ms` (5 s) later: a member joining a stable
//! group waits that long for the partitions it is given. So a heartbeat that brings its
//! member nothing new (same epoch, no assignment, nothing to revoke) may be held: it is
//! answered as soon as an operation changes something for its member (a new target
//! assignment, partitions it waits for released, the member removed), when the client sends
//! another request on the same connection (Kafka answers a connection's requests in order),
//! or shortly before the client's next heartbeat is due. A stable group still sends one
//! heartbeat per member per interval; a change reaches its members within a round trip.
//!
//! Clients time a heartbeat out after the interval they were last given (librdkafka; it
//! checks once a second, and a timeout closes the connection), and send the next one an
//! interval after the last was sent (librdkafka and Java), so a heartbeat is held for at most
//! that interval less [`HOLD_MARGIN_MS`], and never when the interval is shorter than the
//! margin. A change that comes in that margin waits for the member's next heartbeat. A member that must revoke partitions is never held: its client acknowledges the
//! revocation with its next heartbeat, which it sends only once the previous one is answered.

use kafka_protocol::messages::ConsumerGroupHeartbeatResponse;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{failure, Heartbeat, JOIN};
use crate::consumer::{HeldHeartbeat, MemberState};
use crate::shard::{Group, GroupShard, HeldAnswer, Response};

/// How much sooner than a member's heartbeat interval its held heartbeat is answered.
pub(super) const HOLD_MARGIN_MS: i32 = 500;

impl GroupShard {
    /// Until when the heartbeat `h` of `member_id`, answered with `epoch` and no assignment
    /// (`sends_assignment` false), may be held; `told_before` is the interval the member was
    /// given by its previous response, `interval` the one it is given now.
    pub(super) fn may_hold_until(
        &self,
        now: i64,
        h: &Heartbeat,
        (epoch, sends_assignment): (i32, bool),
        (told_before, interval): (i32, i32),
    ) -> Option<i64> {
        let Some(Group::Consumer(group)) = self.groups.get(&h.group_id) else {
            return None;
        };
        let member = group.members.get(&h.member_id)?;
        let nothing_new = h.member_epoch != JOIN
            && epoch == h.member_epoch
            && !sends_assignment
            && member.state != MemberState::UnrevokedPartitions;
        let hold = told_before.min(interval) - HOLD_MARGIN_MS;
        (nothing_new && hold > 0).then(|| now + i64::from(hold))
    }

    /// Holds a heartbeat until an operation answers it.
    pub(super) fn hold_heartbeat(&mut self, group_id: &str, member_id: &str, held: HeldHeartbeat) {
        let group = self.consumer_group_mut(group_id);
        group.held.insert(member_id.to_string(), held);
    }

    /// Answers the held heartbeat of `member_id` now, if it has one: its client sent
    /// something else.
    pub(in crate::shard) fn release_held_heartbeat(
        &mut self,
        now: i64,
        group_id: &str,
        member_id: &str,
    ) {
        let Some(Group::Consumer(group)) = self.groups.get_mut(group_id) else {
            return;
        };
        let gone = !group.members.contains_key(member_id);
        if let Some(held) = group.held.remove(member_id) {
            match gone {
                true => self.run_held(now, held),
                false => self.answer_unchanged(group_id, held, HeldAnswer::Released),
            }
        }
    }

    /// After an operation: answers the held heartbeats of the groups it touched that are due
    /// or may have something new, and those of groups it deleted or converted.
    pub(in crate::shard) fn settle_held_heartbeats(&mut self, now: i64) {
        for group_id in self.touched_group_ids() {
            let changed = self.transaction.regrouped.contains(&group_id);
            self.revisit_held_heartbeats(now, &group_id, changed);
        }
        for token in self.dropped_heartbeats() {
            let response = ConsumerGroupHeartbeatResponse::default()
                .with_error_code(ResponseError::UnknownMemberId.code())
                .with_error_message(Some(StrBytes::from_static_str(
                    "the member is no longer in the group",
                )));
            self.respond(
                token,
                Response::HeldConsumerGroupHeartbeat(response, HeldAnswer::Changed),
            );
        }
    }

    /// Answers the held heartbeats of `group_id` that are due at `now`, and runs again those
    /// that may have something new when `changed` (the operation wrote the group's records):
    /// of members gone, of members behind the target assignment's epoch or in a group whose
    /// target is to be computed again, and of members waiting for partitions others release.
    fn revisit_held_heartbeats(&mut self, now: i64, group_id: &str, changed: bool) {
        let Some(Group::Consumer(group)) = self.groups.get(group_id) else {
            return;
        };
        let reassigning = group.group_epoch > group.assignment_epoch;
        let revisit: Vec<(String, bool)> = group
            .held
            .iter()
            .filter_map(|(member_id, held)| {
                let stale = changed
                    && (reassigning
                        || group.members.get(member_id).is_none_or(|m| {
                            m.member_epoch != group.assignment_epoch
                                || m.state == MemberState::UnreleasedPartitions
                        }));
                (stale || held.until <= now).then(|| (member_id.clone(), stale))
            })
            .collect();
        for (member_id, stale) in revisit {
            let group = self.consumer_group_mut(group_id);
            if let Some(held) = group.held.remove(&member_id) {
                match stale {
                    true => self.run_held(now, held),
                    false => self.answer_unchanged(group_id, held, HeldAnswer::Due),
                }
            }
        }
    }

    /// Runs a held heartbeat again, as if it came now: answered if it has something to say
    /// or is due, held again otherwise.
    fn run_held(&mut self, now: i64, held: HeldHeartbeat) {
        let heartbeat = Heartbeat::from_request(held.request.clone());
        let (group_id, member_id) = (heartbeat.group_id.clone(), heartbeat.member_id.clone());
        let response = match self.consumer_join_or_heartbeat(now, &held.client, heartbeat) {
            Ok((_, Some(_))) if now < held.until => {
                return self.hold_heartbeat(&group_id, &member_id, held);
            }
            Ok((response, Some(_))) => {
                Response::HeldConsumerGroupHeartbeat(response, HeldAnswer::Due)
            }
            Ok((response, None)) => {
                Response::HeldConsumerGroupHeartbeat(response, HeldAnswer::Changed)
            }
            Err((error, message)) => match failure(error, &message) {
                Response::ConsumerGroupHeartbeat(response) => {
                    Response::HeldConsumerGroupHeartbeat(response, HeldAnswer::Changed)
                }
                other => other,
            },
        };
        self.respond(held.token, response);
    }

    /// Answers a held heartbeat of a member still in the group, for which nothing changed
    /// since it came (any change would have run it again): its epoch, nothing else. Nothing
    /// is written, so the answer cannot be undone by a failed append.
    fn answer_unchanged(&mut self, group_id: &str, held: HeldHeartbeat, why: HeldAnswer) {
        let interval = match self.groups.get(group_id) {
            Some(Group::Consumer(group)) => group
                .members
                .get(held.request.member_id.as_str())
                .map_or(0, |m| m.heartbeat_interval_ms),
            _ => 0,
        };
        let response = ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(held.request.member_id.clone()))
            .with_member_epoch(held.request.member_epoch)
            .with_heartbeat_interval_ms(interval);
        self.respond(
            held.token,
            Response::HeldConsumerGroupHeartbeat(response, why),
        );
    }
}
