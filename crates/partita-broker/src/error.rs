//! The broker's errors, each mapped to the Kafka error code a client is given.

use kafka_protocol::ResponseError;
use partita_log::LogError;

/// Everything a request can fail with inside the broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The topic or partition does not exist.
    #[error("unknown topic or partition: {0}")]
    UnknownTopic(String),
    /// The topic name breaks Kafka's naming rules or collides with another topic.
    #[error("invalid topic: {0}")]
    InvalidTopic(String),
    /// CreateTopics for a topic that exists.
    #[error("topic '{0}' already exists")]
    TopicAlreadyExists(String),
    /// A partition count that cannot be used.
    #[error("{0}")]
    InvalidPartitions(String),
    /// A replication factor other than the single replica this broker keeps.
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// A manual replica assignment that cannot be followed.
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// A config name or value that cannot be used.
    #[error("{0}")]
    InvalidConfig(String),
    /// The request is well formed but asks for something that is not allowed.
    #[error("{0}")]
    InvalidRequest(String),
    /// A storage operation failed.
    #[error("storage error: {0}")]
    Storage(String),
    /// The broker cannot start; the message says what to fix.
    #[error("{0}")]
    Startup(String),
    /// An error from a partition's log.
    #[error(transparent)]
    Log(#[from] LogError),
}

impl From<std::io::Error> for BrokerError {
    fn from(error: std::io::Error) -> Self {
        BrokerError::Storage(error.to_string())
    }
}

impl BrokerError {
    /// The Kafka error a client receives for this error.
    pub fn response_error(&self) -> ResponseError {
        match self {
            BrokerError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
            BrokerError::InvalidTopic(_) => ResponseError::InvalidTopicException,
            BrokerError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
            BrokerError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
            BrokerError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
            BrokerError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
            BrokerError::InvalidConfig(_) => ResponseError::InvalidConfig,
            BrokerError::InvalidRequest(_) => ResponseError::InvalidRequest,
            BrokerError::Storage(_) => ResponseError::KafkaStorageError,
            BrokerError::Startup(_) => ResponseError::UnknownServerError,
            BrokerError::Log(error) => log_error(error),
        }
    }

    /// The wire error code.
    pub fn code(&self) -> i16 {
        self.response_error().code()
    }
}

/// The Kafka error for a log error.
pub fn log_error(error: &LogError) -> ResponseError {
    match error {
        LogError::MessageTooLarge => ResponseError::MessageTooLarge,
        LogError::OffsetOutOfRange => ResponseError::OffsetOutOfRange,
        LogError::OutOfOrderSequence => ResponseError::OutOfOrderSequenceNumber,
        LogError::InvalidProducerEpoch => ResponseError::InvalidProducerEpoch,
        LogError::Corrupt(_) => ResponseError::CorruptMessage,
        LogError::NotLeader => ResponseError::NotLeaderOrFollower,
        LogError::Io(_) | LogError::Unavailable(_) => ResponseError::KafkaStorageError,
    }
}
