//! Values of the records Kafka tools know best: committed offsets and classic group metadata.

use super::wire::{Reader, Writer};
use super::RecordError;

/// A group's committed offset for one partition: the value of [`super::RecordKey::OffsetCommit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitValue {
    /// The offset the consumer will resume from.
    pub offset: i64,
    /// Leader epoch of the last consumed record; -1 if unknown.
    pub leader_epoch: i32,
    /// Metadata the client stored with the commit.
    pub metadata: String,
    /// When the commit was accepted, in milliseconds since the epoch.
    pub commit_timestamp: i64,
    /// Explicit expiry, in milliseconds since the epoch. Only value version 1 holds it.
    pub expire_timestamp: Option<i64>,
}

impl OffsetCommitValue {
    /// Encodes the value at version 3, the one Kafka writes and every tool reads; or, when it
    /// has an `expire_timestamp`, at version 1, the only one that can hold it (version 1 has
    /// no leader epoch, so that is then lost, as it is in Kafka).
    ///
    /// Version 3: offset int64, leader_epoch int32, metadata STRING, commit_timestamp int64.
    pub fn encode(&self) -> Vec<u8> {
        let version = if self.expire_timestamp.is_some() {
            1
        } else {
            3
        };
        let mut writer = Writer::new(false);
        writer.i16(version);
        writer.i64(self.offset);
        if version >= 3 {
            writer.i32(self.leader_epoch);
        }
        writer.string(&self.metadata);
        writer.i64(self.commit_timestamp);
        if let Some(expire_timestamp) = self.expire_timestamp {
            writer.i64(expire_timestamp);
        }
        writer.into_bytes()
    }

    /// Decodes a value of any version 0-4 (4 is flexible: compact metadata, tagged fields).
    ///
    /// A version-1 expire timestamp of -1 means none, as in Kafka.
    pub fn decode(bytes: &[u8]) -> Result<OffsetCommitValue, RecordError> {
        let version = Reader::new(bytes, false).i16()?;
        if !(0..=4).contains(&version) {
            return Err(RecordError::UnknownVersion(version));
        }
        let mut reader = Reader::new(&bytes[2..], version >= 4);
        let offset = reader.i64()?;
        let leader_epoch = if version >= 3 { reader.i32()? } else { -1 };
        let metadata = reader.string()?;
        let commit_timestamp = reader.i64()?;
        let expire_timestamp = if version == 1 {
            Some(reader.i64()?).filter(|timestamp| *timestamp != -1)
        } else {
            None
        };
        reader.tagged_fields(|_, _| Ok(()))?;
        Ok(OffsetCommitValue {
            offset,
            leader_epoch,
            metadata,
            commit_timestamp,
            expire_timestamp,
        })
    }
}

/// A classic (JoinGroup/SyncGroup) group's state: the value of
/// [`super::RecordKey::GroupMetadata`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadataValue {
    /// The protocol type, "consumer" for consumers; empty for a group that only commits.
    pub protocol_type: String,
    /// The generation id.
    pub generation: i32,
    /// The chosen protocol (assignor), if any.
    pub protocol: Option<String>,
    /// The leader's member id, if any.
    pub leader: Option<String>,
    /// When the group last changed state, in milliseconds since the epoch; -1 if unknown.
    pub current_state_timestamp: i64,
    /// The members and their assignments.
    pub members: Vec<MemberMetadata>,
}

/// One member of a classic group, as stored in [`GroupMetadataValue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberMetadata {
    /// The member id.
    pub member_id: String,
    /// The static member's `group.instance.id`, if any.
    pub group_instance_id: Option<String>,
    /// The client id.
    pub client_id: String,
    /// The client's host.
    pub client_host: String,
    /// The rebalance timeout in milliseconds.
    pub rebalance_timeout: i32,
    /// The session timeout in milliseconds.
    pub session_timeout: i32,
    /// The member's metadata for the chosen protocol (its subscription).
    pub subscription: Vec<u8>,
    /// The assignment the leader gave the member.
    pub assignment: Vec<u8>,
}

