//! The embedded consumer protocol (protocol type `consumer`): what members subscribe to and
//! what they were assigned, read from the opaque bytes of JoinGroup and SyncGroup.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use kafka_protocol::protocol::Decodable;

/// The topics in a consumer's subscription metadata, or `None` if it cannot be read.
pub fn subscribed_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut bytes = Bytes::copy_from_slice(metadata);
    if bytes.remaining() < 2 {
        return None;
    }
    // Newer clients may send versions this decoder does not know; their prefix is the same.
    let version = bytes.get_i16().clamp(0, 3);
    let subscription = ConsumerProtocolSubscription::decode(&mut bytes, version).ok()?;
    Some(subscription.topics.iter().map(|t| t.to_string()).collect())
}

/// The partitions in a consumer's assignment, by topic, or `None` if it cannot be read.
pub fn assigned_partitions(assignment: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    if assignment.is_empty() {
        return Some(Vec::new());
    }
    let mut bytes = Bytes::copy_from_slice(assignment);
    if bytes.remaining() < 2 {
        return None;
    }
    let version = bytes.get_i16().clamp(0, 3);
    let decoded = ConsumerProtocolAssignment::decode(&mut bytes, version).ok()?;
    Some(
        decoded
            .assigned_partitions
            .iter()
            .map(|tp| (tp.topic.to_string(), tp.partitions.clone()))
            .collect(),
    )
}
