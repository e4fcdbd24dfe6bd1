//! Produce: validate each record batch's header and CRC, assign offsets, append.
//!
//! Batches stay opaque: only the 61-byte header is read and the base offset rewritten; a
//! compressed batch is stored exactly as the producer compressed it.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;
use partita_log::batch::{self, BatchError};
use partita_log::CleanupPolicy;

use super::str_bytes;
use crate::broker::{now_ms, Broker};
use crate::error::log_error;
use crate::partition::Partition;

/// Returns `None` for `acks=0`, which gets no response at all.
pub(crate) async fn handle(
    broker: &Broker,
    request: ProduceRequest,
    _version: i16,
) -> Option<ProduceResponse> {
    let acks = request.acks;
    let acks_valid = matches!(acks, -1..=1);
    let responses = request
        .topic_data
        .into_iter()
        .map(|topic_data| {
            let topic = broker.topics.get(topic_data.name.as_str());
            let traffic = topic.as_ref().map(|t| broker.metrics.topic(&t.name));
            let partition_responses = topic_data
                .partition_data
                .into_iter()
                .map(|data| {
                    let answer = PartitionProduceResponse::default()
                        .with_index(data.index)
                        .with_base_offset(-1)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(-1);
                    if !acks_valid {
                        return answer.with_error_code(ResponseError::InvalidRequiredAcks.code());
                    }
                    let Some(partition) = topic.as_ref().and_then(|t| t.partition(data.index))
                    else {
                        return answer
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    match may_block(|| append_records(partition, data.records)) {
                        Ok(appended) => {
                            if let Some(traffic) = &traffic {
                                traffic.bytes_in.add(appended.bytes);
                                traffic.records_in.add(appended.records);
                            }
                            answer
                            .with_base_offset(appended.base_offset)
                            .with_log_append_time_ms(appended.log_append_time)
                            .with_log_start_offset(partition.offsets().log_start_offset)
                        }
                        Err((error, message)) => {
                            if error == ResponseError::KafkaStorageError {
                                tracing::warn!(topic = topic_data.name.as_str(), partition = data.index, %message, "produce failed: storage error");
                            } else {
                                tracing::debug!(topic = topic_data.name.as_str(), partition = data.index, error = ?error, %message, "produce refused");
                            }
                            answer
                                .with_error_code(error.code())
                                .with_error_message(Some(str_bytes(&message)))
                        }
                    }
                })
                .inspect(|answer| broker.metrics.record_error(ApiKey::Produce, answer.error_code))
                .collect();
            TopicProduceResponse::default()
                .with_name(topic_data.name)
                .with_partition_responses(partition_responses)
        })
        .collect();
    (acks != 0).then(|| ProduceResponse::default().with_responses(responses))
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
fn append_records(
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
    let (max_message_bytes, compacted) = {
        let log = partition.log();
        let config = log.config();
        let compacted = config.cleanup_policy != CleanupPolicy::Delete;
        (config.max_message_bytes as usize, compacted)
    };
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
        let mut owned = BytesMut::from(&records[range]);
        let info = partition
            .append(&mut owned, now)
            .map_err(|e| (log_error(&e), e.to_string()))?;
        if !info.duplicate {
            appended_records += crate::metrics::count_records(&owned);
            appended_bytes += owned.len() as u64;
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

/// Runs a log append that may fsync (`flush.messages`) without stalling the other tasks of
/// this worker thread.
fn may_block<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
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
