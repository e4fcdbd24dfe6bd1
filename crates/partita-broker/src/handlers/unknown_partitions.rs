//! Offsets committed for a partition no topic has: Kafka answers each such partition
//! UNKNOWN_TOPIC_OR_PARTITION and stores nothing for it, whatever becomes of the rest of the
//! request (KafkaApis checks the metadata before the group coordinator sees the request).
//! Shared by OffsetCommit, TxnOffsetCommit and OffsetDelete, with [`refuse_all`] for an answer
//! that gives every partition of a request one error.

use kafka_protocol::messages::{
    offset_commit_request, offset_commit_response, offset_delete_request, offset_delete_response,
    txn_offset_commit_request, txn_offset_commit_response, OffsetCommitResponse,
    OffsetDeleteResponse, TopicName, TxnOffsetCommitResponse,
};
use kafka_protocol::ResponseError;

use crate::broker::Broker;

/// A topic of a commit request.
pub(crate) trait CommitTopic {
    type Partition;
    fn name(&self) -> &TopicName;
    fn partitions(&self) -> &[Self::Partition];
    fn partitions_mut(&mut self) -> &mut Vec<Self::Partition>;
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
        let (kept, taken): (Vec<_>, Vec<_>) = std::mem::take(topic.partitions_mut())
            .into_iter()
            .partition(|p| exists(T::index(p)));
        *topic.partitions_mut() = kept;
        if !taken.is_empty() {
            unknown.push((topic.name().clone(), taken.iter().map(T::index).collect()));
        }
    }
    topics.retain(|t| !t.partitions().is_empty());
    unknown
}

/// Each topic of a request with the indexes of its partitions.
pub(crate) fn indexes<T: CommitTopic>(topics: &[T]) -> Vec<(TopicName, Vec<i32>)> {
    topics
        .iter()
        .map(|t| {
            (
                t.name().clone(),
                t.partitions().iter().map(T::index).collect(),
            )
        })
        .collect()
}

/// An answer that gives every partition of `partitions` (from [`indexes`]) the error `code`.
pub(crate) fn refuse_all<R: CommitAnswer + Default>(
    partitions: Vec<(TopicName, Vec<i32>)>,
    code: i16,
) -> R {
    let mut response = R::default();
    for (topic, indexes) in partitions {
        response.refuse(topic, indexes, code);
    }
    response
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

/// The two traits for one API: its request topic and partition, its response, and the
/// response's topic and partition.
macro_rules! commit_api {
    ($topic:ty, $partition:ty, $response:ty, $answer_topic:ty, $answer_partition:ty) => {
        impl CommitTopic for $topic {
            type Partition = $partition;
            fn name(&self) -> &TopicName {
                &self.name
            }
            fn partitions(&self) -> &[Self::Partition] {
                &self.partitions
            }
            fn partitions_mut(&mut self) -> &mut Vec<Self::Partition> {
                &mut self.partitions
            }
            fn index(partition: &Self::Partition) -> i32 {
                partition.partition_index
            }
        }

        impl CommitAnswer for $response {
            fn refuse(&mut self, name: TopicName, indexes: Vec<i32>, code: i16) {
                let partitions = indexes.into_iter().map(|index| {
                    <$answer_partition>::default()
                        .with_partition_index(index)
                        .with_error_code(code)
                });
                match self.topics.iter_mut().find(|t| t.name == name) {
                    Some(topic) => topic.partitions.extend(partitions),
                    None => self.topics.push(
                        <$answer_topic>::default()
                            .with_name(name)
                            .with_partitions(partitions.collect()),
                    ),
                }
            }
        }
    };
}

commit_api!(
    offset_commit_request::OffsetCommitRequestTopic,
    offset_commit_request::OffsetCommitRequestPartition,
    OffsetCommitResponse,
    offset_commit_response::OffsetCommitResponseTopic,
    offset_commit_response::OffsetCommitResponsePartition
);
commit_api!(
    txn_offset_commit_request::TxnOffsetCommitRequestTopic,
    txn_offset_commit_request::TxnOffsetCommitRequestPartition,
    TxnOffsetCommitResponse,
    txn_offset_commit_response::TxnOffsetCommitResponseTopic,
    txn_offset_commit_response::TxnOffsetCommitResponsePartition
);
commit_api!(
    offset_delete_request::OffsetDeleteRequestTopic,
    offset_delete_request::OffsetDeleteRequestPartition,
    OffsetDeleteResponse,
    offset_delete_response::OffsetDeleteResponseTopic,
    offset_delete_response::OffsetDeleteResponsePartition
);
