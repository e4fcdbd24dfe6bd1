//! FindCoordinator: this single broker coordinates every group.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::str_bytes;
use crate::broker::Broker;

pub(crate) async fn handle(
    broker: &Broker,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let node = BrokerId(broker.config.node_id);
    let host = str_bytes(&broker.config.advertised_host);
    let port = i32::from(broker.config.advertised_port);
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(node)
                    .with_host(host.clone())
                    .with_port(port)
            })
            .collect();
        FindCoordinatorResponse::default().with_coordinators(coordinators)
    } else {
        FindCoordinatorResponse::default()
            .with_node_id(node)
            .with_host(host)
            .with_port(port)
    }
}
