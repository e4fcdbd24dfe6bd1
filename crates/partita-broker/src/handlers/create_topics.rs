//! CreateTopics, including `validate_only`.

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::error::BrokerError;
use crate::topic_config::{self, TopicOverrides, TOPIC_CONFIG_NAMES};

pub(crate) async fn handle(
    broker: &Broker,
    request: CreateTopicsRequest,
    _version: i16,
) -> CreateTopicsResponse {
    let validate_only = request.validate_only;
    let mut topics = Vec::with_capacity(request.topics.len());
    for wanted in request.topics {
        let name = wanted.name.clone();
        let result = CreatableTopicResult::default().with_name(name.clone());
        topics.push(match create_one(broker, wanted, validate_only).await {
            Ok((partitions, id, overrides)) => result
                .with_topic_id(id)
                .with_num_partitions(partitions)
                .with_replication_factor(1)
                .with_configs(Some(describe(broker, &overrides))),
            Err(error) => {
                tracing::info!(topic = name.as_str(), %error, "create topic refused");
                result
                    .with_error_code(error.code())
                    .with_error_message(Some(str_bytes(&error.to_string())))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
            }
        });
    }
    CreateTopicsResponse::default().with_topics(topics)
}

async fn create_one(
    broker: &Broker,
    wanted: CreatableTopic,
    validate_only: bool,
) -> Result<(i32, uuid::Uuid, TopicOverrides), BrokerError> {
    let name = wanted.name.as_str();
    // As in Kafka, an existing name is reported before anything else about the request.
    if broker.topics.get(name).is_some() {
        return Err(BrokerError::TopicAlreadyExists(name.to_string()));
    }
    let partitions = match (wanted.num_partitions, wanted.assignments.len()) {
        (-1, 0) => broker.config.num_partitions,
        (-1, assigned) => assigned as i32,
        (_, assigned) if assigned > 0 => {
            return Err(BrokerError::InvalidRequest(
                "both num_partitions and replica assignments were given".to_string(),
            ))
        }
        (n, _) => n,
    };
    if !wanted.assignments.is_empty() && wanted.replication_factor != -1 {
        return Err(BrokerError::InvalidRequest(
            "Both numPartitions or replicationFactor and replicasAssignments were set. Both \
             cannot be used at the same time."
                .to_string(),
        ));
    }
    let brokers = wanted.assignments.iter().flat_map(|a| a.broker_ids.iter());
    check_assigned_brokers(broker, brokers.map(|id| id.0))?;
    if wanted.replication_factor == 0 || wanted.replication_factor < -1 {
        return Err(BrokerError::InvalidReplicationFactor(
            "Replication factor must be larger than 0, or -1 to use the default value.".to_string(),
        ));
    }
    if !matches!(wanted.replication_factor, -1 | 1) {
        return Err(BrokerError::InvalidReplicationFactor(format!(
            "Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only 1 broker(s) are registered.",
            rf = wanted.replication_factor
        )));
    }
    let mut overrides = TopicOverrides::new();
    for config in wanted.configs {
        if let Some(value) = config.value {
            overrides.insert(config.name.to_string(), value.to_string());
        }
    }
    if validate_only {
        broker.topics.validate_new(name, partitions, &overrides)?;
        return Ok((partitions, uuid::Uuid::nil(), overrides));
    }
    let topic = broker.topics.create(name, partitions, overrides).await?;
    Ok((partitions, topic.id, topic.overrides.clone()))
}

/// A manual assignment may only name this broker.
pub(crate) fn check_assigned_brokers(
    broker: &Broker,
    mut ids: impl Iterator<Item = i32>,
) -> Result<(), BrokerError> {
    match ids.find(|id| *id != broker.config.node_id) {
        Some(bad) => Err(BrokerError::InvalidReplicaAssignment(format!(
            "The manual partition assignment includes broker {bad}, but no such broker is \
             registered."
        ))),
        None => Ok(()),
    }
}

fn describe(broker: &Broker, overrides: &TopicOverrides) -> Vec<CreatableTopicConfigs> {
    TOPIC_CONFIG_NAMES
        .iter()
        .map(|name| {
            let (value, source) = match overrides.get(*name) {
                Some(value) => (value.clone(), topic_config::SOURCE_TOPIC_OVERRIDE),
                None => (
                    topic_config::default_value(&broker.config, name).unwrap_or_default(),
                    topic_config::default_source(&broker.config, name),
                ),
            };
            CreatableTopicConfigs::default()
                .with_name(str_bytes(name))
                .with_value(Some(str_bytes(&value)))
                .with_config_source(source)
        })
        .collect()
}
