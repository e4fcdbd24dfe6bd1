//! DescribeCluster: the cluster id and its one broker.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{operations, str_bytes};
use crate::broker::Broker;

pub(crate) async fn handle(
    broker: &Broker,
    request: DescribeClusterRequest,
    _version: i16,
) -> DescribeClusterResponse {
    let node = BrokerId(broker.config.node_id);
    DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(&broker.cluster_id))
        .with_controller_id(node)
        .with_endpoint_type(1)
        .with_cluster_authorized_operations(operations::if_asked(
            request.include_cluster_authorized_operations,
            operations::CLUSTER,
        ))
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(node)
            .with_host(str_bytes(&broker.config.advertised_host))
            .with_port(i32::from(broker.config.advertised_port))])
}
