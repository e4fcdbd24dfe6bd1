//! OffsetForLeaderEpoch: clients validate their position after a leader change (KIP-320).
//! Offsets are never truncated (a single node has been the only leader; in cluster mode
//! every acknowledged offset is committed in PostgreSQL), so every epoch ends at the log end.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::error::log_error;

pub(crate) async fn handle(
    broker: &Broker,
    request: OffsetForLeaderEpochRequest,
    _version: i16,
) -> OffsetForLeaderEpochResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for wanted in request.topics {
        let topic = broker.topics.get(wanted.topic.as_str());
        let mut partitions = Vec::with_capacity(wanted.partitions.len());
        for p in wanted.partitions {
            let answer = EpochEndOffset::default().with_partition(p.partition);
            let failed = |code: ResponseError| {
                answer
                    .clone()
                    .with_error_code(code.code())
                    .with_leader_epoch(-1)
                    .with_end_offset(-1)
            };
            let answer = match topic.as_ref().and_then(|t| t.partition(p.partition)) {
                None => failed(ResponseError::UnknownTopicOrPartition),
                Some(partition) if !partition.is_leader() => {
                    failed(ResponseError::NotLeaderOrFollower)
                }
                // The end offset as stored, never a partition not loaded yet: a client that
                // saw an end below its position would take it for a truncated log and reset.
                Some(partition) => match partition.current_offsets().await {
                    Ok(offsets) => answer
                        .with_leader_epoch(0)
                        .with_end_offset(offsets.log_end_offset),
                    Err(error) => failed(log_error(&error)),
                },
            };
            partitions.push(answer);
        }
        topics.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(wanted.topic)
                .with_partitions(partitions),
        );
    }
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
