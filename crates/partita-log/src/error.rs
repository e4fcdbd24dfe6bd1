//! The error type of partition storage.

/// Why a log operation failed. Each variant maps to one Kafka error code in the broker.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file operation failed (Kafka: KAFKA_STORAGE_ERROR).
    #[error("log I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A batch or a stored file is damaged (Kafka: CORRUPT_MESSAGE).
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The batch is larger than `max_message_bytes` (Kafka: MESSAGE_TOO_LARGE).
    #[error("record batch larger than max.message.bytes")]
    MessageTooLarge,
    /// The requested offset is below the log start or above the log end (Kafka:
    /// OFFSET_OUT_OF_RANGE).
    #[error("offset out of range")]
    OffsetOutOfRange,
    /// An idempotent producer's sequence number is not the next expected one (Kafka:
    /// OUT_OF_ORDER_SEQUENCE_NUMBER).
    #[error("out of order sequence number")]
    OutOfOrderSequence,
    /// An idempotent producer used an epoch older than the one already seen (Kafka:
    /// INVALID_PRODUCER_EPOCH).
    #[error("invalid producer epoch")]
    InvalidProducerEpoch,
    /// This broker does not lead the partition now (Kafka: NOT_LEADER_OR_FOLLOWER), so the
    /// client looks the leader up again.
    #[error("not the leader of this partition")]
    NotLeader,
    /// The storage behind the partition (an object store, a database) could not be reached
    /// or refused the operation (Kafka: KAFKA_STORAGE_ERROR, which clients retry).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

impl From<crate::batch::BatchError> for LogError {
    fn from(error: crate::batch::BatchError) -> LogError {
        LogError::Corrupt(error.to_string())
    }
}