impl GroupMetadataValue {
    /// Encodes the value at version 3, the one Kafka writes.
    ///
    /// Version 3: protocol_type STRING, generation int32, protocol NULLABLE_STRING,
    /// leader NULLABLE_STRING, current_state_timestamp int64, members ARRAY of (member_id
    /// STRING, group_instance_id NULLABLE_STRING, client_id STRING, client_host STRING,
    /// rebalance_timeout int32, session_timeout int32, subscription BYTES, assignment BYTES).
    pub fn encode(&self) -> Vec<u8> {
        let version = 3;
        let mut writer = Writer::new(false);
        writer.i16(version);
        writer.string(&self.protocol_type);
        writer.i32(self.generation);
        writer.nullable_string(self.protocol.as_deref());
        writer.nullable_string(self.leader.as_deref());
        writer.i64(self.current_state_timestamp);
        writer.array_len(self.members.len());
        for member in &self.members {
            writer.string(&member.member_id);
            writer.nullable_string(member.group_instance_id.as_deref());
            writer.string(&member.client_id);
            writer.string(&member.client_host);
            writer.i32(member.rebalance_timeout);
            writer.i32(member.session_timeout);
            writer.bytes(&member.subscription);
            writer.bytes(&member.assignment);
        }
        writer.into_bytes()
    }

    /// Decodes a value of any version 0-4 (4 is flexible).
    ///
    /// Fields a version lacks take Kafka's defaults: no current-state timestamp (-1) before
    /// version 2, no group instance id before 3, and before version 1 the rebalance timeout
    /// is the session timeout.
    pub fn decode(bytes: &[u8]) -> Result<GroupMetadataValue, RecordError> {
        let version = Reader::new(bytes, false).i16()?;
        if !(0..=4).contains(&version) {
            return Err(RecordError::UnknownVersion(version));
        }
        let mut reader = Reader::new(&bytes[2..], version >= 4);
        let protocol_type = reader.string()?;
        let generation = reader.i32()?;
        let protocol = reader.nullable_string()?;
        let leader = reader.nullable_string()?;
        let current_state_timestamp = if version >= 2 { reader.i64()? } else { -1 };
        let members = reader.array_of(|reader| MemberMetadata::read(reader, version))?;
        reader.tagged_fields(|_, _| Ok(()))?;
        Ok(GroupMetadataValue {
            protocol_type,
            generation,
            protocol,
            leader,
            current_state_timestamp,
            members,
        })
    }
}

