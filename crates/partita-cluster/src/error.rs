//! Cluster mode's errors.

use partita_log::LogError;

/// What can go wrong in cluster mode.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The broker cannot start: one line saying why (an engine unreachable, bad
    /// credentials, a missing bucket, a node id taken).
    #[error("{0}")]
    Startup(String),
    /// PostgreSQL failed or could not be reached.
    #[error("cluster metadata (PostgreSQL): {0}")]
    Metadata(String),
    /// The object store failed or could not be reached.
    #[error("object store: {0}")]
    Objects(String),
    /// A topic with this name exists.
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    /// A topic's name differs from an existing one only by '.' and '_'.
    #[error("topic '{0}' collides with existing topic '{1}'")]
    TopicCollides(String, String),
    /// No topic has this name.
    #[error("unknown topic '{0}'")]
    UnknownTopic(String),
    /// A partition count that cannot be applied.
    #[error("{0}")]
    InvalidPartitions(String),
}

impl From<tokio_postgres::Error> for ClusterError {
    fn from(error: tokio_postgres::Error) -> ClusterError {
        ClusterError::Metadata(describe_pg(&error))
    }
}

impl From<deadpool_postgres::PoolError> for ClusterError {
    fn from(error: deadpool_postgres::PoolError) -> ClusterError {
        match error {
            deadpool_postgres::PoolError::Backend(error) => error.into(),
            other => ClusterError::Metadata(other.to_string()),
        }
    }
}

impl From<object_store::Error> for ClusterError {
    fn from(error: object_store::Error) -> ClusterError {
        ClusterError::Objects(error.to_string())
    }
}

impl From<ClusterError> for LogError {
    fn from(error: ClusterError) -> LogError {
        LogError::Unavailable(error.to_string())
    }
}

/// A PostgreSQL error as one line: the server's message when it sent one, else the client's.
pub(crate) fn describe_pg(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    }
}
