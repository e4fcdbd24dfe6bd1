//! Request routing: the table of every API this broker serves, at which versions, and the
//! handler each one goes to.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use partita_groups::ClientContext;

use crate::acl::Session;
use crate::authz::{self, Guarded};
use crate::broker::Broker;
use crate::connection::NextRequest;
use crate::handlers::{self, groups, share};
use crate::memory::MemoryClaim;

/// The APIs served and the versions of each, as advertised by ApiVersions.
///
/// A version is listed only when its every field is honoured; clients fall back to the
/// highest version both sides know. Versions below the codec's floor are served through
/// crate::legacy.
pub(crate) const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 0, 11),
    (ApiKey::Fetch, 0, 16),
    (ApiKey::ListOffsets, 0, 9),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 0, 7),
    (ApiKey::DeleteTopics, 0, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::EndTxn, 0, 4),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::TxnOffsetCommit, 0, 4),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 1),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::WriteTxnMarkers, 0, 1),
    (ApiKey::OffsetForLeaderEpoch, 0, 4),
    (ApiKey::DescribeConfigs, 0, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 0, 9),
    (ApiKey::OffsetFetch, 0, 9),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::ShareGroupHeartbeat, 1, 1),
    (ApiKey::ShareGroupDescribe, 1, 1),
    (ApiKey::ShareFetch, 1, 1),
    (ApiKey::ShareAcknowledge, 1, 1),
    (ApiKey::DescribeShareGroupOffsets, 0, 0),
    (ApiKey::DescribeAcls, 0, 3),
    (ApiKey::CreateAcls, 0, 3),
    (ApiKey::DeleteAcls, 0, 3),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    // Answered by the connection before authentication (crate::sasl); here, out of place.
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// Kafka's ILLEGAL_SASL_STATE.
const ILLEGAL_SASL_STATE: i16 = 34;

/// The version range served for `api_key`, if it is served at all.
pub(crate) fn supported_versions(api_key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(key, _, _)| *key == api_key)
        .map(|(_, min, max)| (*min, *max))
}

/// An encoded response, framed and ready to write.
pub(crate) struct Reply {
    pub(crate) frame: BytesMut,
    /// Memory claimed for the response, given back when the reply is dropped after writing.
    pub(crate) _memory: Option<MemoryClaim>,
}

/// A request that cannot be answered: the connection is closed, as Kafka does.
#[derive(Debug)]
pub(crate) enum DispatchError {
    Close(String),
}

/// An answer still being worked out.
pub(crate) type PendingReply =
    Pin<Box<dyn Future<Output = Result<Option<Reply>, DispatchError>> + Send>>;

/// Whether a frame is a produce request, whose work may overlap the next request's.
pub(crate) fn is_produce(frame: &[u8]) -> bool {
    i16::from_be_bytes([frame[0], frame[1]]) == ApiKey::Produce as i16
}

/// Starts on a request: a produce request at a served version is staged (its batches put in
/// line, in the order of the connection's requests) and the rest of its work is returned; any
/// other request is answered before this returns.
pub(crate) async fn stage(
    broker: &Arc<Broker>,
    peer: SocketAddr,
    (listener, session, next): (&str, &Session, &NextRequest),
    mut frame: Bytes,
) -> Result<PendingReply, DispatchError> {
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    // Versions below the codec's floor go through crate::legacy, in `dispatch`.
    let served = supported_versions(ApiKey::Produce)
        .is_some_and(|(_, max)| (ApiKey::Produce.valid_versions().min..=max).contains(&version));
    if !(is_produce(&frame) && served) {
        let reply = dispatch(broker, peer, (listener, session, next), frame).await;
        return Ok(Box::pin(std::future::ready(reply)));
    }
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    kafka_protocol::protocol::decode_request_header_from_buffer(&mut frame)
        .map_err(|e| DispatchError::Close(format!("malformed request header: {e}")))?;
    let request = ProduceRequest::decode(&mut frame, version)
        .map_err(|e| DispatchError::Close(format!("malformed Produce v{version} request: {e}")))?;
    let (request, fixup) = match authz::guard(broker, session, request, version) {
        Guarded::Refused(response) => {
            let reply = encode(ApiKey::Produce as i16, version, correlation_id, &response);
            return Ok(Box::pin(std::future::ready(reply)));
        }
        Guarded::Proceed(request, fixup) => (request, fixup),
    };
    let staged = handlers::produce::stage(broker, request).await;
    let broker = Arc::clone(broker);
    Ok(Box::pin(async move {
        match staged.finish(&broker).await {
            Some(response) => {
                let response = authz::fix(response, fixup);
                encode(ApiKey::Produce as i16, version, correlation_id, &response)
            }
            None => Ok(None),
        }
    }))
}

