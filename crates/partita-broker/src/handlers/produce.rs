//! Produce: validate each record batch's header and CRC, assign offsets, append.
//!
//! Batches stay opaque: only the 61-byte header is read and the base offset rewritten; a
//! compressed batch is stored exactly as the producer compressed it.

use bytes::Bytes;
use kafka_protocol::messages::produce_request::PartitionProduceData;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;
use partita_log::batch::{self, BatchError};
use partita_log::CleanupPolicy;

use super::str_bytes;
use crate::broker::{now_ms, Broker};
use crate::error::log_error;
use crate::partition::Partition;
use crate::topics::Topic;

/// Returns `None` for `acks=0`, which gets no response at all.
pub(crate) async fn handle(
    broker: &Broker,
    request: ProduceRequest,
    _version: i16,
) -> Option<ProduceResponse> {
    let acks = request.acks;
    let acks_valid = matches!(acks, -1..=1);
    let mut responses = Vec::with_capacity(request.topic_data.len());
    for topic_data in request.topic_data {
        let topic = broker.topics.get(topic_data.name.as_str());
        let mut partition_responses = Vec::with_capacity(topic_data.partition_data.len());
        for data in topic_data.partition_data {
            let answer = produce_partition(broker, topic.as_deref(), data, acks_valid).await;
            broker
                .metrics
                .record_error(ApiKey::Produce, answer.error_code);
            partition_responses.push(answer);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic_data.name)
                .with_partition_responses(partition_responses),
        );
    }
    (acks != 0).then(|| ProduceResponse::default().with_responses(responses))
}

/// Appends one partition's records and answers for them.
async fn produce_partition(
    broker: &Broker,
    topic: Option<&Topic>,
    data: PartitionProduceData,
    acks_valid: bool,
) -> PartitionProduceResponse {
    let answer = PartitionProduceResponse::default()
        .with_index(data.index)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1);
    if !acks_valid {
        return answer.with_error_code(ResponseError::InvalidRequiredAcks.code());
    }
    let Some((topic, partition)) = topic.and_then(|t| t.partition(data.index).map(|p| (t, p)))
    else {
        return answer.with_error_code(ResponseError::UnknownTopicOrPartition.code());
    };
    match append_records(partition, data.records).await {
        Ok(appended) => {
            let traffic = broker.metrics.topic(&topic.name);
            traffic.record_in(appended.bytes, appended.records);
            answer
                .with_base_offset(appended.base_offset)
                .with_log_append_time_ms(appended.log_append_time)
                .with_log_start_offset(partition.offsets().log_start_offset)
        }
        Err((error, message)) => {
            if error == ResponseError::KafkaStorageError {
                tracing::warn!(topic = %topic.name, partition = data.index, %message, "produce failed: storage error");
            } else {
                tracing::debug!(topic = %topic.name, partition = data.index, error = ?error, %message, "produce refused");
            }
            answer
                .with_error_code(error.code())
                .with_error_message(Some(str_bytes(&message)))
        }
    }
}

/// The result of appending one partition's records.
struct Appended {
    base_offset: i64,
    log_append_time: i64,
    /// Records and bytes appended (duplicates of an idempotent retry left out).
    records: u64,
    bytes: u64,
}

/// Validates every batch before appending any, so a request is taken whole or not at all.
async fn append_records(
    partition: &Partition,
    records: Option<Bytes>,
) -> Result<Appended, (ResponseError, String)> {
    let records = records.unwrap_or_default();
    let ranges = batch::split_batches(&records).map_err(batch_error)?;
    if ranges.is_empty() {
        return Err((
            ResponseError::InvalidRecord,
            "produce request holds no record batch".to_string(),
        ));
    }
    let config = partition.config();
    let compacted = config.cleanup_policy != CleanupPolicy::Delete;
    let max_message_bytes = config.max_message_bytes as usize;
    for range in &ranges {
        let header = batch::validate(&records[range.clone()]).map_err(batch_error)?;
        if compacted && !header.is_control() {
            require_keys(&records[range.clone()], partition.index)?;
        }
        if header.total_size() > max_message_bytes {
            return Err((
                ResponseError::MessageTooLarge,
                format!(
                    "batch of {} bytes exceeds max.message.bytes {max_message_bytes}",
                    header.total_size()
                ),
            ));
        }
    }
    let now = now_ms();
    let mut first: Option<Appended> = None;
    let (mut appended_records, mut appended_bytes) = (0, 0);
    for range in ranges {
        let owned = records[range].to_vec();
        let (count, size) = (crate::metrics::count_records(&owned), owned.len() as u64);
        let info = partition
            .append(owned, now)
            .await
            .map_err(|e| (log_error(&e), e.to_string()))?;
        if !info.duplicate {
            appended_records += count;
            appended_bytes += size;
        }
        first.get_or_insert(Appended {
            base_offset: info.base_offset,
            log_append_time: info.log_append_time,
            records: 0,
            bytes: 0,
        });
    }
    let mut first = first.expect("at least one batch was appended");
    first.records = appended_records;
    first.bytes = appended_bytes;
    Ok(first)
}

/// A compacted topic keeps the newest record of each key, so every record needs one, as in
/// Kafka (which decompresses to check, as this does).
fn require_keys(batch: &[u8], partition: i32) -> Result<(), (ResponseError, String)> {
    let plain = batch::compression::uncompressed(batch).map_err(batch_error)?;
    let records = batch::decode_records(&plain).map_err(batch_error)?;
    if records.iter().any(|record| record.key.is_none()) {
        return Err((
            ResponseError::InvalidRecord,
            format!(
                "Compacted topic cannot accept message without key in topic partition {partition}"
            ),
        ));
    }
    Ok(())
}

fn batch_error(error: BatchError) -> (ResponseError, String) {
    match error {
        BatchError::UnsupportedMagic(magic) => (
            ResponseError::UnsupportedForMessageFormat,
            format!("record batch magic {magic} is not supported; only v2 batches are"),
        ),
        other => (ResponseError::CorruptMessage, other.to_string()),
    }
}
