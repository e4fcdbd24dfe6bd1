use super::*;

fn all_keys() -> Vec<RecordKey> {
    let group = || "g".to_string();
    let member_id = || "m".to_string();
    vec![
        RecordKey::OffsetCommit {
            group: group(),
            topic: "t".into(),
            partition: 3,
        },
        RecordKey::GroupMetadata { group: group() },
        RecordKey::ConsumerGroupMetadata { group: group() },
        RecordKey::ConsumerGroupPartitionMetadata { group: group() },
        RecordKey::ConsumerGroupMemberMetadata {
            group: group(),
            member_id: member_id(),
        },
        RecordKey::ConsumerGroupTargetAssignmentMetadata { group: group() },
        RecordKey::ConsumerGroupTargetAssignmentMember {
            group: group(),
            member_id: member_id(),
        },
        RecordKey::ConsumerGroupCurrentMemberAssignment {
            group: group(),
            member_id: member_id(),
        },
        RecordKey::Unknown { key_version: 11 },
    ]
}

#[test]
fn keys_round_trip_with_their_type_numbers() {
    for (key, key_type) in all_keys().into_iter().zip([1, 2, 3, 4, 5, 6, 7, 8, 11]) {
        let bytes = key.encode();
        assert_eq!(
            i16::from_be_bytes([bytes[0], bytes[1]]),
            key_type,
            "{key:?}"
        );
        assert_eq!(RecordKey::decode(&bytes).unwrap(), key);
    }
}

#[test]
fn offset_commit_key_v1_golden_bytes() {
    let key = RecordKey::OffsetCommit {
        group: "grp".into(),
        topic: "orders".into(),
        partition: 5,
    };
    let mut expected = vec![0x00, 0x01]; // key type 1
    expected.extend_from_slice(&[0x00, 0x03]); // group
    expected.extend_from_slice(b"grp");
    expected.extend_from_slice(&[0x00, 0x06]); // topic
    expected.extend_from_slice(b"orders");
    expected.extend_from_slice(&[0x00, 0x00, 0x00, 0x05]); // partition
    assert_eq!(key.encode(), expected);
    assert_eq!(RecordKey::decode(&expected).unwrap(), key);
}

#[test]
fn offset_commit_key_v0_decodes_like_v1() {
    let mut bytes = RecordKey::OffsetCommit {
        group: "grp".into(),
        topic: "orders".into(),
        partition: 5,
    }
    .encode();
    bytes[1] = 0;
    assert!(matches!(
        RecordKey::decode(&bytes).unwrap(),
        RecordKey::OffsetCommit { partition: 5, .. }
    ));
}

#[test]
fn group_metadata_key_golden_bytes() {
    let key = RecordKey::GroupMetadata {
        group: "grp".into(),
    };
    assert_eq!(key.encode(), [0x00, 0x02, 0x00, 0x03, b'g', b'r', b'p']);
    assert_eq!(
        RecordKey::decode(&[0x00, 0x02, 0x00, 0x03, b'g', b'r', b'p']).unwrap(),
        key
    );
    assert_eq!(key.group(), Some("grp"));
}

fn topic_id(byte: u8) -> [u8; 16] {
    [byte; 16]
}

