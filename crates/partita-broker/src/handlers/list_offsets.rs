//! ListOffsets: earliest, latest, max-timestamp and by-timestamp offset lookups.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::error::log_error;
use crate::partition::Partition;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

pub(crate) async fn handle(
    broker: &Broker,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|wanted| {
            let topic = broker.topics.get(wanted.name.as_str());
            let partitions = wanted
                .partitions
                .into_iter()
                .map(|p| {
                    let answer = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    match topic.as_ref().and_then(|t| t.partition(p.partition_index)) {
                        None => answer
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_timestamp(-1)
                            .with_offset(-1),
                        Some(partition) => lookup(partition, p.timestamp, answer, version),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(wanted.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

fn lookup(
    partition: &Partition,
    timestamp: i64,
    answer: ListOffsetsPartitionResponse,
    version: i16,
) -> ListOffsetsPartitionResponse {
    // The leader epoch exists from v4 on; earlier versions must not carry it.
    let epoch = if version >= 4 { 0 } else { -1 };
    let log = partition.log();
    let found = match timestamp {
        LATEST => Ok(Some((log.log_end_offset(), -1))),
        EARLIEST | EARLIEST_LOCAL => Ok(Some((log.log_start_offset(), -1))),
        MAX_TIMESTAMP => Ok(log.max_timestamp()),
        ts if ts < 0 => Ok(None),
        ts => log.offset_for_timestamp(ts),
    };
    match found {
        Ok(Some((offset, timestamp))) => answer
            .with_offset(offset)
            .with_timestamp(timestamp)
            .with_leader_epoch(epoch),
        Ok(None) => answer
            .with_offset(-1)
            .with_timestamp(-1)
            .with_leader_epoch(-1),
        Err(error) => answer
            .with_error_code(log_error(&error).code())
            .with_offset(-1)
            .with_timestamp(-1),
    }
}
