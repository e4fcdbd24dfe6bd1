//! Values of the KIP-848 consumer group records (key types 3 to 8).
//!
//! All are at value version 0, which is flexible: compact strings, bytes and arrays, and a
//! tagged-field section closing every struct. Tagged fields this module does not model are
//! skipped when reading, as Kafka does.

use super::wire::{Reader, Writer};
use super::RecordError;

/// The only value version of the KIP-848 records.
const VERSION: i16 = 0;

fn writer() -> Writer {
    let mut writer = Writer::new(true);
    writer.i16(VERSION);
    writer
}

fn reader(bytes: &[u8]) -> Result<Reader, RecordError> {
    let version = Reader::new(bytes, false).i16()?;
    if version != VERSION {
        return Err(RecordError::UnknownVersion(version));
    }
    Ok(Reader::new(&bytes[2..], true))
}

/// Reads a tagged-field section whose fields are all unknown to us.
fn skip_tagged_fields(reader: &mut Reader) -> Result<(), RecordError> {
    reader.tagged_fields(|_, _| Ok(()))
}

/// A consumer group's epoch: the value of [`super::RecordKey::ConsumerGroupMetadata`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupMetadataValue {
    /// The group epoch.
    pub epoch: i32,
    /// Hash of the subscribed topics' metadata (KIP-1101; tagged field 0, 0 = none, not
    /// written).
    pub metadata_hash: i64,
}

impl ConsumerGroupMetadataValue {
    /// Encodes at version 0: epoch int32, tagged fields (0: metadata_hash int64).
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = writer();
        writer.i32(self.epoch);
        let mut tagged = Vec::new();
        if self.metadata_hash != 0 {
            tagged.push((0, self.metadata_hash.to_be_bytes().to_vec()));
        }
        writer.tagged_fields(&tagged);
        writer.into_bytes()
    }

    /// Decodes a version-0 value.
    pub fn decode(bytes: &[u8]) -> Result<ConsumerGroupMetadataValue, RecordError> {
        let mut reader = reader(bytes)?;
        let epoch = reader.i32()?;
        let mut metadata_hash = 0;
        reader.tagged_fields(|tag, field| {
            if tag == 0 {
                metadata_hash = field.i64()?;
            }
            Ok(())
        })?;
        Ok(ConsumerGroupMetadataValue {
            epoch,
            metadata_hash,
        })
    }
}

/// The subscribed topics' metadata as a consumer group last saw it: the value of
/// [`super::RecordKey::ConsumerGroupPartitionMetadata`]. Kafka stopped writing it after 4.0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupPartitionMetadataValue {
    /// One entry per subscribed topic.
    pub topics: Vec<TopicMetadata>,
}

/// One topic in a [`ConsumerGroupPartitionMetadataValue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    /// The topic id.
    pub topic_id: [u8; 16],
    /// The topic name.
    pub topic_name: String,
    /// Its number of partitions.
    pub num_partitions: i32,
    /// The racks of each partition's replicas; empty when no rack is known.
    pub partition_racks: Vec<PartitionRacks>,
}

/// The racks holding one partition, in a [`TopicMetadata`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRacks {
    /// The partition index.
    pub partition: i32,
    /// The racks of its replicas.
    pub racks: Vec<String>,
}

impl ConsumerGroupPartitionMetadataValue {
    /// Encodes at version 0: topics COMPACT_ARRAY of (topic_id uuid, topic_name, num_partitions
    /// int32, partition_racks COMPACT_ARRAY of (partition int32, racks []string)).
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = writer();
        writer.array_len(self.topics.len());
        for topic in &self.topics {
            writer.uuid(&topic.topic_id);
            writer.string(&topic.topic_name);
            writer.i32(topic.num_partitions);
            writer.array_len(topic.partition_racks.len());
            for partition in &topic.partition_racks {
                writer.i32(partition.partition);
                writer.strings(&partition.racks);
                writer.tagged_fields(&[]);
            }
            writer.tagged_fields(&[]);
        }
        writer.tagged_fields(&[]);
        writer.into_bytes()
    }

    /// Decodes a version-0 value.
    pub fn decode(bytes: &[u8]) -> Result<ConsumerGroupPartitionMetadataValue, RecordError> {
        let mut reader = reader(bytes)?;
        let topics = reader.array_of(|reader| {
            let topic_id = reader.uuid()?;
            let topic_name = reader.string()?;
            let num_partitions = reader.i32()?;
            let partition_racks = reader.array_of(|reader| {
                let partition = reader.i32()?;
                let racks = reader.strings()?;
                skip_tagged_fields(reader)?;
                Ok(PartitionRacks { partition, racks })
            })?;
            skip_tagged_fields(reader)?;
            Ok(TopicMetadata {
                topic_id,
                topic_name,
                num_partitions,
                partition_racks,
            })
        })?;
        skip_tagged_fields(&mut reader)?;
        Ok(ConsumerGroupPartitionMetadataValue { topics })
    }
}

