//! ApiVersions: what this broker serves, so clients pick versions both sides know.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::dispatch::SUPPORTED_APIS;

pub(crate) async fn handle(
    _broker: &Broker,
    _request: ApiVersionsRequest,
    _version: i16,
) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(api_list())
}

/// The v0 answer to an ApiVersions request at a version this broker does not know (KIP-511).
pub(crate) fn unsupported_version() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_list())
}

fn api_list() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|(key, min, max)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect()
}
