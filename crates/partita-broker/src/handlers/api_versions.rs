//! ApiVersions: what this broker serves, so clients pick versions both sides know.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::dispatch::SUPPORTED_APIS;

/// The APIs of transactions alone, not offered where the broker has no transaction
/// coordinator (cluster mode, for now), so that clients and tools that look before they ask
/// see that the broker serves no transactions. InitProducerId stays: idempotent producers
/// need it (a transactional one is refused with UNSUPPORTED_VERSION).
const TRANSACTION_APIS: [ApiKey; 7] = [
    ApiKey::AddPartitionsToTxn,
    ApiKey::AddOffsetsToTxn,
    ApiKey::EndTxn,
    ApiKey::TxnOffsetCommit,
    ApiKey::WriteTxnMarkers,
    ApiKey::DescribeTransactions,
    ApiKey::ListTransactions,
];

pub(crate) async fn handle(
    broker: &Broker,
    _request: ApiVersionsRequest,
    _version: i16,
) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(api_list(broker))
}

/// The v0 answer to an ApiVersions request at a version this broker does not know (KIP-511).
pub(crate) fn unsupported_version(broker: &Broker) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_list(broker))
}

fn api_list(broker: &Broker) -> Vec<ApiVersion> {
    let transactions = broker.transactions.is_some();
    SUPPORTED_APIS
        .iter()
        .filter(|(key, _, _)| transactions || !TRANSACTION_APIS.contains(key))
        .map(|(key, min, max)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect()
}
