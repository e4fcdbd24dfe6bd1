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
const LATEST_TIERED: i64 = -5;

pub(crate) async fn handle(
    broker: &Broker,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for wanted in request.topics {
        let topic = broker.topics.get(wanted.name.as_str());
        let mut partitions = Vec::with_capacity(wanted.partitions.len());
        for p in wanted.partitions {
            let answer =
                ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            partitions.push(
                match topic.as_ref().and_then(|t| t.partition(p.partition_index)) {
                    None => answer
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        .with_timestamp(-1)
                        .with_offset(-1),
                    Some(partition) => {
                        let committed = request.isolation_level == 1;
                        lookup(partition, (p.timestamp, committed), answer, version).await
                    }
                },
            );
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(wanted.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// The offset for `timestamp`; with `committed` (isolation level read_committed), the latest
/// offset is the last stable one, as in Kafka.
async fn lookup(
    partition: &Partition,
    (timestamp, committed): (i64, bool),
    answer: ListOffsetsPartitionResponse,
    version: i16,
) -> ListOffsetsPartitionResponse {
    if !partition.is_leader() {
        return answer
            .with_error_code(ResponseError::NotLeaderOrFollower.code())
            .with_offset(-1)
            .with_timestamp(-1);
    }
    // The leader epoch exists from v4 on; earlier versions must not carry it.
    let epoch = if version >= 4 { 0 } else { -1 };
    let found = match timestamp {
        LATEST => partition.current_offsets().await.map(|o| match committed {
            true => Some((o.last_stable_offset, -1)),
            false => Some((o.log_end_offset, -1)),
        }),
        EARLIEST | EARLIEST_LOCAL => partition
            .current_offsets()
            .await
            .map(|o| Some((o.log_start_offset, -1))),
        MAX_TIMESTAMP => partition.max_timestamp().await,
        // Nothing is ever tiered here.
        LATEST_TIERED => Ok(None),
        ts if ts < 0 => Ok(None),
        ts => partition.offset_for_timestamp(ts).await,
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

/// ListOffsets v0, which Kafka 4 dropped but older tools (Burrow 1.2, old sarama) still send:
/// for each partition, a list of offsets (`old_style_offsets`), which no later version has, so
/// it is answered here rather than through crate::legacy. Read and written with Kafka 3.9's
/// codec.
pub(crate) async fn handle_v0(
    broker: &Broker,
    body: &mut bytes::Bytes,
) -> Result<bytes::BytesMut, String> {
    use kafka_protocol_3_9::messages::list_offsets_response::{
        ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
    };
    use kafka_protocol_3_9::messages::{ListOffsetsRequest, ListOffsetsResponse};
    use kafka_protocol_3_9::protocol::{Decodable, Encodable};
    let request = ListOffsetsRequest::decode(body, 0).map_err(|e| e.to_string())?;
    let mut topics = Vec::with_capacity(request.topics.len());
    for wanted in request.topics {
        let topic = broker.topics.get(wanted.name.as_str());
        let mut partitions = Vec::with_capacity(wanted.partitions.len());
        for asked in wanted.partitions {
            let answer =
                ListOffsetsPartitionResponse::default().with_partition_index(asked.partition_index);
            let Some(partition) = topic
                .as_ref()
                .and_then(|t| t.partition(asked.partition_index))
            else {
                partitions
                    .push(answer.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                continue;
            };
            let now = match partition.current_offsets().await {
                Ok(now) => now,
                Err(error) => {
                    partitions.push(answer.with_error_code(crate::error::log_error(&error).code()));
                    continue;
                }
            };
            let mut offsets = match asked.timestamp {
                LATEST => vec![now.log_end_offset, now.log_start_offset],
                EARLIEST => vec![now.log_start_offset],
                ts => partition
                    .offset_for_timestamp(ts)
                    .await
                    .ok()
                    .flatten()
                    .map(|(offset, _)| vec![offset])
                    .unwrap_or_default(),
            };
            offsets.dedup();
            offsets.truncate(usize::try_from(asked.max_num_offsets).unwrap_or(0));
            partitions.push(answer.with_old_style_offsets(offsets));
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(wanted.name)
                .with_partitions(partitions),
        );
    }
    let response = ListOffsetsResponse::default().with_topics(topics);
    let mut out = bytes::BytesMut::new();
    response.encode(&mut out, 0).map_err(|e| e.to_string())?;
    Ok(out)
}
