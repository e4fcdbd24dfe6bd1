//! Partita's fuzz targets, shared by the libFuzzer binaries in `fuzz_targets/` and the
//! libFuzzer-free driver `fuzz-fallback` (see README.md).
//!
//! Each target takes arbitrary bytes and panics only on a bug: a decoder that panics, a
//! response that is not a well-formed frame, a batch accepted by validation that later
//! operations choke on.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};
use partita_broker::fuzzing::{answer_frame, FrameOutcome};
use partita_broker::{Broker, BrokerConfig};
use partita_groups::records::{RecordKey, RecordValue};
use partita_log::batch;

/// A fuzz target: arbitrary bytes in, a panic only on a bug.
pub type Target = fn(&[u8]);

/// The targets by name, as the driver and the scripts know them.
pub const TARGETS: &[(&str, Target)] = &[
    ("request", request),
    ("batch_header", batch_header),
    ("offsets_record", offsets_record),
    ("sasl", sasl),
];

/// How long a request is given before it is abandoned.
const WAIT: Duration = Duration::from_millis(100);

/// One broker for the whole run, on a current-thread runtime. (Not a paused clock: the group
/// coordinator's deadlines are wall-clock milliseconds, which a paused clock never reaches.)
struct Harness {
    runtime: tokio::runtime::Runtime,
    broker: Broker,
    _data_dir: tempfile::TempDir,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let data_dir = tempfile::tempdir().expect("temporary data directory");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut config = BrokerConfig {
            data_dir: data_dir.path().to_path_buf(),
            http_listen: None,
            ..BrokerConfig::default()
        };
        // Joins answer at once instead of after the usual 3 s delay.
        config.groups.initial_rebalance_delay_ms = 0;
        let broker = runtime.block_on(Broker::open(config)).expect("broker");
        // A SCRAM user too, so that the exchange meets a real credential.
        use partita_broker::scram::{ScramCredential, ScramMechanism};
        for mechanism in ScramMechanism::ALL {
            let credential = ScramCredential::from_password(mechanism, "alice-secret", 4096);
            runtime
                .block_on(broker.credentials.put("alice", mechanism, credential))
                .expect("a SCRAM credential");
        }
        Harness {
            runtime,
            broker,
            _data_dir: data_dir,
        }
    })
}

/// A request frame (without its size prefix) goes through decoding and dispatch; the answer
/// must be a response frame that echoes the correlation id, no response (acks=0), or a close.
pub fn request(data: &[u8]) {
    let harness = harness();
    let frame = Bytes::copy_from_slice(data);
    // A request may legitimately wait as long as it asks (a fetch's max_wait_ms, a join
    // waiting for the group): past a short while it is abandoned, as by a client that
    // disconnects, which the broker must survive too.
    let outcome = harness
        .runtime
        .block_on(async { tokio::time::timeout(WAIT, answer_frame(&harness.broker, frame)).await });
    let Ok(outcome) = outcome else {
        return;
    };
    if let FrameOutcome::Response(response) = outcome {
        assert!(response.len() >= 8, "response shorter than a header");
        let size = i32::from_be_bytes(response[0..4].try_into().unwrap());
        assert_eq!(size as usize, response.len() - 4, "size prefix is wrong");
        assert_eq!(response[4..8], data[4..8], "correlation id not echoed");
    }
}

/// The v2 batch header parser and the checks around it, as produce and recovery use them.
pub fn batch_header(data: &[u8]) {
    let _ = batch::parse_header(data);
    // Compaction and the key check of compacted topics decompress batches: any bytes, any
    // codec, an error or records, never a panic or an unbounded allocation.
    if let Ok(plain) = batch::compression::uncompressed(data) {
        let _ = batch::decode_records(&plain);
    }
    for codec in [
        batch::Compression::Gzip,
        batch::Compression::Snappy,
        batch::Compression::Lz4,
        batch::Compression::Zstd,
    ] {
        let _ = batch::compression::decompress(codec, data, 1 << 20);
    }
    if let Ok(ranges) = batch::split_batches(data) {
        let mut end = 0;
        for range in ranges {
            assert_eq!(range.start, end, "batches must be contiguous");
            end = range.end;
            let _ = batch::validate(&data[range]);
        }
        assert_eq!(end, data.len(), "split_batches must cover its input");
    }
    let Ok(header) = batch::validate(data) else {
        return;
    };
    assert_eq!(header.total_size(), data.len());
    let _ = header.last_offset();
    let _ = header.last_sequence();
    let _ = header.compression();
    if header.compression() == batch::Compression::None {
        let _ = batch::decode_records(data);
    }
    // What the log does to an accepted batch keeps it valid.
    let mut owned = data.to_vec();
    batch::set_base_offset(&mut owned, 1 << 40);
    let moved = batch::validate(&owned).expect("a new base offset keeps the CRC valid");
    assert_eq!(moved.base_offset, 1 << 40);
    batch::set_log_append_time(&mut owned, 1_700_000_000_000);
    let stamped = batch::validate(&owned).expect("LogAppendTime rewrites the CRC");
    assert!(stamped.timestamp_type_log_append());
}

