//! Offsets committed inside a transaction (KIP-98, KIP-447): TxnOffsetCommit writes them in a
//! transactional batch of the producer, where they wait; the transaction's marker, written
//! here when the transaction ends, makes them the group's or drops them. OffsetFetch with
//! `require_stable` answers UNSTABLE_OFFSET_COMMIT for a partition while they wait.

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use kafka_protocol::ResponseError;

use super::classic::check_member;
use super::offsets::offset_record;
use super::{BatchKind, Group, GroupShard, Response, Token, TxnMarker};
use crate::classic::{CommittedOffset, GroupState};

impl GroupShard {
    pub(super) fn txn_offset_commit(
        &mut self,
        now: i64,
        token: Token,
        _version: i16,
        request: TxnOffsetCommitRequest,
    ) {
        let group_id = request.group_id.to_string();
        let error = self.validate_txn_commit(&group_id, &request);
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
                            expire_timestamp: None,
                            order: 0,
                        };
                        let at = (topic.name.as_str(), p.partition_index);
                        let code = self.accept_offset(error, at, offset, &mut accepted);
                        TxnOffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                    })
                    .collect();
                TxnOffsetCommitResponseTopic::default()
                    .with_name(topic.name.clone())
                    .with_partitions(partitions)
            })
            .collect();
        if !accepted.is_empty() {
            self.transaction.batch = BatchKind::Transactional {
                producer_id: request.producer_id.0,
                producer_epoch: request.producer_epoch,
            };
        }
        for (topic, partition, value) in accepted {
            let (key, value) = offset_record(&group_id, &topic, partition, Some(&value));
            self.write(now, key, value);
        }
        self.respond(
            token,
            Response::TxnOffsetCommit(TxnOffsetCommitResponse::default().with_topics(topics)),
        );
    }

    /// KIP-447: a transaction that names a member commits a group's offsets only for a
    /// member of the group's current generation (for a consumer group, at its current
    /// epoch), so that a zombie's transaction cannot; as in Kafka, an epoch that is not the
    /// member's is ILLEGAL_GENERATION, which transactional clients know. A commit that names
    /// no member (generation -1) is taken as older clients send it.
    fn validate_txn_commit(
        &self,
        group_id: &str,
        request: &TxnOffsetCommitRequest,
    ) -> Option<ResponseError> {
        if group_id.is_empty() {
            return Some(ResponseError::InvalidGroupId);
        }
        let member_id = request.member_id.as_str();
        let instance = request.group_instance_id.as_ref().map(|s| s.as_str());
        let generation = request.generation_id;
        match self.groups.get(group_id) {
            None if generation < 0 => None,
            None => Some(ResponseError::IllegalGeneration),
            Some(Group::Share(_)) => Some(ResponseError::GroupIdNotFound),
            Some(Group::Consumer(consumer)) => {
                if generation < 0 && consumer.members.is_empty() {
                    return None;
                }
                match consumer.members.get(member_id) {
                    None => Some(ResponseError::UnknownMemberId),
                    Some(member) if member.member_epoch != generation => {
                        Some(ResponseError::IllegalGeneration)
                    }
                    Some(_) => None,
                }
            }
            Some(Group::Classic(group)) => {
                if group.state == GroupState::Dead {
                    return Some(ResponseError::CoordinatorNotAvailable);
                }
                let names_member = generation >= 0 || !member_id.is_empty() || instance.is_some();
                if !names_member || (generation < 0 && group.state == GroupState::Empty) {
                    return None;
                }
                if let Some(error) = check_member(group, member_id, instance) {
                    return Some(error);
                }
                (generation != group.generation_id).then_some(ResponseError::IllegalGeneration)
            }
        }
    }

    /// Writes the marker ending a producer's transaction, which ends its offsets here.
    pub(super) fn txn_marker(&mut self, now: i64, token: Token, marker: TxnMarker) {
        self.write_marker(now, marker);
        self.respond(token, Response::Done(0));
    }

    /// Whether a transaction under way committed an offset of this group's partition.
    pub(super) fn has_pending_offset(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        // Offset expiry asks for every committed offset: no key is built while no
        // transaction holds offsets.
        if self.pending_offsets.is_empty() {
            return false;
        }
        let key = (group_id.to_string(), topic.to_string(), partition);
        self.pending_offsets
            .values()
            .any(|pending| pending.contains_key(&key))
    }

    /// Whether a transaction under way committed offsets of this group.
    pub(super) fn has_pending_offsets(&self, group_id: &str) -> bool {
        self.pending_offsets
            .values()
            .any(|pending| pending.keys().any(|(group, _, _)| group == group_id))
    }

    /// Offsets committed inside transactions still under way, by producer id.
    pub fn pending_offsets(&self) -> impl Iterator<Item = (i64, &super::PendingOffsets)> {
        self.pending_offsets.iter().map(|(p, o)| (*p, o))
    }
}