/// One member of a consumer group: the value of [`super::RecordKey::ConsumerGroupMemberMetadata`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupMemberMetadataValue {
    /// The static member's instance id, if any.
    pub instance_id: Option<String>,
    /// The member's rack, if any.
    pub rack_id: Option<String>,
    /// The client id.
    pub client_id: String,
    /// The client's host.
    pub client_host: String,
    /// The topics the member subscribes to by name.
    pub subscribed_topic_names: Vec<String>,
    /// The regular expression the member subscribes with, if any.
    pub subscribed_topic_regex: Option<String>,
    /// The rebalance timeout in milliseconds (-1 by default).
    pub rebalance_timeout_ms: i32,
    /// The server-side assignor the member asked for, if any.
    pub server_assignor: Option<String>,
    /// For a member using the classic protocol inside a consumer group (tagged field 0).
    pub classic_member_metadata: Option<ClassicMemberMetadata>,
}

/// What a classic-protocol member of a consumer group declared when it joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicMemberMetadata {
    /// The session timeout in milliseconds.
    pub session_timeout_ms: i32,
    /// The protocols (assignors) the member supports, with its metadata for each.
    pub supported_protocols: Vec<ClassicProtocol>,
}

/// One protocol a classic member supports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicProtocol {
    /// The protocol name.
    pub name: String,
    /// The member's metadata for it.
    pub metadata: Vec<u8>,
}

impl ConsumerGroupMemberMetadataValue {
    /// Encodes at version 0: instance_id, rack_id (nullable), client_id, client_host,
    /// subscribed_topic_names []string, subscribed_topic_regex (nullable),
    /// rebalance_timeout_ms int32, server_assignor (nullable), tagged fields (0:
    /// classic_member_metadata, a nullable struct).
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = writer();
        writer.nullable_string(self.instance_id.as_deref());
        writer.nullable_string(self.rack_id.as_deref());
        writer.string(&self.client_id);
        writer.string(&self.client_host);
        writer.strings(&self.subscribed_topic_names);
        writer.nullable_string(self.subscribed_topic_regex.as_deref());
        writer.i32(self.rebalance_timeout_ms);
        writer.nullable_string(self.server_assignor.as_deref());
        let mut tagged = Vec::new();
        if let Some(classic) = &self.classic_member_metadata {
            tagged.push((0, classic.encode_tagged()));
        }
        writer.tagged_fields(&tagged);
        writer.into_bytes()
    }

    /// Decodes a version-0 value.
    pub fn decode(bytes: &[u8]) -> Result<ConsumerGroupMemberMetadataValue, RecordError> {
        let mut reader = reader(bytes)?;
        let instance_id = reader.nullable_string()?;
        let rack_id = reader.nullable_string()?;
        let client_id = reader.string()?;
        let client_host = reader.string()?;
        let subscribed_topic_names = reader.strings()?;
        let subscribed_topic_regex = reader.nullable_string()?;
        let rebalance_timeout_ms = reader.i32()?;
        let server_assignor = reader.nullable_string()?;
        let mut classic_member_metadata = None;
        reader.tagged_fields(|tag, field| {
            if tag == 0 {
                classic_member_metadata = ClassicMemberMetadata::read_tagged(field)?;
            }
            Ok(())
        })?;
        Ok(ConsumerGroupMemberMetadataValue {
            instance_id,
            rack_id,
            client_id,
            client_host,
            subscribed_topic_names,
            subscribed_topic_regex,
            rebalance_timeout_ms,
            server_assignor,
            classic_member_metadata,
        })
    }
}

impl ClassicMemberMetadata {
    /// A nullable struct in a tagged field: a uvarint presence marker (1), then the struct.
    fn encode_tagged(&self) -> Vec<u8> {
        let mut writer = Writer::new(true);
        writer.uvarint(1);
        writer.i32(self.session_timeout_ms);
        writer.array_len(self.supported_protocols.len());
        for protocol in &self.supported_protocols {
            writer.string(&protocol.name);
            writer.bytes(&protocol.metadata);
            writer.tagged_fields(&[]);
        }
        writer.tagged_fields(&[]);
        writer.into_bytes()
    }

    fn read_tagged(reader: &mut Reader) -> Result<Option<ClassicMemberMetadata>, RecordError> {
        if reader.uvarint()? == 0 {
            return Ok(None);
        }
        let session_timeout_ms = reader.i32()?;
        let supported_protocols = reader.array_of(|reader| {
            let name = reader.string()?;
            let metadata = reader.bytes()?;
            skip_tagged_fields(reader)?;
            Ok(ClassicProtocol { name, metadata })
        })?;
        skip_tagged_fields(reader)?;
        Ok(Some(ClassicMemberMetadata {
            session_timeout_ms,
            supported_protocols,
        }))
    }
}

