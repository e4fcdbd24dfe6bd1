//! `/metrics` after every served API has been called: it parses, no series appears twice,
//! and every API has its own name.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use bytes::BytesMut;
use common::{Client, TestBroker};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Encodes a request of `key` with every field at its default, for the APIs a broker may
/// serve; `None` for another API, `Some(false)` if it does not encode at `version`.
fn encode_default(key: ApiKey, version: i16, body: &mut BytesMut) -> Option<bool> {
    macro_rules! defaults {
        ($($api:ident: $request:ident),* $(,)?) => {
            match key {
                $(ApiKey::$api => Some($request::default().encode(body, version).is_ok()),)*
                _ => None,
            }
        };
    }
    if key == ApiKey::Produce {
        // acks=0 would get no answer at all.
        let produce = ProduceRequest::default().with_acks(1).with_timeout_ms(1000);
        return Some(produce.encode(body, version).is_ok());
    }
    defaults!(
        Fetch: FetchRequest,
        ListOffsets: ListOffsetsRequest,
        Metadata: MetadataRequest,
        OffsetCommit: OffsetCommitRequest,
        OffsetFetch: OffsetFetchRequest,
        FindCoordinator: FindCoordinatorRequest,
        JoinGroup: JoinGroupRequest,
        Heartbeat: HeartbeatRequest,
        LeaveGroup: LeaveGroupRequest,
        SyncGroup: SyncGroupRequest,
        DescribeGroups: DescribeGroupsRequest,
        ListGroups: ListGroupsRequest,
        SaslHandshake: SaslHandshakeRequest,
        ApiVersions: ApiVersionsRequest,
        CreateTopics: CreateTopicsRequest,
        DeleteTopics: DeleteTopicsRequest,
        DeleteRecords: DeleteRecordsRequest,
        InitProducerId: InitProducerIdRequest,
        OffsetForLeaderEpoch: OffsetForLeaderEpochRequest,
        AddPartitionsToTxn: AddPartitionsToTxnRequest,
        AddOffsetsToTxn: AddOffsetsToTxnRequest,
        EndTxn: EndTxnRequest,
        WriteTxnMarkers: WriteTxnMarkersRequest,
        TxnOffsetCommit: TxnOffsetCommitRequest,
        DescribeAcls: DescribeAclsRequest,
        CreateAcls: CreateAclsRequest,
        DeleteAcls: DeleteAclsRequest,
        DescribeConfigs: DescribeConfigsRequest,
        AlterConfigs: AlterConfigsRequest,
        DescribeLogDirs: DescribeLogDirsRequest,
        SaslAuthenticate: SaslAuthenticateRequest,
        CreatePartitions: CreatePartitionsRequest,
        DeleteGroups: DeleteGroupsRequest,
        IncrementalAlterConfigs: IncrementalAlterConfigsRequest,
        OffsetDelete: OffsetDeleteRequest,
        DescribeCluster: DescribeClusterRequest,
        DescribeProducers: DescribeProducersRequest,
        DescribeTransactions: DescribeTransactionsRequest,
        ListTransactions: ListTransactionsRequest,
        ConsumerGroupHeartbeat: ConsumerGroupHeartbeatRequest,
        ConsumerGroupDescribe: ConsumerGroupDescribeRequest,
        DescribeTopicPartitions: DescribeTopicPartitionsRequest,
        ShareGroupHeartbeat: ShareGroupHeartbeatRequest,
        ShareGroupDescribe: ShareGroupDescribeRequest,
        ShareFetch: ShareFetchRequest,
        ShareAcknowledge: ShareAcknowledgeRequest,
        DescribeShareGroupOffsets: DescribeShareGroupOffsetsRequest,
        DescribeUserScramCredentials: DescribeUserScramCredentialsRequest,
        AlterUserScramCredentials: AlterUserScramCredentialsRequest,
    )
}

/// Sends a default request of `key` at `version` on a connection of its own; whatever comes
/// back (or a closed connection) is fine. `false` if it does not encode at that version.
async fn call(broker: &TestBroker, key: ApiKey, version: i16) -> bool {
    let mut body = BytesMut::new();
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("metrics-test")));
    if header
        .encode(&mut body, key.request_header_version(version))
        .is_err()
    {
        return false;
    }
    let encoded = encode_default(key, version, &mut body)
        .unwrap_or_else(|| panic!("{key:?} is served: add it to encode_default"));
    if !encoded {
        return false;
    }
    let mut client = Client::connect(broker.address).await;
    client.send_raw(&body).await;
    client.read_frame().await;
    true
}

async fn http_get(port: u16, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a whole response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

#[tokio::test]
async fn every_served_api_has_its_own_series_and_the_exposition_parses() {
    let http_port = {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap().port()
    };
    let http = format!("127.0.0.1:{http_port}");
    let broker = TestBroker::start(&[("http.listen", http.as_str())]).await;
    let mut client = broker.client().await;
    let served = client
        .send(&ApiVersionsRequest::default(), 3)
        .await
        .api_keys;
    let mut called = BTreeSet::new();
    for api in &served {
        let key = ApiKey::try_from(api.api_key).expect("a served API is a Kafka API");
        let sent =
            call(&broker, key, api.max_version).await || call(&broker, key, api.min_version).await;
        assert!(sent, "{key:?} could not be encoded");
        called.insert(format!("{key:?}"));
    }

    let text = http_get(http_port, "/metrics").await;
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the exposition parses");
    let mut seen = BTreeSet::new();
    let mut requests: BTreeMap<String, f64> = BTreeMap::new();
    for sample in &scrape.samples {
        let labels: BTreeMap<String, String> = sample
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let series = format!("{}{labels:?}", sample.metric);
        assert!(seen.insert(series.clone()), "{series} appears twice");
        if sample.metric == "partita_requests_total" {
            // An OpenMetrics counter family is typed under its name without `_total`.
            if let prometheus_parse::Value::Counter(value)
            | prometheus_parse::Value::Untyped(value) = sample.value
            {
                requests.insert(labels["api"].clone(), value);
            }
        }
    }
    for api in &called {
        assert!(
            requests.get(api).is_some_and(|n| *n >= 1.0),
            "no partita_requests_total for {api}: {requests:?}"
        );
    }
    assert!(!requests.contains_key("other") && !requests.contains_key("unknown"));
}
