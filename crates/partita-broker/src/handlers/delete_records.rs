//! DeleteRecords: move a partition's log start offset up, as `kafka-delete-records.sh` and
//! `Admin.deleteRecords` do. Whole segments below the new start are deleted at once; records
//! before it in the first remaining segment are no longer served.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;
use partita_log::CleanupPolicy;

use crate::broker::Broker;
use crate::error::log_error;
use crate::partition::Partition;

/// The offset that stands for "everything up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

pub(crate) async fn handle(
    broker: &Broker,
    request: DeleteRecordsRequest,
    _version: i16,
) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for wanted in request.topics {
        let topic = broker.topics.get(wanted.name.as_str());
        let mut partitions = Vec::with_capacity(wanted.partitions.len());
        for p in wanted.partitions {
            let result = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            let partition = topic.as_ref().and_then(|t| t.partition(p.partition_index));
            partitions.push(match partition {
                None => result.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                Some(partition) => delete_before(partition, p.offset, result).await,
            });
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(wanted.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

/// Moves one partition's log start up to `offset` (or to its high watermark).
async fn delete_before(
    partition: &Partition,
    offset: i64,
    result: DeleteRecordsPartitionResult,
) -> DeleteRecordsPartitionResult {
    if partition.config().cleanup_policy == CleanupPolicy::Compact {
        // Kafka: records of a compact-only topic cannot be deleted this way.
        return result.with_error_code(ResponseError::PolicyViolation.code());
    }
    let offset = match offset {
        HIGH_WATERMARK => partition.offsets().log_end_offset,
        offset if offset < 0 => {
            return result.with_error_code(ResponseError::OffsetOutOfRange.code())
        }
        offset => offset,
    };
    match partition.delete_records(offset).await {
        Ok(log_start_offset) => result.with_low_watermark(log_start_offset),
        Err(error) => result.with_error_code(log_error(&error).code()),
    }
}
