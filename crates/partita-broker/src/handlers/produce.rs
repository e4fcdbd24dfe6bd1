//! Produce: validate each record batch's header and CRC, put the batches in line in their
//! partitions, wait until they are appended, answer.
//!
//! Batches stay opaque: only the 61-byte header is read and the base offset rewritten; a
//! compressed batch is stored exactly as the producer compressed it.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::join_all;
use kafka_protocol::messages::produce_request::PartitionProduceData;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::ResponseError;
use partita_log::batch::{self, BatchError};
use partita_log::{AppendInfo, CleanupPolicy};

use super::str_bytes;
use crate::broker::{now_ms, Broker};
use crate::error::log_error;
use crate::partition::Partition;
use crate::storage::Appending;
use crate::topics::Topic;

/// Returns `None` for `acks=0`, which gets no response at all.
pub(crate) async fn handle(
    broker: &Broker,
    request: ProduceRequest,
    _version: i16,
) -> Option<ProduceResponse> {
    stage(broker, request).await.finish(broker).await
}

/// A produce request whose batches are in line in their partitions, in the order of the
/// request: what is left is to wait until they are appended, and answer. A connection may
/// stage its next produce request meanwhile (cluster mode gathers batches for a while before
/// it writes them).
pub(crate) struct StagedProduce {
    acks: i16,
    topics: Vec<(TopicName, Vec<StagedPartition>)>,
}

/// One partition's part of a staged request.
enum StagedPartition {
    /// Its answer is known already (refused, or nothing to wait for).
    Answered(PartitionProduceResponse),
    /// Its batches are in line.
    Appending {
        answer: PartitionProduceResponse,
        topic: Arc<Topic>,
        partition: Arc<Partition>,
        /// Each batch: its completion, records and bytes.
        batches: Vec<(Appending, u64, u64)>,
    },
}

/// Validates every batch of the request and puts them in line, partition by partition.
pub(crate) async fn stage(broker: &Broker, request: ProduceRequest) -> StagedProduce {
    let acks_valid = matches!(request.acks, -1..=1);
    let transactional_id = request.transactional_id.as_ref().map(|id| id.to_string());
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for topic_data in request.topic_data {
        let topic = broker.topics.get(topic_data.name.as_str());
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for data in topic_data.partition_data {
            // A transactional producer's records go only to partitions added to its
            // transaction (KIP-890's verification).
            let first = (data.records.as_deref()).and_then(|r| batch::parse_header(r).ok());
            let transactional = match first.filter(|h| h.is_transactional() && !h.is_control()) {
                None => Ok(false),
                Some(header) => {
                    let at = (topic_data.name.as_str(), data.index);
                    let id = transactional_id.as_deref();
                    super::transactions::verify_produce(broker, id, &header, at)
                        .await
                        .map(|()| true)
                }
            };
            partitions.push(stage_partition(topic.as_ref(), data, acks_valid, transactional).await);
        }
        topics.push((topic_data.name, partitions));
    }
    StagedProduce {
        acks: request.acks,
        topics,
    }
}

impl StagedProduce {
    /// Waits until every batch is appended (the partitions at the same time) and answers;
    /// `None` for `acks=0`, which gets no response at all.
    pub(crate) async fn finish(self, broker: &Broker) -> Option<ProduceResponse> {
        let mut responses = Vec::with_capacity(self.topics.len());
        for (name, partitions) in self.topics {
            let answers =
                join_all(partitions.into_iter().map(|p| finish_partition(broker, p))).await;
            for answer in &answers {
                broker
                    .metrics
                    .record_error(ApiKey::Produce, answer.error_code);
            }
            responses.push(
                TopicProduceResponse::default()
                    .with_name(name)
                    .with_partition_responses(answers),
            );
        }
        (self.acks != 0).then(|| ProduceResponse::default().with_responses(responses))
    }
}

