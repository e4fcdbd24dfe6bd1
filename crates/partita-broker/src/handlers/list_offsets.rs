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

/// ListOffsets v0, which the protocol codec no longer knows but older tools (Burrow 1.2, old
/// sarama) still send: for each partition, a list of offsets (`old_style_offsets`). Decoded
/// and encoded here by hand; every length is checked, so a short frame is refused.
pub(crate) async fn handle_v0(
    broker: &Broker,
    body: &mut bytes::Bytes,
) -> Result<bytes::BytesMut, String> {
    use bytes::{Buf, BufMut};
    fn need(body: &bytes::Bytes, n: usize) -> Result<(), String> {
        (body.remaining() >= n)
            .then_some(())
            .ok_or_else(|| "truncated ListOffsets v0 request".to_string())
    }
    fn string(body: &mut bytes::Bytes) -> Result<String, String> {
        need(body, 2)?;
        let len = usize::try_from(body.get_i16()).map_err(|_| "null topic name".to_string())?;
        need(body, len)?;
        String::from_utf8(body.split_to(len).to_vec())
            .map_err(|_| "topic name is not UTF-8".to_string())
    }
    fn count(body: &mut bytes::Bytes, item_size: usize) -> Result<usize, String> {
        need(body, 4)?;
        let n = usize::try_from(body.get_i32()).unwrap_or(0);
        need(body, n.saturating_mul(item_size))?;
        Ok(n)
    }
    need(body, 4)?;
    let _replica_id = body.get_i32();
    let mut out = bytes::BytesMut::new();
    let topics = count(body, 6)?;
    out.put_i32(topics as i32);
    for _ in 0..topics {
        let name = string(body)?;
        let topic = broker.topics.get(&name);
        out.put_i16(name.len() as i16);
        out.put_slice(name.as_bytes());
        let partitions = count(body, 16)?;
        out.put_i32(partitions as i32);
        for _ in 0..partitions {
            let index = body.get_i32();
            let timestamp = body.get_i64();
            let max_offsets = usize::try_from(body.get_i32()).unwrap_or(0);
            out.put_i32(index);
            let Some(partition) = topic.as_ref().and_then(|t| t.partition(index)) else {
                out.put_i16(ResponseError::UnknownTopicOrPartition.code());
                out.put_i32(0);
                continue;
            };
            let now = match partition.current_offsets().await {
                Ok(now) => now,
                Err(error) => {
                    out.put_i16(crate::error::log_error(&error).code());
                    out.put_i32(0);
                    continue;
                }
            };
            let mut offsets = match timestamp {
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
            offsets.truncate(max_offsets);
            out.put_i16(0);
            out.put_i32(offsets.len() as i32);
            for offset in offsets {
                out.put_i64(offset);
            }
        }
    }
    Ok(out)
}