impl MemberMetadata {
    fn read(reader: &mut Reader, version: i16) -> Result<MemberMetadata, RecordError> {
        let member_id = reader.string()?;
        let group_instance_id = if version >= 3 {
            reader.nullable_string()?
        } else {
            None
        };
        let client_id = reader.string()?;
        let client_host = reader.string()?;
        let rebalance_timeout = if version >= 1 {
            Some(reader.i32()?)
        } else {
            None
        };
        let session_timeout = reader.i32()?;
        let subscription = reader.bytes()?;
        let assignment = reader.bytes()?;
        reader.tagged_fields(|_, _| Ok(()))?;
        Ok(MemberMetadata {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout: rebalance_timeout.unwrap_or(session_timeout),
            session_timeout,
            subscription,
            assignment,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset_commit(expire_timestamp: Option<i64>) -> OffsetCommitValue {
        OffsetCommitValue {
            offset: 42,
            leader_epoch: if expire_timestamp.is_some() { -1 } else { 7 },
            metadata: "m".into(),
            commit_timestamp: 1_700_000_000_000,
            expire_timestamp,
        }
    }

    #[test]
    fn offset_commit_value_v3_golden_bytes() {
        let mut expected = vec![0x00, 0x03]; // version 3
        expected.extend_from_slice(&42i64.to_be_bytes()); // offset
        expected.extend_from_slice(&7i32.to_be_bytes()); // leader_epoch
        expected.extend_from_slice(&[0x00, 0x01, b'm']); // metadata
        expected.extend_from_slice(&1_700_000_000_000i64.to_be_bytes()); // commit_timestamp
        assert_eq!(offset_commit(None).encode(), expected);
        assert_eq!(
            OffsetCommitValue::decode(&expected).unwrap(),
            offset_commit(None)
        );
    }

    #[test]
    fn offset_commit_value_with_expiry_round_trips_as_v1() {
        let value = offset_commit(Some(1_700_000_600_000));
        let bytes = value.encode();
        assert_eq!(&bytes[..2], [0x00, 0x01]);
        assert_eq!(OffsetCommitValue::decode(&bytes).unwrap(), value);
    }

    #[test]
    fn decodes_offset_commit_value_v1_with_expire_timestamp() {
        let mut bytes = vec![0x00, 0x01];
        bytes.extend_from_slice(&100i64.to_be_bytes());
        bytes.extend_from_slice(&[0x00, 0x02, b'h', b'i']);
        bytes.extend_from_slice(&5_000i64.to_be_bytes());
        bytes.extend_from_slice(&9_000i64.to_be_bytes());
        let value = OffsetCommitValue::decode(&bytes).unwrap();
        assert_eq!(
            value,
            OffsetCommitValue {
                offset: 100,
                leader_epoch: -1,
                metadata: "hi".into(),
                commit_timestamp: 5_000,
                expire_timestamp: Some(9_000),
            }
        );
    }

    #[test]
    fn decodes_offset_commit_value_v0_and_v2() {
        for version in [0u8, 2] {
            let mut bytes = vec![0x00, version];
            bytes.extend_from_slice(&100i64.to_be_bytes());
            bytes.extend_from_slice(&[0x00, 0x00]);
            bytes.extend_from_slice(&5_000i64.to_be_bytes());
            let value = OffsetCommitValue::decode(&bytes).unwrap();
            assert_eq!(value.offset, 100);
            assert_eq!(value.leader_epoch, -1);
            assert_eq!(value.metadata, "");
            assert_eq!(value.commit_timestamp, 5_000);
            assert_eq!(value.expire_timestamp, None);
        }
    }

    #[test]
    fn decodes_flexible_offset_commit_value_v4() {
        let mut bytes = vec![0x00, 0x04];
        bytes.extend_from_slice(&100i64.to_be_bytes());
        bytes.extend_from_slice(&3i32.to_be_bytes());
        bytes.extend_from_slice(&[0x03, b'h', b'i']); // compact string
        bytes.extend_from_slice(&5_000i64.to_be_bytes());
        bytes.extend_from_slice(&[0x01, 0x09, 0x01, 0xff]); // one unknown tagged field
        let value = OffsetCommitValue::decode(&bytes).unwrap();
        assert_eq!((value.offset, value.leader_epoch), (100, 3));
        assert_eq!(value.metadata, "hi");
        assert_eq!(value.commit_timestamp, 5_000);
    }

    #[test]
    fn rejects_unknown_offset_commit_value_version() {
        assert_eq!(
            OffsetCommitValue::decode(&[0x00, 0x05]),
            Err(RecordError::UnknownVersion(5))
        );
    }

    fn group() -> GroupMetadataValue {
        GroupMetadataValue {
            protocol_type: "consumer".into(),
            generation: 3,
            protocol: Some("range".into()),
            leader: Some("m-1".into()),
            current_state_timestamp: 1_000,
            members: vec![MemberMetadata {
                member_id: "m-1".into(),
                group_instance_id: None,
                client_id: "c".into(),
                client_host: "/h".into(),
                rebalance_timeout: 300_000,
                session_timeout: 45_000,
                subscription: vec![1, 2],
                assignment: vec![3],
            }],
        }
    }

    #[test]
    fn group_metadata_value_v3_golden_bytes() {
        let mut expected = vec![0x00, 0x03]; // version 3
        expected.extend_from_slice(&[0x00, 0x08]); // protocol_type
        expected.extend_from_slice(b"consumer");
        expected.extend_from_slice(&3i32.to_be_bytes()); // generation
        expected.extend_from_slice(&[0x00, 0x05]); // protocol
        expected.extend_from_slice(b"range");
        expected.extend_from_slice(&[0x00, 0x03]); // leader
        expected.extend_from_slice(b"m-1");
        expected.extend_from_slice(&1_000i64.to_be_bytes()); // current_state_timestamp
        expected.extend_from_slice(&1i32.to_be_bytes()); // members: 1
        expected.extend_from_slice(&[0x00, 0x03]); // member_id
        expected.extend_from_slice(b"m-1");
        expected.extend_from_slice(&[0xff, 0xff]); // group_instance_id: null
        expected.extend_from_slice(&[0x00, 0x01, b'c']); // client_id
        expected.extend_from_slice(&[0x00, 0x02, b'/', b'h']); // client_host
        expected.extend_from_slice(&300_000i32.to_be_bytes()); // rebalance_timeout
        expected.extend_from_slice(&45_000i32.to_be_bytes()); // session_timeout
        expected.extend_from_slice(&[0x00, 0x00, 0x00, 0x02, 1, 2]); // subscription
        expected.extend_from_slice(&[0x00, 0x00, 0x00, 0x01, 3]); // assignment
        assert_eq!(group().encode(), expected);
        assert_eq!(GroupMetadataValue::decode(&expected).unwrap(), group());
    }

    #[test]
    fn group_metadata_value_round_trips_static_member_and_empty_group() {
        let mut value = group();
        value.members[0].group_instance_id = Some("instance-a".into());
        assert_eq!(GroupMetadataValue::decode(&value.encode()).unwrap(), value);

        let empty = GroupMetadataValue {
            protocol_type: String::new(),
            generation: 0,
            protocol: None,
            leader: None,
            current_state_timestamp: -1,
            members: Vec::new(),
        };
        assert_eq!(GroupMetadataValue::decode(&empty.encode()).unwrap(), empty);
    }

    #[test]
    fn decodes_group_metadata_value_v0_with_kafka_defaults() {
        let mut bytes = vec![0x00, 0x00];
        bytes.extend_from_slice(&[0x00, 0x08]);
        bytes.extend_from_slice(b"consumer");
        bytes.extend_from_slice(&1i32.to_be_bytes());
        bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]); // protocol, leader: null
        bytes.extend_from_slice(&1i32.to_be_bytes());
        bytes.extend_from_slice(&[0x00, 0x01, b'a', 0x00, 0x00, 0x00, 0x00]); // id, client, host
        bytes.extend_from_slice(&10_000i32.to_be_bytes()); // session_timeout
        bytes.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]); // subscription, assignment
        let value = GroupMetadataValue::decode(&bytes).unwrap();
        assert_eq!(value.current_state_timestamp, -1);
        assert_eq!(value.protocol, None);
        assert_eq!(value.members[0].rebalance_timeout, 10_000);
        assert_eq!(value.members[0].group_instance_id, None);
    }

    #[test]
    fn decodes_flexible_group_metadata_value_v4() {
        let mut bytes = vec![0x00, 0x04];
        bytes.extend_from_slice(&[0x09]);
        bytes.extend_from_slice(b"consumer");
        bytes.extend_from_slice(&2i32.to_be_bytes());
        bytes.extend_from_slice(&[0x00, 0x02, b'l']); // protocol null, leader "l"
        bytes.extend_from_slice(&77i64.to_be_bytes());
        bytes.push(0x02); // one member
        bytes.extend_from_slice(&[0x02, b'l', 0x02, b'i', 0x01, 0x01]); // id, instance, client, host
        bytes.extend_from_slice(&5i32.to_be_bytes());
        bytes.extend_from_slice(&6i32.to_be_bytes());
        bytes.extend_from_slice(&[0x02, 0xaa, 0x01, 0x00]); // subscription, assignment, no tags
        bytes.push(0x00); // no tagged fields
        let value = GroupMetadataValue::decode(&bytes).unwrap();
        assert_eq!(value.leader.as_deref(), Some("l"));
        assert_eq!(value.protocol, None);
        assert_eq!(value.current_state_timestamp, 77);
        let member = &value.members[0];
        assert_eq!(member.group_instance_id.as_deref(), Some("i"));
        assert_eq!(
            (member.client_id.as_str(), member.client_host.as_str()),
            ("", "")
        );
        assert_eq!((member.rebalance_timeout, member.session_timeout), (5, 6));
        assert_eq!(
            (member.subscription.clone(), member.assignment.clone()),
            (vec![0xaa], vec![])
        );
    }
}