/// Validates one partition's records and puts them in line.
async fn stage_partition(
    topic: Option<&Arc<Topic>>,
    data: PartitionProduceData,
    acks_valid: bool,
    transactional: Result<bool, ResponseError>,
) -> StagedPartition {
    let answer = PartitionProduceResponse::default()
        .with_index(data.index)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1);
    if !acks_valid {
        return StagedPartition::Answered(
            answer.with_error_code(ResponseError::InvalidRequiredAcks.code()),
        );
    }
    let Some((topic, partition)) = topic.and_then(|t| t.partition(data.index).map(|p| (t, p)))
    else {
        return StagedPartition::Answered(
            answer.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
        );
    };
    let transactional = match transactional {
        Ok(verified) => verified,
        Err(error) => {
            let message = "the partition is not in the producer's transaction";
            return StagedPartition::Answered(refused(answer, topic, data.index, error, message));
        }
    };
    match enqueue_records(partition, data.records, transactional).await {
        Ok(batches) => StagedPartition::Appending {
            answer,
            topic: Arc::clone(topic),
            partition: Arc::clone(partition),
            batches,
        },
        Err((error, message)) => {
            StagedPartition::Answered(refused(answer, topic, data.index, error, &message))
        }
    }
}

/// Waits for one partition's batches and answers for them.
async fn finish_partition(broker: &Broker, staged: StagedPartition) -> PartitionProduceResponse {
    let (answer, topic, partition, batches) = match staged {
        StagedPartition::Answered(answer) => return answer,
        StagedPartition::Appending {
            answer,
            topic,
            partition,
            batches,
        } => (answer, topic, partition, batches),
    };
    let mut first: Option<AppendInfo> = None;
    let (mut records, mut bytes) = (0, 0);
    for (appending, count, size) in batches {
        match appending.await {
            Ok(info) => {
                if !info.duplicate {
                    records += count;
                    bytes += size;
                }
                first.get_or_insert(info);
            }
            Err(error) => {
                let code = log_error(&error);
                return refused(answer, &topic, partition.index, code, &error.to_string());
            }
        }
    }
    let traffic = broker.metrics.topic(&topic.name);
    traffic.record_in(bytes, records);
    let first = first.expect("at least one batch was put in line");
    answer
        .with_base_offset(first.base_offset)
        .with_log_append_time_ms(first.log_append_time)
        .with_log_start_offset(partition.offsets().log_start_offset)
}

fn refused(
    answer: PartitionProduceResponse,
    topic: &Topic,
    partition: i32,
    error: ResponseError,
    message: &str,
) -> PartitionProduceResponse {
    if error == ResponseError::KafkaStorageError {
        tracing::warn!(topic = %topic.name, partition, %message, "produce failed: storage error");
    } else {
        tracing::debug!(topic = %topic.name, partition, error = ?error, %message, "produce refused");
    }
    answer
        .with_error_code(error.code())
        .with_error_message(Some(str_bytes(message)))
}

/// Validates every batch before putting any in line, so a request is taken whole or not at
/// all.
async fn enqueue_records(
    partition: &Arc<Partition>,
    records: Option<Bytes>,
    transactional: bool,
) -> Result<Vec<(Appending, u64, u64)>, (ResponseError, String)> {
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
        if header.is_control() {
            // Transaction markers are the coordinator's to write, as in Kafka.
            return Err((
                ResponseError::InvalidRecord,
                "clients may not write control batches".to_string(),
            ));
        }
        if header.is_transactional() != transactional {
            // A transactional batch not checked against its transaction could never be
            // ended, and would hold every read_committed consumer of the partition.
            return Err((
                ResponseError::InvalidTxnState,
                "transactional and other batches in one request, or a transactional batch \
                 outside a transaction"
                    .to_string(),
            ));
        }
        if compacted {
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
    let mut batches = Vec::with_capacity(ranges.len());
    for range in ranges {
        let owned = records[range].to_vec();
        let (count, size) = (crate::metrics::count_records(&owned), owned.len() as u64);
        let appending = partition
            .enqueue(owned, now)
            .await
            .map_err(|e| (log_error(&e), e.to_string()))?;
        batches.push((appending, count, size));
    }
    Ok(batches)
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
        // Kafka's check of a produce request of v3 or later (the older ones are converted).
        BatchError::UnsupportedMagic(0 | 1) => (
            ResponseError::InvalidRecord,
            "Produce requests with version 3 or later are only allowed to contain record \
             batches with magic version 2"
                .to_string(),
        ),
        other => (ResponseError::CorruptMessage, other.to_string()),
    }
}
