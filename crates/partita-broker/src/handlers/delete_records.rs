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

/// The offset that stands for "everything up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

pub(crate) async fn handle(
    broker: &Broker,
    request: DeleteRecordsRequest,
    _version: i16,
) -> DeleteRecordsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|wanted| {
            let topic = broker.topics.get(wanted.name.as_str());
            let partitions = wanted
                .partitions
                .into_iter()
                .map(|p| {
                    let result = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    let Some(partition) =
                        topic.as_ref().and_then(|t| t.partition(p.partition_index))
                    else {
                        return result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    let mut log = partition.log();
                    if log.config().cleanup_policy == CleanupPolicy::Compact {
                        // Kafka: records of a compact-only topic cannot be deleted this way.
                        return result.with_error_code(ResponseError::PolicyViolation.code());
                    }
                    let offset = match p.offset {
                        HIGH_WATERMARK => log.log_end_offset(),
                        offset if offset < 0 => {
                            return result.with_error_code(ResponseError::OffsetOutOfRange.code())
                        }
                        offset => offset,
                    };
                    match log.delete_records_before(offset) {
                        Ok(()) => result.with_low_watermark(log.log_start_offset()),
                        Err(error) => result.with_error_code(log_error(&error).code()),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(wanted.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
