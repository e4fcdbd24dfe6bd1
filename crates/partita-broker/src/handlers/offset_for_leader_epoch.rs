//! OffsetForLeaderEpoch: clients validate their position after a leader change (KIP-320).
//! Offsets are never truncated (a single node has been the only leader; in cluster mode
//! every acknowledged offset is committed in PostgreSQL), so every epoch ends at the log end.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;

use crate::broker::Broker;

pub(crate) async fn handle(
    broker: &Broker,
    request: OffsetForLeaderEpochRequest,
    _version: i16,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|wanted| {
            let topic = broker.topics.get(wanted.topic.as_str());
            let partitions = wanted
                .partitions
                .into_iter()
                .map(|p| {
                    let answer = EpochEndOffset::default().with_partition(p.partition);
                    match topic.as_ref().and_then(|t| t.partition(p.partition)) {
                        None => answer
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_leader_epoch(-1)
                            .with_end_offset(-1),
                        Some(partition) if !partition.is_leader() => answer
                            .with_error_code(ResponseError::NotLeaderOrFollower.code())
                            .with_leader_epoch(-1)
                            .with_end_offset(-1),
                        Some(partition) => answer
                            .with_leader_epoch(0)
                            .with_end_offset(partition.offsets().log_end_offset),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(wanted.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