/// Decodes one request frame, runs its handler and encodes the response. `Ok(None)` means
/// no response is due (a produce with `acks=0`).
pub(crate) async fn dispatch(
    broker: &Broker,
    peer: SocketAddr,
    asking: (&str, &Session, &NextRequest),
    frame: Bytes,
) -> Result<Option<Reply>, DispatchError> {
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let Some((api_key, floor)) = ApiKey::try_from(raw_key)
        .ok()
        .and_then(|key| Some((key, crate::legacy::floor(key, version)?)))
    else {
        return serve(broker, peer, asking, frame).await;
    };
    // A version older than the codec knows: served as its oldest, answered as asked.
    let upgraded = crate::legacy::upgrade_request(api_key, version, floor, frame).map_err(|e| {
        DispatchError::Close(format!("malformed {api_key:?} v{version} request: {e}"))
    })?;
    let Some(reply) = serve(broker, peer, asking, upgraded.frame).await? else {
        return Ok(None);
    };
    let frame = crate::legacy::downgrade_response(
        api_key,
        version,
        floor,
        reply.frame,
        &upgraded.unreadable,
    )
    .map_err(|e| DispatchError::Close(format!("could not answer {api_key:?} v{version}: {e}")))?;
    Ok(Some(Reply { frame, ..reply }))
}

