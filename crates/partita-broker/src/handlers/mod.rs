//! One module per API (or per small family of APIs); each decodes nothing and encodes
//! nothing, it only turns a request struct into a response struct.

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
pub(crate) mod share;

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