/// A consumer group's target assignment epoch: the value of
/// [`super::RecordKey::ConsumerGroupTargetAssignmentMetadata`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupTargetAssignmentMetadataValue {
    /// The group epoch the target assignment was computed for.
    pub assignment_epoch: i32,
}

impl ConsumerGroupTargetAssignmentMetadataValue {
    /// Encodes at version 0: assignment_epoch int32, tagged fields (none written).
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = writer();
        writer.i32(self.assignment_epoch);
        writer.tagged_fields(&[]);
        writer.into_bytes()
    }

    /// Decodes a version-0 value.
    pub fn decode(bytes: &[u8]) -> Result<ConsumerGroupTargetAssignmentMetadataValue, RecordError> {
        let mut reader = reader(bytes)?;
        let assignment_epoch = reader.i32()?;
        skip_tagged_fields(&mut reader)?;
        Ok(ConsumerGroupTargetAssignmentMetadataValue { assignment_epoch })
    }
}

/// Partitions of one topic, named by topic id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPartitions {
    /// The topic id.
    pub topic_id: [u8; 16],
    /// The partition indexes.
    pub partitions: Vec<i32>,
}

impl TopicPartitions {
    fn write_all(writer: &mut Writer, topics: &[TopicPartitions]) {
        writer.array_len(topics.len());
        for topic in topics {
            writer.uuid(&topic.topic_id);
            writer.i32s(&topic.partitions);
            writer.tagged_fields(&[]);
        }
    }

    fn read_all(reader: &mut Reader) -> Result<Vec<TopicPartitions>, RecordError> {
        reader.array_of(|reader| {
            let topic_id = reader.uuid()?;
            let partitions = reader.i32s()?;
            skip_tagged_fields(reader)?;
            Ok(TopicPartitions {
                topic_id,
                partitions,
            })
        })
    }
}

/// One member's target assignment: the value of
/// [`super::RecordKey::ConsumerGroupTargetAssignmentMember`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupTargetAssignmentMemberValue {
    /// The partitions the assignor gave the member.
    pub topic_partitions: Vec<TopicPartitions>,
}

impl ConsumerGroupTargetAssignmentMemberValue {
    /// Encodes at version 0: topic_partitions COMPACT_ARRAY of (topic_id uuid, partitions
    /// []int32).
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = writer();
        TopicPartitions::write_all(&mut writer, &self.topic_partitions);
        writer.tagged_fields(&[]);
        writer.into_bytes()
    }

    /// Decodes a version-0 value.
    pub fn decode(bytes: &[u8]) -> Result<ConsumerGroupTargetAssignmentMemberValue, RecordError> {
        let mut reader = reader(bytes)?;
        let topic_partitions = TopicPartitions::read_all(&mut reader)?;
        skip_tagged_fields(&mut reader)?;
        Ok(ConsumerGroupTargetAssignmentMemberValue { topic_partitions })
    }
}

/// One member's current assignment and epochs: the value of
/// [`super::RecordKey::ConsumerGroupCurrentMemberAssignment`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupCurrentMemberAssignmentValue {
    /// The epoch the member must send in its next heartbeat.
    pub member_epoch: i32,
    /// The epoch before the last bump, accepted in case the member missed that bump.
    pub previous_member_epoch: i32,
    /// Kafka's `MemberState`: 0 stable, 1 unrevoked partitions, 2 unreleased partitions,
    /// 127 unknown.
    pub state: i8,
    /// The partitions the member owns.
    pub assigned_partitions: Vec<TopicPartitions>,
    /// The partitions the member must give up.
    pub partitions_pending_revocation: Vec<TopicPartitions>,
}

impl ConsumerGroupCurrentMemberAssignmentValue {
    /// Encodes at version 0: member_epoch int32, previous_member_epoch int32, state int8,
    /// assigned_partitions and partitions_pending_revocation (each a COMPACT_ARRAY of
    /// topic_id uuid, partitions []int32).
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = writer();
        writer.i32(self.member_epoch);
        writer.i32(self.previous_member_epoch);
        writer.i8(self.state);
        TopicPartitions::write_all(&mut writer, &self.assigned_partitions);
        TopicPartitions::write_all(&mut writer, &self.partitions_pending_revocation);
        writer.tagged_fields(&[]);
        writer.into_bytes()
    }

    /// Decodes a version-0 value.
    pub fn decode(bytes: &[u8]) -> Result<ConsumerGroupCurrentMemberAssignmentValue, RecordError> {
        let mut reader = reader(bytes)?;
        let member_epoch = reader.i32()?;
        let previous_member_epoch = reader.i32()?;
        let state = reader.i8()?;
        let assigned_partitions = TopicPartitions::read_all(&mut reader)?;
        let partitions_pending_revocation = TopicPartitions::read_all(&mut reader)?;
        skip_tagged_fields(&mut reader)?;
        Ok(ConsumerGroupCurrentMemberAssignmentValue {
            member_epoch,
            previous_member_epoch,
            state,
            assigned_partitions,
            partitions_pending_revocation,
        })
    }
}
