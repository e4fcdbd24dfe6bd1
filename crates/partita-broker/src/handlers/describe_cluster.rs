//! DescribeCluster: the cluster id and its live brokers.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{operations, str_bytes};
use crate::broker::Broker;

pub(crate) async fn handle(
    broker: &Broker,
    request: DescribeClusterRequest,
    _version: i16,
    listener: &str,
) -> DescribeClusterResponse {
    broker.topics.catch_up().await;
    DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(&broker.cluster_id))
        .with_controller_id(BrokerId(broker.controller_id()))
        .with_endpoint_type(1)
        .with_cluster_authorized_operations(operations::if_asked(
            request.include_cluster_authorized_operations,
            operations::CLUSTER,
        ))
        .with_brokers(
            broker
                .brokers(listener)
                .iter()
                .map(|b| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(b.node_id))
                        .with_host(str_bytes(&b.host))
                        .with_port(b.port)
                        .with_rack(b.rack.as_deref().map(str_bytes))
                })
                .collect(),
        )
}