/// A `__consumer_offsets` record: the input is a 2-byte key length, the key, then the value.
pub fn offsets_record(data: &[u8]) {
    let (key, value) = match data {
        [hi, lo, rest @ ..] => {
            let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(rest.len());
            rest.split_at(len)
        }
        _ => (data, &[][..]),
    };
    let Ok(decoded) = RecordKey::decode(key) else {
        return;
    };
    // What the coordinator writes, it reads back.
    let again = RecordKey::decode(&decoded.encode()).expect("an encoded key decodes");
    assert_eq!(again.encode(), decoded.encode());
    if let Ok(Some(value)) = RecordValue::decode(&decoded, value) {
        let again = RecordValue::decode(&decoded, &value.encode())
            .expect("an encoded value decodes")
            .expect("a known key's value");
        assert_eq!(again.encode(), value.encode());
    }
}

/// Valid inputs for `target` to start from.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "request" => request_seeds(),
        "batch_header" => batch_seeds(),
        "offsets_record" => offsets_seeds(),
        "sasl" => sasl_seeds(),
        _ => Vec::new(),
    }
}

fn batch_seeds() -> Vec<Vec<u8>> {
    let plain = batch::build_batch(&[(Some(b"k"), Some(b"value")), (None, Some(b"v2"))], 1000);
    let idempotent = batch::build_idempotent_batch(&[(None, Some(b"x"))], 5, 42, 0, 7);
    let mut two = plain.to_vec();
    two.extend_from_slice(&idempotent);
    vec![plain.to_vec(), idempotent.to_vec(), two]
}

fn offsets_seeds() -> Vec<Vec<u8>> {
    let with_key = |key: Vec<u8>, value: Vec<u8>| {
        let mut out = (key.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&key);
        out.extend_from_slice(&value);
        out
    };
    let commit_key = RecordKey::OffsetCommit {
        group: "g".into(),
        topic: "t".into(),
        partition: 3,
    };
    let commit = partita_groups::records::OffsetCommitValue {
        offset: 42,
        leader_epoch: -1,
        metadata: "m".into(),
        commit_timestamp: 1000,
        expire_timestamp: None,
    };
    let group_key = RecordKey::GroupMetadata { group: "g".into() };
    vec![
        with_key(commit_key.encode(), commit.encode()),
        with_key(group_key.encode(), Vec::new()),
    ]
}

fn frame<R: Encodable + HeaderVersion>(key: ApiKey, version: i16, request: &R) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, R::header_version(version))
        .expect("header");
    request.encode(&mut buf, version).expect("request");
    buf.to_vec()
}

fn request_seeds() -> Vec<Vec<u8>> {
    let topic = TopicName(StrBytes::from_static_str("fuzzed"));
    let group = GroupId(StrBytes::from_static_str("fuzz-group"));
    let records = Bytes::from(batch::build_batch(&[(Some(b"k"), Some(b"v"))], 1000).to_vec());
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(topic.clone())
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records)),
            ])]);
    let fetch = FetchRequest::default()
        .with_max_wait_ms(500)
        .with_max_bytes(1 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(topic.clone())
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(1000)
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(topic.clone())
            .with_num_partitions(2)
            .with_replication_factor(1)]);
    let metadata = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(topic.clone()))]))
        .with_allow_auto_topic_creation(true);
    let list_offsets = ListOffsetsRequest::default().with_topics(vec![
        list_offsets_request::ListOffsetsTopic::default()
            .with_name(topic.clone())
            .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)]),
    ]);
    let join = JoinGroupRequest::default()
        .with_group_id(group.clone())
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(StrBytes::from_static_str("range"))
        .with_metadata(Bytes::from_static(&[0, 1, 0, 0, 0, 0, 0, 0, 0, 0]))]);
    let commit = OffsetCommitRequest::default()
        .with_group_id(group.clone())
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(topic.clone())
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(1),
                ]),
        ]);
    let offset_fetch = OffsetFetchRequest::default().with_groups(vec![
        offset_fetch_request::OffsetFetchRequestGroup::default().with_group_id(group.clone()),
    ]);
    let heartbeat = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(group.clone())
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(10_000)
        .with_subscribed_topic_names(Some(vec![topic.clone()]));
    vec![
        frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()),
        frame(ApiKey::Metadata, 12, &metadata),
        frame(ApiKey::CreateTopics, 7, &create),
        frame(ApiKey::Produce, 9, &produce),
        frame(ApiKey::Produce, 3, &produce),
        frame(ApiKey::Fetch, 12, &fetch),
        frame(ApiKey::ListOffsets, 7, &list_offsets),
        frame(ApiKey::JoinGroup, 9, &join),
        frame(ApiKey::OffsetCommit, 8, &commit),
        frame(ApiKey::OffsetFetch, 8, &offset_fetch),
        frame(ApiKey::ConsumerGroupHeartbeat, 0, &heartbeat),
        frame(
            ApiKey::DescribeGroups,
            5,
            &DescribeGroupsRequest::default().with_groups(vec![group.clone()]),
        ),
        frame(ApiKey::ListGroups, 4, &ListGroupsRequest::default()),
    ]
}

