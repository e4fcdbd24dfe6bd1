//! Offsets committed for a partition no topic has: Kafka answers each such partition
//! UNKNOWN_TOPIC_OR_PARTITION and stores nothing for it, whatever becomes of the rest of the
//! request (KafkaApis checks the metadata before the group coordinator sees the request).
//! Shared by OffsetCommit and TxnOffsetCommit.

use kafka_protocol::messages::{
    offset_commit_request, offset_commit_response, txn_offset_commit_request,
    txn_offset_commit_response, OffsetCommitResponse, TopicName, TxnOffsetCommitResponse,
};
use kafka_protocol::ResponseError;

use crate::broker::Broker;

/// A topic of a commit request.
pub(crate) trait CommitTopic {
    type Partition;
    fn name(&self) -> &TopicName;
    fn partitions(&mut self) -> &mut Vec<Self::Partition>;
    fn index(partition: &Self::Partition) -> i32;
}

/// The answer to a commit request.
pub(crate) trait CommitAnswer {
    /// Answers `indexes` of `topic` with `code`, beside the topic's other partitions.
    fn refuse(&mut self, topic: TopicName, indexes: Vec<i32>, code: i16);
}

/// Takes the partitions no topic has out of `topics` (and topics left with none).
pub(crate) fn take<T: CommitTopic>(
    broker: &Broker,
    topics: &mut Vec<T>,
) -> Vec<(TopicName, Vec<i32>)> {
    let mut unknown = Vec::new();
    for topic in topics.iter_mut() {
        let known = broker.topics.get(topic.name().as_str());
        let exists = |index: i32| known.as_ref().is_some_and(|t| t.partition(index).is_some());
        let (kept, taken): (Vec<_>, Vec<_>) = std::mem::take(topic.partitions())
            .into_iter()
            .partition(|p| exists(T::index(p)));
        *topic.partitions() = kept;
        if !taken.is_empty() {
            unknown.push((topic.name().clone(), taken.iter().map(T::index).collect()));
        }
    }
    topics.retain_mut(|t| !t.partitions().is_empty());
    unknown
}

/// Puts what [`take`] took back into the answer, with UNKNOWN_TOPIC_OR_PARTITION.
pub(crate) fn answer(response: &mut impl CommitAnswer, unknown: Vec<(TopicName, Vec<i32>)>) {
    for (topic, indexes) in unknown {
        response.refuse(
            topic,
            indexes,
            ResponseError::UnknownTopicOrPartition.code(),
        );
    }
}

impl CommitTopic for offset_commit_request::OffsetCommitRequestTopic {
    type Partition = offset_commit_request::OffsetCommitRequestPartition;
    fn name(&self) -> &TopicName {
        &self.name
    }
    fn partitions(&mut self) -> &mut Vec<Self::Partition> {
        &mut self.partitions
    }
    fn index(partition: &Self::Partition) -> i32 {
        partition.partition_index
    }
}

impl CommitTopic for txn_offset_commit_request::TxnOffsetCommitRequestTopic {
    type Partition = txn_offset_commit_request::TxnOffsetCommitRequestPartition;
    fn name(&self) -> &TopicName {
        &self.name
    }
    fn partitions(&mut self) -> &mut Vec<Self::Partition> {
        &mut self.partitions
    }
    fn index(partition: &Self::Partition) -> i32 {
        partition.partition_index
    }
}

impl CommitAnswer for OffsetCommitResponse {
    fn refuse(&mut self, name: TopicName, indexes: Vec<i32>, code: i16) {
        use offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
        let partitions = indexes.into_iter().map(|index| {
            OffsetCommitResponsePartition::default()
                .with_partition_index(index)
                .with_error_code(code)
        });
        match self.topics.iter_mut().find(|t| t.name == name) {
            Some(topic) => topic.partitions.extend(partitions),
            None => self.topics.push(
                OffsetCommitResponseTopic::default()
                    .with_name(name)
                    .with_partitions(partitions.collect()),
            ),
        }
    }
}

impl CommitAnswer for TxnOffsetCommitResponse {
    fn refuse(&mut self, name: TopicName, indexes: Vec<i32>, code: i16) {
        use txn_offset_commit_response::{
            TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
        };
        let partitions = indexes.into_iter().map(|index| {
            TxnOffsetCommitResponsePartition::default()
                .with_partition_index(index)
                .with_error_code(code)
        });
        match self.topics.iter_mut().find(|t| t.name == name) {
            Some(topic) => topic.partitions.extend(partitions),
            None => self.topics.push(
                TxnOffsetCommitResponseTopic::default()
                    .with_name(name)
                    .with_partitions(partitions.collect()),
            ),
        }
    }
}
