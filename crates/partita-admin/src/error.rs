//! Errors of the admin client, each worded as one line an operator can act on.

use kafka_protocol::error::ResponseError;

/// Everything that can go wrong between the command line and the cluster.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The address could not be reached within the connect timeout, or refused the connection.
    #[error("cannot reach broker {address}: {reason}")]
    Unreachable {
        /// `host:port` that was tried.
        address: String,
        /// What the operating system or the timer said.
        reason: String,
    },
    /// TLS or SASL: the broker did not take this client's credentials, or could not prove
    /// its own.
    #[error("authentication with broker {address} failed: {reason}")]
    Authentication {
        /// `host:port` of the broker.
        address: String,
        /// What went wrong.
        reason: String,
    },
    /// A request got no answer in time.
    #[error("broker {address} did not answer {api} within {seconds} s")]
    Timeout {
        /// `host:port` of the broker.
        address: String,
        /// Name of the API that was called.
        api: String,
        /// The timeout that expired.
        seconds: u64,
    },
    /// The connection broke or the bytes received were not a valid response.
    #[error("broker {address}: {reason}")]
    Protocol {
        /// `host:port` of the broker.
        address: String,
        /// What was wrong.
        reason: String,
    },
    /// The broker does not serve a version of an API that this client can speak.
    #[error("broker {address} does not support {api} (versions this client speaks: {ours})")]
    Unsupported {
        /// `host:port` of the broker.
        address: String,
        /// Name of the API.
        api: String,
        /// The versions this client can use, as `min..max`.
        ours: String,
    },
    /// The broker answered with a Kafka error code.
    #[error("{context}: {error}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kafka {
        /// What was being done, e.g. `deleting topic orders`.
        context: String,
        /// The error code, named.
        error: ResponseError,
        /// The broker's error message, if it sent one.
        message: Option<String>,
    },
    /// No such consumer group.
    #[error("consumer group {0:?} does not exist")]
    GroupNotFound(String),
    /// No such topic.
    #[error("topic {0:?} does not exist")]
    TopicNotFound(String),
    /// The operation needs an inactive group.
    #[error(
        "consumer group {group:?} is active ({members} member(s), state {state}); \
         stop its consumers first: only an inactive group can be changed"
    )]
    GroupActive {
        /// The group.
        group: String,
        /// Its state, as DescribeGroups reports it.
        state: String,
        /// How many members it has.
        members: usize,
    },
    /// The request was refused before anything was sent.
    #[error("{0}")]
    InvalidInput(String),
}

impl AdminError {
    /// Builds [`AdminError::Kafka`] from a non-zero error code.
    pub(crate) fn kafka(context: impl Into<String>, code: i16, message: Option<String>) -> Self {
        AdminError::Kafka {
            context: context.into(),
            error: ResponseError::try_from_code(code).unwrap_or(ResponseError::Unknown(code)),
            message: message.filter(|m| !m.is_empty()),
        }
    }

    /// Returns `Err` when `code` is non-zero.
    pub(crate) fn check(
        code: i16,
        message: Option<&str>,
        context: impl FnOnce() -> String,
    ) -> Result<(), AdminError> {
        if code == 0 {
            Ok(())
        } else {
            Err(AdminError::kafka(
                context(),
                code,
                message.map(str::to_string),
            ))
        }
    }

    /// The Kafka error this is, if it is one.
    pub fn kafka_error(&self) -> Option<ResponseError> {
        match self {
            AdminError::Kafka { error, .. } => Some(*error),
            _ => None,
        }
    }
}

/// Result of an admin operation.
pub type Result<T, E = AdminError> = std::result::Result<T, E>;
