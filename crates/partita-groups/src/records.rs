//! The records of the `__consumer_offsets` topic, in Kafka's own binary format.
//!
//! Partita keeps committed offsets and group state in `__consumer_offsets` exactly as a Kafka
//! broker does, so that Kafka tools (Burrow, `kafka-console-consumer` with the offsets
//! formatter) can read the topic, and so that the coordinator can rebuild every group by
//! replaying it on start-up.
//!
//! Each record's key begins with an int16 that Kafka calls the key "version" but that really
//! names the record type ([`RecordKey`]); its value begins with its own int16 version. The
//! formats follow the schemas in Apache Kafka's
//! `group-coordinator/src/main/resources/common/message/`. A tombstone (a key with a null value)
//! deletes what the key names; that is the caller's business, no type here stands for it.
//!
//! | key type | record                                   | value versions read | written |
//! |----------|------------------------------------------|---------------------|---------|
//! | 0, 1     | [`OffsetCommitValue`]                    | 0-4                 | 3 (1)   |
//! | 2        | [`GroupMetadataValue`]                   | 0-4                 | 3       |
//! | 3        | [`ConsumerGroupMetadataValue`]           | 0                   | 0       |
//! | 4        | [`ConsumerGroupPartitionMetadataValue`]  | 0                   | 0       |
//! | 5        | [`ConsumerGroupMemberMetadataValue`]     | 0                   | 0       |
//! | 6        | [`ConsumerGroupTargetAssignmentMetadataValue`] | 0             | 0       |
//! | 7        | [`ConsumerGroupTargetAssignmentMemberValue`] | 0               | 0       |
//! | 8        | [`ConsumerGroupCurrentMemberAssignmentValue`] | 0              | 0       |

mod classic;
mod consumer_group;
mod transaction;
mod wire;

pub use classic::{GroupMetadataValue, MemberMetadata, OffsetCommitValue};
pub use consumer_group::{
    ClassicMemberMetadata, ClassicProtocol, ConsumerGroupCurrentMemberAssignmentValue,
    ConsumerGroupMemberMetadataValue, ConsumerGroupMetadataValue,
    ConsumerGroupPartitionMetadataValue, ConsumerGroupTargetAssignmentMemberValue,
    ConsumerGroupTargetAssignmentMetadataValue, PartitionRacks, TopicMetadata, TopicPartitions,
};

pub use transaction::{TransactionLogKey, TransactionLogValue, TransactionState};

use wire::{Reader, Writer};

/// Why a `__consumer_offsets` key or value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The bytes end before the record does.
    #[error("record is truncated")]
    Truncated,
    /// The value's version is not one this type knows.
    #[error("unknown record version {0}")]
    UnknownVersion(i16),
    /// The bytes do not follow the schema (bad length, invalid UTF-8, ...).
    #[error("invalid record: {0}")]
    Invalid(String),
}

/// Key type of an offset commit written by Kafka before 0.9 (same layout as type 1).
const OFFSET_COMMIT_V0: i16 = 0;
const OFFSET_COMMIT: i16 = 1;
const GROUP_METADATA: i16 = 2;
const CONSUMER_GROUP_METADATA: i16 = 3;
const CONSUMER_GROUP_PARTITION_METADATA: i16 = 4;
const CONSUMER_GROUP_MEMBER_METADATA: i16 = 5;
const CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA: i16 = 6;
const CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER: i16 = 7;
const CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT: i16 = 8;

/// The key of a `__consumer_offsets` record: which record type it is and what it is about.
///
/// Records with the same key replace one another, which is what lets Kafka compact the topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RecordKey {
    /// A group's committed offset for one partition (key type 1; type 0 is read too).
    OffsetCommit {
        /// The group id.
        group: String,
        /// The topic name.
        topic: String,
        /// The partition index.
        partition: i32,
    },
    /// A classic group's metadata: generation, leader, members (key type 2).
    GroupMetadata {
        /// The group id.
        group: String,
    },
    /// A consumer group's (KIP-848) epoch (key type 3).
    ConsumerGroupMetadata {
        /// The group id.
        group: String,
    },
    /// A consumer group's subscribed-topic metadata (key type 4; deprecated after Kafka 4.0).
    ConsumerGroupPartitionMetadata {
        /// The group id.
        group: String,
    },
    /// One member of a consumer group (key type 5).
    ConsumerGroupMemberMetadata {
        /// The group id.
        group: String,
        /// The member id.
        member_id: String,
    },
    /// A consumer group's target assignment epoch (key type 6).
    ConsumerGroupTargetAssignmentMetadata {
        /// The group id.
        group: String,
    },
    /// One member's target assignment (key type 7).
    ConsumerGroupTargetAssignmentMember {
        /// The group id.
        group: String,
        /// The member id.
        member_id: String,
    },
    /// One member's current assignment and epochs (key type 8).
    ConsumerGroupCurrentMemberAssignment {
        /// The group id.
        group: String,
        /// The member id.
        member_id: String,
    },
    /// A record type Partita does not handle (share and streams groups, future types); replay
    /// skips it.
    Unknown {
        /// The key's leading int16.
        key_version: i16,
    },
}