/// [`dispatch`] for a version the codec knows.
async fn serve(
    broker: &Broker,
    peer: SocketAddr,
    (listener, session, next): (&str, &Session, &NextRequest),
    mut frame: Bytes,
) -> Result<Option<Reply>, DispatchError> {
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(raw_key)
        .map_err(|_| DispatchError::Close(format!("unknown api key {raw_key}")))?;
    let Some((min, max)) = supported_versions(api_key) else {
        return Err(DispatchError::Close(format!(
            "{api_key:?} is not supported"
        )));
    };
    if version < min || version > max {
        if api_key == ApiKey::ApiVersions {
            // KIP-511: answer an unknown ApiVersions version with a v0 response carrying
            // UNSUPPORTED_VERSION and the versions we do serve.
            return encode(
                raw_key,
                0,
                correlation_id,
                &handlers::api_versions::unsupported_version(broker),
            );
        }
        return Err(DispatchError::Close(format!(
            "{api_key:?} v{version} is not supported (served: v{min}..=v{max})"
        )));
    }
    let header = kafka_protocol::protocol::decode_request_header_from_buffer(&mut frame)
        .map_err(|e| DispatchError::Close(format!("malformed request header: {e}")))?;
    let client_id = header.client_id.as_ref().map(|c| c.as_str()).unwrap_or("");
    tracing::trace!(?api_key, version, client_id, "request");
    let client = ClientContext {
        client_id: client_id.to_string(),
        client_host: format!("/{}", peer.ip()),
    };

    // With ACLs on, what the principal may not do is refused before the handler runs, or
    // taken out of the request and answered in its response (crate::authz).
    macro_rules! checked {
        ($request:expr) => {
            match authz::guard(broker, session, $request, version) {
                Guarded::Refused(response) => {
                    return encode(raw_key, version, correlation_id, &response)
                }
                Guarded::Proceed(request, fixup) => (request, fixup),
            }
        };
    }

    macro_rules! route {
        ($request:ty, $handler:expr) => {{
            let request = <$request>::decode(&mut frame, version).map_err(|e| {
                DispatchError::Close(format!("malformed {api_key:?} v{version} request: {e}"))
            })?;
            let (request, fixup) = checked!(request);
            let response = authz::fix($handler(broker, request, version).await, fixup);
            encode(raw_key, version, correlation_id, &response)
        }};
    }

    // APIs that name brokers answer with their addresses on the client's listener.
    macro_rules! route_listener {
        ($request:ty, $handler:expr) => {{
            let request = <$request>::decode(&mut frame, version).map_err(|e| {
                DispatchError::Close(format!("malformed {api_key:?} v{version} request: {e}"))
            })?;
            let (request, fixup) = checked!(request);
            let response = authz::fix($handler(broker, request, version, listener).await, fixup);
            encode(raw_key, version, correlation_id, &response)
        }};
    }

    // Group APIs also need to know who is asking.
    macro_rules! route_group {
        ($request:ty, $handler:expr $(, $more:expr)*) => {{
            let request = <$request>::decode(&mut frame, version).map_err(|e| {
                DispatchError::Close(format!("malformed {api_key:?} v{version} request: {e}"))
            })?;
            let (request, fixup) = checked!(request);
            let response = $handler(broker, &client, request, version $(, $more)*).await;
            let response = authz::fix(response, fixup);
            for code in handlers::error_codes::ErrorCodes::error_codes(&response) {
                broker.metrics.record_error(api_key, code);
            }
            encode(raw_key, version, correlation_id, &response)
        }};
    }

    if api_key == ApiKey::ListOffsets && version == 0 {
        // Decoded by hand, without its topics being checked one by one: with ACLs on, only
        // for principals that may describe the whole cluster.
        if !broker.authorizer.authorize(
            session,
            crate::acl::Operation::Describe,
            crate::acl::ResourceType::Cluster,
            crate::acl::CLUSTER_NAME,
        ) {
            return Err(DispatchError::Close(
                "ListOffsets v0 with ACLs on needs DESCRIBE on the cluster".to_string(),
            ));
        }
        let body = handlers::list_offsets::handle_v0(broker, &mut frame)
            .await
            .map_err(|e| DispatchError::Close(format!("malformed ListOffsets v0 request: {e}")))?;
        return Ok(Some(frame_raw(correlation_id, &body)));
    }

    match api_key {
        ApiKey::JoinGroup => route_group!(JoinGroupRequest, groups::join_group),
        ApiKey::SyncGroup => route_group!(SyncGroupRequest, groups::sync_group),
        ApiKey::Heartbeat => route_group!(HeartbeatRequest, groups::heartbeat),
        ApiKey::LeaveGroup => route_group!(LeaveGroupRequest, groups::leave_group),
        ApiKey::OffsetCommit => route_group!(OffsetCommitRequest, groups::offset_commit),
        ApiKey::OffsetFetch => route_group!(OffsetFetchRequest, groups::offset_fetch),
        ApiKey::OffsetDelete => route_group!(OffsetDeleteRequest, groups::offset_delete),
        ApiKey::DescribeGroups => route_group!(DescribeGroupsRequest, groups::describe_groups),
        ApiKey::ListGroups => route_group!(ListGroupsRequest, groups::list_groups),
        ApiKey::DeleteGroups => route_group!(DeleteGroupsRequest, groups::delete_groups),
        ApiKey::ConsumerGroupHeartbeat => route_group!(
            ConsumerGroupHeartbeatRequest,
            groups::consumer_group_heartbeat,
            next
        ),
        ApiKey::ShareGroupHeartbeat => route_group!(ShareGroupHeartbeatRequest, share::heartbeat),
        ApiKey::ShareGroupDescribe => route_group!(ShareGroupDescribeRequest, share::describe),
        ApiKey::ShareFetch => {
            let request = ShareFetchRequest::decode(&mut frame, version).map_err(|e| {
                DispatchError::Close(format!("malformed ShareFetch v{version} request: {e}"))
            })?;
            let (request, _) = checked!(request);
            let (response, memory) = share::fetch(broker, &client, request, version).await;
            for code in handlers::error_codes::ErrorCodes::error_codes(&response) {
                broker.metrics.record_error(api_key, code);
            }
            let reply = encode(raw_key, version, correlation_id, &response)?;
            Ok(reply.map(|reply| Reply {
                _memory: Some(memory),
                ..reply
            }))
        }
        ApiKey::ShareAcknowledge => route_group!(ShareAcknowledgeRequest, share::acknowledge),
        ApiKey::DescribeShareGroupOffsets => {
            route_group!(DescribeShareGroupOffsetsRequest, share::describe_offsets)
        }
        ApiKey::ConsumerGroupDescribe => route_group!(
            ConsumerGroupDescribeRequest,
            groups::consumer_group_describe
        ),
        ApiKey::Produce => {
            let request = ProduceRequest::decode(&mut frame, version).map_err(|e| {
                DispatchError::Close(format!("malformed Produce v{version} request: {e}"))
            })?;
            let (request, fixup) = checked!(request);
            match handlers::produce::handle(broker, request, version).await {
                Some(response) => encode(
                    raw_key,
                    version,
                    correlation_id,
                    &authz::fix(response, fixup),
                ),
                None => Ok(None),
            }
        }
        ApiKey::Fetch => {
            let request = FetchRequest::decode(&mut frame, version).map_err(|e| {
                DispatchError::Close(format!("malformed Fetch v{version} request: {e}"))
            })?;
            let (request, fixup) = checked!(request);
            let (response, memory) =
                handlers::fetch::handle(broker, request, version, &client).await;
            let response = authz::fix(response, fixup);
            let reply = encode(raw_key, version, correlation_id, &response)?;
            Ok(reply.map(|reply| Reply {
                _memory: Some(memory),
                ..reply
            }))
        }
        ApiKey::ListOffsets => route!(ListOffsetsRequest, handlers::list_offsets::handle),
        ApiKey::Metadata => route_listener!(MetadataRequest, handlers::metadata::handle),
        ApiKey::FindCoordinator => {
            route_listener!(FindCoordinatorRequest, handlers::find_coordinator::handle)
        }
        ApiKey::ApiVersions => route!(ApiVersionsRequest, handlers::api_versions::handle),
        ApiKey::CreateTopics => route!(CreateTopicsRequest, handlers::create_topics::handle),
        ApiKey::DeleteTopics => route!(DeleteTopicsRequest, handlers::delete_topics::handle),
        ApiKey::DeleteRecords => route!(DeleteRecordsRequest, handlers::delete_records::handle),
        ApiKey::InitProducerId => {
            route!(InitProducerIdRequest, handlers::init_producer_id::handle)
        }
        ApiKey::AddPartitionsToTxn => route!(
            AddPartitionsToTxnRequest,
            handlers::transactions::add_partitions
        ),
        ApiKey::EndTxn => route!(EndTxnRequest, handlers::transactions::end_txn),
        ApiKey::AddOffsetsToTxn => {
            route!(AddOffsetsToTxnRequest, handlers::transactions::add_offsets)
        }
        ApiKey::TxnOffsetCommit => route_group!(
            TxnOffsetCommitRequest,
            handlers::transactions::txn_offset_commit
        ),
        ApiKey::DescribeTransactions => route!(
            DescribeTransactionsRequest,
            handlers::transactions::describe
        ),
        ApiKey::ListTransactions => {
            route!(ListTransactionsRequest, handlers::transactions::list)
        }
        ApiKey::DescribeProducers => route!(
            DescribeProducersRequest,
            handlers::transactions::describe_producers
        ),
        ApiKey::WriteTxnMarkers => route!(
            WriteTxnMarkersRequest,
            handlers::transactions::write_txn_markers
        ),
        ApiKey::OffsetForLeaderEpoch => route!(
            OffsetForLeaderEpochRequest,
            handlers::offset_for_leader_epoch::handle
        ),
        ApiKey::DescribeConfigs => route!(DescribeConfigsRequest, handlers::configs::describe),
        ApiKey::AlterConfigs => route!(AlterConfigsRequest, handlers::configs::alter),
        ApiKey::IncrementalAlterConfigs => route!(
            IncrementalAlterConfigsRequest,
            handlers::configs::incremental_alter
        ),
        ApiKey::CreatePartitions => {
            route!(CreatePartitionsRequest, handlers::create_partitions::handle)
        }
        ApiKey::DescribeCluster => {
            route_listener!(DescribeClusterRequest, handlers::describe_cluster::handle)
        }
        ApiKey::DescribeAcls => route!(DescribeAclsRequest, handlers::acls::describe),
        ApiKey::CreateAcls => route!(CreateAclsRequest, handlers::acls::create),
        ApiKey::DeleteAcls => route!(DeleteAclsRequest, handlers::acls::delete),
        ApiKey::DescribeUserScramCredentials => route!(
            DescribeUserScramCredentialsRequest,
            handlers::scram_credentials::describe
        ),
        ApiKey::AlterUserScramCredentials => route!(
            AlterUserScramCredentialsRequest,
            handlers::scram_credentials::alter
        ),
        // On a listener without SASL, or once authenticated when connections.max.reauth.ms
        // is 0 (with it, the connection takes a re-authentication before this point).
        ApiKey::SaslHandshake => {
            let response = SaslHandshakeResponse::default().with_error_code(ILLEGAL_SASL_STATE);
            encode(raw_key, version, correlation_id, &response)
        }
        ApiKey::SaslAuthenticate => {
            let response = SaslAuthenticateResponse::default()
                .with_error_code(ILLEGAL_SASL_STATE)
                .with_error_message(Some(StrBytes::from_static_str(
                    "SASL authentication is not expected on this connection",
                )));
            encode(raw_key, version, correlation_id, &response)
        }
        other => Err(DispatchError::Close(format!("{other:?} is not supported"))),
    }
}

