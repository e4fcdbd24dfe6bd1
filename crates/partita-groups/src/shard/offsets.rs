//! Committed offsets: OffsetCommit, OffsetFetch, OffsetDelete, and their expiry.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartitions, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::classic::check_member;
use super::{Group, GroupShard, Response, Token};
use crate::classic::{CommittedOffset, GroupState};
use crate::records::{OffsetCommitValue, RecordKey, RecordValue};

/// One group's part of an OffsetFetch, the same for every request version.
#[derive(Clone, Debug)]
pub struct OffsetFetchGroup {
    /// The group.
    pub group_id: String,
    /// Topics and partitions wanted; `None` for every committed offset of the group.
    pub topics: Option<Vec<(String, Vec<i32>)>>,
    /// The asking member and its epoch (OffsetFetch v9), checked when given.
    pub member: Option<(String, i32)>,
    /// OffsetFetch v7+: a partition whose offset a transaction under way committed is
    /// answered UNSTABLE_OFFSET_COMMIT, for the consumer to ask again once it ends.
    pub require_stable: bool,
}

/// OffsetCommit and OffsetFetch carry consumer-protocol member epochs from this version on.
const MEMBER_EPOCH_VERSION: i16 = 9;

/// OffsetCommit v2-v4 carried a retention time; -1 means the broker default.
const DEFAULT_RETENTION: i64 = -1;