/// The users of the SASL target's listener.
const SASL_JAAS: &str = "org.apache.kafka.common.security.plain.PlainLoginModule required \
    user_alice=\"alice-secret\";";

/// A SASL exchange before authentication: the input is split into request frames at each
/// 0xFF 0xFE pair. Every response must be a frame of its stated size, and only alice's
/// password may authenticate.
pub fn sasl(data: &[u8]) {
    let frames: Vec<Bytes> = split_frames(data);
    let harness = harness();
    // The issuer's keys, against which no token the fuzzer makes can pass.
    let jwks = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/jwks.json");
    let (responses, principal) = harness
        .runtime
        .block_on(partita_broker::fuzzing::sasl_exchange(
            &harness.broker,
            SASL_JAAS,
            &jwks,
            &frames,
        ));
    for response in responses {
        let size = i32::from_be_bytes(response[0..4].try_into().expect("a size prefix"));
        assert_eq!(size as usize + 4, response.len(), "response size prefix");
    }
    if let Some(principal) = principal {
        assert_eq!(principal, "User:alice");
        let secret: &[u8] = b"alice-secret";
        assert!(
            data.windows(secret.len()).any(|w| w == secret),
            "authenticated without the password"
        );
    }
}

fn split_frames(data: &[u8]) -> Vec<Bytes> {
    let mut frames = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < data.len() {
        if data[i] == 0xFF && data[i + 1] == 0xFE {
            frames.push(Bytes::copy_from_slice(&data[start..i]));
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    frames.push(Bytes::copy_from_slice(&data[start..]));
    frames
}

fn sasl_seeds() -> Vec<Vec<u8>> {
    let header = |api_key: i16, version: i16| {
        let mut frame = Vec::new();
        frame.extend_from_slice(&api_key.to_be_bytes());
        frame.extend_from_slice(&version.to_be_bytes());
        frame.extend_from_slice(&7i32.to_be_bytes());
        frame.extend_from_slice(b"\x00\x04fuzz");
        frame
    };
    let mut handshake_v1 = header(17, 1);
    handshake_v1.extend_from_slice(b"\x00\x05PLAIN");
    let mut handshake_v0 = header(17, 0);
    handshake_v0.extend_from_slice(b"\x00\x05PLAIN");
    let token = b"\x00alice\x00alice-secret";
    let mut authenticate = header(36, 1);
    authenticate.extend_from_slice(&(token.len() as i32).to_be_bytes());
    authenticate.extend_from_slice(token);
    let scram = |mechanism: &[u8], version: i16| {
        let mut handshake = header(17, version);
        handshake.extend_from_slice(&(mechanism.len() as i16).to_be_bytes());
        handshake.extend_from_slice(mechanism);
        handshake
    };
    let first = b"n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL";
    let mut scram_first = header(36, 1);
    scram_first.extend_from_slice(&(first.len() as i32).to_be_bytes());
    scram_first.extend_from_slice(first);
    let last =
        b"c=biws,r=fyko+d2lbbFgONRv9qkxdawLxyz,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    let mut scram_last = header(36, 1);
    scram_last.extend_from_slice(&(last.len() as i32).to_be_bytes());
    scram_last.extend_from_slice(last);
    // An OAUTHBEARER message with a JWT-shaped token (RS256, kid "fuzz", a bad signature).
    let jwt = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImZ1enoiLCJ0eXAiOiJKV1QifQ.\
                 eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMH0.c2lnbmF0dXJl";
    let bearer = format!("n,,\x01auth=Bearer {jwt}\x01\x01");
    let mut oauth_message = header(36, 1);
    oauth_message.extend_from_slice(&(bearer.len() as i32).to_be_bytes());
    oauth_message.extend_from_slice(bearer.as_bytes());
    let join = |frames: &[&[u8]]| frames.join(&[0xFF, 0xFE][..]);
    vec![
        join(&[&scram(b"OAUTHBEARER", 1), &oauth_message]),
        join(&[&scram(b"OAUTHBEARER", 0), bearer.as_bytes()]),
        join(&[&scram(b"SCRAM-SHA-256", 1), &scram_first, &scram_last]),
        join(&[&scram(b"SCRAM-SHA-512", 1), &scram_first, &scram_last]),
        join(&[&scram(b"SCRAM-SHA-512", 0), first, last]),
        join(&[&handshake_v1, &authenticate]),
        join(&[&handshake_v0, token]),
        join(&[&header(18, 3), &handshake_v1, &authenticate]),
        join(&[&handshake_v1, &header(3, 1)]),
    ]
}
