//! Metadata: the brokers, the topics, their partitions and leaders; creates topics on demand
//! when `auto.create.topics.enable` allows.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::{operations, str_bytes, topic_name};
use crate::broker::Broker;
use crate::topics::Topic;

pub(crate) async fn handle(
    broker: &Broker,
    request: MetadataRequest,
    version: i16,
    listener: &str,
) -> MetadataResponse {
    broker.topics.catch_up().await;
    // v0: an empty list means every topic; v1+: a null list does.
    let requested = match request.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(topics),
    };
    let allow_auto_create = version < 4 || request.allow_auto_topic_creation;
    let topics: Vec<MetadataResponseTopic> = match requested {
        None => broker
            .topics
            .all()
            .iter()
            .map(|t| describe_topic(t))
            .collect(),
        Some(requested) => {
            let mut found = Vec::with_capacity(requested.len());
            for wanted in requested {
                // A topic id, when given, wins over the name (the Java client sends an empty
                // name with it), as in Kafka.
                found.push(match (wanted.name, wanted.topic_id) {
                    (_, id) if !id.is_nil() => lookup_by_id(broker, id),
                    (Some(name), _) => lookup_by_name(broker, &name, allow_auto_create).await,
                    (None, id) => lookup_by_id(broker, id),
                });
            }
            found
        }
    };
    let topic_operations = operations::if_asked(
        request.include_topic_authorized_operations,
        operations::TOPIC,
    );
    let topics = topics
        .into_iter()
        .map(|t| {
            let known = t.error_code == 0;
            t.with_topic_authorized_operations(if known { topic_operations } else { i32::MIN })
        })
        .collect();
    MetadataResponse::default()
        .with_cluster_authorized_operations(operations::if_asked(
            request.include_cluster_authorized_operations,
            operations::CLUSTER,
        ))
        .with_brokers(
            broker
                .brokers(listener)
                .iter()
                .map(|b| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(b.node_id))
                        .with_host(str_bytes(&b.host))
                        .with_port(b.port)
                        .with_rack(b.rack.as_deref().map(str_bytes))
                })
                .collect(),
        )
        .with_cluster_id(Some(str_bytes(&broker.cluster_id)))
        .with_controller_id(BrokerId(broker.controller_id()))
        .with_topics(topics)
}

async fn lookup_by_name(
    broker: &Broker,
    name: &TopicName,
    allow_auto_create: bool,
) -> MetadataResponseTopic {
    match broker
        .topic_or_auto_create(name.as_str(), allow_auto_create)
        .await
    {
        Ok(Some(topic)) => describe_topic(&topic),
        Ok(None) => MetadataResponseTopic::default()
            .with_name(Some(name.clone()))
            .with_error_code(ResponseError::UnknownTopicOrPartition.code()),
        Err(error) => {
            tracing::debug!(topic = name.as_str(), %error, "metadata lookup failed");
            MetadataResponseTopic::default()
                .with_name(Some(name.clone()))
                .with_error_code(error.code())
        }
    }
}

fn lookup_by_id(broker: &Broker, id: Uuid) -> MetadataResponseTopic {
    match broker.topics.get_by_id(id) {
        Some(topic) => describe_topic(&topic),
        None => MetadataResponseTopic::default()
            .with_topic_id(id)
            .with_error_code(ResponseError::UnknownTopicId.code()),
    }
}

/// A topic's partitions and their leaders. A partition without a live leader (its broker
/// just died, in cluster mode) says LEADER_NOT_AVAILABLE, so that clients ask again.
fn describe_topic(topic: &Topic) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .zip(&topic.leaders)
        .map(|(p, leader)| {
            let node = BrokerId(leader.node_id);
            let replicas = if leader.node_id < 0 {
                vec![]
            } else {
                vec![node]
            };
            let error = if leader.node_id < 0 {
                ResponseError::LeaderNotAvailable.code()
            } else {
                0
            };
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(p.index)
                .with_leader_id(node)
                .with_leader_epoch(leader.epoch)
                .with_replica_nodes(replicas.clone())
                .with_isr_nodes(replicas)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_topic_id(topic.id)
        .with_is_internal(topic.is_internal())
        .with_partitions(partitions)
}
