//! The broker over a real socket: what a Kafka client sees, including for bad input.

mod common;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{Client, TestBroker};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::ResponseError;
use partita_log::batch::{build_batch, build_idempotent_batch};

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

async fn create_topic(client: &mut Client, topic: &str, partitions: i32) -> i16 {
    create_topic_with(client, topic, partitions, &[]).await
}

async fn create_topic_with(
    client: &mut Client,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> i16 {
    let configs = configs
        .iter()
        .map(|(k, v)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(k.to_string()))
                .with_value(Some(StrBytes::from_string(v.to_string())))
        })
        .collect();
    let request = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
        .with_configs(configs)]);
    client.send(&request, 7).await.topics[0].error_code
}

fn produce_request(topic: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

async fn produce(client: &mut Client, topic: &str, records: BytesMut) -> (i16, i64) {
    let response = client
        .send(&produce_request(topic, 0, records.freeze(), -1), 9)
        .await;
    let partition = &response.responses[0].partition_responses[0];
    (partition.error_code, partition.base_offset)
}

fn values(values: &[&str]) -> BytesMut {
    let records: Vec<_> = values.iter().map(|v| (None, Some(v.as_bytes()))).collect();
    // Current timestamps: older ones would be removed by time-based retention.
    build_batch(&records, now_ms())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn fetch_request(topic: &str, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

#[tokio::test(flavor = "multi_thread")]
async fn api_versions_lists_served_apis_and_answers_unknown_versions_with_v0() {
    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    let response = client.send(&ApiVersionsRequest::default(), 3).await;
    assert_eq!(response.error_code, 0);
    let produce = response
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::Produce as i16)
        .expect("Produce advertised");
    assert!(produce.min_version <= 3 && produce.max_version >= 9);

    // ApiVersions v99: a v0 response with UNSUPPORTED_VERSION and the list.
    let mut body = BytesMut::new();
    body.extend_from_slice(&(ApiKey::ApiVersions as i16).to_be_bytes());
    body.extend_from_slice(&99i16.to_be_bytes());
    body.extend_from_slice(&7i32.to_be_bytes());
    body.extend_from_slice(&(-1i16).to_be_bytes());
    client.send_raw(&body).await;
    let (correlation_id, mut payload) = client.read_v0_response().await.expect("a response");
    assert_eq!(correlation_id, 7);
    let fallback = ApiVersionsResponse::decode(&mut payload, 0).unwrap();
    assert_eq!(
        fallback.error_code,
        ResponseError::UnsupportedVersion.code()
    );
    assert!(!fallback.api_keys.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_and_malformed_requests_close_only_their_connection() {
    let broker = TestBroker::start(&[("socket.request.max.bytes", "1024")]).await;
    let mut bystander = broker.client().await;
    assert_eq!(create_topic(&mut bystander, "steady", 1).await, 0);

    // A frame claiming 2 GiB is refused before anything is buffered.
    let mut oversized = broker.client().await;
    oversized.write_bytes(&i32::MAX.to_be_bytes()).await;
    assert!(oversized.read_frame().await.is_none(), "connection closed");

    // A known API with a garbage body.
    let mut garbage = broker.client().await;
    let mut body = BytesMut::new();
    body.extend_from_slice(&(ApiKey::Metadata as i16).to_be_bytes());
    body.extend_from_slice(&9i16.to_be_bytes());
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&[0xff; 40]);
    garbage.send_raw(&body).await;
    assert!(garbage.read_frame().await.is_none(), "connection closed");

    // An unknown API key, and an unsupported version of a known API.
    for (key, version) in [(999i16, 0i16), (ApiKey::Produce as i16, 99)] {
        let mut unknown = broker.client().await;
        let mut body = BytesMut::new();
        body.extend_from_slice(&key.to_be_bytes());
        body.extend_from_slice(&version.to_be_bytes());
        body.extend_from_slice(&1i32.to_be_bytes());
        body.extend_from_slice(&(-1i16).to_be_bytes());
        unknown.send_raw(&body).await;
        assert!(unknown.read_frame().await.is_none(), "connection closed");
    }

    // The first connection never noticed.
    let (error, offset) = produce(&mut bystander, "steady", values(&["still here"])).await;
    assert_eq!((error, offset), (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn produce_errors_are_kafkas() {
    let broker = TestBroker::start(&[("auto.create.topics.enable", "false")]).await;
    let mut client = broker.client().await;
    assert_eq!(
        create_topic_with(&mut client, "small", 1, &[("max.message.bytes", "200")]).await,
        0
    );

    let mut corrupt = values(&["a", "b"]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x01;
    assert_eq!(
        produce(&mut client, "small", corrupt).await.0,
        ResponseError::CorruptMessage.code()
    );

    let big = "x".repeat(500);
    assert_eq!(
        produce(&mut client, "small", values(&[&big])).await.0,
        ResponseError::MessageTooLarge.code()
    );

    assert_eq!(
        produce(&mut client, "no-such-topic", values(&["a"]))
            .await
            .0,
        ResponseError::UnknownTopicOrPartition.code()
    );

    // Transaction markers are the coordinator's to write, never a client's.
    let marker = partita_log::batch::build_marker(1, 0, true, 0, 0);
    assert_eq!(
        produce(&mut client, "small", marker).await.0,
        ResponseError::InvalidRecord.code()
    );

    let bad_acks = produce_request("small", 0, values(&["a"]).freeze(), 5);
    let response = client.send(&bad_acks, 9).await;
    assert_eq!(
        response.responses[0].partition_responses[0].error_code,
        ResponseError::InvalidRequiredAcks.code()
    );

    // Nothing refused was stored; a good batch still lands at offset 0.
    assert_eq!(produce(&mut client, "small", values(&["ok"])).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn topic_names_follow_kafka_rules() {
    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    let invalid = ResponseError::InvalidTopicException.code();
    assert_eq!(create_topic(&mut client, "has space", 1).await, invalid);
    assert_eq!(
        create_topic(&mut client, &"a".repeat(250), 1).await,
        invalid
    );
    assert_eq!(create_topic(&mut client, "metrics.cpu", 1).await, 0);
    assert_eq!(create_topic(&mut client, "metrics_cpu", 1).await, invalid);
    assert_eq!(
        create_topic(&mut client, "metrics.cpu", 1).await,
        ResponseError::TopicAlreadyExists.code()
    );
    assert_eq!(create_topic(&mut client, &"b".repeat(249), 1).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_auto_creates_topics_only_when_enabled() {
    let request = |topic: &str| {
        MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name(topic)))
            ]))
            .with_allow_auto_topic_creation(true)
    };
    let enabled = TestBroker::start(&[("num.partitions", "3")]).await;
    let response = enabled.client().await.send(&request("auto"), 12).await;
    assert_eq!(response.topics[0].error_code, 0);
    assert_eq!(response.topics[0].partitions.len(), 3);

    let disabled = TestBroker::start(&[("auto.create.topics.enable", "false")]).await;
    let response = disabled.client().await.send(&request("auto"), 12).await;
    assert_eq!(
        response.topics[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_fetch_is_woken_by_new_data() {
    let broker = TestBroker::start(&[]).await;
    let mut producer = broker.client().await;
    assert_eq!(create_topic(&mut producer, "wake", 1).await, 0);

    let mut consumer = broker.client().await;
    // A minute-long wait: only an append can end it before the test's deadline.
    let waiting =
        tokio::spawn(async move { consumer.send(&fetch_request("wake", 0, 60_000), 12).await });
    tokio::task::yield_now().await;
    assert_eq!(
        produce(&mut producer, "wake", values(&["hello"])).await,
        (0, 0)
    );

    let response = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the fetch was not woken by the append")
        .unwrap();
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(partition.high_watermark, 1);
    assert!(!partition.records.as_ref().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_past_the_end_is_offset_out_of_range() {
    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    assert_eq!(create_topic(&mut client, "short", 1).await, 0);
    produce(&mut client, "short", values(&["a", "b"])).await;
    let response = client.send(&fetch_request("short", 5, 0), 12).await;
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, ResponseError::OffsetOutOfRange.code());
    assert_eq!(partition.high_watermark, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotent_retries_are_dropped_and_gaps_refused() {
    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    assert_eq!(create_topic(&mut client, "idem", 1).await, 0);
    let init = client
        .send(
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
            4,
        )
        .await;
    assert_eq!(init.error_code, 0);
    let producer_id = init.producer_id.0;
    let batch = |sequence: i32, value: &str| {
        build_idempotent_batch(
            &[(None, Some(value.as_bytes()))],
            now_ms(),
            producer_id,
            0,
            sequence,
        )
    };

    assert_eq!(
        produce(&mut client, "idem", batch(0, "first")).await,
        (0, 0)
    );
    assert_eq!(
        produce(&mut client, "idem", batch(1, "second")).await,
        (0, 1)
    );
    // A retry of sequence 1 gets its original offset and is not stored twice.
    assert_eq!(
        produce(&mut client, "idem", batch(1, "second")).await,
        (0, 1)
    );
    // Sequence 3 skips 2.
    assert_eq!(
        produce(&mut client, "idem", batch(3, "fourth")).await.0,
        ResponseError::OutOfOrderSequenceNumber.code()
    );
    let response = client.send(&fetch_request("idem", 0, 0), 12).await;
    assert_eq!(response.responses[0].partitions[0].high_watermark, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn data_and_topics_survive_a_clean_restart() {
    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    assert_eq!(create_topic(&mut client, "durable", 2).await, 0);
    assert_eq!(
        produce(&mut client, "durable", values(&["a", "b", "c"])).await,
        (0, 0)
    );
    drop(client);

    let broker = broker.restart(&[]).await;
    let mut client = broker.client().await;
    let response = client.send(&fetch_request("durable", 0, 0), 12).await;
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0, "{partition:?}");
    assert_eq!(partition.high_watermark, 3);
    assert_eq!(
        produce(&mut client, "durable", values(&["d"])).await,
        (0, 3)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn acks_zero_gets_no_response_but_is_stored() {
    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    assert_eq!(create_topic(&mut client, "fire", 1).await, 0);
    client
        .send_only(&produce_request("fire", 0, values(&["x"]).freeze(), 0), 9)
        .await;
    // The next response on this connection is the fetch's, not a produce response.
    let response = client.send(&fetch_request("fire", 0, 5_000), 12).await;
    assert_eq!(response.responses[0].partitions[0].high_watermark, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn list_offsets_v0_answers_with_old_style_offsets() {
    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    assert_eq!(create_topic(&mut client, "old", 1).await, 0);
    produce(&mut client, "old", values(&["a", "b", "c"])).await;
    let mut body = BytesMut::new();
    body.extend_from_slice(&(ApiKey::ListOffsets as i16).to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&42i32.to_be_bytes());
    body.extend_from_slice(&(-1i16).to_be_bytes()); // no client id
    body.extend_from_slice(&(-1i32).to_be_bytes()); // replica id
    body.extend_from_slice(&1i32.to_be_bytes()); // one topic
    body.extend_from_slice(&3i16.to_be_bytes());
    body.extend_from_slice(b"old");
    body.extend_from_slice(&1i32.to_be_bytes()); // one partition
    body.extend_from_slice(&0i32.to_be_bytes());
    body.extend_from_slice(&(-1i64).to_be_bytes()); // latest
    body.extend_from_slice(&1i32.to_be_bytes()); // max one offset
    client.send_raw(&body).await;
    let (correlation_id, payload) = client.read_v0_response().await.expect("a response");
    assert_eq!(correlation_id, 42);
    // topics(1) name("old") partitions(1) partition(0) error(0) offsets([3])
    let mut expected = Vec::new();
    expected.extend_from_slice(&1i32.to_be_bytes());
    expected.extend_from_slice(&3i16.to_be_bytes());
    expected.extend_from_slice(b"old");
    expected.extend_from_slice(&1i32.to_be_bytes());
    expected.extend_from_slice(&0i32.to_be_bytes());
    expected.extend_from_slice(&0i16.to_be_bytes());
    expected.extend_from_slice(&1i32.to_be_bytes());
    expected.extend_from_slice(&3i64.to_be_bytes());
    assert_eq!(payload.as_ref(), expected.as_slice());

    // A truncated v0 request closes only that connection.
    let mut short = broker.client().await;
    short.send_raw(&body[..body.len() - 6]).await;
    assert!(short.read_frame().await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn describe_share_group_offsets_gives_each_share_partitions_start_offset() {
    use kafka_protocol::messages::describe_share_group_offsets_request::{
        DescribeShareGroupOffsetsRequestGroup, DescribeShareGroupOffsetsRequestTopic,
    };
    use kafka_protocol::messages::share_acknowledge_request::{
        AcknowledgePartition, AcknowledgeTopic, AcknowledgementBatch,
    };
    use kafka_protocol::messages::share_fetch_request::{FetchPartition, FetchTopic};

    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    let created = client
        .send(
            &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
                .with_name(name("jobs"))
                .with_num_partitions(2)
                .with_replication_factor(1)]),
            7,
        )
        .await;
    assert_eq!(created.topics[0].error_code, 0);
    let topic_id = created.topics[0].topic_id;
    let group = || Some(GroupId(StrBytes::from_static_str("workers")));
    let member = || Some(StrBytes::from_static_str("member-a"));

    let joined = client
        .send(
            &ShareGroupHeartbeatRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("workers")))
                .with_member_id(StrBytes::from_static_str("member-a"))
                .with_member_epoch(0)
                .with_subscribed_topic_names(Some(vec![name("jobs")])),
            1,
        )
        .await;
    assert_eq!(joined.error_code, 0);
    let fetch = |epoch: i32, wait: i32| {
        ShareFetchRequest::default()
            .with_group_id(group())
            .with_member_id(member())
            .with_share_session_epoch(epoch)
            .with_max_wait_ms(wait)
            .with_max_bytes(1 << 20)
            .with_max_records(100)
            .with_batch_size(100)
            .with_topics(vec![FetchTopic::default()
                .with_topic_id(topic_id)
                .with_partitions(vec![
                    FetchPartition::default().with_partition_index(0)
                ])])
    };
    // The first fetch creates the share-partition at the log end (`latest`): offset 0.
    let first = client.send(&fetch(0, 10), 1).await;
    assert_eq!(first.error_code, 0);
    assert_eq!(
        produce(&mut client, "jobs", values(&["a", "b", "c", "d", "e"]))
            .await
            .0,
        0
    );
    let fetched = client.send(&fetch(1, 2_000), 1).await;
    let acquired = &fetched.responses[0].partitions[0].acquired_records;
    assert_eq!(
        (acquired[0].first_offset, acquired[0].last_offset),
        (0, 4),
        "{fetched:?}"
    );
    let acknowledged = client
        .send(
            &ShareAcknowledgeRequest::default()
                .with_group_id(group())
                .with_member_id(member())
                .with_share_session_epoch(2)
                .with_topics(vec![AcknowledgeTopic::default()
                    .with_topic_id(topic_id)
                    .with_partitions(vec![AcknowledgePartition::default()
                        .with_partition_index(0)
                        .with_acknowledgement_batches(vec![
                            AcknowledgementBatch::default()
                                .with_first_offset(0)
                                .with_last_offset(2)
                                .with_acknowledge_types(vec![1]),
                        ])])]),
            1,
        )
        .await;
    assert_eq!(acknowledged.error_code, 0);
    assert_eq!(acknowledged.responses[0].partitions[0].error_code, 0);

    let describe = |topics: Option<Vec<DescribeShareGroupOffsetsRequestTopic>>, id: &str| {
        DescribeShareGroupOffsetsRequest::default().with_groups(vec![
            DescribeShareGroupOffsetsRequestGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(id.to_string())))
                .with_topics(topics),
        ])
    };
    // Every share-partition of the group: partition 0 only (1 was never read).
    let all = client.send(&describe(None, "workers"), 0).await;
    let group_result = &all.groups[0];
    assert_eq!(group_result.error_code, 0);
    assert_eq!(group_result.topics.len(), 1, "{all:?}");
    assert_eq!(group_result.topics[0].topic_name.as_str(), "jobs");
    assert_eq!(group_result.topics[0].topic_id, topic_id);
    let partitions = &group_result.topics[0].partitions;
    assert_eq!(partitions.len(), 1);
    assert_eq!(
        (partitions[0].partition_index, partitions[0].start_offset),
        (0, 3),
        "three records accepted, two still acquired"
    );

    // Named partitions: one without state yet (-1), an unknown topic refused.
    let named = client
        .send(
            &describe(
                Some(vec![
                    DescribeShareGroupOffsetsRequestTopic::default()
                        .with_topic_name(name("jobs"))
                        .with_partitions(vec![0, 1]),
                    DescribeShareGroupOffsetsRequestTopic::default()
                        .with_topic_name(name("nope"))
                        .with_partitions(vec![0]),
                ]),
                "workers",
            ),
            0,
        )
        .await;
    let topics = &named.groups[0].topics;
    let starts: Vec<(i32, i64)> = topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.start_offset))
        .collect();
    assert_eq!(starts, vec![(0, 3), (1, -1)]);
    assert_eq!(
        topics[1].partitions[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );

    let unknown = client.send(&describe(None, "nobody"), 0).await;
    assert_eq!(
        unknown.groups[0].error_code,
        ResponseError::GroupIdNotFound.code()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn read_committed_fetches_stop_at_the_last_stable_offset_and_name_aborted_transactions() {
    use partita_log::batch::{build_marker, build_transactional_batch};
    let broker = TestBroker::start(&[]).await;
    let mut client = broker.client().await;
    assert_eq!(create_topic(&mut client, "txn", 1).await, 0);
    assert_eq!(
        produce(&mut client, "txn", values(&["plain"])).await,
        (0, 0)
    );
    // Transactional batches cannot come from clients yet...
    let records = [(None, Some(&b"t"[..]))];
    let refused = build_transactional_batch(&records, now_ms(), 7, 0, 0);
    assert_eq!(
        produce(&mut client, "txn", refused).await.0,
        ResponseError::InvalidTxnState.code()
    );
    // ... so they are appended as the coordinator and its producers would: producer 7's
    // transaction at 1, producer 8's at 2, 7 aborts (marker at 3), 8 is still open.
    let partition = broker
        .broker
        .topics
        .get("txn")
        .unwrap()
        .partition(0)
        .unwrap()
        .clone();
    for batch in [
        build_transactional_batch(&records, now_ms(), 7, 0, 0),
        build_transactional_batch(&records, now_ms(), 8, 0, 0),
        build_marker(7, 0, false, 0, now_ms()),
    ] {
        partition.append(batch.to_vec(), now_ms()).await.unwrap();
    }

    let fetch = |isolation_level: i8| {
        let mut request = fetch_request("txn", 0, 0).with_isolation_level(isolation_level);
        request.min_bytes = 0;
        request
    };
    let committed = client.send(&fetch(1), 11).await;
    let answer = &committed.responses[0].partitions[0];
    assert_eq!(answer.error_code, 0);
    assert_eq!(answer.high_watermark, 4);
    assert_eq!(
        answer.last_stable_offset, 2,
        "producer 8's transaction is open"
    );
    let aborted = answer.aborted_transactions.as_ref().unwrap();
    assert_eq!(aborted.len(), 1);
    assert_eq!((aborted[0].producer_id.0, aborted[0].first_offset), (7, 1));
    let batches = partita_log::batch::split_batches(answer.records.as_ref().unwrap()).unwrap();
    assert_eq!(
        batches.len(),
        2,
        "the plain batch and producer 7's, not producer 8's"
    );

    let uncommitted = client.send(&fetch(0), 11).await;
    let answer = &uncommitted.responses[0].partitions[0];
    assert_eq!(answer.last_stable_offset, 2);
    assert!(answer.aborted_transactions.is_none());
    let batches = partita_log::batch::split_batches(answer.records.as_ref().unwrap()).unwrap();
    assert_eq!(batches.len(), 4, "everything, markers included");

    // ListOffsets: the latest offset of a read_committed consumer is the last stable one.
    for (isolation_level, latest) in [(0i8, 4i64), (1, 2)] {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(isolation_level)
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(name("txn"))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1)])]);
        let response = client.send(&request, 7).await;
        assert_eq!(response.topics[0].partitions[0].offset, latest);
    }

    // Producer 8 commits: everything is stable, and survives a restart.
    partition
        .append(build_marker(8, 0, true, 0, now_ms()).to_vec(), now_ms())
        .await
        .unwrap();
    drop(partition);
    let broker = broker.restart(&[]).await;
    let mut client = broker.client().await;
    let committed = client.send(&fetch(1), 11).await;
    let answer = &committed.responses[0].partitions[0];
    assert_eq!((answer.high_watermark, answer.last_stable_offset), (5, 5));
    assert_eq!(answer.aborted_transactions.as_ref().unwrap().len(), 1);
}