/// A value of each key of `all_keys`, in the same order.
fn all_values() -> Vec<RecordValue> {
    let mut values = vec![
        RecordValue::OffsetCommit(OffsetCommitValue {
            offset: 10,
            leader_epoch: 2,
            metadata: String::new(),
            commit_timestamp: 99,
            expire_timestamp: None,
        }),
        RecordValue::GroupMetadata(GroupMetadataValue {
            protocol_type: "consumer".into(),
            generation: 1,
            protocol: Some("range".into()),
            leader: Some("m".into()),
            current_state_timestamp: 5,
            members: vec![MemberMetadata {
                member_id: "m".into(),
                group_instance_id: Some("i".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout: 1,
                session_timeout: 2,
                subscription: vec![0; 3],
                assignment: vec![1; 4],
            }],
        }),
    ];
    values.extend(consumer_group_values());
    values
}

fn consumer_group_values() -> Vec<RecordValue> {
    vec![
        RecordValue::ConsumerGroupMetadata(ConsumerGroupMetadataValue {
            epoch: 4,
            metadata_hash: -77,
        }),
        RecordValue::ConsumerGroupPartitionMetadata(ConsumerGroupPartitionMetadataValue {
            topics: vec![TopicMetadata {
                topic_id: topic_id(1),
                topic_name: "t".into(),
                num_partitions: 2,
                partition_racks: vec![PartitionRacks {
                    partition: 0,
                    racks: vec!["r1".into(), "r2".into()],
                }],
            }],
        }),
        RecordValue::ConsumerGroupMemberMetadata(ConsumerGroupMemberMetadataValue {
            instance_id: None,
            rack_id: Some("r1".into()),
            client_id: "c".into(),
            client_host: "/h".into(),
            subscribed_topic_names: vec!["a".into(), "b".into()],
            subscribed_topic_regex: Some("x.*".into()),
            rebalance_timeout_ms: 30_000,
            server_assignor: Some("uniform".into()),
            classic_member_metadata: Some(ClassicMemberMetadata {
                session_timeout_ms: 45_000,
                supported_protocols: vec![ClassicProtocol {
                    name: "range".into(),
                    metadata: vec![9, 8, 7],
                }],
            }),
        }),
        RecordValue::ConsumerGroupTargetAssignmentMetadata(
            ConsumerGroupTargetAssignmentMetadataValue {
                assignment_epoch: 12,
            },
        ),
        RecordValue::ConsumerGroupTargetAssignmentMember(
            ConsumerGroupTargetAssignmentMemberValue {
                topic_partitions: vec![TopicPartitions {
                    topic_id: topic_id(2),
                    partitions: vec![0, 2, 4],
                }],
            },
        ),
        RecordValue::ConsumerGroupCurrentMemberAssignment(
            ConsumerGroupCurrentMemberAssignmentValue {
                member_epoch: 5,
                previous_member_epoch: 4,
                state: 1,
                assigned_partitions: vec![TopicPartitions {
                    topic_id: topic_id(3),
                    partitions: vec![1],
                }],
                partitions_pending_revocation: vec![TopicPartitions {
                    topic_id: topic_id(4),
                    partitions: vec![],
                }],
            },
        ),
    ]
}

#[test]
fn values_round_trip_through_their_keys() {
    for (key, value) in all_keys().iter().zip(all_values()) {
        let decoded = RecordValue::decode(key, &value.encode()).unwrap();
        assert_eq!(decoded, Some(value));
    }
    let unknown = RecordKey::Unknown { key_version: 11 };
    assert_eq!(RecordValue::decode(&unknown, &[0, 0]).unwrap(), None);
}

#[test]
fn member_metadata_without_classic_protocol_round_trips() {
    let value = ConsumerGroupMemberMetadataValue {
        instance_id: Some("i".into()),
        rack_id: None,
        client_id: String::new(),
        client_host: String::new(),
        subscribed_topic_names: Vec::new(),
        subscribed_topic_regex: None,
        rebalance_timeout_ms: -1,
        server_assignor: None,
        classic_member_metadata: None,
    };
    let bytes = value.encode();
    assert_eq!(*bytes.last().unwrap(), 0, "no tagged fields");
    assert_eq!(
        ConsumerGroupMemberMetadataValue::decode(&bytes).unwrap(),
        value
    );
}

#[test]
fn current_member_assignment_golden_bytes() {
    let value = ConsumerGroupCurrentMemberAssignmentValue {
        member_epoch: 5,
        previous_member_epoch: 4,
        state: 0,
        assigned_partitions: vec![TopicPartitions {
            topic_id: topic_id(7),
            partitions: vec![1, 2],
        }],
        partitions_pending_revocation: Vec::new(),
    };
    let mut expected = vec![0x00, 0x00]; // version 0
    expected.extend_from_slice(&5i32.to_be_bytes()); // member_epoch
    expected.extend_from_slice(&4i32.to_be_bytes()); // previous_member_epoch
    expected.push(0); // state
    expected.push(2); // assigned_partitions: compact array of 1
    expected.extend_from_slice(&[7; 16]); // topic_id
    expected.push(3); // partitions: compact array of 2
    expected.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]);
    expected.push(0); // topic's tagged fields
    expected.push(1); // partitions_pending_revocation: empty
    expected.push(0); // tagged fields
    assert_eq!(value.encode(), expected);
}

#[test]
fn consumer_group_metadata_hash_is_tagged_field_zero() {
    let value = ConsumerGroupMetadataValue {
        epoch: 1,
        metadata_hash: 2,
    };
    let mut expected = vec![0, 0, 0, 0, 0, 1, 1, 0, 8];
    expected.extend_from_slice(&2i64.to_be_bytes());
    assert_eq!(value.encode(), expected);
    let no_hash = ConsumerGroupMetadataValue {
        epoch: 1,
        metadata_hash: 0,
    };
    assert_eq!(no_hash.encode(), [0, 0, 0, 0, 0, 1, 0]);
}

#[test]
fn unknown_value_versions_are_refused() {
    for key in all_keys().iter().filter(|key| key.group().is_some()) {
        let result = RecordValue::decode(key, &[0x00, 0x09, 0, 0, 0, 0]);
        assert_eq!(result, Err(RecordError::UnknownVersion(9)), "{key:?}");
    }
}

/// A small deterministic generator, so the robustness test needs no dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn decoding_arbitrary_or_truncated_bytes_never_panics() {
    let mut random = XorShift(0x9e37_79b9_7f4a_7c15);
    let keys = all_keys();
    // Every prefix of every valid record must be refused cleanly.
    for (key, value) in keys.iter().zip(all_values()) {
        let (key_bytes, value_bytes) = (key.encode(), value.encode());
        for len in 0..key_bytes.len() {
            let _ = RecordKey::decode(&key_bytes[..len]);
        }
        for len in 0..value_bytes.len() {
            assert!(RecordValue::decode(key, &value_bytes[..len]).is_err());
        }
        // Valid records with random bytes flipped.
        for _ in 0..500 {
            let mut mutated = value_bytes.clone();
            let index = random.next() as usize % mutated.len();
            mutated[index] = random.next() as u8;
            let _ = RecordValue::decode(key, &mutated);
        }
    }
    // Pure noise, with a valid version so the decoders get past the first check.
    for _ in 0..20_000 {
        let len = random.next() as usize % 64;
        let mut bytes: Vec<u8> = (0..len).map(|_| random.next() as u8).collect();
        if bytes.len() >= 2 && random.next() & 1 == 0 {
            bytes[0] = 0;
            bytes[1] = (random.next() % 5) as u8;
        }
        let _ = RecordKey::decode(&bytes);
        for key in &keys {
            let _ = RecordValue::decode(key, &bytes);
        }
    }
}
