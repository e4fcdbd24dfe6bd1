//! FindCoordinator: the broker that leads the group's `__consumer_offsets` partition (this
//! one, on a single node). A share-partition key (`group:topic-id:partition`) is coordinated
//! with its group.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::ResponseError;
use partita_cluster::BrokerInfo;

use super::str_bytes;
use crate::broker::Broker;

/// `key_type` of a share-partition key (KIP-932).
const SHARE_KEY: i8 = 2;

pub(crate) async fn handle(
    broker: &Broker,
    request: FindCoordinatorRequest,
    version: i16,
    listener: &str,
) -> FindCoordinatorResponse {
    let find = |key: &str| {
        let group = match request.key_type {
            SHARE_KEY => key.split(':').next().unwrap_or(key),
            _ => key,
        };
        broker.coordinator_of(group, listener)
    };
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let found = find(key.as_str());
                let (node, host, port, error) = answer(found.as_ref());
                Coordinator::default()
                    .with_key(key.clone())
                    .with_node_id(node)
                    .with_host(host)
                    .with_port(port)
                    .with_error_code(error)
            })
            .collect();
        FindCoordinatorResponse::default().with_coordinators(coordinators)
    } else {
        let found = find(request.key.as_str());
        let (node, host, port, error) = answer(found.as_ref());
        FindCoordinatorResponse::default()
            .with_node_id(node)
            .with_host(host)
            .with_port(port)
            .with_error_code(error)
    }
}

/// The coordinator's id, host and port, or COORDINATOR_NOT_AVAILABLE while its partition
/// has no live leader.
fn answer(found: Option<&BrokerInfo>) -> (BrokerId, kafka_protocol::protocol::StrBytes, i32, i16) {
    match found {
        Some(b) => (BrokerId(b.node_id), str_bytes(&b.host), b.port, 0),
        None => (
            BrokerId(-1),
            str_bytes(""),
            -1,
            ResponseError::CoordinatorNotAvailable.code(),
        ),
    }
}