impl GroupShard {
    pub(super) fn offset_commit(
        &mut self,
        now: i64,
        token: Token,
        version: i16,
        request: OffsetCommitRequest,
    ) {
        let group_id = request.group_id.to_string();
        let error = self.validate_commit(now, &group_id, version, &request);
        let mut accepted = Vec::new();
        let topics = request
            .topics
            .iter()
            .map(|topic| {
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|p| {
                        let offset = CommittedOffset {
                            offset: p.committed_offset,
                            leader_epoch: p.committed_leader_epoch,
                            metadata: p
                                .committed_metadata
                                .as_ref()
                                .map_or("", |m| m.as_str())
                                .to_string(),
                            commit_timestamp: now,
                            expire_timestamp: (version <= 4
                                && request.retention_time_ms != DEFAULT_RETENTION)
                                .then(|| now + request.retention_time_ms),
                            order: 0,
                        };
                        let at = (topic.name.as_str(), p.partition_index);
                        let code = self.accept_offset(error, at, offset, &mut accepted);
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                    })
                    .collect();
                OffsetCommitResponseTopic::default()
                    .with_name(topic.name.clone())
                    .with_partitions(partitions)
            })
            .collect();
        for (topic, partition, value) in accepted {
            let (key, value) = offset_record(&group_id, &topic, partition, Some(&value));
            self.write(now, key, value);
        }
        self.respond(
            token,
            Response::OffsetCommit(OffsetCommitResponse::default().with_topics(topics)),
        );
    }

    /// The error code of one partition of a commit (`error` if the whole commit is refused,
    /// or metadata too large); an offset accepted goes in `accepted`.
    pub(super) fn accept_offset(
        &self,
        error: Option<ResponseError>,
        (topic, partition): (&str, i32),
        offset: CommittedOffset,
        accepted: &mut Vec<(String, i32, CommittedOffset)>,
    ) -> i16 {
        match error {
            Some(error) => error.code(),
            None if offset.metadata.len() > self.config.offset_metadata_max_bytes => {
                ResponseError::OffsetMetadataTooLarge.code()
            }
            None => {
                accepted.push((topic.to_string(), partition, offset));
                0
            }
        }
    }

    /// Who may commit: a member of the current generation, or anyone when the group has no
    /// members and the commit names no generation (consumers that assign partitions
    /// themselves, and admin tools).
    fn validate_commit(
        &mut self,
        now: i64,
        group_id: &str,
        version: i16,
        request: &OffsetCommitRequest,
    ) -> Option<ResponseError> {
        // An empty group id is a group like any other for commits, as in Kafka (not for
        // TxnOffsetCommit).
        let member_id = request.member_id.as_str();
        let instance = request.group_instance_id.as_ref().map(|s| s.as_str());
        let generation = request.generation_id_or_member_epoch;
        let group = match self.groups.get(group_id) {
            None => {
                return match (generation >= 0, version >= MEMBER_EPOCH_VERSION) {
                    (false, _) => None,
                    (true, true) => Some(ResponseError::GroupIdNotFound),
                    (true, false) => Some(ResponseError::IllegalGeneration),
                };
            }
            Some(Group::Classic(group)) => group,
            Some(Group::Share(_)) => return Some(ResponseError::GroupIdNotFound),
            Some(Group::Consumer(consumer)) => {
                // As Kafka: a commit without an epoch (the admin client, or a consumer that
                // assigns itself partitions, whatever member id it names) is accepted while
                // the group has no members.
                if generation < 0 && consumer.members.is_empty() {
                    return None;
                }
                let Some(member) = consumer.members.get(member_id) else {
                    return Some(ResponseError::UnknownMemberId);
                };
                if version < MEMBER_EPOCH_VERSION {
                    return Some(ResponseError::UnsupportedVersion);
                }
                // A commit sent just before the heartbeat that moved the member on still counts
                // when it only covers partitions the member keeps (as KIP-1251 allows): the
                // partitions that stay keep flowing while the group reconciles.
                let previous_epoch_for_kept_partitions = generation == member.previous_member_epoch
                    && request.topics.iter().all(|topic| {
                        let id = self.topics.by_name.get(topic.name.as_str()).map(|t| t.id);
                        topic.partitions.iter().all(|p| {
                            id.and_then(|id| member.assigned.get(&id))
                                .is_some_and(|assigned| assigned.contains(&p.partition_index))
                        })
                    });
                if generation != member.member_epoch && !previous_epoch_for_kept_partitions {
                    return Some(ResponseError::StaleMemberEpoch);
                }
                return None;
            }
        };
        if group.state == GroupState::Dead {
            return Some(ResponseError::CoordinatorNotAvailable);
        }
        // As Kafka: without a generation, accepted while the group is empty, whatever member
        // the request names; otherwise only from a member.
        if generation < 0 && group.state == GroupState::Empty {
            return None;
        }
        if generation < 0 && member_id.is_empty() && instance.is_none() {
            return Some(ResponseError::UnknownMemberId);
        }
        if let Some(error) = check_member(group, member_id, instance) {
            return Some(error);
        }
        if !group.members.contains_key(member_id) {
            return Some(ResponseError::UnknownMemberId);
        }
        if generation != group.generation_id {
            return Some(ResponseError::IllegalGeneration);
        }
        if group.state == GroupState::CompletingRebalance {
            return Some(ResponseError::RebalanceInProgress);
        }
        self.touch_member(now, group_id, member_id);
        None
    }

    pub(super) fn offset_fetch(&mut self, token: Token, request: OffsetFetchGroup) {
        if let Some(error) = self.validate_fetch(&request) {
            return self.respond(
                token,
                Response::OffsetFetch(
                    OffsetFetchResponseGroup::default()
                        .with_group_id(GroupId(StrBytes::from_string(request.group_id)))
                        .with_error_code(error.code()),
                ),
            );
        }
        let OffsetFetchGroup {
            group_id,
            topics: wanted,
            require_stable,
            ..
        } = request;
        let offsets = self.offsets.get(&group_id);
        let committed = |topic: &str, partition: i32| {
            offsets.and_then(|o| o.get(&(topic.to_string(), partition)))
        };
        let answer = |topic: &str, partition: i32, offset: Option<&CommittedOffset>| {
            let base = OffsetFetchResponsePartitions::default().with_partition_index(partition);
            if require_stable && self.has_pending_offset(&group_id, topic, partition) {
                return base
                    .with_committed_offset(-1)
                    .with_committed_leader_epoch(-1)
                    .with_metadata(Some(StrBytes::from_static_str("")))
                    .with_error_code(ResponseError::UnstableOffsetCommit.code());
            }
            match offset {
                Some(c) => base
                    .with_committed_offset(c.offset)
                    .with_committed_leader_epoch(c.leader_epoch)
                    .with_metadata(Some(StrBytes::from_string(c.metadata.clone()))),
                None => base
                    .with_committed_offset(-1)
                    .with_committed_leader_epoch(-1)
                    .with_metadata(Some(StrBytes::from_static_str(""))),
            }
        };
        let topics: Vec<OffsetFetchResponseTopics> = match wanted {
            Some(wanted) => wanted
                .into_iter()
                .map(|(topic, partitions)| {
                    let partitions = partitions
                        .into_iter()
                        .map(|p| answer(&topic, p, committed(&topic, p)))
                        .collect();
                    OffsetFetchResponseTopics::default()
                        .with_name(TopicName(StrBytes::from_string(topic)))
                        .with_partitions(partitions)
                })
                .collect(),
            None => {
                let mut by_topic: Vec<OffsetFetchResponseTopics> = Vec::new();
                for ((topic, partition), offset) in offsets.iter().flat_map(|o| o.iter()) {
                    if by_topic.last().is_none_or(|t| t.name.as_str() != topic) {
                        by_topic.push(
                            OffsetFetchResponseTopics::default()
                                .with_name(TopicName(StrBytes::from_string(topic.clone()))),
                        );
                    }
                    if let Some(last) = by_topic.last_mut() {
                        last.partitions
                            .push(answer(topic, *partition, Some(offset)));
                    }
                }
                by_topic
            }
        };
        self.respond(
            token,
            Response::OffsetFetch(
                OffsetFetchResponseGroup::default()
                    .with_group_id(GroupId(StrBytes::from_string(group_id)))
                    .with_topics(topics),
            ),
        );
    }

    /// OffsetFetch v9 names the member; it must be current.
    fn validate_fetch(&self, request: &OffsetFetchGroup) -> Option<ResponseError> {
        let (member_id, epoch) = request.member.as_ref()?;
        match self.groups.get(&request.group_id)? {
            Group::Share(_) => Some(ResponseError::GroupIdNotFound),
            Group::Consumer(consumer) => match consumer.members.get(member_id) {
                None => Some(ResponseError::UnknownMemberId),
                Some(member)
                    if member.member_epoch != *epoch && member.previous_member_epoch != *epoch =>
                {
                    Some(ResponseError::StaleMemberEpoch)
                }
                Some(_) => None,
            },
            // Kafka does not check a classic group's member on a fetch.
            Group::Classic(_) => None,
        }
    }

    pub(super) fn offset_delete(&mut self, now: i64, token: Token, request: OffsetDeleteRequest) {
        let group_id = request.group_id.to_string();
        let top_error = |error: ResponseError| {
            Response::OffsetDelete(OffsetDeleteResponse::default().with_error_code(error.code()))
        };
        let (has_members, subscribed) = match self.groups.get(&group_id) {
            None | Some(Group::Share(_)) => {
                return self.respond(token, top_error(ResponseError::GroupIdNotFound))
            }
            Some(Group::Classic(group)) if group.state == GroupState::Dead => {
                return self.respond(token, top_error(ResponseError::GroupIdNotFound))
            }
            // A KIP-848 group's subscriptions count as its members'.
            Some(Group::Consumer(consumer)) => (
                !consumer.members.is_empty(),
                Some(consumer.subscribed_topic_names(&self.topics)),
            ),
            Some(Group::Classic(group)) => (!group.members.is_empty(), group.subscribed_topics()),
        };
        if has_members && subscribed.is_none() {
            return self.respond(token, top_error(ResponseError::NonEmptyGroup));
        }
        let committed = self.offsets.get(&group_id);
        let mut deleted = Vec::new();
        let topics = request
            .topics
            .iter()
            .map(|topic| {
                let name = topic.name.as_str();
                let in_use = has_members && subscribed.as_ref().is_some_and(|s| s.contains(name));
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|p| {
                        let key = (name.to_string(), p.partition_index);
                        let code = if in_use {
                            ResponseError::GroupSubscribedToTopic.code()
                        } else {
                            if committed.is_some_and(|c| c.contains_key(&key)) {
                                deleted.push(key);
                            }
                            0
                        };
                        OffsetDeleteResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                    })
                    .collect();
                OffsetDeleteResponseTopic::default()
                    .with_name(topic.name.clone())
                    .with_partitions(partitions)
            })
            .collect();
        for (topic, partition) in deleted {
            let (key, value) = offset_record(&group_id, &topic, partition, None);
            self.write(now, key, value);
        }
        self.respond(
            token,
            Response::OffsetDelete(OffsetDeleteResponse::default().with_topics(topics)),
        );
    }

    /// Forgets every group's committed offsets of a deleted topic, as Kafka does when it
    /// deletes a topic: a topic created again under the same name starts with none.
    pub(super) fn topic_deleted(&mut self, now: i64, token: Token, topic: &str) {
        let gone: Vec<(String, i32)> = self
            .offsets
            .iter()
            .flat_map(|(group_id, offsets)| {
                offsets
                    .keys()
                    .filter(|(name, _)| name == topic)
                    .map(move |(_, partition)| (group_id.clone(), *partition))
            })
            .collect();
        let removed = gone.len();
        for (group_id, partition) in gone {
            let (key, value) = offset_record(&group_id, topic, partition, None);
            self.write(now, key, value);
        }
        self.respond(token, Response::TopicDeleted(removed));
    }

    /// Removes the offsets of empty groups once they are older than `offsets.retention.minutes`
    /// (counted from when a group became empty, or from the commit for groups that never had
    /// members), then the empty groups left with no offsets.
    pub(super) fn expire_offsets(&mut self, now: i64) {
        let retention = self.config.offsets_retention_ms;
        let mut expired = Vec::new();
        for (group_id, offsets) in &self.offsets {
            let Some(group) = self.groups.get(group_id) else {
                continue;
            };
            let classic_state = group.as_classic().map(|g| g.state);
            if !group.is_empty() || classic_state.is_some_and(|s| s != GroupState::Empty) {
                continue;
            }
            for ((topic, partition), offset) in offsets {
                if self.has_pending_offset(group_id, topic, *partition) {
                    continue;
                }
                let expires_at = offset.expire_timestamp.unwrap_or_else(|| {
                    let base = if group.protocol_type().is_some() {
                        group.state_timestamp().max(offset.commit_timestamp)
                    } else {
                        offset.commit_timestamp
                    };
                    base.saturating_add(retention)
                });
                if expires_at <= now {
                    expired.push((group_id.clone(), topic.clone(), *partition));
                }
            }
        }
        for (group_id, topic, partition) in expired {
            tracing::info!(group = %group_id, topic = %topic, partition, "expired offset removed");
            let (key, value) = offset_record(&group_id, &topic, partition, None);
            self.write(now, key, value);
        }
        self.delete_empty_groups(now);
    }

    /// Deletes the groups that have no members, no member joining and no offsets left.
    fn delete_empty_groups(&mut self, now: i64) {
        let emptied: Vec<String> = self
            .groups
            .values()
            .filter(|g| g.is_empty() && !self.offsets.contains_key(g.group_id()))
            .filter(|g| !self.has_pending_offsets(g.group_id()))
            // A share group is kept with its share-partitions.
            .filter(|g| g.as_share().is_none())
            .filter(|g| g.as_classic().is_none_or(|c| c.state == GroupState::Empty))
            .map(|g| g.group_id().to_string())
            .collect();
        for group_id in emptied {
            self.write_group_tombstones(now, &group_id);
        }
    }
}

/// The `__consumer_offsets` record of a commit, or its tombstone.
pub(super) fn offset_record(
    group_id: &str,
    topic: &str,
    partition: i32,
    value: Option<&CommittedOffset>,
) -> (RecordKey, Option<RecordValue>) {
    let key = RecordKey::OffsetCommit {
        group: group_id.to_string(),
        topic: topic.to_string(),
        partition,
    };
    let value = value.map(|c| {
        RecordValue::OffsetCommit(OffsetCommitValue {
            offset: c.offset,
            leader_epoch: c.leader_epoch,
            metadata: c.metadata.clone(),
            commit_timestamp: c.commit_timestamp,
            expire_timestamp: c.expire_timestamp,
        })
    });
    (key, value)
}
