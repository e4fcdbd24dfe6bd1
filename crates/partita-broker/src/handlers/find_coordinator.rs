//! FindCoordinator: the broker that leads the group's `__consumer_offsets` partition (this
//! one, on a single node). A share-partition key (`group:topic-id:partition`) is coordinated
//! with its group.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::ResponseError;
use partita_cluster::BrokerInfo;

use super::str_bytes;
use crate::broker::Broker;

/// `key_type` of a group id.
const GROUP_KEY: i8 = 0;
/// `key_type` of a transactional id.
const TRANSACTION_KEY: i8 = 1;
/// `key_type` of a share-partition key (KIP-932).
const SHARE_KEY: i8 = 2;

pub(crate) async fn handle(
    broker: &Broker,
    request: FindCoordinatorRequest,
    version: i16,
    listener: &str,
) -> FindCoordinatorResponse {
    // Kafka's checks of the key type: one it does not know, or a share key before v6.
    let refusal = match request.key_type {
        GROUP_KEY | TRANSACTION_KEY => None,
        SHARE_KEY if version >= 6 => None,
        SHARE_KEY => Some("Share coordinators need FindCoordinator v6 or later".to_string()),
        other => Some(format!("Unknown coordinator type received: {other}")),
    };
    let find = |key: &str| {
        if refusal.is_some() {
            return Err(ResponseError::InvalidRequest);
        }
        let group = match request.key_type {
            SHARE_KEY => key.split(':').next().unwrap_or(key),
            _ => key,
        };
        Ok(broker.coordinator_of(group, listener))
    };
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let (node, host, port, error) = answer(find(key.as_str()));
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
        let (node, host, port, error) = answer(find(request.key.as_str()));
        FindCoordinatorResponse::default()
            .with_node_id(node)
            .with_host(host)
            .with_port(port)
            .with_error_code(error)
            .with_error_message(refusal.map(|message| str_bytes(&message)))
    }
}

/// The coordinator's id, host and port; COORDINATOR_NOT_AVAILABLE while its partition has
/// no live leader, or the error the key got.
fn answer(
    found: Result<Option<BrokerInfo>, ResponseError>,
) -> (BrokerId, kafka_protocol::protocol::StrBytes, i32, i16) {
    match found {
        Ok(Some(b)) => (BrokerId(b.node_id), str_bytes(&b.host), b.port, 0),
        Ok(None) => no_node(ResponseError::CoordinatorNotAvailable),
        Err(error) => no_node(error),
    }
}

fn no_node(error: ResponseError) -> (BrokerId, kafka_protocol::protocol::StrBytes, i32, i16) {
    (BrokerId(-1), str_bytes(""), -1, error.code())
}
