//! One module per API (or per small family of APIs); each decodes nothing and encodes
//! nothing, it only turns a request struct into a response struct.

pub(crate) mod acls;
pub(crate) mod api_versions;
pub(crate) mod configs;
pub(crate) mod create_partitions;
pub(crate) mod create_topics;
pub(crate) mod delete_records;
pub(crate) mod delete_topics;
pub(crate) mod describe_cluster;
pub(crate) mod error_codes;
pub(crate) mod fetch;
pub(crate) mod find_coordinator;
pub(crate) mod groups;
pub(crate) mod init_producer_id;
pub(crate) mod list_offsets;
pub(crate) mod metadata;
pub(crate) mod offset_for_leader_epoch;
pub(crate) mod produce;
pub(crate) mod scram_credentials;
pub(crate) mod share;
pub(crate) mod transactions;
pub(crate) mod unknown_partitions;

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

/// Owned protocol string from a `&str`.
pub(crate) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Protocol topic name from a `&str`.
pub(crate) fn topic_name(s: &str) -> TopicName {
    TopicName(str_bytes(s))
}

/// Authorized operations as Kafka reports them without an authorizer: every operation the
/// resource supports, as a bit field of ACL operation codes.
pub(crate) mod operations {
    const READ: i32 = 1 << 3;
    const WRITE: i32 = 1 << 4;
    const CREATE: i32 = 1 << 5;
    const DELETE: i32 = 1 << 6;
    const ALTER: i32 = 1 << 7;
    const DESCRIBE: i32 = 1 << 8;
    const CLUSTER_ACTION: i32 = 1 << 9;
    const DESCRIBE_CONFIGS: i32 = 1 << 10;
    const ALTER_CONFIGS: i32 = 1 << 11;
    const IDEMPOTENT_WRITE: i32 = 1 << 12;

    /// Of a topic.
    pub(crate) const TOPIC: i32 =
        READ | WRITE | CREATE | DELETE | ALTER | DESCRIBE | DESCRIBE_CONFIGS | ALTER_CONFIGS;
    /// Of a group.
    pub(crate) const GROUP: i32 = READ | DESCRIBE | DELETE;
    /// Of the cluster.
    pub(crate) const CLUSTER: i32 = CREATE
        | ALTER
        | DESCRIBE
        | CLUSTER_ACTION
        | DESCRIBE_CONFIGS
        | ALTER_CONFIGS
        | IDEMPOTENT_WRITE;

    /// `operations` if the client asked for them, else Kafka's "not asked" value.
    pub(crate) fn if_asked(asked: bool, operations: i32) -> i32 {
        if asked {
            operations
        } else {
            i32::MIN
        }
    }
}