/// Frames a body encoded by hand, with a v0 response header.
fn frame_raw(correlation_id: i32, body: &[u8]) -> Reply {
    let mut frame = BytesMut::with_capacity(8 + body.len());
    frame.put_i32(4 + body.len() as i32);
    frame.put_i32(correlation_id);
    frame.put_slice(body);
    Reply {
        frame,
        _memory: None,
    }
}

/// Encodes the whole response frame (size, header, body) into one buffer sized up front, so
/// a large Fetch response is neither regrown while encoding nor written in pieces.
pub(crate) fn encode(
    api_key: i16,
    version: i16,
    correlation_id: i32,
    response: &impl Encodable,
) -> Result<Option<Reply>, DispatchError> {
    let failed = |e: anyhow::Error| DispatchError::Close(format!("could not encode response: {e}"));
    let header_version = ApiKey::try_from(api_key)
        .map(|key| key.response_header_version(version))
        .unwrap_or(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_size = header.compute_size(header_version).map_err(failed)?;
    let body_size = response.compute_size(version).map_err(failed)?;
    let mut frame = BytesMut::with_capacity(4 + header_size + body_size);
    frame.put_i32((header_size + body_size) as i32);
    header.encode(&mut frame, header_version).map_err(failed)?;
    response.encode(&mut frame, version).map_err(failed)?;
    Ok(Some(Reply {
        frame,
        _memory: None,
    }))
}