impl RecordKey {
    /// Encodes the key: the int16 record type, then the key's fields (never flexible).
    ///
    /// An offset commit is written as type 1, as current Kafka does. An `Unknown` key
    /// encodes as its type alone.
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::new(false);
        match self {
            RecordKey::OffsetCommit {
                group,
                topic,
                partition,
            } => {
                writer.i16(OFFSET_COMMIT);
                writer.string(group);
                writer.string(topic);
                writer.i32(*partition);
            }
            RecordKey::Unknown { key_version } => writer.i16(*key_version),
            _ => {
                writer.i16(self.key_type());
                if let Some(group) = self.group() {
                    writer.string(group);
                }
                if let Some(member_id) = self.member_id() {
                    writer.string(member_id);
                }
            }
        }
        writer.into_bytes()
    }

    /// Decodes a key. Types this module does not know become [`RecordKey::Unknown`].
    pub fn decode(bytes: &[u8]) -> Result<RecordKey, RecordError> {
        let mut reader = Reader::new(bytes, false);
        let key_version = reader.i16()?;
        let key = match key_version {
            OFFSET_COMMIT_V0 | OFFSET_COMMIT => RecordKey::OffsetCommit {
                group: reader.string()?,
                topic: reader.string()?,
                partition: reader.i32()?,
            },
            GROUP_METADATA => RecordKey::GroupMetadata {
                group: reader.string()?,
            },
            CONSUMER_GROUP_METADATA => RecordKey::ConsumerGroupMetadata {
                group: reader.string()?,
            },
            CONSUMER_GROUP_PARTITION_METADATA => RecordKey::ConsumerGroupPartitionMetadata {
                group: reader.string()?,
            },
            CONSUMER_GROUP_MEMBER_METADATA => RecordKey::ConsumerGroupMemberMetadata {
                group: reader.string()?,
                member_id: reader.string()?,
            },
            CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA => {
                RecordKey::ConsumerGroupTargetAssignmentMetadata {
                    group: reader.string()?,
                }
            }
            CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER => {
                RecordKey::ConsumerGroupTargetAssignmentMember {
                    group: reader.string()?,
                    member_id: reader.string()?,
                }
            }
            CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT => {
                RecordKey::ConsumerGroupCurrentMemberAssignment {
                    group: reader.string()?,
                    member_id: reader.string()?,
                }
            }
            key_version => RecordKey::Unknown { key_version },
        };
        Ok(key)
    }

    /// The group the record belongs to (`None` for an unknown type). The coordinator uses it
    /// to place the record in the group's `__consumer_offsets` partition.
    pub fn group(&self) -> Option<&str> {
        match self {
            RecordKey::OffsetCommit { group, .. }
            | RecordKey::GroupMetadata { group }
            | RecordKey::ConsumerGroupMetadata { group }
            | RecordKey::ConsumerGroupPartitionMetadata { group }
            | RecordKey::ConsumerGroupMemberMetadata { group, .. }
            | RecordKey::ConsumerGroupTargetAssignmentMetadata { group }
            | RecordKey::ConsumerGroupTargetAssignmentMember { group, .. }
            | RecordKey::ConsumerGroupCurrentMemberAssignment { group, .. } => Some(group),
            RecordKey::Unknown { .. } => None,
        }
    }

    fn member_id(&self) -> Option<&str> {
        match self {
            RecordKey::ConsumerGroupMemberMetadata { member_id, .. }
            | RecordKey::ConsumerGroupTargetAssignmentMember { member_id, .. }
            | RecordKey::ConsumerGroupCurrentMemberAssignment { member_id, .. } => Some(member_id),
            _ => None,
        }
    }

    fn key_type(&self) -> i16 {
        match self {
            RecordKey::OffsetCommit { .. } => OFFSET_COMMIT,
            RecordKey::GroupMetadata { .. } => GROUP_METADATA,
            RecordKey::ConsumerGroupMetadata { .. } => CONSUMER_GROUP_METADATA,
            RecordKey::ConsumerGroupPartitionMetadata { .. } => CONSUMER_GROUP_PARTITION_METADATA,
            RecordKey::ConsumerGroupMemberMetadata { .. } => CONSUMER_GROUP_MEMBER_METADATA,
            RecordKey::ConsumerGroupTargetAssignmentMetadata { .. } => {
                CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA
            }
            RecordKey::ConsumerGroupTargetAssignmentMember { .. } => {
                CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER
            }
            RecordKey::ConsumerGroupCurrentMemberAssignment { .. } => {
                CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT
            }
            RecordKey::Unknown { key_version } => *key_version,
        }
    }
}

/// A decoded `__consumer_offsets` value, of the type its key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordValue {
    /// For [`RecordKey::OffsetCommit`].
    OffsetCommit(OffsetCommitValue),
    /// For [`RecordKey::GroupMetadata`].
    GroupMetadata(GroupMetadataValue),
    /// For [`RecordKey::ConsumerGroupMetadata`].
    ConsumerGroupMetadata(ConsumerGroupMetadataValue),
    /// For [`RecordKey::ConsumerGroupPartitionMetadata`].
    ConsumerGroupPartitionMetadata(ConsumerGroupPartitionMetadataValue),
    /// For [`RecordKey::ConsumerGroupMemberMetadata`].
    ConsumerGroupMemberMetadata(ConsumerGroupMemberMetadataValue),
    /// For [`RecordKey::ConsumerGroupTargetAssignmentMetadata`].
    ConsumerGroupTargetAssignmentMetadata(ConsumerGroupTargetAssignmentMetadataValue),
    /// For [`RecordKey::ConsumerGroupTargetAssignmentMember`].
    ConsumerGroupTargetAssignmentMember(ConsumerGroupTargetAssignmentMemberValue),
    /// For [`RecordKey::ConsumerGroupCurrentMemberAssignment`].
    ConsumerGroupCurrentMemberAssignment(ConsumerGroupCurrentMemberAssignmentValue),
}

impl RecordValue {
    /// Decodes the (non-null) value of a record with this key. `Ok(None)` for an
    /// [`RecordKey::Unknown`] key: replay skips such records, as Kafka does.
    pub fn decode(key: &RecordKey, bytes: &[u8]) -> Result<Option<RecordValue>, RecordError> {
        let value = match key {
            RecordKey::OffsetCommit { .. } => {
                RecordValue::OffsetCommit(OffsetCommitValue::decode(bytes)?)
            }
            RecordKey::GroupMetadata { .. } => {
                RecordValue::GroupMetadata(GroupMetadataValue::decode(bytes)?)
            }
            RecordKey::ConsumerGroupMetadata { .. } => {
                RecordValue::ConsumerGroupMetadata(ConsumerGroupMetadataValue::decode(bytes)?)
            }
            RecordKey::ConsumerGroupPartitionMetadata { .. } => {
                RecordValue::ConsumerGroupPartitionMetadata(
                    ConsumerGroupPartitionMetadataValue::decode(bytes)?,
                )
            }
            RecordKey::ConsumerGroupMemberMetadata { .. } => {
                RecordValue::ConsumerGroupMemberMetadata(ConsumerGroupMemberMetadataValue::decode(
                    bytes,
                )?)
            }
            RecordKey::ConsumerGroupTargetAssignmentMetadata { .. } => {
                RecordValue::ConsumerGroupTargetAssignmentMetadata(
                    ConsumerGroupTargetAssignmentMetadataValue::decode(bytes)?,
                )
            }
            RecordKey::ConsumerGroupTargetAssignmentMember { .. } => {
                RecordValue::ConsumerGroupTargetAssignmentMember(
                    ConsumerGroupTargetAssignmentMemberValue::decode(bytes)?,
                )
            }
            RecordKey::ConsumerGroupCurrentMemberAssignment { .. } => {
                RecordValue::ConsumerGroupCurrentMemberAssignment(
                    ConsumerGroupCurrentMemberAssignmentValue::decode(bytes)?,
                )
            }
            RecordKey::Unknown { .. } => return Ok(None),
        };
        Ok(Some(value))
    }

    /// Encodes the value at the version Partita writes for its type.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            RecordValue::OffsetCommit(value) => value.encode(),
            RecordValue::GroupMetadata(value) => value.encode(),
            RecordValue::ConsumerGroupMetadata(value) => value.encode(),
            RecordValue::ConsumerGroupPartitionMetadata(value) => value.encode(),
            RecordValue::ConsumerGroupMemberMetadata(value) => value.encode(),
            RecordValue::ConsumerGroupTargetAssignmentMetadata(value) => value.encode(),
            RecordValue::ConsumerGroupTargetAssignmentMember(value) => value.encode(),
            RecordValue::ConsumerGroupCurrentMemberAssignment(value) => value.encode(),
        }
    }
}

#[cfg(test)]
mod tests;
